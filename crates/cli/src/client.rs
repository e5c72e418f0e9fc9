//! A typed client of the REST API (`/api/v1`).
//!
//! Every method answers the API's own types. An error answer becomes an [`ApiError`] whose
//! message is the server's text (a 400 prefixed with the field at fault); a server that
//! cannot be reached gives "cannot reach berth at URL: …".
use anyhow::{Context, Result};
use berth_core::api::{
    CreateInstance, Created, CreatedUser, ErrorBody, Host, Instance, Me, NewSshKey, NewUser,
    SshKey, Template, TemplateBody, TemplateFromImage, TemplateMade, User,
};
use berth_core::Secret;
use futures_util::{Stream, StreamExt};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// How long a request (other than a log stream) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long making a template from an image may take: the server waits up to 10 minutes
/// for an agent to pull and inspect it.
const FROM_IMAGE_TIMEOUT: Duration = Duration::from_secs(11 * 60);

/// An error answer from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
    pub field: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) if self.status == 400 && !self.error.starts_with(&format!("{field}:")) => {
                write!(f, "{field}: {}", self.error)
            }
            _ => f.write_str(&self.error),
        }
    }
}

impl std::error::Error for ApiError {}

/// A berth server and the API key to use with it.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Without a trailing slash.
    base: String,
    key: Secret,
}

