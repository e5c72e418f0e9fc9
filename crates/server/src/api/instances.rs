//! `/api/v1/instances`: create, list, show, stop, start, reboot, destroy, logs. A user
//! sees and touches only their own instances; another user's answer 404 like unknown ones.
use super::Body;
use crate::auth::{now_ms, CurrentUser};
use crate::error::ApiError;
use crate::scheduler::{self, Candidate};
use crate::{view, App};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_core::api;
use berth_core::protocol::{Phase, RunState};
use berth_core::InstanceSpec;
use berth_store::InstanceRow;
use std::collections::HashMap;

pub async fn create(
    State(app): State<App>,
    user: CurrentUser,
    Body(req): Body<api::CreateInstance>,
) -> Result<(StatusCode, Json<api::Created>), ApiError> {
    let req = super::templates::resolve(&app, &user, req).await?;
    let spec = InstanceSpec::from_request(&req)?;
    let all = app.store.list_instances(None).await?;
    let candidates: Vec<Candidate> = app
        .hub
        .online_hosts()
        .into_iter()
        .map(|facts| {
            let mine = all.iter().filter(|r| r.host == facts.name);
            Candidate {
                instances: mine.clone().count(),
                gpus_used: mine.map(|r| r.spec.gpus).sum(),
                facts,
            }
        })
        .collect();
    let host = scheduler::place(&spec, &candidates)?;
    let now = now_ms();
    let id = app
        .store
        .insert_instance(
            &user.name,
            &host,
            &spec,
            &RunState::Running { since_ms: now },
            now,
        )
        .await?;
    tracing::info!(instance = id, owner = %user.name, %host, image = %spec.image, mode = %spec.mode, "instance created");
    let secrets = berth_core::spec::InstanceSecrets {
        jupyter_token: (spec.mode == berth_core::LaunchMode::Jupyter)
            .then(|| crate::auth::random_hex(24)),
        tls: None,
        access_token: Some(crate::auth::random_hex(24)),
    };
    app.store.set_secrets(id, &secrets).await?;
    if let (Some(p), true) = (&app.proxy, spec.mode != berth_core::LaunchMode::Entrypoint) {
        if app
            .store
            .allocate_proxy_port(id, p.ssh_ports.first, p.ssh_ports.last)
            .await?
            .is_none()
        {
            app.store.delete_instance(id).await?;
            return Err(ApiError::Unavailable(format!(
                "the proxy's SSH port range {}-{} is used up",
                p.ssh_ports.first, p.ssh_ports.last
            )));
        }
    }
    app.hub.desired_changed(&host);
    Ok((StatusCode::CREATED, Json(api::Created { id })))
}

pub async fn list(
    State(app): State<App>,
    user: CurrentUser,
) -> Result<Json<Vec<api::Instance>>, ApiError> {
    let rows = app.store.list_instances(Some(&user.name)).await?;
    let hosts = HostInfo::load(&app).await?;
    Ok(Json(rows.iter().map(|r| hosts.view(r)).collect()))
}

