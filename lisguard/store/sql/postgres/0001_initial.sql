-- lisguard schema, PostgreSQL dialect. Tables go into the first schema on search_path.
-- Keep the logical schema in step with sql/sqlite/0001_initial.sql.

CREATE TABLE messages (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sending_application text,                      -- MSH-3, NULL when the key is unknown
    sending_facility    text,                      -- MSH-4
    control_id          text,                      -- MSH-10
    content_hash        text        NOT NULL,
    message_type        text        NOT NULL DEFAULT '',
    received_at         timestamptz NOT NULL,
    raw                 bytea       NOT NULL,
    ack                 text        NOT NULL,
    outcome             text        NOT NULL,
    peer                text        NOT NULL DEFAULT '',
    error               text        NOT NULL DEFAULT '',   -- non-empty: a dead letter
    flags               text[]      NOT NULL DEFAULT '{}',
    CHECK ((sending_application IS NULL) = (sending_facility IS NULL)
           AND (sending_facility IS NULL) = (control_id IS NULL))
);
-- find_message: newest row for a key is the last entry of this index for the key.
CREATE INDEX messages_key_idx ON messages (sending_application, sending_facility, control_id, id);
CREATE INDEX messages_received_at_idx ON messages (received_at);
-- list_dead_letters: a small partial index instead of a scan over every accepted message.
CREATE INDEX messages_dead_letter_idx ON messages (id) WHERE error <> '';

CREATE TABLE patients (
    key        text PRIMARY KEY,   -- PatientId.key
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL
);

-- list_alerts orders by (created_at DESC, seq DESC): each index below is read backwards.
CREATE TABLE alerts (
    id          text PRIMARY KEY,  -- deterministic alert id: a second insert is ignored
    seq         bigint GENERATED ALWAYS AS IDENTITY,  -- insertion order, breaks created_at ties
    patient_key text        NOT NULL,
    rule        text        NOT NULL,
    order_id    text        NOT NULL,
    severity    text        NOT NULL,
    status      text        NOT NULL DEFAULT 'open',
    created_at  timestamptz NOT NULL,
    event_time  timestamptz,
    message_id  bigint      NOT NULL REFERENCES messages (id),
    payload     jsonb       NOT NULL
);
CREATE INDEX alerts_created_idx ON alerts (created_at, seq);
CREATE INDEX alerts_status_idx ON alerts (status, created_at, seq);
CREATE INDEX alerts_rule_idx ON alerts (rule, created_at, seq);
CREATE INDEX alerts_patient_idx ON alerts (patient_key, created_at, seq);
CREATE INDEX alerts_message_idx ON alerts (message_id);

-- Append-only. prev_hash/hash are reserved for hash chaining.
CREATE TABLE audit_events (
    seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL,
    kind      text        NOT NULL,
    actor     text        NOT NULL,
    subject   text        NOT NULL DEFAULT '',
    detail    jsonb       NOT NULL DEFAULT '{}',
    prev_hash text,
    hash      text
);

-- One row, rewritten by ping() to prove the database can still be written.
CREATE TABLE store_probe (
    id integer PRIMARY KEY CHECK (id = 1),
    at timestamptz NOT NULL
);
