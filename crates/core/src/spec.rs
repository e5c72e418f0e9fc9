//! What an instance is asked to be ([`InstanceSpec`]), built from an API request and
//! validated field by field so that a bad request is refused with the field's name.
use crate::api::CreateInstance;
use crate::{docker_options, image_ref, LaunchMode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// At most this many ports (asked for plus EXPOSEd by the image) an instance.
pub const MAX_PORTS: usize = 64;
/// At most this many bytes of user env (names plus values).
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// At most this many bytes of entrypoint plus args.
pub const MAX_ARGV_BYTES: usize = 128 * 1024;
/// At most this many characters of label.
pub const MAX_LABEL_CHARS: usize = 256;
/// At most this many bytes of onstart script.
pub const MAX_ONSTART_BYTES: usize = 64 * 1024;
/// At most this many GPUs an instance.
pub const MAX_GPUS: u32 = 64;

/// Transport of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProto {
    Tcp,
    Udp,
}

impl PortProto {
    pub fn as_str(self) -> &'static str {
        match self {
            PortProto::Tcp => "tcp",
            PortProto::Udp => "udp",
        }
    }
}

/// An internal (container) port the instance wants reachable from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortSpec {
    pub port: u16,
    pub proto: PortProto,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto.as_str())
    }
}

/// A validated launch request: everything the agent needs to build the container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    pub image: String,
    pub mode: LaunchMode,
    /// Replaces the image's ENTRYPOINT (and drops its CMD), as `docker run --entrypoint`.
    #[serde(default)]
    pub entrypoint: Option<String>,
    /// Replaces the image's CMD, one argv element each, no shell.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// User env; berth's own variables are added by the launch plan.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Internal ports asked for (the image's EXPOSE ports are added by the agent).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub gpus: u32,
    /// ssh/jupyter: the script run after sshd is up, on every container start.
    #[serde(default)]
    pub onstart: Option<String>,
    /// ssh/jupyter: demand a direct connection (the host must have open ports). Direct
    /// connections are made wherever the host has open ports in any case.
    #[serde(default)]
    pub direct: bool,
    /// jupyter: JupyterLab instead of the classic Notebook.
    #[serde(default)]
    pub jupyter_lab: bool,
    /// jupyter: the root directory Jupyter serves (default `/`).
    #[serde(default)]
    pub jupyter_dir: Option<String>,
    /// TCP ports (also in `ports`) the proxy serves over HTTPS, behind the access token.
    #[serde(default)]
    pub http_ports: Vec<u16>,
}

/// Secrets berth makes for an instance (never part of what the user asked for).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceSecrets {
    /// jupyter: the token Jupyter requires.
    #[serde(default)]
    pub jupyter_token: Option<String>,
    /// jupyter: the instance's TLS certificate from the deployment's CA.
    #[serde(default)]
    pub tls: Option<TlsMaterial>,
    /// Opens the instance's http ports through the proxy.
    #[serde(default)]
    pub access_token: Option<String>,
}

/// A leaf certificate and its key, with what it was issued for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_pem: String,
    /// The SANs it names: IP addresses and DNS names, as text.
    pub names: Vec<String>,
    pub not_after_unix: i64,
    /// SHA-256 (hex) of the CA certificate (DER) that issued it: a new CA issues anew.
    #[serde(default)]
    pub ca_sha256: String,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("names", &self.names)
            .field("not_after_unix", &self.not_after_unix)
            .finish_non_exhaustive()
    }
}

/// A request field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Env names berth sets itself; a request may not set them.
pub fn is_reserved_env(name: &str) -> bool {
    name.starts_with("BERTH_") || matches!(name, "PUBLIC_IPADDR" | "GPU_COUNT" | "JUPYTER_TOKEN")
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 256 characters.
pub fn validate_env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid variable name (letters, digits and '_', not starting with a digit)"
        ))
    }
}

