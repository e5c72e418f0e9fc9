//! Hosts, as their agents last described them.
use crate::{from_json, to_json, Store, StoreError};
use berth_core::protocol::HostFacts;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A host as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    /// The same as `facts.name`.
    pub name: String,
    pub facts: HostFacts,
    /// When the host's agent was last heard from, unix milliseconds.
    pub last_seen_ms: i64,
}

fn host_from_row(row: &AnyRow) -> Result<HostRow, StoreError> {
    let name: String = row.try_get("name")?;
    let facts: String = row.try_get("facts")?;
    Ok(HostRow {
        facts: from_json(|| format!("facts of host {name}"), &facts)?,
        name,
        last_seen_ms: row.try_get("last_seen_ms")?,
    })
}

impl Store {
    /// Records `facts` for the host `facts.name` (adding the host if new, replacing its
    /// facts otherwise) and marks it seen at `now_ms`.
    pub async fn upsert_host(&self, facts: &HostFacts, now_ms: i64) -> Result<(), StoreError> {
        let json = to_json("host facts", facts)?;
        sqlx::query(
            "INSERT INTO hosts (name, facts, last_seen_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET facts = excluded.facts, \
             last_seen_ms = excluded.last_seen_ms",
        )
        .bind(&facts.name)
        .bind(json)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks host `name` seen at `now_ms`; `false` if there is no such host.
    pub async fn touch_host(&self, name: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE hosts SET last_seen_ms = $2 WHERE name = $1")
            .bind(name)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The host called `name`.
    pub async fn get_host(&self, name: &str) -> Result<Option<HostRow>, StoreError> {
        sqlx::query("SELECT name, facts, last_seen_ms FROM hosts WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(host_from_row)
            .transpose()
    }

    /// Every host, by name.
    pub async fn list_hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        sqlx::query("SELECT name, facts, last_seen_ms FROM hosts ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(host_from_row)
            .collect()
    }
}
