-- A locked evaluation set: a dataset registered for evaluation only. Promotion to production
-- measures the candidate against production on it; training and campaigns refuse its cells.
CREATE TABLE evaluation_sets (
    dataset text PRIMARY KEY,
    taxonomy text NOT NULL,
    locked_by text NOT NULL,
    reason text,
    locked_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER evaluation_sets_insert_only BEFORE UPDATE OR DELETE ON evaluation_sets
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
