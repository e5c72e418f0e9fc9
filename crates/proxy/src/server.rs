//! The proxy's client of the berth server: its settings and the route table.
use crate::{ProxyConfig, ProxyError};
use berth_core::protocol::proxy::{self as proto, Routes, CONFIG_PATH, ROUTES_PATH};
use berth_core::Secret;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    #[error("the server answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the server's answer is not what this proxy expects: {0}")]
    Body(String),
}

pub(crate) struct Server {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl Server {
    pub(crate) fn new(cfg: &ProxyConfig) -> Result<Server, ProxyError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(proto::LONG_POLL_SECS + 10))
            .user_agent(concat!("berth-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProxyError::Client(e.to_string()))?;
        Ok(Server {
            http,
            base: cfg.server_url.trim_end_matches('/').to_string(),
            token: cfg.token.clone(),
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, FetchError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| FetchError::Unreachable(error_chain(&e)))?;
        if status != 200 {
            let mut body = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            body = body.trim().to_string();
            return Err(FetchError::Status { status, body });
        }
        Ok(body.to_vec())
    }

    pub(crate) async fn config(&self) -> Result<proto::ProxyConfig, FetchError> {
        let body = self.get(CONFIG_PATH).await?;
        serde_json::from_slice(&body).map_err(|e| FetchError::Body(e.to_string()))
    }

    /// The route table; with `after`, the server holds the request until the table's version
    /// differs from it (a long poll), so changes arrive at once.
    pub(crate) async fn routes(&self, after: Option<u64>) -> Result<Routes, FetchError> {
        let path = match after {
            Some(v) => format!("{ROUTES_PATH}?after={v}"),
            None => ROUTES_PATH.to_string(),
        };
        let body = self.get(&path).await?;
        serde_json::from_slice(&body).map_err(|e| FetchError::Body(e.to_string()))
    }

    /// The proxy's settings, retried with backoff until the server answers. A server that
    /// refuses the token (401/403) is an error: retrying cannot fix it.
    pub(crate) async fn config_with_retry(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<proto::ProxyConfig, ProxyError> {
        let mut delay = Duration::from_millis(200);
        let mut last: Option<String> = None;
        loop {
            match self.config().await {
                Ok(c) => {
                    if last.is_some() {
                        tracing::info!(server = %self.base, "the server answered; proxy settings loaded");
                    }
                    return Ok(c);
                }
                Err(FetchError::Status { status, body }) if status == 401 || status == 403 => {
                    return Err(ProxyError::Unauthorized {
                        url: self.base.clone(),
                        status,
                        body,
                    })
                }
                Err(e) => {
                    let why = e.to_string();
                    if last.as_deref() != Some(why.as_str()) {
                        tracing::warn!(server = %self.base, "waiting for the berth server's proxy settings ({why}); retrying");
                    } else {
                        tracing::debug!(server = %self.base, "still waiting for the server: {why}");
                    }
                    last = Some(why);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Err(ProxyError::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// reqwest's error with its causes (its Display alone often says just "error sending request").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
