//! The agent's side of the ssh and jupyter launch modes: the instance's state directory on the host
//! (bind-mounted at `/.berth/state` for berth's init), its authorized keys kept current,
//! the health check (an SSH banner on the mapped port) and what init reports back.
use berth_core::protocol::DesiredInstance;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONFIG: &str = "config.json";
const AUTHORIZED_KEYS: &str = "authorized_keys";
const ONSTART: &str = "onstart.sh";
const STATUS: &str = "status";
const HOST_KEY_PUB: &str = "ssh_host_ed25519_key.pub";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
pub const ONSTART_LOG: &str = "onstart.log";
/// Jupyter's internal port.
pub const JUPYTER_PORT: u16 = 8080;

/// Writes `contents` to `dir/name` atomically (a rename inside the directory, so a bind
/// mount of the directory sees either the old or the new file).
fn write_atomic(dir: &Path, name: &str, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Creates or updates the state directory with what init reads on start: config.json
/// (mode, jupyter settings, berth's current variables), authorized_keys, onstart.sh and,
/// for jupyter, the TLS certificate and key. Files are rewritten only when they change.
pub fn prepare(dir: &Path, d: &DesiredInstance, public_ip: &str) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let mut config = serde_json::json!({
        "mode": d.spec.mode.as_str(),
        "env": { "PUBLIC_IPADDR": public_ip },
    });
    if let Some(j) = &d.jupyter {
        config["jupyter"] = serde_json::json!({
            "lab": d.spec.jupyter_lab,
            "dir": d.spec.jupyter_dir.as_deref().unwrap_or("/"),
            "port": JUPYTER_PORT,
            "certfile": format!("{}/{TLS_CERT}", berth_launch::STATE_IN_CONTAINER),
            "keyfile": format!("{}/{TLS_KEY}", berth_launch::STATE_IN_CONTAINER),
        });
        write_if_changed(dir, TLS_CERT, j.cert_pem.as_bytes(), 0o644)?;
        write_if_changed(dir, TLS_KEY, j.key_pem.as_bytes(), 0o600)?;
    }
    write_if_changed(dir, CONFIG, config.to_string().as_bytes(), 0o644)?;
    sync_keys(dir, &d.ssh_keys)?;
    match &d.spec.onstart {
        Some(script) => write_if_changed(dir, ONSTART, script.as_bytes(), 0o755)?,
        None => match std::fs::remove_file(dir.join(ONSTART)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => false,
        },
    };
    Ok(())
}

fn write_if_changed(dir: &Path, name: &str, contents: &[u8], mode: u32) -> std::io::Result<bool> {
    if std::fs::read(dir.join(name)).ok().as_deref() == Some(contents) {
        return Ok(false);
    }
    write_atomic(dir, name, contents, mode)?;
    Ok(true)
}

/// Rewrites authorized_keys if it differs from `keys`; sshd reads it at each login.
pub fn sync_keys(dir: &Path, keys: &[String]) -> std::io::Result<bool> {
    let mut want = keys.join("\n");
    if !want.is_empty() {
        want.push('\n');
    }
    write_if_changed(dir, AUTHORIZED_KEYS, want.as_bytes(), 0o644)
}

/// What init wrote of its start: `Err(reason)` if it failed.
pub fn status(dir: &Path) -> Result<(), String> {
    match std::fs::read_to_string(dir.join(STATUS)) {
        Ok(s) => match s.trim().strip_prefix("failed: ") {
            Some(reason) => Err(reason.to_string()),
            None => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// The instance's SSH host public keys, once init has made them.
pub fn host_keys(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(HOST_KEY_PUB))
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

pub fn onstart_log(dir: &Path) -> PathBuf {
    dir.join(ONSTART_LOG)
}

/// True once an SSH server greets on `port` of this host: the real health of ssh mode.
pub async fn answers(port: u16) -> bool {
    tokio::task::spawn_blocking(move || {
        banner(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
    })
    .await
    .unwrap_or(false)
}

fn banner(addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while got.len() < 255 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"SSH-") && got.contains(&b'\n') {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_round_trip() {
        use berth_core::protocol::{JupyterMaterial, RunState};
        let dir = std::env::temp_dir().join(format!("berth-ssh-state-{}", std::process::id()));
        let mut d = DesiredInstance {
            id: 1,
            spec: berth_core::InstanceSpec {
                mode: berth_core::LaunchMode::Ssh,
                onstart: Some("echo hi\n".into()),
                ..Default::default()
            },
            run: RunState::Stopped,
            ssh_keys: vec!["ssh-ed25519 AAAA a".into()],
            jupyter: None,
        };
        prepare(&dir, &d, "10.0.0.1").unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG)).unwrap()).unwrap();
        assert_eq!(
            config,
            serde_json::json!({"mode": "ssh", "env": {"PUBLIC_IPADDR": "10.0.0.1"}})
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(AUTHORIZED_KEYS)).unwrap(),
            "ssh-ed25519 AAAA a\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(ONSTART)).unwrap(),
            "echo hi\n"
        );
        assert!(
            !sync_keys(&dir, &["ssh-ed25519 AAAA a".into()]).unwrap(),
            "unchanged keys are not rewritten"
        );
        assert!(sync_keys(&dir, &[]).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join(AUTHORIZED_KEYS)).unwrap(),
            ""
        );

        d.spec.mode = berth_core::LaunchMode::Jupyter;
        d.spec.onstart = None;
        d.spec.jupyter_lab = true;
        d.jupyter = Some(JupyterMaterial {
            token: "t".into(),
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        });
        prepare(&dir, &d, "10.0.0.2").unwrap();
        assert!(!dir.join(ONSTART).exists());
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG)).unwrap()).unwrap();
        assert_eq!(config["jupyter"]["lab"], true);
        assert_eq!(config["jupyter"]["dir"], "/");
        assert_eq!(config["jupyter"]["certfile"], "/.berth/state/tls.crt");
        assert_eq!(config["env"]["PUBLIC_IPADDR"], "10.0.0.2");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dir.join(TLS_KEY))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(dir.join(TLS_CERT)).unwrap(), "CERT");
        assert!(
            !config.to_string().contains("token"),
            "the token goes in the env, not config.json"
        );

        assert_eq!(status(&dir), Ok(()));
        std::fs::write(dir.join(STATUS), "failed: no sshd\n").unwrap();
        assert_eq!(status(&dir), Err("no sshd".into()));
        std::fs::write(
            dir.join(HOST_KEY_PUB),
            "ssh-ed25519 AAAAkey berth-instance\n",
        )
        .unwrap();
        assert_eq!(host_keys(&dir), vec!["ssh-ed25519 AAAAkey berth-instance"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn banner_check_needs_a_real_greeting() {
        let quiet = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = quiet.local_addr().unwrap();
        assert!(
            !banner(addr, Duration::from_millis(200)),
            "a silent port is not sshd"
        );
        let greeter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = greeter.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = greeter.accept().unwrap();
            s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        });
        assert!(banner(addr, Duration::from_secs(2)));
    }
}
