//! Accounts' SSH public keys. Validation is the caller's (`berth_core::ssh_key`).
use crate::{is_foreign_key_violation, is_unique_violation, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// An SSH public key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKeyRow {
    pub id: i64,
    pub owner: String,
    /// The authorized_keys line.
    pub key: String,
    pub fingerprint: String,
    pub created_at_ms: i64,
}

fn key_from_row(row: &AnyRow) -> Result<SshKeyRow, StoreError> {
    Ok(SshKeyRow {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        key: row.try_get("key")?,
        fingerprint: row.try_get("fingerprint")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

impl Store {
    /// Adds a key to `owner`'s account. [`StoreError::Conflict`] if the account has a key
    /// with that fingerprint already, or there is no such user.
    pub async fn add_ssh_key(
        &self,
        owner: &str,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<SshKeyRow, StoreError> {
        let inserted = sqlx::query_scalar(
            "INSERT INTO ssh_keys (owner, key, fingerprint, created_at_ms) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(owner)
        .bind(key)
        .bind(fingerprint)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(id) => Ok(SshKeyRow {
                id,
                owner: owner.to_string(),
                key: key.to_string(),
                fingerprint: fingerprint.to_string(),
                created_at_ms: now_ms,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "the key {fingerprint} is already on this account"
            ))),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::Conflict(format!("there is no user {owner}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `owner`'s keys, oldest first.
    pub async fn list_ssh_keys(&self, owner: &str) -> Result<Vec<SshKeyRow>, StoreError> {
        sqlx::query(
            "SELECT id, owner, key, fingerprint, created_at_ms FROM ssh_keys WHERE owner = $1 ORDER BY id",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    /// Removes `owner`'s key `id`; `false` if `owner` has no such key.
    pub async fn delete_ssh_key(&self, owner: &str, id: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM ssh_keys WHERE owner = $1 AND id = $2")
            .bind(owner)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