impl Client {
    /// `url` is the server's base URL, e.g. `http://127.0.0.1:7878`.
    pub fn new(url: &str, api_key: Secret) -> Result<Client> {
        let base = normalize_url(url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("berth-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up the HTTP client")?;
        Ok(Client {
            http,
            base,
            key: api_key,
        })
    }

    pub fn from_config(config: &crate::config::Config) -> Result<Client> {
        Client::new(&config.url, config.api_key.clone())
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The deployment's CA certificate (PEM, or DER with `der`). Needs no API key.
    pub async fn ca_cert(&self, der: bool) -> Result<Vec<u8>> {
        let format = if der { "der" } else { "pem" };
        let req = self
            .http
            .get(format!("{}/api/v1/ca.crt?format={format}", self.base))
            .timeout(REQUEST_TIMEOUT);
        let resp = self.send(req).await?;
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        Ok(bytes.to_vec())
    }

    pub async fn me(&self) -> Result<Me> {
        self.json(self.request(Method::GET, "/me")).await
    }

    pub async fn create_instance(&self, req: &CreateInstance) -> Result<Created> {
        self.json(self.request(Method::POST, "/instances").json(req))
            .await
    }

    pub async fn instances(&self) -> Result<Vec<Instance>> {
        self.json(self.request(Method::GET, "/instances")).await
    }

    pub async fn instance(&self, id: i64) -> Result<Instance> {
        self.json(self.request(Method::GET, &format!("/instances/{id}")))
            .await
    }

    pub async fn stop(&self, id: i64) -> Result<Instance> {
        self.action(id, "stop").await
    }

    pub async fn start(&self, id: i64) -> Result<Instance> {
        self.action(id, "start").await
    }

    pub async fn reboot(&self, id: i64) -> Result<Instance> {
        self.action(id, "reboot").await
    }

    pub async fn destroy(&self, id: i64) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/instances/{id}")))
            .await
            .map(drop)
    }

    /// The instance's output as it arrives (with `onstart`, its onstart script's log);
    /// with `follow` the stream stays open until the container stops. `tail` limits the
    /// lines of past output.
    pub async fn logs(
        &self,
        id: i64,
        follow: bool,
        tail: Option<u64>,
        onstart: bool,
    ) -> Result<impl Stream<Item = Result<impl AsRef<[u8]>>>> {
        let mut url = format!("{}/api/v1/instances/{id}/logs?follow={follow}", self.base);
        if let Some(n) = tail {
            url.push_str(&format!("&tail={n}"));
        }
        if onstart {
            url.push_str("&onstart=true");
        }
        let req = self.http.get(url).bearer_auth(self.key.expose());
        let base = self.base.clone();
        let resp = self.send(req).await?;
        Ok(resp.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| {
                anyhow::anyhow!("reading logs from berth at {base}: {}", root_cause(&e))
            })
        }))
    }

    pub async fn hosts(&self) -> Result<Vec<Host>> {
        self.json(self.request(Method::GET, "/hosts")).await
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        self.json(self.request(Method::GET, "/users")).await
    }

    pub async fn add_user(&self, name: &str) -> Result<CreatedUser> {
        let body = NewUser {
            name: name.to_string(),
        };
        self.json(self.request(Method::POST, "/users").json(&body))
            .await
    }

    pub async fn remove_user(&self, name: &str) -> Result<()> {
        let req = self.request(Method::DELETE, &format!("/users/{name}"));
        self.send(req).await.map(drop)
    }

    /// The account's SSH public keys.
    pub async fn keys(&self) -> Result<Vec<SshKey>> {
        self.json(self.request(Method::GET, "/keys")).await
    }

    /// Adds a public key (`TYPE BASE64 [COMMENT]`) to the account.
    pub async fn add_key(&self, key: &str) -> Result<SshKey> {
        let body = NewSshKey {
            key: key.to_string(),
        };
        self.json(self.request(Method::POST, "/keys").json(&body))
            .await
    }

    pub async fn remove_key(&self, id: i64) -> Result<()> {
        let req = self.request(Method::DELETE, &format!("/keys/{id}"));
        self.send(req).await.map(drop)
    }

    /// Authorizes a public key for one instance only.
    pub async fn attach_key(&self, id: i64, key: &str) -> Result<Instance> {
        let body = NewSshKey {
            key: key.to_string(),
        };
        let req = self.request(Method::POST, &format!("/instances/{id}/keys"));
        self.json(req.json(&body)).await
    }

    /// The account's templates, by name.
    pub async fn templates(&self) -> Result<Vec<Template>> {
        self.json(self.request(Method::GET, "/templates")).await
    }

    /// The template `name` (a valid template name: it goes into the URL as is).
    pub async fn template(&self, name: &str) -> Result<Template> {
        self.json(self.request(Method::GET, &format!("/templates/{name}")))
            .await
    }

    pub async fn create_template(&self, body: &TemplateBody) -> Result<Template> {
        self.json(self.request(Method::POST, "/templates").json(body))
            .await
    }

    /// Replaces the readme and settings of the template `body.name`.
    pub async fn update_template(&self, body: &TemplateBody) -> Result<Template> {
        let req = self.request(Method::PUT, &format!("/templates/{}", body.name));
        self.json(req.json(body)).await
    }

    pub async fn delete_template(&self, name: &str) -> Result<()> {
        let req = self.request(Method::DELETE, &format!("/templates/{name}"));
        self.send(req).await.map(drop)
    }

    /// Makes a template from an image's config; may take minutes (the image is pulled if
    /// the agent does not have it).
    pub async fn template_from_image(&self, body: &TemplateFromImage) -> Result<TemplateMade> {
        let req = self
            .request(Method::POST, "/templates/from-image")
            .timeout(FROM_IMAGE_TIMEOUT)
            .json(body);
        self.json(req).await
    }

    async fn action(&self, id: i64, verb: &str) -> Result<Instance> {
        self.json(self.request(Method::POST, &format!("/instances/{id}/{verb}")))
            .await
    }

    /// A request to `/api/v1{path}`, authorized, with the default timeout.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(self.key.expose())
            .timeout(REQUEST_TIMEOUT)
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let resp = self.send(req).await?;
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("berth at {} sent an answer this CLI cannot read", self.base))
    }

    /// Sends the request; any status but 2xx becomes an error.
    async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(api_error(status, &body).into())
    }

    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        let why = if e.is_timeout() {
            "timed out".to_string()
        } else {
            root_cause(&e)
        };
        if e.is_builder() {
            anyhow::anyhow!("cannot make a request to berth at {}: {why}", self.base)
        } else {
            anyhow::anyhow!("cannot reach berth at {}: {why}", self.base)
        }
    }
}

