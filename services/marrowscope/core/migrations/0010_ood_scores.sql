-- Each analysed cell's distance from the training data of the model that classified it
-- (NULL for models exported without one).
ALTER TABLE analysis_cells ADD COLUMN ood_score real;
