-- API tokens (issue 5): only a hash of each token is kept; the token is shown once at creation.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('technologist', 'manager', 'admin', 'sender')),
    token_hash   TEXT NOT NULL UNIQUE,   -- sha256 hex of the token
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL DEFAULT '',
    revoked_at   TEXT,
    last_used_at TEXT
);

-- Retention: raw bytes of old messages are emptied, the row (key, hash, ACK) stays so a late
-- resend is still recognised as a duplicate.
ALTER TABLE messages ADD COLUMN raw_purged_at TEXT;

-- Audit search by time, kind and actor.
CREATE INDEX audit_events_at_idx ON audit_events (at);
CREATE INDEX audit_events_kind_idx ON audit_events (kind, seq);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, seq);
CREATE INDEX audit_events_subject_idx ON audit_events (subject, seq);
