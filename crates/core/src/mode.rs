//! The three launch modes (DESIGN.md §1).
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How an instance's container is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMode {
    /// The image runs as `docker run IMAGE` would run it.
    #[default]
    Entrypoint,
    /// berth's init replaces the entrypoint, runs sshd and the onstart script.
    Ssh,
    /// ssh mode plus Jupyter on internal port 8080 over HTTPS.
    Jupyter,
}

impl LaunchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchMode::Entrypoint => "entrypoint",
            LaunchMode::Ssh => "ssh",
            LaunchMode::Jupyter => "jupyter",
        }
    }
}

impl fmt::Display for LaunchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LaunchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "entrypoint" => Ok(LaunchMode::Entrypoint),
            "ssh" => Ok(LaunchMode::Ssh),
            "jupyter" => Ok(LaunchMode::Jupyter),
            other => Err(format!(
                "unknown launch mode {other:?} (expected entrypoint, ssh or jupyter)"
            )),
        }
    }
}
