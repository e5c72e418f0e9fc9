//! `/.berth/state/config.json`, written by berth's agent: which mode init runs.

use serde::Deserialize;
use std::path::Path;

/// The launch mode init serves. Unknown modes fail to parse (and so init fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Ssh,
}

/// The config file. Unknown fields are allowed: later modes add fields, and an older
/// init must not trip over them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub mode: Mode,
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
}
