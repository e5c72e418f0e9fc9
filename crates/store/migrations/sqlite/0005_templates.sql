-- Templates: a user's saved launch settings, named uniquely per user. Keep in step with
-- ../postgres/0005_templates.sql.
CREATE TABLE templates (
    owner         TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    -- What the template is for (shown in the GUI); NULL: none.
    readme        TEXT,
    -- berth_core::api::CreateInstance as JSON.
    settings      TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
);
