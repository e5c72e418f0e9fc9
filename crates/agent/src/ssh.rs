//! The agent's side of the ssh launch mode: the instance's state directory on the host
//! (bind-mounted at `/.berth/state` for berth's init), its authorized keys kept current,
//! the health check (an SSH banner on the mapped port) and what init reports back.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONFIG: &str = "config.json";
const AUTHORIZED_KEYS: &str = "authorized_keys";
const ONSTART: &str = "onstart.sh";
const STATUS: &str = "status";
const HOST_KEY_PUB: &str = "ssh_host_ed25519_key.pub";
pub const ONSTART_LOG: &str = "onstart.log";

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

/// Creates the state directory with what init reads on start.
pub fn prepare(
    dir: &Path,
    mode: berth_core::LaunchMode,
    onstart: Option<&str>,
    keys: &[String],
) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let config = serde_json::json!({ "mode": mode.as_str() }).to_string();
    write_atomic(dir, CONFIG, config.as_bytes(), 0o644)?;
    sync_keys(dir, keys)?;
    match onstart {
        Some(script) => write_atomic(dir, ONSTART, script.as_bytes(), 0o755)?,
        None => match std::fs::remove_file(dir.join(ONSTART)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
    }
    Ok(())
}

/// Rewrites authorized_keys if it differs from `keys`; sshd reads it at each login.
pub fn sync_keys(dir: &Path, keys: &[String]) -> std::io::Result<bool> {
    let mut want = keys.join("\n");
    if !want.is_empty() {
        want.push('\n');
    }
    if std::fs::read(dir.join(AUTHORIZED_KEYS)).ok().as_deref() == Some(want.as_bytes()) {
        return Ok(false);
    }
    write_atomic(dir, AUTHORIZED_KEYS, want.as_bytes(), 0o644)?;
    Ok(true)
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
        let dir = std::env::temp_dir().join(format!("berth-ssh-state-{}", std::process::id()));
        prepare(
            &dir,
            berth_core::LaunchMode::Ssh,
            Some("echo hi\n"),
            &["ssh-ed25519 AAAA a".into()],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(CONFIG)).unwrap(),
            r#"{"mode":"ssh"}"#
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
        prepare(&dir, berth_core::LaunchMode::Ssh, None, &[]).unwrap();
        assert!(!dir.join(ONSTART).exists());
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
