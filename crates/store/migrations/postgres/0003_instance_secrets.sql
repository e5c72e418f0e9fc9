-- Secrets berth makes for an instance (jupyter token, TLS certificate and key), as JSON
-- (berth_core::spec::InstanceSecrets). Kept apart from the spec, which is what the user asked for.
ALTER TABLE instances ADD COLUMN secrets TEXT NOT NULL DEFAULT '{}';
