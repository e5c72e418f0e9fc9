//! Instances: what each is asked to be (spec, run state) and what its agent last reported.
use crate::{from_json, is_foreign_key_violation, is_unique_violation, to_json, Store, StoreError};
use berth_core::protocol::{ActualInstance, RunState};
use berth_core::spec::InstanceSecrets;
use berth_core::InstanceSpec;
use sqlx::any::AnyRow;
use sqlx::Row;

/// An instance as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    /// From 1, increasing, never reused (not even after a delete or a restart).
    pub id: i64,
    /// Name of the owning user.
    pub owner: String,
    /// Name of the host the instance is placed on.
    pub host: String,
    pub spec: InstanceSpec,
    pub run: RunState,
    /// The agent's last report of the instance; `None` before the first.
    pub actual: Option<ActualInstance>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// authorized_keys lines attached to this instance only.
    pub extra_keys: Vec<String>,
    /// What berth made for the instance (jupyter token, TLS material).
    pub secrets: InstanceSecrets,
    /// The proxy port leading to its sshd (ssh/jupyter instances, with a proxy).
    pub proxy_port: Option<u16>,
}

/// `SELECT <every column> FROM instances <tail>`, as a `&'static str`.
macro_rules! select {
    ($tail:literal) => {
        concat!(
            "SELECT id, owner, host, spec, run, actual, created_at_ms, extra_keys, secrets, proxy_port FROM instances ",
            $tail
        )
    };
}

fn instance_from_row(row: &AnyRow) -> Result<InstanceRow, StoreError> {
    let id: i64 = row.try_get("id")?;
    let spec: String = row.try_get("spec")?;
    let run: String = row.try_get("run")?;
    let actual: Option<String> = row.try_get("actual")?;
    let extra_keys: String = row.try_get("extra_keys")?;
    let secrets: String = row.try_get("secrets")?;
    Ok(InstanceRow {
        id,
        owner: row.try_get("owner")?,
        host: row.try_get("host")?,
        spec: from_json(|| format!("spec of instance {id}"), &spec)?,
        run: from_json(|| format!("run state of instance {id}"), &run)?,
        actual: actual
            .map(|a| from_json(|| format!("actual state of instance {id}"), &a))
            .transpose()?,
        created_at_ms: row.try_get("created_at_ms")?,
        extra_keys: from_json(|| format!("extra keys of instance {id}"), &extra_keys)?,
        secrets: from_json(|| format!("secrets of instance {id}"), &secrets)?,
        proxy_port: row
            .try_get::<Option<i64>, _>("proxy_port")?
            .and_then(|p| u16::try_from(p).ok()),
    })
}

