//! The agent's side of the ssh and jupyter launch modes: the instance's directories on the
//! host, its authorized keys kept current, the health check (an SSH banner on the mapped
//! port) and what init reports back.
//!
//! Two directories per instance (see `berth_launch::STATE_IN_CONTAINER` and
//! `RUN_IN_CONTAINER`): the agent writes the state directory, which the container sees
//! read-only, so nothing in it can aim the agent's writes elsewhere; init writes the run
//! directory, which the agent only reads, as the container's word: never through a symlink,
//! only regular files, and never more than a bound.
use berth_core::protocol::DesiredInstance;
use std::io::{Read, Seek, Write};
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
const ONSTART_LOG: &str = "onstart.log";
/// Jupyter's internal port.
pub const JUPYTER_PORT: u16 = 8080;
/// The most of init's status file that is read.
const MAX_STATUS: u64 = 4096;
/// The most of the host key file that is read, and the most keys taken from it.
const MAX_HOST_KEYS_FILE: u64 = 16 * 1024;
const MAX_HOST_KEYS: usize = 4;

/// An instance's two directories on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Written by the agent; read-only in the container.
    pub state: PathBuf,
    /// Written by init in the container; read by the agent with care.
    pub run: PathBuf,
}

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
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Creates or updates the instance's directories: in the state directory what init reads
/// on start: config.json (mode, jupyter settings, berth's current variables),
/// authorized_keys, onstart.sh and, for jupyter, the TLS certificate and key. Files are
/// rewritten only when they change.
pub fn prepare(dirs: &Dirs, d: &DesiredInstance, public_ip: &str) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for dir in [&dirs.state, &dirs.run] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    let dir = &dirs.state;
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

/// Rewrites authorized_keys (in the state dir) if it differs from `keys`; sshd reads it at
/// each login.
pub fn sync_keys(state: &Path, keys: &[String]) -> std::io::Result<bool> {
    let mut want = keys.join("\n");
    if !want.is_empty() {
        want.push('\n');
    }
    write_if_changed(state, AUTHORIZED_KEYS, want.as_bytes(), 0o644)
}

/// Reads at most `max` bytes from `offset` of `dir/name`, a file the container writes and
/// may have replaced by anything: only a regular file is read, and never through a symlink
/// (nor does a FIFO block the agent). `Ok(None)`: there is no such file. Also returns the
/// file's length.
pub fn read_untrusted(
    dir: &Path,
    name: &str,
    offset: u64,
    max: u64,
) -> std::io::Result<Option<(Vec<u8>, u64)>> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(std::io::Error::other(format!(
                "{} is a symbolic link: not read",
                path.display()
            )))
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file: not read",
            path.display()
        )));
    }
    let len = meta.len();
    let mut data = Vec::new();
    if offset < len {
        f.seek(std::io::SeekFrom::Start(offset))?;
        f.take(max.min(len - offset)).read_to_end(&mut data)?;
    }
    Ok(Some((data, len)))
}

/// What init wrote of its start: `Err(reason)` if it failed.
pub fn status(run: &Path) -> Result<(), String> {
    match read_untrusted(run, STATUS, 0, MAX_STATUS) {
        Ok(Some((data, _))) => {
            let s = String::from_utf8_lossy(&data);
            match s.trim().strip_prefix("failed: ") {
                Some(reason) => Err(reason.to_string()),
                None => Ok(()),
            }
        }
        Ok(None) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read init's status");
            Ok(())
        }
    }
}

/// The instance's SSH host public keys, once init has made them: only well-formed public
/// keys, as `TYPE BASE64` (they go into users' known_hosts files).
pub fn host_keys(run: &Path) -> Vec<String> {
    let data = match read_untrusted(run, HOST_KEY_PUB, 0, MAX_HOST_KEYS_FILE) {
        Ok(Some((data, _))) => data,
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the instance's host key");
            return Vec::new();
        }
    };
    String::from_utf8_lossy(&data)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| berth_core::ssh_key::parse(l).ok())
        .map(|k| {
            let mut f = k.line.split_whitespace();
            format!("{} {}", f.next().unwrap_or(""), f.next().unwrap_or(""))
        })
        .take(MAX_HOST_KEYS)
        .collect()
}

