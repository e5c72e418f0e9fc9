//! `/api/v1/users`: the admin adds, lists and removes users. A new user's API key is shown
//! once, in the create answer; only its hash is kept.
use super::Body;
use crate::auth::{self, now_ms, CurrentUser};
use crate::error::ApiError;
use crate::{view, App};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_core::api;

pub async fn list(
    State(app): State<App>,
    user: CurrentUser,
) -> Result<Json<Vec<api::User>>, ApiError> {
    user.require_admin()?;
    let users = app.store.list_users().await?;
    Ok(Json(
        users
            .into_iter()
            .map(|u| api::User {
                name: u.name,
                admin: u.admin,
                created_at: view::rfc3339(u.created_at_ms),
            })
            .collect(),
    ))
}

pub async fn create(
    State(app): State<App>,
    user: CurrentUser,
    Body(req): Body<api::NewUser>,
) -> Result<(StatusCode, Json<api::CreatedUser>), ApiError> {
    user.require_admin()?;
    api::validate_user_name(&req.name).map_err(|m| berth_core::FieldError::new("name", m))?;
    let key = auth::new_api_key();
    app.store
        .create_user(&req.name, &auth::hash_key(key.expose()), false, now_ms())
        .await?;
    tracing::info!(user = %req.name, by = %user.name, "user added");
    Ok((
        StatusCode::CREATED,
        Json(api::CreatedUser {
            name: req.name,
            api_key: key.expose().to_string(),
        }),
    ))
}

pub async fn remove(
    State(app): State<App>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    if name == user.name {
        return Err(ApiError::Conflict("you cannot remove yourself".into()));
    }
    if app.store.delete_user(&name).await? {
        tracing::info!(user = %name, by = %user.name, "user removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("user {name} not found")))
    }
}
