-- Server-side sessions of the curation web UI, and users that can be disabled.
--
-- The browser's cookie holds an opaque random session id; only its SHA-256 is stored here, so
-- a copy of this table does not sign anyone in. A session ends when it is revoked (sign-out,
-- the user disabled or re-keyed), at its absolute expiry, or after an idle time (checked
-- against last_seen_at with the service's setting). Owner: curation.sessions.
CREATE TABLE web_sessions (
    id_sha256 text PRIMARY KEY CHECK (id_sha256 ~ '^[0-9a-f]{64}$'),
    user_name text NOT NULL REFERENCES users (name),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Revoking every live session of a user (disable, token rotation), and pruning old rows.
CREATE INDEX web_sessions_user ON web_sessions (user_name) WHERE revoked_at IS NULL;
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);

-- A disabled user's token and sessions are refused everywhere (gRPC and HTTP).
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
