-- A message's unit of work in few round trips (issue 18): the wait on the server, not its CPU,
-- bounds what one connection can do. Two functions; the client (postgres/store.py) buffers
-- its writes and sends them in one call.
--
-- Both are VOLATILE plpgsql: under READ COMMITTED each query inside takes a fresh snapshot, so
-- a SELECT that follows an advisory lock sees what the lock's previous holder committed (the
-- same guarantee as the separate lock-then-SELECT statements they replace).
-- Keep in step with sql/sqlite/0011_ingest_round_trips.sql (a no-op there: SQLite is in-process).

-- Lock the message key and the patients (ids already sorted by the caller: one global lock
-- order), then read the latest message with that key and the patients' states, and reserve
-- the id the new message will get (ids may have gaps, as after any rollback).
CREATE FUNCTION lisguard_find_message(
    p_lock bigint, p_app text, p_fac text, p_ctl text,
    p_patient_locks bigint[], p_patient_keys text[]
) RETURNS TABLE (
    reserved_id bigint, id bigint, sending_application text, sending_facility text,
    control_id text, content_hash text, message_type text, received_at timestamptz, ack text,
    outcome text, peer text, error text, flags text[], patient_keys text[],
    patient_states jsonb[]
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    lock_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    FOREACH lock_id IN ARRAY p_patient_locks LOOP
        PERFORM pg_advisory_xact_lock(lock_id);
    END LOOP;
    RETURN QUERY
    SELECT nextval(pg_get_serial_sequence('messages', 'id')),
           m.id, m.sending_application, m.sending_facility, m.control_id, m.content_hash,
           m.message_type, m.received_at, m.ack, m.outcome, m.peer, m.error, m.flags,
           s.keys, s.states
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT * FROM messages AS x
        WHERE x.sending_application = p_app AND x.sending_facility = p_fac
          AND x.control_id = p_ctl
        ORDER BY x.id DESC LIMIT 1
    ) AS m ON true
    LEFT JOIN LATERAL (
        SELECT array_agg(p.key) AS keys, array_agg(p.state) AS states
        FROM patients AS p WHERE p.key = ANY (p_patient_keys)
    ) AS s ON true;
END
$$;

-- The buffered writes of a unit of work, in order: patient states (upserts), the message (with
-- its reserved id), alerts (a second insert of an id is ignored; the new ids are returned and
-- told to the other replicas at COMMIT), then audit events. The audit chain's lock is taken
-- last (after every patient lock: no lock-order inversion) and held to COMMIT; the rows were
-- hashed by the client on the chain's last hash as it expected it (p_audit_expected). If the
-- chain's real last hash differs (another writer appended meanwhile), nothing is appended and
-- that hash is returned: the client hashes again and appends in a second call, still under the
-- lock, so that second call cannot miss.
CREATE FUNCTION lisguard_write(
    p_now timestamptz, p_patient_keys text[], p_patient_states jsonb[],
    p_message_id bigint, p_app text, p_fac text, p_ctl text, p_content_hash text,
    p_message_type text, p_received_at timestamptz, p_raw bytea, p_ack text, p_outcome text,
    p_peer text, p_error text, p_flags text[],
    p_alert_ids text[], p_alert_patients text[], p_alert_rules text[], p_alert_orders text[],
    p_alert_severities text[], p_alert_created timestamptz, p_alert_events timestamptz[],
    p_alert_message bigint, p_alert_payloads jsonb[], p_channel text, p_origin text,
    p_audit_lock bigint, p_audit_expected text, p_audit_at timestamptz[], p_audit_kinds text[],
    p_audit_actors text[], p_audit_subjects text[], p_audit_details jsonb[],
    p_audit_prev text[], p_audit_hashes text[]
) RETURNS TABLE (inserted text[], audit_last text, audited boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    new_ids text[] := '{}';
    last_hash text;
    start integer;
BEGIN
    IF cardinality(p_patient_keys) > 0 THEN
        INSERT INTO patients (key, state, updated_at)
        SELECT k, s, p_now FROM unnest(p_patient_keys, p_patient_states) AS u (k, s)
        ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at;
    END IF;
    IF p_message_id IS NOT NULL THEN
        INSERT INTO messages (id, sending_application, sending_facility, control_id,
                              content_hash, message_type, received_at, raw, ack, outcome, peer,
                              error, flags)
        OVERRIDING SYSTEM VALUE
        VALUES (p_message_id, p_app, p_fac, p_ctl, p_content_hash, p_message_type,
                p_received_at, p_raw, p_ack, p_outcome, p_peer, p_error, p_flags);
    END IF;
    IF cardinality(p_alert_ids) > 0 THEN
        WITH added AS (
            INSERT INTO alerts (id, patient_key, rule, order_id, severity, created_at,
                                event_time, message_id, payload)
            SELECT i, pk, r, o, sv, p_alert_created, ev, p_alert_message, pl
            FROM unnest(p_alert_ids, p_alert_patients, p_alert_rules, p_alert_orders,
                        p_alert_severities, p_alert_events, p_alert_payloads)
                 WITH ORDINALITY AS u (i, pk, r, o, sv, ev, pl, n)
            ORDER BY n
            ON CONFLICT (id) DO NOTHING
            RETURNING alerts.id, alerts.seq
        )
        SELECT coalesce(array_agg(added.id ORDER BY added.seq), '{}') INTO new_ids FROM added;
        -- 200 ids a notification: well under PostgreSQL's 8000-byte payload limit
        start := 1;
        WHILE start <= cardinality(new_ids) LOOP
            PERFORM pg_notify(p_channel, json_build_object(
                'schema', current_schema(), 'origin', p_origin,
                'ids', new_ids[start:start + 199])::text);
            start := start + 200;
        END LOOP;
    END IF;
    IF cardinality(p_audit_kinds) > 0 THEN
        PERFORM pg_advisory_xact_lock(p_audit_lock);
        SELECT a.hash INTO last_hash FROM audit_events AS a ORDER BY a.seq DESC LIMIT 1;
        IF last_hash IS DISTINCT FROM p_audit_expected THEN
            RETURN QUERY SELECT new_ids, last_hash, false;
            RETURN;
        END IF;
        INSERT INTO audit_events (at, kind, actor, subject, detail, prev_hash, hash)
        SELECT t, k, a, s, d, pv, h
        FROM unnest(p_audit_at, p_audit_kinds, p_audit_actors, p_audit_subjects,
                    p_audit_details, p_audit_prev, p_audit_hashes)
             WITH ORDINALITY AS u (t, k, a, s, d, pv, h, n)
        ORDER BY n;
    END IF;
    RETURN QUERY SELECT new_ids, last_hash, true;
END
$$;
