-- Browser sessions (security review): the page's cookie carries a random session id, never the
-- API token, and only the id's SHA-256 is kept. A session belongs to the token it was opened
-- with; logging out ends it, revoking the token ends all of them. Keep in step with
-- sql/postgres/0007_sessions.sql.
CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    session_hash TEXT NOT NULL UNIQUE,   -- sha256 hex of the session id
    token_id     INTEGER NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,          -- idle timeout counts from here
    expires_at   TEXT NOT NULL,          -- absolute end, fixed at login
    ended_at     TEXT                    -- logout or token revocation
);
-- revoking a token ends its open sessions; logins clear sessions past their absolute end
CREATE INDEX sessions_token_idx ON sessions (token_id) WHERE ended_at IS NULL;
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
