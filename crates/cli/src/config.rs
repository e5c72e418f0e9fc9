//! Where the CLI finds its server and API key.
//!
//! The file is JSON (`{"url": …, "api_key": …}`) at `$BERTH_CONFIG` if set, else
//! `$XDG_CONFIG_HOME/berth/config.json` (`~/.config/berth/config.json`). It is written
//! atomically (temporary file, then rename) with mode 0600. `BERTH_URL` and
//! `BERTH_API_KEY` override the file's values, each on its own.
use anyhow::{bail, Context, Result};
use berth_core::Secret;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const ENV_CONFIG: &str = "BERTH_CONFIG";
pub const ENV_URL: &str = "BERTH_URL";
pub const ENV_API_KEY: &str = "BERTH_API_KEY";

const NOT_LOGGED_IN: &str =
    "not logged in: run `berth login --url URL --api-key KEY` (or set BERTH_URL and BERTH_API_KEY)";

/// The server to talk to, and as whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub url: String,
    pub api_key: Secret,
}

/// Path of the config file: `$BERTH_CONFIG`, else under the XDG config home.
pub fn path() -> Result<PathBuf> {
    if let Some(p) = env_var(ENV_CONFIG) {
        return Ok(PathBuf::from(p));
    }
    let dir = dirs::config_dir()
        .context("cannot find the config directory (set HOME, XDG_CONFIG_HOME or BERTH_CONFIG)")?;
    Ok(dir.join("berth").join("config.json"))
}

/// The config file merged with the `BERTH_URL` / `BERTH_API_KEY` overrides (env wins).
pub fn load() -> Result<Config> {
    load_from(&path()?, env_var(ENV_URL), env_var(ENV_API_KEY))
}

/// [`load`] with the overrides given: the file may be missing if both are given.
pub fn load_from(
    path: &Path,
    url_override: Option<String>,
    key_override: Option<String>,
) -> Result<Config> {
    let file = match fs::read(path) {
        Ok(bytes) => Some(
            serde_json::from_slice::<Config>(&bytes)
                .with_context(|| format!("reading {}", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let (file_url, file_key) = match file {
        Some(c) => (Some(c.url), Some(c.api_key)),
        None => (None, None),
    };
    match (
        url_override.or(file_url),
        key_override.map(Secret::new).or(file_key),
    ) {
        (Some(url), Some(api_key)) => Ok(Config { url, api_key }),
        _ => bail!(NOT_LOGGED_IN),
    }
}

/// Only the server URL (`BERTH_URL`, else the config file's), for what needs no API key.
pub fn load_url() -> Result<String> {
    load_url_from(&path()?, env_var(ENV_URL))
}

/// [`load_url`] with the override given.
pub fn load_url_from(path: &Path, url_override: Option<String>) -> Result<String> {
    if let Some(url) = url_override {
        return Ok(url);
    }
    match fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice::<Config>(&bytes)
            .with_context(|| format!("reading {}", path.display()))?
            .url),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no berth URL: set BERTH_URL=http://HOST:PORT (or run `berth login --url URL --api-key KEY`)"
        ),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the config file (mode 0600, atomically); returns its path.
pub fn save(url: &str, api_key: &str) -> Result<PathBuf> {
    let path = path()?;
    save_to(&path, url, api_key)?;
    Ok(path)
}

/// [`save`] to a given path.
pub fn save_to(path: &Path, url: &str, api_key: &str) -> Result<()> {
    let config = Config {
        url: url.to_string(),
        api_key: Secret::new(api_key),
    };
    let mut json = serde_json::to_vec_pretty(&config)?;
    json.push(b'\n');
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .context("the config path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("writing {}", path.display()))
    })
}

/// An environment variable, unset when empty.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Tests (of any module) that touch the process environment take this first.
#[cfg(test)]
pub(crate) static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-cli-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn save_then_load_with_private_mode() {
        let dir = temp_dir("save");
        let p = dir.join("sub").join("config.json");
        save_to(&p, "http://127.0.0.1:7878", "k1").unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Overwriting keeps the mode and leaves no temporary file behind.
        save_to(&p, "http://h:1", "k2").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        let c = load_from(&p, None, None).unwrap();
        assert_eq!(c.url, "http://h:1");
        assert_eq!(c.api_key.expose(), "k2");
        assert!(!format!("{c:?}").contains("k2"), "Debug must hide the key");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn overrides_win_each_on_its_own() {
        let dir = temp_dir("overrides");
        let p = dir.join("config.json");
        let missing = load_from(&p, None, None).unwrap_err().to_string();
        assert!(
            missing.starts_with("not logged in: run `berth login"),
            "{missing}"
        );
        assert!(load_from(&p, Some("http://u".into()), None).is_err());
        let c = load_from(&p, Some("http://u".into()), Some("k".into())).unwrap();
        assert_eq!((c.url.as_str(), c.api_key.expose()), ("http://u", "k"));

        save_to(&p, "http://file", "filekey").unwrap();
        let c = load_from(&p, Some("http://env".into()), None).unwrap();
        assert_eq!(
            (c.url.as_str(), c.api_key.expose()),
            ("http://env", "filekey")
        );
        let c = load_from(&p, None, Some("envkey".into())).unwrap();
        assert_eq!(
            (c.url.as_str(), c.api_key.expose()),
            ("http://file", "envkey")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_url_alone_needs_no_key() {
        let dir = temp_dir("url-only");
        let p = dir.join("config.json");
        let missing = load_url_from(&p, None).unwrap_err().to_string();
        assert!(missing.contains("set BERTH_URL"), "{missing}");
        assert_eq!(
            load_url_from(&p, Some("http://env".into())).unwrap(),
            "http://env"
        );
        save_to(&p, "http://file", "filekey").unwrap();
        assert_eq!(load_url_from(&p, None).unwrap(), "http://file");
        assert_eq!(
            load_url_from(&p, Some("http://env".into())).unwrap(),
            "http://env"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_broken_file_is_named() {
        let dir = temp_dir("broken");
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.json");
        fs::write(&p, "{not json").unwrap();
        let e = format!("{:#}", load_from(&p, None, None).unwrap_err());
        assert!(e.contains("config.json"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn environment_is_honoured() {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = temp_dir("env");
        let p = dir.join("c.json");
        std::env::set_var(ENV_CONFIG, &p);
        std::env::remove_var(ENV_URL);
        std::env::remove_var(ENV_API_KEY);
        assert_eq!(path().unwrap(), p);
        assert!(load().is_err());
        assert_eq!(save("http://a:1", "key-a").unwrap(), p);
        assert_eq!(load().unwrap().url, "http://a:1");
        std::env::set_var(ENV_URL, "http://b:2");
        std::env::set_var(ENV_API_KEY, "");
        let c = load().unwrap();
        assert_eq!(
            (c.url.as_str(), c.api_key.expose()),
            ("http://b:2", "key-a")
        );
        std::env::set_var(ENV_API_KEY, "key-b");
        assert_eq!(load().unwrap().api_key.expose(), "key-b");
        for v in [ENV_CONFIG, ENV_URL, ENV_API_KEY] {
            std::env::remove_var(v);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
