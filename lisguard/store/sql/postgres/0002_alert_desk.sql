-- Issue 4: the technologist's alert desk (acknowledge, resolve, snooze, collapse of repeats)
-- and the delivery outbox. Keep in step with sql/sqlite/0002_alert_desk.sql.

-- A collapsed alert is stored as usual (status 'collapsed') and points at the unresolved lead
-- alert it repeats; the lead counts itself plus its repeats.
ALTER TABLE alerts
    ADD COLUMN lead_id           text,
    ADD COLUMN repeat_count      integer     NOT NULL DEFAULT 1,
    ADD COLUMN last_repeat_at    timestamptz,
    ADD COLUMN acknowledged_by   text,
    ADD COLUMN acknowledged_at   timestamptz,
    ADD COLUMN ack_note          text        NOT NULL DEFAULT '',
    ADD COLUMN resolved_by       text,
    ADD COLUMN resolved_at       timestamptz,
    ADD COLUMN resolution        text,                   -- done | not-applicable
    ADD COLUMN resolution_reason text        NOT NULL DEFAULT '',
    ADD COLUMN snooze_id         bigint;                 -- the snooze that held it back
CREATE INDEX alerts_lead_idx ON alerts (lead_id) WHERE lead_id IS NOT NULL;

-- A site holds back one rule for one patient until expires_at (or until lifted).
CREATE TABLE snoozes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_key text        NOT NULL,
    rule        text        NOT NULL,
    reason      text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    lifted_by   text,
    lifted_at   timestamptz
);
CREATE INDEX snoozes_patient_rule_idx ON snoozes (patient_key, rule, expires_at);

-- One row per alert and delivery channel, written in the transaction that stores the alert:
-- the UNIQUE pair is the idempotency key (delivered once per channel). Workers on several
-- replicas claim due rows with FOR UPDATE SKIP LOCKED and a lease (claimed_until).
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        text        NOT NULL REFERENCES alerts (id),
    channel         text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',   -- pending | delivered | failed
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    claimed_until   timestamptz,
    last_attempt_at timestamptz,
    delivered_at    timestamptz,
    last_error      text        NOT NULL DEFAULT '',
    UNIQUE (alert_id, channel)
);
CREATE INDEX outbox_due_idx ON outbox (channel, next_attempt_at) WHERE status = 'pending';
