-- API tokens (issue 5): only a hash of each token is kept; the token is shown once at creation.
CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('technologist', 'manager', 'admin', 'sender')),
    token_hash   text        NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    created_by   text        NOT NULL DEFAULT '',
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Retention: raw bytes of old messages are emptied, the row (key, hash, ACK) stays so a late
-- resend is still recognised as a duplicate.
ALTER TABLE messages ADD COLUMN raw_purged_at timestamptz;

CREATE INDEX audit_events_at_idx ON audit_events (at);
CREATE INDEX audit_events_kind_idx ON audit_events (kind, seq);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, seq);
CREATE INDEX audit_events_subject_idx ON audit_events (subject, seq);
