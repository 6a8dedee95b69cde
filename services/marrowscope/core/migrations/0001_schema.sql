-- The whole Marrowscope schema, version 1.
-- Write the object first, then commit the row that points to it: every *_key column names an
-- object that already exists in the object store.

-- Rows that record what people and services did are never changed or removed.
CREATE FUNCTION forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is insert-only: % is not allowed (append a new row instead)',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

-- Specimens come from the LIS. The accession number lives only here: never in object keys,
-- logs, metric labels or gRPC metadata.
CREATE TABLE specimens (
    id uuid PRIMARY KEY,
    client_id text NOT NULL,
    accession_number text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, accession_number)
);

CREATE TABLE field_images (
    id uuid PRIMARY KEY,
    object_key text NOT NULL UNIQUE,
    sha256 text NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    format text NOT NULL,
    specimen_id uuid REFERENCES specimens (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A single-cell image. origin_key makes registration idempotent:
-- 'seg:<field sha256>:<algorithm version>:<index>' or 'import:<dataset>:<crop sha256>'.
CREATE TABLE cells (
    id uuid PRIMARY KEY,
    origin_key text NOT NULL UNIQUE,
    object_key text NOT NULL,
    sha256 text NOT NULL,
    dataset text,
    field_image_id uuid REFERENCES field_images (id),
    box integer[4],
    mask_rle text,
    area integer,
    quality_flags text[] NOT NULL DEFAULT '{}',
    algorithm_version text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cells_dataset ON cells (dataset);
CREATE INDEX cells_field_image ON cells (field_image_id);

CREATE TABLE campaigns (
    id uuid PRIMARY KEY,
    request_id text UNIQUE,
    name text NOT NULL,
    method text NOT NULL,
    dataset text NOT NULL,
    taxonomy text NOT NULL,
    parameters jsonb NOT NULL,
    state text NOT NULL DEFAULT 'created',
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rounds (
    id uuid PRIMARY KEY,
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    number integer NOT NULL,
    state text NOT NULL,
    training_job_id uuid,
    model_version_id uuid,
    teacher_count integer NOT NULL DEFAULT 0,
    sampled integer NOT NULL DEFAULT 0,
    cst_candidates integer NOT NULL DEFAULT 0,
    al_candidates integer NOT NULL DEFAULT 0,
    decided integer NOT NULL DEFAULT 0,
    added integer NOT NULL DEFAULT 0,
    metrics jsonb NOT NULL DEFAULT '{}',
    error text,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    UNIQUE (campaign_id, number)
);

-- Which cells a campaign uses and how: teacher (labelled), validation, test, pool (unlabelled),
-- rejected (an expert said too difficult: out of the pool, not trained on).
CREATE TABLE campaign_cells (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    cell_id uuid NOT NULL REFERENCES cells (id),
    role text NOT NULL CHECK (role IN ('teacher', 'validation', 'test', 'pool', 'rejected')),
    round_added integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, cell_id)
);
CREATE INDEX campaign_cells_role ON campaign_cells (campaign_id, role);

-- Labels are append-only: the current label of a cell in a context is its newest row.
-- source: reference (the dataset's own label), import, expert, pseudo (unconfirmed ST).
CREATE TABLE labels (
    id bigserial PRIMARY KEY,
    cell_id uuid NOT NULL REFERENCES cells (id),
    taxonomy text NOT NULL,
    class_code text NOT NULL,
    source text NOT NULL CHECK (source IN ('reference', 'import', 'expert', 'pseudo')),
    user_name text,
    campaign_id uuid REFERENCES campaigns (id),
    round_number integer,
    decision_id uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX labels_cell ON labels (cell_id, id DESC);
CREATE UNIQUE INDEX labels_one_per_decision ON labels (decision_id) WHERE decision_id IS NOT NULL;
CREATE TRIGGER labels_insert_only BEFORE UPDATE OR DELETE ON labels
    FOR EACH ROW EXECUTE FUNCTION forbid_change();

CREATE TABLE training_jobs (
    id uuid PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    state text NOT NULL DEFAULT 'queued',
    spec jsonb NOT NULL,
    labels jsonb NOT NULL DEFAULT '{}',
    epoch integer NOT NULL DEFAULT 0,
    total_epochs integer NOT NULL DEFAULT 0,
    learning_curve jsonb NOT NULL DEFAULT '[]',
    model_version_id uuid,
    error text,
    cancel_requested boolean NOT NULL DEFAULT false,
    runner text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_versions (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    parent_id uuid REFERENCES model_versions (id),
    taxonomy text NOT NULL,
    class_codes text[] NOT NULL,
    architecture text NOT NULL,
    input_spec jsonb NOT NULL,
    artifact_key text NOT NULL,
    artifact_sha256 text NOT NULL,
    artifact_bytes bigint NOT NULL,
    weights_key text NOT NULL,  -- PyTorch state dict, for warm starts
    training_set_hash text NOT NULL,
    metrics jsonb NOT NULL DEFAULT '{}',
    learning_curve jsonb NOT NULL DEFAULT '[]',
    training_job_id uuid REFERENCES training_jobs (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    role text NOT NULL CHECK (role IN ('expert', 'admin', 'service')),
    token_sha256 text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The review queue: claimed with FOR UPDATE SKIP LOCKED; a claim is a lease that expires.
CREATE TABLE review_tasks (
    id uuid PRIMARY KEY,
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    round_id uuid NOT NULL REFERENCES rounds (id),
    cell_id uuid NOT NULL REFERENCES cells (id),
    object_key text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('CST', 'AL')),
    proposed_class text,
    top_classes jsonb NOT NULL DEFAULT '[]',
    state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'claimed', 'decided')),
    claimed_by text,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    decided_at timestamptz,
    UNIQUE (round_id, cell_id)
);
CREATE INDEX review_tasks_queue ON review_tasks (campaign_id, state, kind, proposed_class);

-- Decisions are insert-only and idempotent by the client's decision id. Undo is a new row
-- (action 'undo') pointing at the decision it undoes.
CREATE TABLE decisions (
    id uuid PRIMARY KEY,
    client_decision_id text NOT NULL UNIQUE,
    task_id uuid NOT NULL REFERENCES review_tasks (id),
    action text NOT NULL CHECK (action IN ('confirm', 'correct', 'label', 'too_difficult', 'undo')),
    class_code text,
    undoes uuid REFERENCES decisions (id),
    user_name text NOT NULL,
    reason text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_task ON decisions (task_id, created_at);
CREATE TRIGGER decisions_insert_only BEFORE UPDATE OR DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION forbid_change();

CREATE TABLE audit_events (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    entity text NOT NULL,
    entity_id text NOT NULL,
    previous jsonb,
    current jsonb,
    reason text
);
CREATE INDEX audit_events_entity ON audit_events (entity, entity_id);
CREATE TRIGGER audit_events_insert_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION forbid_change();

-- Predictions made during rounds (kept for the experiment report and for reproducibility).
CREATE TABLE predictions (
    cell_id uuid NOT NULL REFERENCES cells (id),
    model_version_id uuid NOT NULL REFERENCES model_versions (id),
    probabilities real[] NOT NULL,
    top1_class text NOT NULL,
    top1_probability real NOT NULL,
    margin real NOT NULL,
    entropy real NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cell_id, model_version_id)
);

CREATE TABLE analysis_jobs (
    id uuid PRIMARY KEY,
    specimen_id uuid NOT NULL REFERENCES specimens (id),
    client_id text NOT NULL,
    idempotency_key text,
    state text NOT NULL DEFAULT 'queued',
    progress jsonb NOT NULL DEFAULT '{}',
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, idempotency_key)
);

-- Report versions: a correction is a new version; old versions stay.
CREATE TABLE reports (
    id uuid PRIMARY KEY,
    specimen_id uuid NOT NULL REFERENCES specimens (id),
    analysis_job_id uuid REFERENCES analysis_jobs (id),
    version integer NOT NULL,
    status text NOT NULL CHECK (status IN ('preliminary', 'final', 'corrected')),
    body jsonb NOT NULL,
    model_version_id uuid REFERENCES model_versions (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (specimen_id, version)
);
CREATE TRIGGER reports_insert_only BEFORE UPDATE OR DELETE ON reports
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
