-- SSH public keys: an account's (installed in all its ssh/jupyter instances) and extra keys
-- attached to one instance. Keep in step with ../postgres/0002_ssh_keys.sql.
CREATE TABLE ssh_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    owner         TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    -- The normalised authorized_keys line: TYPE BASE64 [COMMENT].
    key           TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (owner, fingerprint)
);

-- Extra authorized_keys lines of one instance, as a JSON array.
ALTER TABLE instances ADD COLUMN extra_keys TEXT NOT NULL DEFAULT '[]';