impl Store {
    /// Adds an instance owned by `owner` on `host` and returns its id: greater than every id
    /// handed out before, by this store or any earlier one on the same database.
    ///
    /// [`StoreError::Conflict`] if there is no user `owner`. `host` is not checked.
    pub async fn insert_instance(
        &self,
        owner: &str,
        host: &str,
        spec: &InstanceSpec,
        run: &RunState,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let spec = to_json("instance spec", spec)?;
        let run = to_json("run state", run)?;
        let inserted = sqlx::query_scalar(
            "INSERT INTO instances (owner, host, spec, run, actual, created_at_ms) \
             VALUES ($1, $2, $3, $4, NULL, $5) RETURNING id",
        )
        .bind(owner)
        .bind(host)
        .bind(spec)
        .bind(run)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(id) => Ok(id),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::Conflict(format!("there is no user {owner}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The instance `id`.
    pub async fn get_instance(&self, id: i64) -> Result<Option<InstanceRow>, StoreError> {
        sqlx::query(select!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(instance_from_row)
            .transpose()
    }

    /// Every instance (of `owner` only, if given), by id.
    pub async fn list_instances(
        &self,
        owner: Option<&str>,
    ) -> Result<Vec<InstanceRow>, StoreError> {
        let rows = match owner {
            Some(owner) => {
                sqlx::query(select!("WHERE owner = $1 ORDER BY id"))
                    .bind(owner)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(select!("ORDER BY id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(instance_from_row).collect()
    }

    /// Every instance placed on `host`, by id.
    pub async fn list_host_instances(&self, host: &str) -> Result<Vec<InstanceRow>, StoreError> {
        sqlx::query(select!("WHERE host = $1 ORDER BY id"))
            .bind(host)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(instance_from_row)
            .collect()
    }

    /// Sets whether instance `id` should run; `false` if there is no such instance.
    pub async fn set_run_state(&self, id: i64, run: &RunState) -> Result<bool, StoreError> {
        let run = to_json("run state", run)?;
        let r = sqlx::query("UPDATE instances SET run = $2 WHERE id = $1")
            .bind(id)
            .bind(run)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records the agent's report of instance `id` (`None` forgets it); `false` if there is
    /// no such instance.
    pub async fn set_actual(
        &self,
        id: i64,
        actual: Option<&ActualInstance>,
    ) -> Result<bool, StoreError> {
        let actual = actual.map(|a| to_json("actual instance", a)).transpose()?;
        let r = sqlx::query("UPDATE instances SET actual = $2 WHERE id = $1")
            .bind(id)
            .bind(actual)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Gives instance `id` a proxy port: the lowest of `first..=last` no other instance has.
    /// Returns it, or `None` if the range is used up (or there is no such instance).
    pub async fn allocate_proxy_port(
        &self,
        id: i64,
        first: u16,
        last: u16,
    ) -> Result<Option<u16>, StoreError> {
        // A unique index backs this: two servers racing for a port both see the conflict,
        // and the loser tries the next one.
        for _ in 0..16 {
            let taken: Vec<i64> = sqlx::query_scalar(
                "SELECT proxy_port FROM instances WHERE proxy_port IS NOT NULL AND proxy_port BETWEEN $1 AND $2",
            )
            .bind(i64::from(first))
            .bind(i64::from(last))
            .fetch_all(&self.pool)
            .await?;
            let taken: std::collections::HashSet<i64> = taken.into_iter().collect();
            let Some(port) = (i64::from(first)..=i64::from(last)).find(|p| !taken.contains(p))
            else {
                return Ok(None);
            };
            let r = sqlx::query("UPDATE instances SET proxy_port = $2 WHERE id = $1")
                .bind(id)
                .bind(port)
                .execute(&self.pool)
                .await;
            match r {
                Ok(r) if r.rows_affected() > 0 => return Ok(u16::try_from(port).ok()),
                Ok(_) => return Ok(None),
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(
            "could not allocate a proxy port: too much contention".into(),
        ))
    }

    /// Sets what berth made for instance `id`; `false` if there is no such instance.
    pub async fn set_secrets(
        &self,
        id: i64,
        secrets: &InstanceSecrets,
    ) -> Result<bool, StoreError> {
        let secrets = to_json("instance secrets", secrets)?;
        let r = sqlx::query("UPDATE instances SET secrets = $2 WHERE id = $1")
            .bind(id)
            .bind(secrets)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Sets the authorized_keys lines attached to instance `id` only; `false` if there is no
    /// such instance.
    pub async fn set_instance_keys(&self, id: i64, keys: &[String]) -> Result<bool, StoreError> {
        let keys = to_json("instance keys", &keys)?;
        let r = sqlx::query("UPDATE instances SET extra_keys = $2 WHERE id = $1")
            .bind(id)
            .bind(keys)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Deletes instance `id`; `false` if there is no such instance. Its id is not reused.
    pub async fn delete_instance(&self, id: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// `(host, number of instances placed on it)` for every host with at least one, by host.
    pub async fn count_instances_by_host(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT host, COUNT(*) AS n FROM instances GROUP BY host ORDER BY host")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("host")?, r.try_get("n")?)))
            .collect()
    }
}
