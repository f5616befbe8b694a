-- The `metrics` role (a Prometheus scraper's token: GET /metrics only). SQLite cannot change a
-- CHECK constraint in place: api_tokens is rebuilt, and sessions (which reference it, ON DELETE
-- CASCADE: dropping api_tokens with foreign keys on would delete them) is set aside and put
-- back as it was. Keep in step with sql/postgres/0009_metrics_role.sql.
CREATE TABLE sessions_kept AS SELECT * FROM sessions;
DROP TABLE sessions;
CREATE TABLE api_tokens_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL
                 CHECK (role IN ('technologist', 'manager', 'admin', 'sender', 'metrics')),
    token_hash   TEXT NOT NULL UNIQUE,   -- sha256 hex of the token
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL DEFAULT '',
    revoked_at   TEXT,
    last_used_at TEXT
);
INSERT INTO api_tokens_new (id, name, role, token_hash, created_at, created_by, revoked_at,
                            last_used_at)
    SELECT id, name, role, token_hash, created_at, created_by, revoked_at, last_used_at
    FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    session_hash TEXT NOT NULL UNIQUE,   -- sha256 hex of the session id
    token_id     INTEGER NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,          -- idle timeout counts from here
    expires_at   TEXT NOT NULL,          -- absolute end, fixed at login
    ended_at     TEXT                    -- logout or token revocation
);
INSERT INTO sessions (id, session_hash, token_id, created_at, last_seen_at, expires_at, ended_at)
    SELECT id, session_hash, token_id, created_at, last_seen_at, expires_at, ended_at
    FROM sessions_kept;
DROP TABLE sessions_kept;
CREATE INDEX sessions_token_idx ON sessions (token_id) WHERE ended_at IS NULL;
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
