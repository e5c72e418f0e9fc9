//! Templates: a user's saved launch settings, named uniquely per user. Validation (names,
//! readme size, settings) is the caller's (`berth_core::template`).
use crate::{from_json, is_foreign_key_violation, is_unique_violation, to_json, Store, StoreError};
use berth_core::api::CreateInstance;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A template as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRow {
    pub owner: String,
    pub name: String,
    pub readme: Option<String>,
    pub settings: CreateInstance,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// `SELECT`s the columns [`template_from_row`] reads.
macro_rules! select_templates {
    ($rest:literal) => {
        concat!(
            "SELECT owner, name, readme, settings, created_at_ms, updated_at_ms FROM templates ",
            $rest
        )
    };
}

fn template_from_row(row: &AnyRow) -> Result<TemplateRow, StoreError> {
    let owner: String = row.try_get("owner")?;
    let name: String = row.try_get("name")?;
    let settings: String = row.try_get("settings")?;
    Ok(TemplateRow {
        settings: from_json(
            || format!("settings of template {name} of {owner}"),
            &settings,
        )?,
        readme: row.try_get("readme")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        owner,
        name,
    })
}

impl Store {
    /// Adds `owner`'s template `name`. [`StoreError::Conflict`] ("template NAME already
    /// exists") if `owner` has one of that name, or if there is no user `owner`.
    pub async fn create_template(
        &self,
        owner: &str,
        name: &str,
        readme: Option<&str>,
        settings: &CreateInstance,
        now_ms: i64,
    ) -> Result<TemplateRow, StoreError> {
        let json = to_json("template settings", settings)?;
        let inserted = sqlx::query(
            "INSERT INTO templates (owner, name, readme, settings, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(owner)
        .bind(name)
        .bind(readme.map(str::to_string))
        .bind(json)
        .bind(now_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(TemplateRow {
                owner: owner.to_string(),
                name: name.to_string(),
                readme: readme.map(str::to_string),
                settings: settings.clone(),
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "template {name} already exists"
            ))),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::Conflict(format!("there is no user {owner}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `owner`'s template `name`, if there is one.
    pub async fn get_template(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<Option<TemplateRow>, StoreError> {
        sqlx::query(select_templates!("WHERE owner = $1 AND name = $2"))
            .bind(owner)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(template_from_row)
            .transpose()
    }

    /// `owner`'s templates, by name.
    pub async fn list_templates(&self, owner: &str) -> Result<Vec<TemplateRow>, StoreError> {
        sqlx::query(select_templates!("WHERE owner = $1 ORDER BY name"))
            .bind(owner)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(template_from_row)
            .collect()
    }

    /// Replaces the readme and settings of `owner`'s template `name`; `false` if there is
    /// no such template.
    pub async fn update_template(
        &self,
        owner: &str,
        name: &str,
        readme: Option<&str>,
        settings: &CreateInstance,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let json = to_json("template settings", settings)?;
        let r = sqlx::query(
            "UPDATE templates SET readme = $3, settings = $4, updated_at_ms = $5 \
             WHERE owner = $1 AND name = $2",
        )
        .bind(owner)
        .bind(name)
        .bind(readme.map(str::to_string))
        .bind(json)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Removes `owner`'s template `name`; `false` if there is no such template.
    pub async fn delete_template(&self, owner: &str, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM templates WHERE owner = $1 AND name = $2")
            .bind(owner)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
