-- Quality control before counting (the LIS API's tables). Each analysed cell keeps the
-- segmenter's flags and, when it is not counted, why; each analysed field its verdict.
ALTER TABLE analysis_cells
    ADD COLUMN quality_flags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN excluded text;  -- NULL: counted; else touches_border, too_large, field_not_analysable

CREATE TABLE analysis_fields (
    job_id uuid NOT NULL REFERENCES analysis_jobs (id),
    image_id uuid NOT NULL REFERENCES specimen_images (id),
    analysable boolean NOT NULL,
    reason text,
    red_cell_count integer NOT NULL DEFAULT 0,
    largest_region_share real NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, image_id)
);
