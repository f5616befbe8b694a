-- Issue 18: a message that raises alerts used to cost three to five more round trips than one
-- that does not: the routing read of each alert (its patient and rule's snooze in force and
-- open leads), then each hold-back, collapse and outbox row. Now:
-- - the alert write answers routing's read for every alert it inserted (the leads locked FOR
--   UPDATE, as the separate read locked them), so routing decides in the client;
-- - routing's writes are buffered and go with the unit's next write (its audit events).
-- The 36-parameter lisguard_write of 0011 stays, for a replica not yet upgraded; a later
-- migration drops it. A site that revoked EXECUTE from PUBLIC runs `lisguard db grants` again.
-- Keep in step with sql/sqlite/0012_routing_in_the_writes.sql (a no-op there).

-- An open lead as routing reads it: the desk's alert columns (sql/desk_reads.py ALERT_COLUMNS,
-- in that order), then the tie-break and the pair it belongs to.
CREATE TYPE lisguard_lead AS (
    payload jsonb, message_id bigint, created_at timestamptz, status text, id text,
    lead_id text, repeat_count integer, last_repeat_at timestamptz, acknowledged_by text,
    acknowledged_at timestamptz, ack_note text, resolved_by text, resolved_at timestamptz,
    resolution text, resolution_reason text, snooze_id bigint, seq bigint, patient_key text,
    rule text
);

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
    p_audit_prev text[], p_audit_hashes text[], p_unresolved text[],
    p_hold_ids text[], p_hold_snoozes bigint[],
    p_fold_ids text[], p_fold_leads text[], p_fold_at timestamptz[],
    p_outbox_ids text[], p_outbox_channels text[], p_outbox_at timestamptz[]
) RETURNS TABLE (
    inserted text[], audit_last text, audited boolean, in_force snoozes[],
    leads lisguard_lead[]
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    new_ids text[] := '{}';
    last_hash text;
    start integer;
    v_snoozes snoozes[];
    v_leads lisguard_lead[];
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
    -- routing's buffered writes (alerts an earlier call inserted): held back by a snooze,
    -- collapsed into a lead, queued; before the alerts, so that routing's read sees them
    IF cardinality(p_hold_ids) > 0 THEN
        UPDATE alerts AS a SET status = 'snoozed', snooze_id = u.s
        FROM unnest(p_hold_ids, p_hold_snoozes) AS u (i, s) WHERE a.id = u.i;
    END IF;
    IF cardinality(p_fold_ids) > 0 THEN
        UPDATE alerts AS a SET status = 'collapsed', lead_id = u.l
        FROM unnest(p_fold_ids, p_fold_leads) AS u (i, l) WHERE a.id = u.i;
        UPDATE alerts AS a SET repeat_count = a.repeat_count + c.n, last_repeat_at = c.at
        FROM (SELECT l, count(*) AS n, max(t) AS at
              FROM unnest(p_fold_leads, p_fold_at) AS u (l, t) GROUP BY l) AS c
        WHERE a.id = c.l;
    END IF;
    IF cardinality(p_outbox_ids) > 0 THEN
        INSERT INTO outbox (alert_id, channel, created_at, next_attempt_at)
        SELECT i, c, t, t
        FROM unnest(p_outbox_ids, p_outbox_channels, p_outbox_at) WITH ORDINALITY
             AS u (i, c, t, n)
        ORDER BY n
        ON CONFLICT (alert_id, channel) DO NOTHING;
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
        -- routing's read for the inserted alerts: each (patient, rule)'s snoozes in force at
        -- the alerts' creation and its open leads (these alerts among them), newest first
        SELECT array_agg(s ORDER BY s.id) INTO v_snoozes
        FROM snoozes AS s
        WHERE (s.patient_key, s.rule) IN (
                  SELECT pk, r FROM unnest(p_alert_ids, p_alert_patients, p_alert_rules)
                                    AS u (i, pk, r)
                  WHERE i = ANY (new_ids))
          AND s.lifted_at IS NULL AND s.created_at <= p_alert_created
          AND s.expires_at > p_alert_created;
        SELECT array_agg(ROW(l.payload, l.message_id, l.created_at, l.status, l.id, l.lead_id,
                             l.repeat_count, l.last_repeat_at, l.acknowledged_by,
                             l.acknowledged_at, l.ack_note, l.resolved_by, l.resolved_at,
                             l.resolution, l.resolution_reason, l.snooze_id, l.seq,
                             l.patient_key, l.rule)::lisguard_lead
                         ORDER BY l.created_at DESC, l.seq DESC) INTO v_leads
        FROM (
            SELECT * FROM alerts AS a
            WHERE (a.patient_key, a.rule) IN (
                      SELECT pk, r FROM unnest(p_alert_ids, p_alert_patients, p_alert_rules)
                                        AS u (i, pk, r)
                      WHERE i = ANY (new_ids))
              AND a.lead_id IS NULL AND a.status = ANY (p_unresolved)
            FOR UPDATE
        ) AS l;
    END IF;
    IF cardinality(p_audit_kinds) > 0 THEN
        PERFORM pg_advisory_xact_lock(p_audit_lock);
        SELECT a.hash INTO last_hash FROM audit_events AS a ORDER BY a.seq DESC LIMIT 1;
        IF last_hash IS DISTINCT FROM p_audit_expected THEN
            RETURN QUERY SELECT new_ids, last_hash, false, v_snoozes, v_leads;
            RETURN;
        END IF;
        INSERT INTO audit_events (at, kind, actor, subject, detail, prev_hash, hash)
        SELECT t, k, a, s, d, pv, h
        FROM unnest(p_audit_at, p_audit_kinds, p_audit_actors, p_audit_subjects,
                    p_audit_details, p_audit_prev, p_audit_hashes)
             WITH ORDINALITY AS u (t, k, a, s, d, pv, h, n)
        ORDER BY n;
    END IF;
    RETURN QUERY SELECT new_ids, last_hash, true, v_snoozes, v_leads;
END
$$;
