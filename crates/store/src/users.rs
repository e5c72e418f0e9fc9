//! Users and the hashes of their API keys.
use crate::{is_foreign_key_violation, is_unique_violation, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    /// Hash of the user's API key (the key itself is never stored). Unique among users.
    pub key_hash: String,
    pub admin: bool,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

pub(crate) fn user_from_row(row: &AnyRow) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

impl Store {
    /// Adds a user. Does not validate `name` (see `berth_core::api::validate_user_name`).
    ///
    /// Errors with [`StoreError::Conflict`] ("user NAME already exists") if the name is
    /// taken, or if another user already has `key_hash`.
    pub async fn create_user(
        &self,
        name: &str,
        key_hash: &str,
        admin: bool,
        now_ms: i64,
    ) -> Result<UserRow, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO users (name, key_hash, admin, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(key_hash)
        .bind(i64::from(admin))
        .bind(now_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(UserRow {
                name: name.to_string(),
                key_hash: key_hash.to_string(),
                admin,
                created_at_ms: now_ms,
            }),
            Err(e) if is_unique_violation(&e) => {
                if self.get_user(name).await?.is_some() {
                    Err(StoreError::Conflict(format!("user {name} already exists")))
                } else {
                    Err(StoreError::Conflict(format!(
                        "the API key of user {name} is already another user's"
                    )))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The user whose API key hashes to `hash`.
    pub async fn user_by_key_hash(&self, hash: &str) -> Result<Option<UserRow>, StoreError> {
        sqlx::query("SELECT name, key_hash, admin, created_at_ms FROM users WHERE key_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    /// The user called `name`.
    pub async fn get_user(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        sqlx::query("SELECT name, key_hash, admin, created_at_ms FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        sqlx::query("SELECT name, key_hash, admin, created_at_ms FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// Deletes the user called `name`; `false` if there is none.
    ///
    /// Refused with [`StoreError::Conflict`] ("user NAME still has N instances; destroy them
    /// first") while the user owns instances.
    pub async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE owner = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        if owned > 0 {
            return Err(still_owns(name, owned));
        }
        // On PostgreSQL an instance created since the count makes the foreign key refuse.
        let deleted = match sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
        {
            Ok(r) => r.rows_affected() > 0,
            Err(e) if is_foreign_key_violation(&e) => {
                drop(tx);
                let owned: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE owner = $1")
                        .bind(name)
                        .fetch_one(&self.pool)
                        .await?;
                return Err(still_owns(name, owned.max(1)));
            }
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        Ok(deleted)
    }

    /// Replaces the API key hash of user `name`; `false` if there is no such user.
    /// [`StoreError::Conflict`] if another user has `hash`.
    pub async fn set_user_key_hash(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        match sqlx::query("UPDATE users SET key_hash = $2 WHERE name = $1")
            .bind(name)
            .bind(hash)
            .execute(&self.pool)
            .await
        {
            Ok(r) => Ok(r.rows_affected() > 0),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "the new API key of user {name} is already another user's"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

fn still_owns(name: &str, n: i64) -> StoreError {
    let noun = if n == 1 { "instance" } else { "instances" };
    StoreError::Conflict(format!(
        "user {name} still has {n} {noun}; destroy them first"
    ))
}
