-- Issue 4: the technologist's alert desk (acknowledge, resolve, snooze, collapse of repeats)
-- and the delivery outbox. Keep in step with sql/postgres/0002_alert_desk.sql.

-- A collapsed alert is stored as usual (status 'collapsed') and points at the unresolved lead
-- alert it repeats; the lead counts itself plus its repeats.
ALTER TABLE alerts ADD COLUMN lead_id TEXT;
ALTER TABLE alerts ADD COLUMN repeat_count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alerts ADD COLUMN last_repeat_at TEXT;
ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT;
ALTER TABLE alerts ADD COLUMN acknowledged_at TEXT;
ALTER TABLE alerts ADD COLUMN ack_note TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN resolved_by TEXT;
ALTER TABLE alerts ADD COLUMN resolved_at TEXT;
ALTER TABLE alerts ADD COLUMN resolution TEXT;                 -- done | not-applicable
ALTER TABLE alerts ADD COLUMN resolution_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN snooze_id INTEGER;               -- the snooze that held it back
CREATE INDEX alerts_lead_idx ON alerts (lead_id) WHERE lead_id IS NOT NULL;

-- A site holds back one rule for one patient until expires_at (or until lifted).
CREATE TABLE snoozes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_key TEXT NOT NULL,
    rule        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    lifted_by   TEXT,
    lifted_at   TEXT
);
CREATE INDEX snoozes_patient_rule_idx ON snoozes (patient_key, rule, expires_at);

-- One row per alert and delivery channel, written in the transaction that stores the alert:
-- the UNIQUE pair is the idempotency key (delivered once per channel).
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id        TEXT NOT NULL REFERENCES alerts (id),
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    claimed_until   TEXT,                               -- a worker's lease on the row
    last_attempt_at TEXT,
    delivered_at    TEXT,
    last_error      TEXT NOT NULL DEFAULT '',
    UNIQUE (alert_id, channel)
);
CREATE INDEX outbox_due_idx ON outbox (channel, next_attempt_at) WHERE status = 'pending';
