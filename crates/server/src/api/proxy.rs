//! `/proxy/v1/*`: what the proxy needs from the server, with the agent token as bearer:
//! its settings and certificate, and the full route table (level-triggered).
use crate::auth;
use crate::error::ApiError;
use crate::App;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use berth_core::protocol::proxy::{ProxyConfig, Route, Routes};
use berth_core::LaunchMode;
use std::collections::HashMap;

/// How long the proxy's certificate is valid (it is issued anew at each server start).
const PROXY_CERT_VALID_FOR: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

fn check_token(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = auth::bearer(headers).ok_or(ApiError::Unauthorized)?;
    if auth::secrets_equal(token, app.agent_token.expose()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn settings(app: &App) -> Result<&crate::ProxySettings, ApiError> {
    app.proxy
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this deployment has no proxy configured".into()))
}

pub async fn config(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<Json<ProxyConfig>, ApiError> {
    check_token(&app, &headers)?;
    let p = settings(&app)?;
    let cert = app
        .proxy_cert
        .get_or_try_init(|| async {
            app.ca
                .issue_proxy(&p.domain, &p.public_host, PROXY_CERT_VALID_FOR)
                .map_err(|e| {
                    ApiError::Internal(format!("cannot issue the proxy's certificate: {e}"))
                })
        })
        .await?;
    Ok(Json(ProxyConfig {
        public_host: p.public_host.clone(),
        domain: p.domain.clone(),
        tunnel_port: p.tunnel_port,
        https_port: p.https_port,
        ssh_ports: p.ssh_ports.clone(),
        cert_pem: cert.cert_pem.clone(),
        key_pem: cert.key_pem.clone(),
        ca_pem: app.ca.cert_pem().to_string(),
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesQuery {
    /// The version the proxy has: answer when the table's is another.
    after: Option<u64>,
}

pub async fn routes(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<RoutesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Routes>, ApiError> {
    check_token(&app, &headers)?;
    settings(&app)?;
    let axum::extract::Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut versions = app.hub.routes_version();
    if let Some(after) = q.after {
        let wait = versions.wait_for(|v| *v != after);
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(berth_core::protocol::proxy::LONG_POLL_SECS),
            wait,
        )
        .await;
    }
    let version = *versions.borrow();
    let ips: HashMap<String, String> = app
        .store
        .list_hosts()
        .await?
        .into_iter()
        .map(|h| (h.name, h.facts.public_ip))
        .collect();
    let routes = app
        .store
        .list_instances(None)
        .await?
        .into_iter()
        .filter(|r| r.proxy_port.is_some() || !r.spec.http_ports.is_empty())
        .map(|r| Route {
            instance: r.id,
            public_ip: ips.get(&r.host).cloned().unwrap_or_default(),
            host: r.host,
            ssh_port: r.proxy_port,
            jupyter: r.spec.mode == LaunchMode::Jupyter,
            http_ports: r.spec.http_ports,
            access_token: r.secrets.access_token.unwrap_or_default(),
        })
        .collect();
    Ok(Json(Routes { version, routes }))
}