impl InstanceSpec {
    /// Builds and validates a spec from an API request (one that names no template: merge
    /// it with its template first). Env from the Docker-options string comes first, the
    /// request's `env` map wins over it; ports are the union of both. A missing mode is
    /// entrypoint.
    pub fn from_request(req: &CreateInstance) -> Result<InstanceSpec, FieldError> {
        if let Some(t) = &req.template {
            // The server lays the request over the template first (template::merge).
            return Err(FieldError::new(
                "template",
                format!("template {t:?} was not resolved before validation"),
            ));
        }
        let mode = req.mode.unwrap_or_default();
        let image = req.image.trim();
        image_ref::validate(image).map_err(|m| FieldError::new("image", m))?;

        let opts = docker_options::parse(req.docker_options.as_deref().unwrap_or(""))
            .map_err(|m| FieldError::new("docker_options", m))?;
        let mut env = BTreeMap::new();
        for (k, v) in opts.env {
            env.insert(k, v);
        }
        for (k, v) in &req.env {
            validate_env_name(k).map_err(|m| FieldError::new("env", m))?;
            env.insert(k.clone(), v.clone());
        }
        let mut env_bytes = 0;
        for (k, v) in &env {
            if is_reserved_env(k) {
                let field = if req.env.contains_key(k) {
                    "env"
                } else {
                    "docker_options"
                };
                return Err(FieldError::new(
                    field,
                    format!("{k} is set by berth and cannot be overridden"),
                ));
            }
            if v.contains('\0') {
                return Err(FieldError::new(
                    "env",
                    format!("the value of {k} holds a NUL byte"),
                ));
            }
            env_bytes += k.len() + v.len() + 2;
        }
        if env_bytes > MAX_ENV_BYTES {
            return Err(FieldError::new(
                "env",
                format!("env is {env_bytes} bytes; at most {MAX_ENV_BYTES} are allowed"),
            ));
        }

        let mut ports = opts.ports;
        let mut http_ports = opts.http_ports;
        for p in &req.http_ports {
            if *p == 0 {
                return Err(FieldError::new("http_ports", "0 is not a port"));
            }
            http_ports.push(*p);
            ports.push(PortSpec {
                port: *p,
                proto: PortProto::Tcp,
            });
        }
        http_ports.sort();
        http_ports.dedup();
        if mode == LaunchMode::Jupyter && http_ports.contains(&8080) {
            return Err(FieldError::new(
                "http_ports",
                "8080 is Jupyter's port in jupyter mode (the proxy serves it already)",
            ));
        }
        for p in &req.ports {
            let (parsed, http) =
                docker_options::parse_publish(p).map_err(|m| FieldError::new("ports", m))?;
            if http {
                http_ports.extend(parsed.iter().map(|p| p.port));
            }
            ports.extend(parsed);
        }
        ports.sort();
        ports.dedup();
        if ports.len() > MAX_PORTS {
            return Err(FieldError::new(
                "ports",
                format!(
                    "{} ports asked for; at most {MAX_PORTS} an instance",
                    ports.len()
                ),
            ));
        }

        let mut argv_bytes = 0;
        if let Some(ep) = &req.entrypoint {
            if ep.trim().is_empty() {
                return Err(FieldError::new(
                    "entrypoint",
                    "entrypoint is empty; leave it out to keep the image's",
                ));
            }
            if ep.contains('\0') {
                return Err(FieldError::new("entrypoint", "entrypoint holds a NUL byte"));
            }
            argv_bytes += ep.len();
        }
        if let Some(args) = &req.args {
            for a in args {
                if a.contains('\0') {
                    return Err(FieldError::new("args", "an argument holds a NUL byte"));
                }
                argv_bytes += a.len() + 1;
            }
        }
        if argv_bytes > MAX_ARGV_BYTES {
            return Err(FieldError::new(
                "args",
                format!("entrypoint and args are {argv_bytes} bytes; at most {MAX_ARGV_BYTES}"),
            ));
        }

        let label = match &req.label {
            Some(l) if l.chars().count() > MAX_LABEL_CHARS => {
                return Err(FieldError::new(
                    "label",
                    format!("label is longer than {MAX_LABEL_CHARS} characters"),
                ))
            }
            Some(l) if l.chars().any(|c| c.is_control()) => {
                return Err(FieldError::new("label", "label holds control characters"))
            }
            Some(l) if l.trim().is_empty() => None,
            Some(l) => Some(l.trim().to_string()),
            None => None,
        };
        let onstart = match (&req.onstart, mode) {
            (Some(s), _) if s.trim().is_empty() => None,
            (Some(_), LaunchMode::Entrypoint) => {
                return Err(FieldError::new(
                    "onstart",
                    "onstart runs only in the ssh and jupyter launch modes; in entrypoint mode the image's entrypoint runs",
                ))
            }
            (Some(s), _) if s.len() > MAX_ONSTART_BYTES => {
                return Err(FieldError::new("onstart", format!("the onstart script is longer than {MAX_ONSTART_BYTES} bytes")))
            }
            (Some(s), _) if s.contains('\0') => return Err(FieldError::new("onstart", "the onstart script holds a NUL byte")),
            (s, _) => s.clone(),
        };
        if mode != LaunchMode::Entrypoint {
            if req.entrypoint.is_some() {
                return Err(FieldError::new(
                    "entrypoint",
                    format!("--entrypoint applies to the entrypoint launch mode; in {} mode berth's init replaces the image's entrypoint: put your command in the onstart script", mode),
                ));
            }
            if req.args.is_some() {
                return Err(FieldError::new(
                    "args",
                    format!("--args applies to the entrypoint launch mode; in {} mode put your command in the onstart script", mode),
                ));
            }
        } else if req.direct == Some(true) {
            return Err(FieldError::new(
                "direct",
                "--direct applies to the ssh and jupyter launch modes",
            ));
        }
        let jupyter_dir = match (&req.jupyter_dir, mode) {
            (Some(_), m) if m != LaunchMode::Jupyter => {
                return Err(FieldError::new(
                    "jupyter_dir",
                    "--jupyter-dir applies to the jupyter launch mode",
                ))
            }
            (Some(d), _)
                if !d.starts_with('/')
                    || d.contains('\0')
                    || d.len() > 4096
                    || d.contains('\n') =>
            {
                return Err(FieldError::new(
                    "jupyter_dir",
                    format!("{d:?} is not an absolute path"),
                ))
            }
            (d, _) => d.clone(),
        };
        if req.jupyter_lab == Some(true) && mode != LaunchMode::Jupyter {
            return Err(FieldError::new(
                "jupyter_lab",
                "--jupyter-lab applies to the jupyter launch mode",
            ));
        }
        let gpus = req.gpus.unwrap_or(0);
        if gpus > MAX_GPUS {
            return Err(FieldError::new(
                "gpus",
                format!("at most {MAX_GPUS} GPUs an instance"),
            ));
        }

        Ok(InstanceSpec {
            image: image.to_string(),
            mode,
            entrypoint: req.entrypoint.clone(),
            args: req.args.clone(),
            env,
            ports,
            label,
            gpus,
            onstart,
            direct: req.direct.unwrap_or(false),
            jupyter_lab: req.jupyter_lab.unwrap_or(false),
            jupyter_dir,
            http_ports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(image: &str) -> CreateInstance {
        CreateInstance {
            image: image.into(),
            ..Default::default()
        }
    }

    #[test]
    fn request_env_wins_over_the_options_string() {
        let mut r = req("berth-test/busybox");
        r.docker_options = Some("-e A=from-options -e B=2 -p 8081:8081".into());
        r.env.insert("A".into(), "from-request".into());
        r.ports = vec!["7000/udp".into(), "8081".into()];
        let s = InstanceSpec::from_request(&r).unwrap();
        assert_eq!(s.env["A"], "from-request");
        assert_eq!(s.env["B"], "2");
        assert_eq!(
            s.ports,
            vec![
                PortSpec {
                    port: 7000,
                    proto: PortProto::Udp
                },
                PortSpec {
                    port: 8081,
                    proto: PortProto::Tcp
                }
            ]
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let check = |r: CreateInstance, field: &str| {
            let e = InstanceSpec::from_request(&r).expect_err(field);
            assert_eq!(e.field, field, "{e}");
        };
        check(req("Not Valid"), "image");
        let mut r = req("x");
        r.docker_options = Some("--rm".into());
        check(r, "docker_options");
        let mut r = req("x");
        r.entrypoint = Some("  ".into());
        check(r, "entrypoint");
        let mut r = req("x");
        r.ports = vec!["0".into()];
        check(r, "ports");
        let mut r = req("x");
        r.ports = (1..=65).map(|p| p.to_string()).collect();
        check(r, "ports");
        let mut r = req("x");
        r.env.insert("BIG".into(), "x".repeat(MAX_ENV_BYTES));
        check(r, "env");
        let mut r = req("x");
        r.env.insert("BERTH_INSTANCE_ID".into(), "7".into());
        check(r, "env");
        let mut r = req("x");
        r.docker_options = Some("-e PUBLIC_IPADDR=1.2.3.4".into());
        check(r, "docker_options");
        let mut r = req("x");
        r.env.insert("9x".into(), "1".into());
        check(r, "env");
        let mut r = req("x");
        r.label = Some("a\u{7}".into());
        check(r, "label");
        let mut r = req("x");
        r.gpus = Some(1000);
        check(r, "gpus");
        let mut r = req("x");
        r.onstart = Some("echo hi".into());
        check(r, "onstart");
        let mut r = req("x");
        r.mode = Some(LaunchMode::Ssh);
        r.entrypoint = Some("/bin/sh".into());
        check(r, "entrypoint");
        let mut r = req("x");
        r.mode = Some(LaunchMode::Ssh);
        r.args = Some(vec![]);
        check(r, "args");
        let mut r = req("x");
        r.mode = Some(LaunchMode::Ssh);
        r.onstart = Some("x".repeat(MAX_ONSTART_BYTES + 1));
        check(r, "onstart");
        let mut r = req("x");
        r.direct = Some(true);
        check(r, "direct");
        let mut r = req("x");
        r.mode = Some(LaunchMode::Jupyter);
        r.http_ports = vec![8080];
        check(r, "http_ports");
        let mut r = req("x");
        r.mode = Some(LaunchMode::Ssh);
        r.jupyter_lab = Some(true);
        check(r, "jupyter_lab");
        let mut r = req("x");
        r.mode = Some(LaunchMode::Jupyter);
        r.jupyter_dir = Some("relative/dir".into());
        check(r, "jupyter_dir");
    }

    #[test]
    fn scalars_given_as_off_are_the_defaults_in_every_mode() {
        // `false` given on purpose is not "--direct in entrypoint mode".
        let mut r = req("x");
        r.direct = Some(false);
        r.jupyter_lab = Some(false);
        r.gpus = Some(0);
        let s = InstanceSpec::from_request(&r).unwrap();
        assert_eq!((s.direct, s.jupyter_lab, s.gpus), (false, false, 0));
        assert_eq!(s, InstanceSpec::from_request(&req("x")).unwrap());
        let mut r = req("x");
        r.mode = Some(LaunchMode::Jupyter);
        r.direct = Some(true);
        r.jupyter_lab = Some(true);
        r.gpus = Some(MAX_GPUS);
        let s = InstanceSpec::from_request(&r).unwrap();
        assert_eq!((s.direct, s.jupyter_lab, s.gpus), (true, true, MAX_GPUS));
    }

    #[test]
    fn old_bodies_and_null_still_parse() {
        let r: CreateInstance =
            serde_json::from_str(r#"{"image":"x","gpus":2,"direct":false,"jupyter_lab":true}"#)
                .unwrap();
        assert_eq!(
            (r.gpus, r.direct, r.jupyter_lab),
            (Some(2), Some(false), Some(true))
        );
        let r: CreateInstance =
            serde_json::from_str(r#"{"image":"x","gpus":null,"direct":null}"#).unwrap();
        assert_eq!((r.gpus, r.direct, r.jupyter_lab), (None, None, None));
        for bad in [
            r#"{"image":"x","gpus":-1}"#,
            r#"{"image":"x","gpus":"1"}"#,
            r#"{"image":"x","direct":"yes"}"#,
        ] {
            assert!(
                serde_json::from_str::<CreateInstance>(bad).is_err(),
                "{bad}"
            );
        }
        // Not given is left out of the JSON; given 0/false is written.
        let text = serde_json::to_string(&req("x")).unwrap();
        assert!(!text.contains("gpus") && !text.contains("direct"), "{text}");
        let mut r = req("x");
        r.gpus = Some(0);
        r.direct = Some(false);
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""gpus":0"#), "{text}");
        assert!(text.contains(r#""direct":false"#), "{text}");
    }

    #[test]
    fn args_keep_every_byte() {
        let mut r = req("x");
        r.args = Some(vec!["a b".into(), "'q'".into(), "$HOME".into(), "".into()]);
        let s = InstanceSpec::from_request(&r).unwrap();
        assert_eq!(s.args.unwrap(), vec!["a b", "'q'", "$HOME", ""]);
    }
}
