-- Model aliases: 'production' is what the LIS classifies with, 'candidate' what is being
-- considered. Each change is a new row (insert-only), so the current alias is the newest row
-- and a rollback is the version before it; every change is also an audit event.
CREATE TABLE model_alias_changes (
    id bigserial PRIMARY KEY,
    alias text NOT NULL CHECK (alias IN ('production', 'candidate')),
    model_version_id uuid NOT NULL REFERENCES model_versions (id),
    previous_version_id uuid REFERENCES model_versions (id),
    action text NOT NULL CHECK (action IN ('promote', 'rollback', 'bootstrap')),
    actor text NOT NULL,
    reason text,
    forced boolean NOT NULL DEFAULT false,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_alias_changes_alias ON model_alias_changes (alias, id DESC);
CREATE TRIGGER model_alias_changes_insert_only BEFORE UPDATE OR DELETE ON model_alias_changes
    FOR EACH ROW EXECUTE FUNCTION forbid_change();

-- A demo model (trained by the local stack on generated cells) may serve the LIS only where
-- no other production model exists, and every report made with it says so.
ALTER TABLE model_versions ADD COLUMN demo boolean NOT NULL DEFAULT false;

-- An analysis job classifies every image with the one version it pinned when it started.
ALTER TABLE analysis_jobs ADD COLUMN model_version_id uuid REFERENCES model_versions (id);
