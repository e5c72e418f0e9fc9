-- Web GUI sessions: the cookie holds a random id, the table only its SHA-256 hash. Keep in
-- step with ../sqlite/0006_sessions.sql.
CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY NOT NULL,
    user_name     TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at_ms);
