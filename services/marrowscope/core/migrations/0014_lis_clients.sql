-- LIS API clients can be disabled and their keys rotated (both audited). A client made from
-- a key digest in the settings ('settings') lives as long as its digest is listed there: the
-- API disables it when the digest is removed, and its key is rotated there, not through the
-- API. Access tokens name the key generation they were issued under (claim "kv"); a rotation
-- moves key_generation on, so tokens issued with the old key are refused too.
ALTER TABLE api_clients
    ADD COLUMN origin text NOT NULL DEFAULT 'admin' CHECK (origin IN ('admin', 'settings')),
    ADD COLUMN key_generation integer NOT NULL DEFAULT 1 CHECK (key_generation >= 1),
    ADD COLUMN key_rotated_at timestamptz,
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN disabled_by text;

UPDATE api_clients SET origin = 'settings' WHERE id LIKE 'bootstrap-%';
UPDATE api_clients SET disabled_at = now(), disabled_by = 'unknown (before 0014)' WHERE disabled;
