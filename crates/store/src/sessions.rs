//! Web GUI sessions. The cookie carries a random session id; only its hash is stored, with
//! the user it signs in and when it expires. A user's deletion removes their sessions.
use crate::users::{user_from_row, UserRow};
use crate::{is_foreign_key_violation, Store, StoreError};

impl Store {
    /// Stores a session of `user` (by the hash of its id) valid until `expires_at_ms`, and
    /// removes every session that has expired by `now_ms`. [`StoreError::Conflict`] if
    /// there is no such user.
    pub async fn create_session(
        &self,
        id_hash: &str,
        user: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        match sqlx::query(
            "INSERT INTO sessions (id_hash, user_name, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(id_hash)
        .bind(user)
        .bind(now_ms)
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::Conflict(format!("there is no user {user}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The user signed in by the session whose id hashes to `id_hash`, unless it has
    /// expired by `now_ms`.
    pub async fn session_user(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(
            "SELECT u.name, u.key_hash, u.admin, u.created_at_ms FROM sessions s \
             JOIN users u ON u.name = s.user_name WHERE s.id_hash = $1 AND s.expires_at_ms > $2",
        )
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Ends a session; `false` if there was none.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