/// Checks a base URL and drops trailing slashes.
pub fn normalize_url(url: &str) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let ok = reqwest::Url::parse(trimmed)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .unwrap_or(false);
    if !ok {
        anyhow::bail!("{url:?} is not a berth URL (expected http://HOST:PORT or https://HOST)");
    }
    Ok(trimmed.to_string())
}

/// The [`ApiError`] for an error answer, whether or not its body is an `ErrorBody`.
fn api_error(status: StatusCode, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => ApiError {
            status: status.as_u16(),
            error: b.error,
            field: b.field,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let line = text.lines().next().unwrap_or("").trim();
            let error = if line.is_empty() {
                format!("berth answered {status}")
            } else {
                format!("berth answered {status}: {}", truncate(line, 200))
            };
            ApiError {
                status: status.as_u16(),
                error,
                field: None,
            }
        }
    }
}

/// The innermost error's text: "Connection refused (os error 111)" rather than
/// reqwest's "error sending request for url …".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_their_text() {
        let e = api_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"not a valid reference","field":"image"}"#,
        );
        assert_eq!(e.to_string(), "image: not a valid reference");
        let e = api_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"image: not a valid reference","field":"image"}"#,
        );
        assert_eq!(e.to_string(), "image: not a valid reference");
        let e = api_error(StatusCode::NOT_FOUND, br#"{"error":"no instance 7"}"#);
        assert_eq!((e.status, e.to_string().as_str()), (404, "no instance 7"));
        let e = api_error(StatusCode::BAD_GATEWAY, b"<html>\nbad gateway</html>");
        assert_eq!(e.to_string(), "berth answered 502 Bad Gateway: <html>");
        let e = api_error(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(e.to_string(), "berth answered 401 Unauthorized");
    }

    #[test]
    fn urls_are_checked_and_trimmed() {
        assert_eq!(
            normalize_url("http://127.0.0.1:7878/").unwrap(),
            "http://127.0.0.1:7878"
        );
        assert_eq!(
            normalize_url("https://b.example").unwrap(),
            "https://b.example"
        );
        assert!(normalize_url("127.0.0.1:7878").is_err());
        assert!(normalize_url("ftp://x").is_err());
        assert!(normalize_url("").is_err());
    }

    /// Serves one connection with `response` (written in `parts`, 50 ms apart) and answers
    /// the request head and body it got.
    async fn serve_once(parts: Vec<String>) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            let head_len = loop {
                let n = sock.read(&mut buf).await.unwrap();
                assert!(n > 0, "request ended early");
                req.extend_from_slice(&buf[..n]);
                if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&req[..head_len]).to_lowercase();
            let body_len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while req.len() < head_len + body_len {
                let n = sock.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            for part in parts {
                sock.write_all(part.as_bytes()).await.unwrap();
                sock.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            String::from_utf8_lossy(&req).into_owned()
        });
        (url, task)
    }

    fn answer(status: &str, body: &str) -> Vec<String> {
        vec![format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )]
    }

    #[tokio::test]
    async fn requests_carry_the_key_and_answers_are_typed() {
        let (url, task) = serve_once(answer("200 OK", r#"{"name":"alice","admin":true}"#)).await;
        let c = Client::new(&format!("{url}/"), Secret::new("key-1")).unwrap();
        let me = c.me().await.unwrap();
        assert_eq!((me.name.as_str(), me.admin), ("alice", true));
        let req = task.await.unwrap();
        assert!(req.starts_with("GET /api/v1/me HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("authorization: Bearer key-1\r\n"), "{req}");

        let (url, task) = serve_once(answer("204 No Content", "")).await;
        let c = Client::new(&url, Secret::new("k")).unwrap();
        c.destroy(5).await.unwrap();
        assert!(task
            .await
            .unwrap()
            .starts_with("DELETE /api/v1/instances/5 "));

        let body = r#"{"error":"not a valid reference","field":"image"}"#;
        let (url, task) = serve_once(answer("400 Bad Request", body)).await;
        let c = Client::new(&url, Secret::new("k")).unwrap();
        let req = CreateInstance {
            image: "Bad Image".into(),
            ..Default::default()
        };
        let e = c.create_instance(&req).await.unwrap_err();
        assert_eq!(format!("{e:#}"), "image: not a valid reference");
        assert_eq!(e.downcast_ref::<ApiError>().unwrap().status, 400);
        let sent = task.await.unwrap();
        assert!(sent.starts_with("POST /api/v1/instances "), "{sent}");
        assert!(
            sent.ends_with(&serde_json::to_string(&req).unwrap()),
            "{sent}"
        );
    }

    #[tokio::test]
    async fn logs_arrive_chunk_by_chunk() {
        let parts = vec![
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_string(),
            "6\r\nhello \r\n".to_string(),
            "6\r\nworld\n\r\n".to_string(),
            "0\r\n\r\n".to_string(),
        ];
        let (url, task) = serve_once(parts).await;
        let c = Client::new(&url, Secret::new("k")).unwrap();
        let stream = c.logs(3, true, Some(5), false).await.unwrap();
        let chunks: Vec<Vec<u8>> = stream.map(|c| c.unwrap().as_ref().to_vec()).collect().await;
        assert!(chunks.len() >= 2, "each chunk as it comes: {chunks:?}");
        assert_eq!(chunks.concat(), b"hello world\n");
        let req = task.await.unwrap();
        assert!(
            req.starts_with("GET /api/v1/instances/3/logs?follow=true&tail=5 "),
            "{req}"
        );
    }

    #[tokio::test]
    async fn onstart_logs_and_keys_hit_their_paths() {
        let (url, task) = serve_once(answer("200 OK", "")).await;
        let c = Client::new(&url, Secret::new("k")).unwrap();
        let stream = c.logs(4, false, None, true).await.unwrap();
        let _: Vec<_> = stream.collect().await;
        let req = task.await.unwrap();
        assert!(
            req.starts_with("GET /api/v1/instances/4/logs?follow=false&onstart=true "),
            "{req}"
        );

        let key = r#"{"id":2,"key":"ssh-ed25519 AAAA me","fingerprint":"SHA256:x","created_at":"2023-11-14T22:08:20Z"}"#;
        let (url, task) = serve_once(answer("201 Created", key)).await;
        let c = Client::new(&url, Secret::new("k")).unwrap();
        let k = c.add_key("ssh-ed25519 AAAA me\n").await.unwrap();
        assert_eq!((k.id, k.fingerprint.as_str()), (2, "SHA256:x"));
        let req = task.await.unwrap();
        assert!(req.starts_with("POST /api/v1/keys "), "{req}");
        assert!(req.ends_with(r#"{"key":"ssh-ed25519 AAAA me\n"}"#), "{req}");

        let body = r#"{"error":"the key's body is not valid base64","field":"key"}"#;
        let (url, task) = serve_once(answer("400 Bad Request", body)).await;
        let c = Client::new(&url, Secret::new("k")).unwrap();
        let e = c.add_key("ssh-ed25519 !!").await.unwrap_err();
        assert_eq!(format!("{e:#}"), "key: the key's body is not valid base64");
        task.await.unwrap();

        let (url, task) = serve_once(answer("204 No Content", "")).await;
        let c = Client::new(&url, Secret::new("k")).unwrap();
        c.remove_key(9).await.unwrap();
        assert!(task.await.unwrap().starts_with("DELETE /api/v1/keys/9 "));

        let (url, task) = serve_once(answer("404 Not Found", r#"{"error":"no instance 8"}"#)).await;
        let c = Client::new(&url, Secret::new("k")).unwrap();
        let e = c.attach_key(8, "ssh-ed25519 AAAA").await.unwrap_err();
        assert_eq!(format!("{e:#}"), "no instance 8");
        assert!(task
            .await
            .unwrap()
            .starts_with("POST /api/v1/instances/8/keys "));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_one_clear_line() {
        // A port nobody listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), Secret::new("k")).unwrap();
        let e = format!("{:#}", c.me().await.unwrap_err());
        assert!(
            e.starts_with(&format!("cannot reach berth at http://127.0.0.1:{port}: ")),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
