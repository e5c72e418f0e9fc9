//! The schema migrations of each backend, embedded in the binary.
//!
//! A migration, once released, is never edited: sqlx records each applied migration's
//! checksum and refuses a database whose applied migrations differ from the binary's.
//! Change the schema by adding `NNNN_name.sql` to BOTH directories and listing it here.
use crate::Backend;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlSafeStr;

/// (version, description, SQLite SQL, PostgreSQL SQL), in version order.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "ssh keys",
        include_str!("../migrations/sqlite/0002_ssh_keys.sql"),
        include_str!("../migrations/postgres/0002_ssh_keys.sql"),
    ),
    (
        3,
        "instance secrets",
        include_str!("../migrations/sqlite/0003_instance_secrets.sql"),
        include_str!("../migrations/postgres/0003_instance_secrets.sql"),
    ),
    (
        4,
        "proxy port",
        include_str!("../migrations/sqlite/0004_proxy_port.sql"),
        include_str!("../migrations/postgres/0004_proxy_port.sql"),
    ),
    (
        5,
        "templates",
        include_str!("../migrations/sqlite/0005_templates.sql"),
        include_str!("../migrations/postgres/0005_templates.sql"),
    ),
    (
        6,
        "sessions",
        include_str!("../migrations/sqlite/0006_sessions.sql"),
        include_str!("../migrations/postgres/0006_sessions.sql"),
    ),
];

/// The migrator for `backend`; each migration runs in its own transaction.
pub(crate) fn migrator(backend: Backend) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sqlite, postgres)| {
                let sql = match backend {
                    Backend::Sqlite => sqlite,
                    Backend::Postgres => postgres,
                };
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}
