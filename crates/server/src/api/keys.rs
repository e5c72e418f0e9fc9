//! `/api/v1/keys`: a user's SSH public keys, installed in all their ssh and jupyter
//! instances. A change reaches running instances within seconds (their agents rewrite the
//! authorized keys), with no restart.
use super::Body;
use crate::auth::{now_ms, CurrentUser};
use crate::error::ApiError;
use crate::{view, App};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_core::{api, FieldError};
use std::collections::BTreeSet;

fn key_view(k: berth_store::SshKeyRow) -> api::SshKey {
    api::SshKey {
        id: k.id,
        key: k.key,
        fingerprint: k.fingerprint,
        created_at: view::rfc3339(k.created_at_ms),
    }
}

pub async fn list(
    State(app): State<App>,
    user: CurrentUser,
) -> Result<Json<Vec<api::SshKey>>, ApiError> {
    Ok(Json(
        app.store
            .list_ssh_keys(&user.name)
            .await?
            .into_iter()
            .map(key_view)
            .collect(),
    ))
}

pub async fn add(
    State(app): State<App>,
    user: CurrentUser,
    Body(req): Body<api::NewSshKey>,
) -> Result<(StatusCode, Json<api::SshKey>), ApiError> {
    let key = berth_core::ssh_key::parse(&req.key).map_err(|m| FieldError::new("key", m))?;
    let row = app
        .store
        .add_ssh_key(&user.name, &key.line, &key.fingerprint, now_ms())
        .await?;
    tracing::info!(user = %user.name, fingerprint = %key.fingerprint, "ssh key added");
    keys_changed(&app, &user.name).await?;
    Ok((StatusCode::CREATED, Json(key_view(row))))
}

pub async fn remove(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("key {id:?} not found")))?;
    if !app.store.delete_ssh_key(&user.name, id).await? {
        return Err(ApiError::NotFound(format!("key {id} not found")));
    }
    keys_changed(&app, &user.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pushes new desired sets to every host that runs one of `owner`'s instances.
async fn keys_changed(app: &App, owner: &str) -> Result<(), ApiError> {
    let hosts: BTreeSet<String> = app
        .store
        .list_instances(Some(owner))
        .await?
        .into_iter()
        .map(|r| r.host)
        .collect();
    for h in hosts {
        app.hub.desired_changed(&h);
    }
    Ok(())
}
