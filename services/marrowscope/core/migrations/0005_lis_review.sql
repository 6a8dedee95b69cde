-- Low-confidence cells of a specimen go to the curation service as review tasks: one round of
-- a 'LIS_REVIEW' campaign per analysis job. The orchestrator ignores that campaign (it is not
-- an SSL campaign); the LIS API turns the experts' decisions into cell corrections.
ALTER TABLE analysis_jobs
    ADD COLUMN review_state text NOT NULL DEFAULT 'none'
        CHECK (review_state IN ('none', 'pending', 'sent', 'done'));
ALTER TABLE cell_corrections ADD COLUMN decision_id uuid UNIQUE;
