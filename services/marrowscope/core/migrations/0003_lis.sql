-- LIS resources (on top of 0001's specimens, analysis_jobs and reports): API clients, the
-- field images of a specimen, job progress and retries, per-cell results, expert corrections.

CREATE TABLE api_clients (
    id text PRIMARY KEY,                -- opaque; never the key itself
    name text NOT NULL,
    key_hash text NOT NULL UNIQUE,      -- sha256 hex of the API key / client secret
    scopes text[] NOT NULL,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE specimens ADD COLUMN specimen_type text NOT NULL DEFAULT 'bone-marrow-aspirate';

CREATE TABLE specimen_images (
    id uuid PRIMARY KEY,
    specimen_id uuid NOT NULL REFERENCES specimens (id),
    object_key text NOT NULL,
    state text NOT NULL DEFAULT 'stored' CHECK (state IN ('pending_upload', 'stored')),
    content_type text,
    width integer,
    height integer,
    size_bytes bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (specimen_id, object_key)
);

ALTER TABLE analysis_jobs
    ADD COLUMN images_total integer NOT NULL DEFAULT 0,
    ADD COLUMN images_done integer NOT NULL DEFAULT 0,
    ADD COLUMN cells_found integer NOT NULL DEFAULT 0,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN waiting_reason text,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN report_id uuid,
    ADD CONSTRAINT analysis_jobs_state
        CHECK (state IN ('queued', 'running', 'waiting', 'succeeded', 'failed'));
CREATE INDEX analysis_jobs_due ON analysis_jobs (next_attempt_at) WHERE state IN ('queued', 'waiting', 'running');

-- One row per classified (or unreadable) cell of a job; written once per image.
CREATE TABLE analysis_cells (
    job_id uuid NOT NULL REFERENCES analysis_jobs (id),
    image_id uuid NOT NULL REFERENCES specimen_images (id),
    cell_id uuid NOT NULL,
    object_key text NOT NULL,
    class_code text,
    probability real,
    margin real,
    top_classes jsonb NOT NULL DEFAULT '[]',
    error text,
    model_version text NOT NULL DEFAULT '',
    algorithm_version text NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, cell_id)
);

-- Expert corrections of single cells; append-only, the newest per cell wins.
CREATE TABLE cell_corrections (
    id uuid PRIMARY KEY,
    specimen_id uuid NOT NULL REFERENCES specimens (id),
    cell_id uuid NOT NULL,
    class_code text NOT NULL,
    reviewer text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER cell_corrections_append_only BEFORE UPDATE OR DELETE ON cell_corrections
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
