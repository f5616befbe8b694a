-- lisguard schema, SQLite dialect. Timestamps are UTC ISO 8601 text with a fixed layout
-- ('YYYY-MM-DDTHH:MM:SS.ffffff+00:00') so that text order is time order.
-- Keep the logical schema in step with sql/postgres/0001_initial.sql.

CREATE TABLE messages (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
    sending_application TEXT,                              -- MSH-3, NULL when the key is unknown
    sending_facility    TEXT,                              -- MSH-4
    control_id          TEXT,                              -- MSH-10
    content_hash        TEXT NOT NULL,
    message_type        TEXT NOT NULL DEFAULT '',
    received_at         TEXT NOT NULL,
    raw                 BLOB NOT NULL,
    ack                 TEXT NOT NULL,
    outcome             TEXT NOT NULL,
    peer                TEXT NOT NULL DEFAULT '',
    error               TEXT NOT NULL DEFAULT '',          -- non-empty: a dead letter
    flags               TEXT NOT NULL DEFAULT '[]',        -- JSON array of strings
    CHECK ((sending_application IS NULL) = (sending_facility IS NULL)
           AND (sending_facility IS NULL) = (control_id IS NULL))
);
-- find_message: newest row for a key is the last entry of this index for the key.
CREATE INDEX messages_key_idx ON messages (sending_application, sending_facility, control_id, id);
CREATE INDEX messages_received_at_idx ON messages (received_at);
-- list_dead_letters: a small partial index instead of a scan over every accepted message.
CREATE INDEX messages_dead_letter_idx ON messages (id) WHERE error <> '';

CREATE TABLE patients (
    key        TEXT PRIMARY KEY,  -- PatientId.key
    state      TEXT NOT NULL,     -- PatientState as JSON
    updated_at TEXT NOT NULL
);

-- list_alerts orders by (created_at DESC, rowid DESC): each index below is read backwards.
CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,  -- deterministic alert id: a second insert is ignored
    patient_key TEXT NOT NULL,
    rule        TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    severity    TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open',
    created_at  TEXT NOT NULL,
    event_time  TEXT,
    message_id  INTEGER NOT NULL REFERENCES messages (id),
    payload     TEXT NOT NULL      -- Alert as JSON
);
CREATE INDEX alerts_created_idx ON alerts (created_at);
CREATE INDEX alerts_status_idx ON alerts (status, created_at);
CREATE INDEX alerts_rule_idx ON alerts (rule, created_at);
CREATE INDEX alerts_patient_idx ON alerts (patient_key, created_at);
CREATE INDEX alerts_message_idx ON alerts (message_id);

-- Append-only. prev_hash/hash are reserved for hash chaining.
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: list_audit pages on it
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    subject   TEXT NOT NULL DEFAULT '',
    detail    TEXT NOT NULL DEFAULT '{}',          -- JSON object
    prev_hash TEXT,
    hash      TEXT
);

-- One row, rewritten by ping() to prove the database can still be written.
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);
