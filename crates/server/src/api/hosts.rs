//! `/api/v1/hosts`: the hosts, their facts and load. Every signed-in user may list them.
use crate::auth::{now_ms, CurrentUser};
use crate::error::ApiError;
use crate::{view, App};
use axum::extract::State;
use axum::Json;
use berth_core::api;

pub async fn list(
    State(app): State<App>,
    _user: CurrentUser,
) -> Result<Json<Vec<api::Host>>, ApiError> {
    let counts: std::collections::HashMap<String, i64> = app
        .store
        .count_instances_by_host()
        .await?
        .into_iter()
        .collect();
    let now = now_ms();
    let hosts = app
        .store
        .list_hosts()
        .await?
        .into_iter()
        .map(|h| api::Host {
            online: app.hub.is_connected(&h.name) || now - h.last_seen_ms < view::OFFLINE_AFTER_MS,
            instances: counts.get(&h.name).copied().unwrap_or(0) as u32,
            last_seen: Some(view::rfc3339(h.last_seen_ms)),
            public_ip: h.facts.public_ip,
            port_range: h.facts.port_range,
            gpus: h.facts.gpus,
            docker_version: h.facts.docker_version,
            name: h.name,
        })
        .collect();
    Ok(Json(hosts))
}
