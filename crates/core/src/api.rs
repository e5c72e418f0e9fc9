//! Bodies of the REST API (`/api/v1`, JSON, bearer API key). The OpenAPI document served
//! at `/api/v1/openapi.json` describes the same shapes.
use crate::protocol::{Gpu, PortMapping, PortRange, PullProgress};
use crate::{InstanceState, LaunchMode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /api/v1/instances`, and a template's settings.
///
/// With `template`, the caller's template of that name gives the settings this request
/// leaves out ([`crate::template::merge`]): `image` may then be empty and `mode` absent.
///
/// Every setting but `image`, `env` and the port lists is an `Option`: absent (or `null`)
/// is "not given", so that a request can give `0` GPUs or `false` on purpose and win over
/// a template's value. Without a template, not given is the default (0 GPUs, `false`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    /// Required unless a template gives it.
    #[serde(default)]
    pub image: String,
    /// Absent: the template's mode, else entrypoint.
    #[serde(default)]
    pub mode: Option<LaunchMode>,
    /// The name of one of the caller's templates to start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default)]
    pub entrypoint: Option<String>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// The Docker-options string: `-e K=V -p 8081:8081 -p 7000/udp`.
    #[serde(default)]
    pub docker_options: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `PORT[/tcp|/udp]` (or a `-p` value) each.
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub label: Option<String>,
    /// GPUs to reserve; absent: the template's, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// ssh/jupyter: script run after sshd is up, on every start.
    #[serde(default)]
    pub onstart: Option<String>,
    /// ssh/jupyter: demand a direct connection (a host with open ports); absent: the
    /// template's, else false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<bool>,
    /// jupyter: JupyterLab instead of the classic Notebook; absent: the template's, else
    /// false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jupyter_lab: Option<bool>,
    /// jupyter: root directory (default `/`).
    #[serde(default)]
    pub jupyter_dir: Option<String>,
    /// Ports served over HTTPS through the proxy (like `-p PORT/http`).
    #[serde(default)]
    pub http_ports: Vec<u16>,
}

/// An instance as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: i64,
    pub owner: String,
    pub host: String,
    pub image: String,
    pub mode: LaunchMode,
    pub label: Option<String>,
    pub state: InstanceState,
    /// Exit code, for `exited`.
    pub exit_code: Option<i64>,
    /// Why, for `failed`.
    pub reason: Option<String>,
    /// Image pull progress, for `loading`.
    pub progress: Option<PullProgress>,
    pub public_ip: String,
    pub ports: Vec<PortMapping>,
    pub entrypoint: Option<String>,
    pub args: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub gpus: u32,
    pub onstart: Option<String>,
    pub direct: bool,
    /// ssh/jupyter: the instance's SSH host public keys (known_hosts material).
    pub ssh_host_keys: Vec<String>,
    pub jupyter_lab: bool,
    pub jupyter_dir: Option<String>,
    /// jupyter: the token (shown to the instance's owner only).
    pub jupyter_token: Option<String>,
    /// jupyter: the direct HTTPS link with the token, once the port is mapped.
    pub jupyter_url: Option<String>,
    /// Through the proxy: `HOST:PORT` that leads to the instance's sshd.
    pub proxy_ssh: Option<String>,
    /// Through the proxy: Jupyter's HTTPS link with the token.
    pub proxy_jupyter_url: Option<String>,
    /// Through the proxy: one HTTPS link (with the access token) per http port.
    pub http_urls: Vec<HttpUrl>,
    pub container_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub started_at: Option<String>,
}

/// `POST /api/v1/instances` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub id: i64,
}

/// A host as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub public_ip: String,
    pub port_range: Option<PortRange>,
    pub gpus: Vec<Gpu>,
    pub online: bool,
    pub last_seen: Option<String>,
    pub instances: u32,
    pub docker_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub admin: bool,
    pub created_at: String,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
}

/// Answer to `POST /api/v1/users`: the only time the key is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedUser {
    pub name: String,
    pub api_key: String,
}

/// `GET /api/v1/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub name: String,
    pub admin: bool,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// The request field at fault: for 400s, and for a 409 caused by one field (a
    /// template name in use names `name`). `error` then starts with `FIELD: `.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Validates a user name: 1–32 of `[a-z0-9_-]`, starting with a letter.
pub fn validate_user_name(name: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: a user name is 1 to 32 of a-z, 0-9, '-', '_', starting with a letter"
        ))
    }
}

/// An SSH public key of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    pub id: i64,
    pub key: String,
    pub fingerprint: String,
    pub created_at: String,
}

/// `POST /api/v1/keys` and `POST /api/v1/instances/{id}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSshKey {
    pub key: String,
}

/// An http port's link through the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpUrl {
    pub port: u16,
    pub url: String,
}

/// A saved set of launch settings, owned by a user, named uniquely per user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    /// What the template is for and how to use it (shown in the GUI).
    pub readme: Option<String>,
    /// The launch settings: a create request without the template field.
    pub settings: CreateInstance,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /api/v1/templates` and `PUT /api/v1/templates/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    pub name: String,
    #[serde(default)]
    pub readme: Option<String>,
    pub settings: CreateInstance,
}

/// `POST /api/v1/templates/from-image`: a template made by inspecting an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFromImage {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub mode: LaunchMode,
    #[serde(default)]
    pub readme: Option<String>,
}

/// Answer to `from-image`: the template and what berth did to make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMade {
    pub template: Template,
    /// One line each: what was moved or carried over, and why.
    pub notes: Vec<String>,
}
