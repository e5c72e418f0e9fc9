//! berth's persistent state — deployment metadata, users, hosts, instances, SSH keys and
//! templates — in SQLite (one machine, `berth up`) or PostgreSQL (a deployment of many
//! hosts), behind one concrete [`Store`].
//!
//! The store runs over sqlx's runtime-generic `Any` driver with runtime queries (no
//! compile-time `query!` macros, which bind to one driver). Every statement is written once
//! in the SQL both backends accept, with `$N` placeholders (SQLite maps `$N` to the N-th
//! argument). Structured values ([`InstanceSpec`](berth_core::InstanceSpec),
//! [`RunState`](berth_core::protocol::RunState), …) are stored as serde_json text; ids and
//! unix-millisecond times as 64-bit integers; booleans as 0/1 integers (the `Any` driver
//! cannot decode SQLite's BOOLEAN).
//!
//! Migrations are kept per backend in `migrations/{sqlite,postgres}/NNNN_name.sql`, embedded
//! in the binary, and applied by [`Store::open`]. SQLite databases run in WAL mode with a
//! 5 s busy timeout and foreign keys on; writes that read before they write begin
//! `IMMEDIATE` so that concurrent writers wait for each other instead of failing.
#![forbid(unsafe_code)]

mod error;
mod hosts;
mod instances;
mod meta;
mod migrations;
mod sessions;
mod ssh_keys;
mod templates;
mod users;

pub use error::StoreError;
pub use hosts::HostRow;
pub use instances::InstanceRow;
pub use ssh_keys::SshKeyRow;
pub use templates::TemplateRow;
pub use users::UserRow;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::{Any, Executor, Transaction};

/// The database kind behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on berth's database. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// What [`Store::open`] accepts, for error messages.
const ACCEPTED_URLS: &str = "sqlite:PATH, sqlite:///ABSOLUTE/PATH, postgres://… or postgresql://…";

impl Store {
    /// Opens (for SQLite: creating the file if missing) the database at `url` and applies
    /// any pending migrations.
    ///
    /// `url` is `sqlite:PATH` (relative to the working directory), `sqlite:///ABS/PATH`, or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (also `postgresql://`). Any other scheme
    /// is refused with [`StoreError::BadUrl`]. The PostgreSQL database must exist.
    ///
    /// Opening is idempotent: opening an up-to-date database changes nothing. A database
    /// migrated by a newer berth (a migration this binary does not know) is refused.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let (backend, url) = parse_url(url)?;
        sqlx::any::install_default_drivers();
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // sqlx's defaults today, stated so that they stay true.
                            conn.execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(10)
                    .connect(&url)
                    .await?
            }
        };
        if backend == Backend::Sqlite {
            // Persistent in the file; a no-op once the database is in WAL mode.
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
                .fetch_one(&pool)
                .await?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(journal_mode = %mode, "SQLite database is not in WAL mode");
            }
        }
        migrations::migrator(backend).run(&pool).await?;
        let store = Store { pool, backend };
        tracing::debug!(backend = store.backend_name(), "store opened");
        Ok(store)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Closes every connection, waiting for those in use to be returned. Calls on this store
    /// (or its clones) afterwards fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction for a read-then-write: `BEGIN IMMEDIATE` on SQLite (takes the
    /// write lock up front, so the busy timeout applies instead of a mid-transaction
    /// `SQLITE_BUSY`), a plain transaction on PostgreSQL.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }
}

/// Splits `url` into its backend and the URL to hand sqlx.
fn parse_url(url: &str) -> Result<(Backend, String), StoreError> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let (path, params) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.trim_start_matches('/').is_empty() {
            return Err(StoreError::BadUrl(format!(
                "{url:?} names no database file; expected {ACCEPTED_URLS}"
            )));
        }
        // Create the file if missing, unless the caller chose a mode.
        let full = match params {
            Some(q) if q.split('&').any(|kv| kv.starts_with("mode=")) => url.to_string(),
            Some(q) if !q.is_empty() => format!("{url}&mode=rwc"),
            _ => format!("sqlite:{path}?mode=rwc"),
        };
        return Ok((Backend::Sqlite, full));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_string()));
    }
    // Name only the scheme: the rest may hold a password.
    let scheme = match url.split_once(':') {
        Some((s, _)) if !s.is_empty() && !s.contains('/') => format!("{s:?}"),
        _ => "no scheme".to_string(),
    };
    Err(StoreError::BadUrl(format!(
        "unsupported database URL ({scheme}); expected {ACCEPTED_URLS}"
    )))
}

/// Serializes a value stored as JSON text.
fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Corrupt {
        what: what.to_string(),
        source,
    })
}

/// Deserializes a value stored as JSON text; `what` names it in the error.
fn from_json<T: serde::de::DeserializeOwned>(
    what: impl FnOnce() -> String,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt {
        what: what(),
        source,
    })
}

/// Whether `e` is a unique-constraint violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Whether `e` is a foreign-key violation.
fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let ok = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            ok("sqlite:///var/lib/berth/berth.db"),
            (
                Backend::Sqlite,
                "sqlite:///var/lib/berth/berth.db?mode=rwc".to_string()
            )
        );
        assert_eq!(
            ok("sqlite:data/berth.db"),
            (Backend::Sqlite, "sqlite:data/berth.db?mode=rwc".to_string())
        );
        assert_eq!(ok("sqlite:x.db?mode=ro").1, "sqlite:x.db?mode=ro");
        assert_eq!(
            ok("sqlite:x.db?cache=shared").1,
            "sqlite:x.db?cache=shared&mode=rwc"
        );
        assert_eq!(ok("postgres://u@h/db").0, Backend::Postgres);
        assert_eq!(ok("postgresql://u@h/db").0, Backend::Postgres);
        for bad in [
            "mysql://root:secret@h/db",
            "/var/lib/berth.db",
            "",
            "sqlite:",
            "sqlite://",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(matches!(e, StoreError::BadUrl(_)), "{bad}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("postgres://"), "{msg}");
            assert!(!msg.contains("secret"), "{msg}");
        }
    }
}