pub async fn show(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<api::Instance>, ApiError> {
    let row = owned(&app, &user, &id).await?;
    Ok(Json(HostInfo::load(&app).await?.view(&row)))
}

pub async fn stop(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<api::Instance>, ApiError> {
    set_run(&app, &user, &id, |_| Some(RunState::Stopped)).await
}

/// Starts a stopped, exited or failed instance; a running one is left alone.
pub async fn start(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<api::Instance>, ApiError> {
    set_run(&app, &user, &id, |row| {
        let up = matches!(row.run, RunState::Running { .. })
            && row.actual.as_ref().is_some_and(|a| {
                a.applied.as_ref() == Some(&row.run)
                    && matches!(
                        a.phase,
                        Phase::Running
                            | Phase::Connecting
                            | Phase::Pulling { .. }
                            | Phase::Creating
                    )
            });
        (!up).then(|| RunState::Running { since_ms: now_ms() })
    })
    .await
}

pub async fn reboot(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<api::Instance>, ApiError> {
    set_run(&app, &user, &id, |_| {
        Some(RunState::Running { since_ms: now_ms() })
    })
    .await
}

pub async fn destroy(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let row = owned(&app, &user, &id).await?;
    app.store.delete_instance(row.id).await?;
    tracing::info!(instance = row.id, "instance destroyed");
    app.hub.desired_changed(&row.host);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<u64>,
    /// The onstart script's log instead of the container's output.
    #[serde(default)]
    onstart: bool,
}

pub async fn logs(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let row = owned(&app, &user, &id).await?;
    if row
        .actual
        .as_ref()
        .and_then(|a| a.container_id.as_ref())
        .is_none()
    {
        return Err(ApiError::Conflict(format!(
            "instance {} has no container yet, so no logs",
            row.id
        )));
    }
    if q.onstart && row.spec.mode == berth_core::LaunchMode::Entrypoint {
        return Err(ApiError::BadRequest(format!(
            "instance {} runs in entrypoint mode, which has no onstart script",
            row.id
        )));
    }
    let stream = app
        .hub
        .open_logs(&row.host, row.id, q.follow, q.tail, q.onstart)?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

async fn set_run(
    app: &App,
    user: &CurrentUser,
    id: &str,
    next: impl FnOnce(&InstanceRow) -> Option<RunState>,
) -> Result<Json<api::Instance>, ApiError> {
    let mut row = owned(app, user, id).await?;
    if let Some(run) = next(&row) {
        app.store.set_run_state(row.id, &run).await?;
        row.run = run;
        app.hub.desired_changed(&row.host);
    }
    Ok(Json(HostInfo::load(app).await?.view(&row)))
}

/// `POST /api/v1/instances/{id}/keys`: authorizes one more SSH key for this instance only.
pub async fn attach_key(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<String>,
    Body(req): Body<api::NewSshKey>,
) -> Result<Json<api::Instance>, ApiError> {
    let row = owned(&app, &user, &id).await?;
    if row.spec.mode == berth_core::LaunchMode::Entrypoint {
        return Err(ApiError::BadRequest(format!(
            "instance {} runs in entrypoint mode: berth runs no sshd there",
            row.id
        )));
    }
    let key =
        berth_core::ssh_key::parse(&req.key).map_err(|m| berth_core::FieldError::new("key", m))?;
    let mut keys = row.extra_keys.clone();
    if !keys
        .iter()
        .any(|k| berth_core::ssh_key::parse(k).is_ok_and(|k| k.fingerprint == key.fingerprint))
    {
        keys.push(key.line);
        app.store.set_instance_keys(row.id, &keys).await?;
        app.hub.desired_changed(&row.host);
    }
    Ok(Json(HostInfo::load(&app).await?.view(&row)))
}

/// The instance `id` if `user` owns it; 404 otherwise.
pub(super) async fn owned(
    app: &App,
    user: &CurrentUser,
    id: &str,
) -> Result<InstanceRow, ApiError> {
    let n: i64 = id.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::NotFound(format!(
            "instance {id:?} not found (ids are positive integers)"
        ))
    })?;
    match app.store.get_instance(n).await? {
        Some(row) if row.owner == user.name => Ok(row),
        _ => Err(ApiError::instance_not_found(n)),
    }
}

/// Public IPs and liveness of hosts, for views.
struct HostInfo {
    hosts: HashMap<String, (String, bool)>,
    proxy: Option<crate::ProxySettings>,
}

impl HostInfo {
    async fn load(app: &App) -> Result<HostInfo, ApiError> {
        let now = now_ms();
        let hosts = app
            .store
            .list_hosts()
            .await?
            .into_iter()
            .map(|h| {
                let online =
                    app.hub.is_connected(&h.name) || now - h.last_seen_ms < view::OFFLINE_AFTER_MS;
                (h.name, (h.facts.public_ip, online))
            })
            .collect();
        Ok(HostInfo {
            hosts,
            proxy: app.proxy.clone(),
        })
    }

    fn view(&self, row: &InstanceRow) -> api::Instance {
        let (ip, online) = self.hosts.get(&row.host).cloned().unwrap_or_default();
        view::instance(row, &ip, online, self.proxy.as_ref())
    }
}
