-- Browser sessions (security review): the page's cookie carries a random session id, never the
-- API token, and only the id's SHA-256 is kept. A session belongs to the token it was opened
-- with; logging out ends it, revoking the token ends all of them. Keep in step with
-- sql/sqlite/0007_sessions.sql.
CREATE TABLE sessions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_hash text        NOT NULL UNIQUE,   -- sha256 hex of the session id
    token_id     bigint      NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,          -- idle timeout counts from here
    expires_at   timestamptz NOT NULL,          -- absolute end, fixed at login
    ended_at     timestamptz                    -- logout or token revocation
);
-- revoking a token ends its open sessions; logins clear sessions past their absolute end
CREATE INDEX sessions_token_idx ON sessions (token_id) WHERE ended_at IS NULL;
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
