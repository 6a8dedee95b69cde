-- An expert's undo in curation takes the correction out of the LIS report. Corrections stay
-- append-only: a retraction is a new row naming the correction it withdraws (class_code
-- empty); a report built after it counts the cell as the model (or a later correction) says.
ALTER TABLE cell_corrections ADD COLUMN retracts uuid UNIQUE REFERENCES cell_corrections (id);
ALTER TABLE cell_corrections ALTER COLUMN class_code DROP NOT NULL;
ALTER TABLE cell_corrections ADD CONSTRAINT cell_corrections_retraction_has_no_class
    CHECK ((retracts IS NULL) = (class_code IS NOT NULL));