/// Reads the onstart log (in the run dir) from `offset`, at most `max` bytes; also its
/// length. Empty, of length 0, while there is none.
pub fn read_onstart_log(run: &Path, offset: u64, max: u64) -> std::io::Result<(Vec<u8>, u64)> {
    Ok(read_untrusted(run, ONSTART_LOG, offset, max)?.unwrap_or_default())
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
        let root = std::env::temp_dir().join(format!("berth-ssh-state-{}", std::process::id()));
        let dirs = Dirs {
            state: root.join("state"),
            run: root.join("run"),
        };
        let dir = &dirs.state;
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
        prepare(&dirs, &d, "10.0.0.1").unwrap();
        assert!(dirs.run.is_dir());
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
            !sync_keys(dir, &["ssh-ed25519 AAAA a".into()]).unwrap(),
            "unchanged keys are not rewritten"
        );
        assert!(sync_keys(dir, &[]).unwrap());
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
        prepare(&dirs, &d, "10.0.0.2").unwrap();
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

        let run = &dirs.run;
        assert_eq!(status(run), Ok(()));
        std::fs::write(run.join(STATUS), "failed: no sshd\n").unwrap();
        assert_eq!(status(run), Err("no sshd".into()));
        std::fs::write(
            run.join(HOST_KEY_PUB),
            format!("{HOST_KEY} berth-instance\n"),
        )
        .unwrap();
        assert_eq!(host_keys(run), vec![HOST_KEY]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A real ed25519 public key (type and body).
    const HOST_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINJltUidJvFOwaNaqDBgav78C/GxY9YweoTc0HYIwd4T";

    /// What the container writes in the run dir cannot make the agent read elsewhere,
    /// block, read without bound, or put anything but keys into known_hosts.
    #[test]
    fn the_run_dir_is_read_as_the_containers_word() {
        let root = std::env::temp_dir().join(format!("berth-ssh-run-{}", std::process::id()));
        let run = root.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let secret = root.join("secret");
        std::fs::write(&secret, "failed: HOST SECRET\n").unwrap();

        for name in [STATUS, HOST_KEY_PUB, ONSTART_LOG] {
            std::os::unix::fs::symlink(&secret, run.join(name)).unwrap();
        }
        assert_eq!(status(&run), Ok(()), "a symlinked status is not believed");
        assert!(host_keys(&run).is_empty());
        let e = read_onstart_log(&run, 0, 1024).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");

        for name in [STATUS, HOST_KEY_PUB, ONSTART_LOG] {
            std::fs::remove_file(run.join(name)).unwrap();
        }
        let fifo = std::process::Command::new("mkfifo")
            .arg(run.join(ONSTART_LOG))
            .status()
            .unwrap();
        assert!(fifo.success());
        let e = read_onstart_log(&run, 0, 1024).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::remove_file(run.join(ONSTART_LOG)).unwrap();
        assert_eq!(read_onstart_log(&run, 0, 1024).unwrap(), (Vec::new(), 0));

        std::fs::write(run.join(ONSTART_LOG), "0123456789").unwrap();
        assert_eq!(
            read_onstart_log(&run, 3, 4).unwrap(),
            (b"3456".to_vec(), 10),
            "reads are bounded and start where asked"
        );
        assert_eq!(read_onstart_log(&run, 12, 4).unwrap(), (Vec::new(), 10));

        std::fs::write(
            run.join(HOST_KEY_PUB),
            format!("@cert-authority * {HOST_KEY}\nnot a key\n{HOST_KEY} comment with spaces\n"),
        )
        .unwrap();
        assert_eq!(host_keys(&run), vec![HOST_KEY], "only well-formed keys");
        std::fs::write(run.join(STATUS), "x".repeat(10_000_000)).unwrap();
        assert_eq!(status(&run), Ok(()));
        std::fs::remove_dir_all(&root).unwrap();
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
