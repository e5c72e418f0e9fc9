//! Deployment-wide key/value settings (the deployment id, …).
use crate::{Store, StoreError};

impl Store {
    /// The value stored under `key`, if any.
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The value stored under `key`; if there is none, stores `value` and returns it.
    /// Atomic: of concurrent callers (in any process) exactly one value wins, and every
    /// caller gets that one. A stored value is never replaced.
    pub async fn meta_get_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?)
    }
}
