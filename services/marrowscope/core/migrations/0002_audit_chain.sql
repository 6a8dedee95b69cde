-- Tamper evidence for the audit trail: each event carries the hash of the previous one.
-- A trigger assigns chain_seq and hash under one advisory lock, so concurrent writers form one
-- chain in commit order. audit_chain_breaks() recomputes every hash and link; editing a row
-- (possible only with the insert-only trigger disabled) shows up as a break.

ALTER TABLE audit_events ADD COLUMN chain_seq bigint UNIQUE;
ALTER TABLE audit_events ADD COLUMN prev_hash text;
ALTER TABLE audit_events ADD COLUMN hash text;

CREATE FUNCTION audit_event_hash(
    prev_hash text, chain_seq bigint, at timestamptz, actor text, action text, entity text,
    entity_id text, previous jsonb, current jsonb, reason text
) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws(E'\x1f',
        coalesce(prev_hash, ''), chain_seq::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
        actor, action, entity, entity_id,
        coalesce(previous::text, ''), coalesce(current::text, ''), coalesce(reason, '')
    ), 'UTF8')), 'hex')
$$;

CREATE FUNCTION audit_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last record;
BEGIN
    PERFORM pg_advisory_xact_lock(7231001);  -- one writer at a time extends the chain
    SELECT a.chain_seq, a.hash INTO last FROM audit_events a
        WHERE a.chain_seq IS NOT NULL ORDER BY a.chain_seq DESC LIMIT 1;
    NEW.chain_seq := coalesce(last.chain_seq, 0) + 1;
    NEW.prev_hash := last.hash;
    NEW.hash := audit_event_hash(NEW.prev_hash, NEW.chain_seq, NEW.at, NEW.actor, NEW.action,
                                 NEW.entity, NEW.entity_id, NEW.previous, NEW.current, NEW.reason);
    RETURN NEW;
END $$;

CREATE TRIGGER audit_events_chain BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_chain();

-- Rows whose hash does not match their content or whose link does not match the row before.
CREATE FUNCTION audit_chain_breaks() RETURNS TABLE (id bigint, chain_seq bigint, problem text)
LANGUAGE sql STABLE AS $$
    SELECT e.id, e.chain_seq,
           CASE WHEN e.hash IS DISTINCT FROM audit_event_hash(e.prev_hash, e.chain_seq, e.at,
                        e.actor, e.action, e.entity, e.entity_id, e.previous, e.current, e.reason)
                THEN 'content changed'
                ELSE 'link broken' END
    FROM (SELECT a.*, lag(a.hash) OVER (ORDER BY a.chain_seq) AS before,
                 lag(a.chain_seq) OVER (ORDER BY a.chain_seq) AS seq_before
          FROM audit_events a WHERE a.chain_seq IS NOT NULL) e
    WHERE e.hash IS DISTINCT FROM audit_event_hash(e.prev_hash, e.chain_seq, e.at, e.actor,
              e.action, e.entity, e.entity_id, e.previous, e.current, e.reason)
       OR e.prev_hash IS DISTINCT FROM e.before
       OR e.chain_seq <> coalesce(e.seq_before, 0) + 1
    ORDER BY e.chain_seq
$$;
