-- berth store schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql.
-- Only INTEGER and TEXT columns: sqlx's Any driver cannot decode SQLite's BOOLEAN.

-- Deployment-wide settings (the deployment id, …).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    -- Hash of the user's API key; the key itself is never stored.
    key_hash      TEXT NOT NULL UNIQUE,
    admin         INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE hosts (
    name         TEXT PRIMARY KEY NOT NULL,
    -- berth_core::protocol::HostFacts as JSON.
    facts        TEXT NOT NULL,
    last_seen_ms INTEGER NOT NULL
);

CREATE TABLE instances (
    -- AUTOINCREMENT: ids are never reused, even after the highest one is deleted.
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    owner         TEXT NOT NULL REFERENCES users (name),
    host          TEXT NOT NULL,
    -- berth_core::InstanceSpec as JSON.
    spec          TEXT NOT NULL,
    -- berth_core::protocol::RunState as JSON.
    run           TEXT NOT NULL,
    -- berth_core::protocol::ActualInstance as JSON, NULL until the agent reports it.
    actual        TEXT,
    created_at_ms INTEGER NOT NULL
);

CREATE INDEX instances_owner ON instances (owner);
CREATE INDEX instances_host ON instances (host);
