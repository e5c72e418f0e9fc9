//! `/.berth/state/config.json`, written by berth's agent: which mode init runs, the Jupyter
//! settings of jupyter mode, and berth's current values of its own env vars.
//!
//! ```json
//! {"mode":"jupyter",
//!  "jupyter":{"lab":false,"dir":"/","port":8080,
//!             "certfile":"/.berth/state/tls.crt","keyfile":"/.berth/state/tls.key"},
//!  "env":{"PUBLIC_IPADDR":"203.0.113.7"}}
//! ```
//!
//! Every field but `mode` may be left out (the defaults are the values above, and no env);
//! unknown fields are allowed everywhere: later versions add fields, and an older init must
//! not trip over them.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The launch mode init serves. Unknown modes fail to parse (and so init fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// sshd, env for sessions, onstart.
    Ssh,
    /// Everything of ssh mode, plus a Jupyter server over TLS.
    Jupyter,
}

/// The config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub mode: Mode,
    /// Read in jupyter mode only (defaults when absent); ignored in ssh mode.
    #[serde(default)]
    pub jupyter: Jupyter,
    /// berth's current values of its own variables (e.g. `PUBLIC_IPADDR`, which changes
    /// when the host's public IP does). init sets them in its own environment before
    /// anything reads it, overriding the container's (Docker's) values.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// How Jupyter runs in jupyter mode.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Jupyter {
    /// `jupyter-lab` if true, else the classic `jupyter-notebook`.
    pub lab: bool,
    /// Jupyter's root directory (absolute, in the container); also its working directory.
    pub dir: PathBuf,
    /// The TCP port Jupyter listens on (all addresses).
    pub port: u16,
    /// PEM certificate (chain) Jupyter serves.
    pub certfile: PathBuf,
    /// PEM private key of `certfile`.
    pub keyfile: PathBuf,
}

/// Jupyter's port unless the config says otherwise.
pub const DEFAULT_JUPYTER_PORT: u16 = 8080;
/// Where the agent puts the instance's certificate.
pub const DEFAULT_CERTFILE: &str = "/.berth/state/tls.crt";
/// Where the agent puts the instance's private key.
pub const DEFAULT_KEYFILE: &str = "/.berth/state/tls.key";

impl Default for Jupyter {
    fn default() -> Self {
        Jupyter {
            lab: false,
            dir: PathBuf::from("/"),
            port: DEFAULT_JUPYTER_PORT,
            certfile: PathBuf::from(DEFAULT_CERTFILE),
            keyfile: PathBuf::from(DEFAULT_KEYFILE),
        }
    }
}

/// Parses config text.
pub fn parse(text: &str) -> Result<Config, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Reads and parses the file at `path`; the error says which file and why.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("bad {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ssh_and_allows_unknown_fields() {
        assert_eq!(parse(r#"{"mode":"ssh"}"#).unwrap().mode, Mode::Ssh);
        assert_eq!(
            parse(r#"{"mode":"ssh","later":{"x":1}}"#).unwrap().mode,
            Mode::Ssh
        );
    }

    #[test]
    fn refuses_unknown_or_missing_mode() {
        let e = parse(r#"{"mode":"teleport"}"#).unwrap_err();
        assert!(e.contains("teleport"), "{e}");
        assert!(parse("{}").unwrap_err().contains("mode"));
        assert!(parse("not json").is_err());
    }

    #[test]
    fn parses_the_agents_jupyter_config() {
        let c = parse(
            r#"{"mode":"jupyter","jupyter":{"lab":true,"dir":"/workspace","port":8888,
                "certfile":"/c.pem","keyfile":"/k.pem","later":1},
                "env":{"PUBLIC_IPADDR":"203.0.113.7","BERTH_TCP_PORT_22":"40022"},"later":[]}"#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Jupyter);
        assert_eq!(
            c.jupyter,
            Jupyter {
                lab: true,
                dir: PathBuf::from("/workspace"),
                port: 8888,
                certfile: PathBuf::from("/c.pem"),
                keyfile: PathBuf::from("/k.pem"),
            }
        );
        let env: Vec<(&str, &str)> = c
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("BERTH_TCP_PORT_22", "40022"),
                ("PUBLIC_IPADDR", "203.0.113.7")
            ]
        );
    }

    #[test]
    fn jupyter_fields_default_to_the_contract_values() {
        let want = Jupyter {
            lab: false,
            dir: PathBuf::from("/"),
            port: 8080,
            certfile: PathBuf::from("/.berth/state/tls.crt"),
            keyfile: PathBuf::from("/.berth/state/tls.key"),
        };
        let c = parse(r#"{"mode":"jupyter"}"#).unwrap();
        assert_eq!(c.jupyter, want);
        assert!(c.env.is_empty());
        let c = parse(r#"{"mode":"jupyter","jupyter":{"lab":true}}"#).unwrap();
        assert_eq!(
            c.jupyter,
            Jupyter {
                lab: true,
                ..want.clone()
            }
        );
        // The exact object the agent writes.
        let c = parse(
            r#"{"mode":"jupyter","jupyter":{"lab":false,"dir":"/","port":8080,"certfile":"/.berth/state/tls.crt","keyfile":"/.berth/state/tls.key"},"env":{"PUBLIC_IPADDR":"203.0.113.7"}}"#,
        )
        .unwrap();
        assert_eq!(c.jupyter, want);
    }

    #[test]
    fn env_is_read_in_ssh_mode_too_and_must_be_strings() {
        let c = parse(r#"{"mode":"ssh","env":{"PUBLIC_IPADDR":"198.51.100.1"}}"#).unwrap();
        assert_eq!(c.env["PUBLIC_IPADDR"], "198.51.100.1");
        let e = parse(r#"{"mode":"ssh","env":{"N":1}}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let e = parse(r#"{"mode":"jupyter","jupyter":{"port":70000}}"#).unwrap_err();
        assert!(e.contains("70000"), "{e}");
    }
}
