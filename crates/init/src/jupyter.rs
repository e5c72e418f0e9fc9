//! Jupyter in jupyter mode: checking what it needs before anything starts, finding the
//! image's `jupyter-notebook` or `jupyter-lab`, its command line, and the readiness probe.
//!
//! The token reaches Jupyter only through the environment (`JUPYTER_TOKEN`, which both the
//! classic notebook ≥ 5 and jupyter_server honour): never on its command line (visible in
//! `ps`) and never in a log line of init's. Jupyter masks a token it was given that way in
//! its own log (`?token=...`).
//!
//! The command line is the same for the classic notebook 6.x (`NotebookApp`) and for
//! jupyter_server 2.x (`ServerApp`: JupyterLab 4, notebook 7): both know `--ip`, `--port`,
//! `--port-retries`, `--certfile`, `--keyfile`, `--notebook-dir` (jupyter_server maps it to
//! `root_dir`), `--no-browser` and `--allow-root`, so no detection of which one it is.

use crate::config;
use crate::sshd::{is_executable, under};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The env var that carries the token.
pub const TOKEN_VAR: &str = "JUPYTER_TOKEN";

/// Where images put Jupyter, looked at in this order after PATH.
pub const SEARCH_DIRS: [&str; 6] = [
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
    "/opt/conda/bin",
    "/root/.local/bin",
    "/usr/local/sbin",
];

/// The program for `lab`: `jupyter-lab` or `jupyter-notebook`.
pub fn program_name(lab: bool) -> &'static str {
    if lab {
        "jupyter-lab"
    } else {
        "jupyter-notebook"
    }
}

/// The `failed:` reason when the image lacks the program asked for.
pub fn missing_reason(lab: bool) -> String {
    if lab {
        "the image has no JupyterLab (jupyter-lab): install jupyterlab, or leave out \
         --jupyter-lab"
            .to_string()
    } else {
        "the image has no Jupyter Notebook (jupyter-notebook): install notebook, or add \
         --jupyter-lab if the image has JupyterLab"
            .to_string()
    }
}

/// Finds `name` in the image at `root`: in PATH's absolute directories first (the image's
/// venv or conda env, as the image means it), then in [`SEARCH_DIRS`]. Returns the in-image
/// path.
pub fn find(root: &Path, name: &str, path_env: Option<&OsStr>) -> Option<PathBuf> {
    let from_path: Vec<PathBuf> = path_env
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(SEARCH_DIRS.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(&under(root, p)))
}

/// Jupyter's arguments (no token: that goes through the environment).
pub fn args(cfg: &config::Jupyter) -> Vec<String> {
    vec![
        "--ip=0.0.0.0".to_string(),
        format!("--port={}", cfg.port),
        // A busy port is an error (restarted with backoff), not a silent move to a port
        // nobody maps.
        "--port-retries=0".to_string(),
        "--no-browser".to_string(),
        "--allow-root".to_string(),
        format!("--certfile={}", cfg.certfile.display()),
        format!("--keyfile={}", cfg.keyfile.display()),
        format!("--notebook-dir={}", cfg.dir.display()),
    ]
}

/// Checks, in the image at `root`, what Jupyter needs besides its program: the token, the
/// root dir, the certificate and key. The error is the `failed:` reason.
pub fn check(root: &Path, cfg: &config::Jupyter, token: Option<&OsStr>) -> Result<(), String> {
    if token.is_none_or(|t| t.is_empty()) {
        return Err(format!(
            "{TOKEN_VAR} is not set: berth's agent sets it in jupyter mode (Jupyter would \
             make up a token nobody knows)"
        ));
    }
    let dir = &cfg.dir;
    if !dir.is_absolute() {
        return Err(format!(
            "jupyter dir {} is not an absolute path",
            dir.display()
        ));
    }
    match under(root, dir).metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "jupyter dir {} does not exist in the container",
                dir.display()
            ))
        }
        Err(e) => return Err(format!("cannot use jupyter dir {}: {e}", dir.display())),
        Ok(m) if !m.is_dir() => {
            return Err(format!(
                "jupyter dir {} is not a directory in the container",
                dir.display()
            ))
        }
        Ok(_) => {}
    }
    for (what, path) in [
        ("TLS certificate (certfile)", &cfg.certfile),
        ("TLS private key (keyfile)", &cfg.keyfile),
    ] {
        let real = under(root, path);
        match std::fs::File::open(&real).and_then(|f| f.metadata()) {
            Ok(m) if m.is_file() && m.len() > 0 => {}
            Ok(_) => {
                return Err(format!(
                    "Jupyter's {what} {} is empty or not a file",
                    path.display()
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "Jupyter's {what} {} is missing: berth's agent writes it before the \
                     container starts",
                    path.display()
                ))
            }
            Err(e) => {
                return Err(format!(
                    "cannot read Jupyter's {what} {}: {e}",
                    path.display()
                ))
            }
        }
    }
    Ok(())
}

/// How to run Jupyter once setup succeeded.
#[derive(Debug, Clone)]
pub struct Jupyter {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub dir: PathBuf,
    pub port: u16,
    /// Set `HOME=/root` for Jupyter (init's environment has no HOME).
    pub set_home: bool,
}

impl Jupyter {
    /// Checks everything and finds the program in the image at `root` (`/` for real), with
    /// init's environment as it is now (`JUPYTER_TOKEN`, `PATH`, `HOME`).
    pub fn prepare(root: &Path, cfg: &config::Jupyter) -> Result<Jupyter, String> {
        check(root, cfg, std::env::var_os(TOKEN_VAR).as_deref())?;
        let name = program_name(cfg.lab);
        let path_env = std::env::var_os("PATH");
        let program = find(root, name, path_env.as_deref()).ok_or_else(|| {
            crate::log!(
                "no executable {name} in PATH ({}) nor in {}",
                path_env.as_deref().unwrap_or_default().to_string_lossy(),
                SEARCH_DIRS.join(", ")
            );
            missing_reason(cfg.lab)
        })?;
        Ok(Jupyter {
            program,
            args: args(cfg),
            dir: cfg.dir.clone(),
            port: cfg.port,
            set_home: std::env::var_os("HOME").is_none(),
        })
    }

    /// The command: in `dir`, stdin from /dev/null, stdout and stderr as init's (the
    /// container log), the token from the inherited environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        if self.set_home {
            cmd.env("HOME", "/root");
        }
        crate::sys::unblock_signals_in_child(&mut cmd);
        cmd
    }

    /// The address readiness is probed on.
    pub fn probe_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// A TLS ClientHello (TLS 1.2 and 1.3, common suites, groups and signature algorithms, an
/// X25519 key share). Only its answer's first bytes are read.
pub fn client_hello() -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    fn u16_list(items: &[u16]) -> Vec<u8> {
        let mut out = ((items.len() * 2) as u16).to_be_bytes().to_vec();
        for i in items {
            out.extend_from_slice(&i.to_be_bytes());
        }
        out
    }
    let suites = u16_list(&[
        0x1301, 0x1302, 0x1303, // TLS 1.3 AEADs
        0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, // ECDHE with GCM / ChaCha20
        0x009e, 0x009f, // DHE-RSA with GCM
    ]);
    let mut exts = Vec::new();
    ext(&mut exts, 0x000a, &u16_list(&[0x001d, 0x0017, 0x0018])); // supported_groups
    ext(&mut exts, 0x000b, &[1, 0]); // ec_point_formats: uncompressed
    ext(
        &mut exts,
        0x000d, // signature_algorithms
        &u16_list(&[
            0x0804, 0x0805, 0x0806, 0x0403, 0x0503, 0x0603, 0x0807, 0x0401, 0x0501, 0x0601,
        ]),
    );
    ext(&mut exts, 0x002b, &[4, 0x03, 0x04, 0x03, 0x03]); // supported_versions
                                                          // key_share: X25519's base point (the public key of the private key 1), so a TLS 1.3
                                                          // server answers with its ServerHello at once (with no share, OpenSSL's server fails
                                                          // the handshake and Jupyter logs an "SSL Error" line per probe).
    let mut share = vec![0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 9];
    share.extend_from_slice(&[0; 31]);
    ext(&mut exts, 0x0033, &share);
    let mut body = vec![0x03, 0x03]; // legacy_version TLS 1.2
    body.extend((0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5a)); // random
    body.push(0); // no session id
    body.extend_from_slice(&suites);
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![0x01]; // ClientHello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Does a TLS server answer on `addr`? Sends a ClientHello and waits up to `timeout` for a
/// TLS record back (a handshake record, or an alert: either way the server's event loop
/// is serving). A bare TCP accept is not enough: Jupyter binds its port before it loads
/// its extensions and starts serving, and connections queue unanswered meanwhile.
pub fn answers_tls(addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    if s.set_read_timeout(Some(timeout)).is_err()
        || s.set_write_timeout(Some(timeout)).is_err()
        || s.write_all(&client_hello()).is_err()
    {
        return false;
    }
    let mut head = [0u8; 2];
    match s.read_exact(&mut head) {
        Ok(()) => matches!(head, [0x16 | 0x15, 0x03]),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Child;
    use std::time::Instant;

    fn fake_root(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-init-jupyter-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn put(root: &Path, path: &str, mode: u32) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn argv_has_every_option_and_no_token() {
        let cfg = config::Jupyter {
            lab: false,
            dir: PathBuf::from("/work space"),
            port: 8080,
            certfile: PathBuf::from("/.berth/state/tls.crt"),
            keyfile: PathBuf::from("/.berth/state/tls.key"),
        };
        assert_eq!(
            args(&cfg),
            vec![
                "--ip=0.0.0.0",
                "--port=8080",
                "--port-retries=0",
                "--no-browser",
                "--allow-root",
                "--certfile=/.berth/state/tls.crt",
                "--keyfile=/.berth/state/tls.key",
                "--notebook-dir=/work space",
            ]
        );
        assert!(args(&cfg).iter().all(|a| !a.contains("token")));
        assert_eq!(program_name(true), "jupyter-lab");
        assert_eq!(program_name(false), "jupyter-notebook");
    }

    #[test]
    fn missing_reasons_name_the_program_and_the_fix() {
        assert_eq!(
            missing_reason(true),
            "the image has no JupyterLab (jupyter-lab): install jupyterlab, or leave out \
             --jupyter-lab"
        );
        assert!(missing_reason(false)
            .starts_with("the image has no Jupyter Notebook (jupyter-notebook): install notebook"));
    }

    #[test]
    fn find_looks_in_path_first_then_common_places() {
        let root = fake_root("find");
        let path = OsStr::new("relative/bin:/opt/venv/bin:/usr/bin");
        assert_eq!(find(&root, "jupyter-lab", Some(path)), None);
        put(&root, "/opt/conda/bin/jupyter-lab", 0o755);
        assert_eq!(
            find(&root, "jupyter-lab", Some(path)),
            Some(PathBuf::from("/opt/conda/bin/jupyter-lab"))
        );
        assert_eq!(
            find(&root, "jupyter-lab", None),
            Some(PathBuf::from("/opt/conda/bin/jupyter-lab"))
        );
        put(&root, "/usr/local/bin/jupyter-lab", 0o755);
        assert_eq!(
            find(&root, "jupyter-lab", Some(path)),
            Some(PathBuf::from("/usr/local/bin/jupyter-lab"))
        );
        // PATH wins over the common places, in PATH's order.
        put(&root, "/usr/bin/jupyter-lab", 0o755);
        assert_eq!(
            find(&root, "jupyter-lab", Some(path)),
            Some(PathBuf::from("/usr/bin/jupyter-lab"))
        );
        put(&root, "/opt/venv/bin/jupyter-lab", 0o755);
        assert_eq!(
            find(&root, "jupyter-lab", Some(path)),
            Some(PathBuf::from("/opt/venv/bin/jupyter-lab"))
        );
        // Not executable, or a directory: skipped; a relative PATH entry is never used.
        put(&root, "/opt/venv/bin/jupyter-lab", 0o644);
        fs::create_dir_all(root.join("relative/bin/jupyter-notebook")).unwrap();
        put(&root, "/usr/bin/jupyter-notebook", 0o600);
        assert_eq!(
            find(&root, "jupyter-lab", Some(path)),
            Some(PathBuf::from("/usr/bin/jupyter-lab"))
        );
        assert_eq!(find(&root, "jupyter-notebook", Some(path)), None);
        fs::remove_dir_all(&root).unwrap();
    }

    fn cfg(root: &Path) -> config::Jupyter {
        put(root, "/.berth/state/tls.crt", 0o644);
        put(root, "/.berth/state/tls.key", 0o600);
        fs::create_dir_all(root.join("workspace")).unwrap();
        config::Jupyter {
            dir: PathBuf::from("/workspace"),
            ..config::Jupyter::default()
        }
    }

    #[test]
    fn check_names_what_is_missing() {
        let root = fake_root("check");
        let good = cfg(&root);
        let token = Some(OsStr::new("t0ken"));
        assert_eq!(check(&root, &good, token), Ok(()));

        let e = check(&root, &good, None).unwrap_err();
        assert!(e.starts_with("JUPYTER_TOKEN is not set"), "{e}");
        let e = check(&root, &good, Some(OsStr::new(""))).unwrap_err();
        assert!(e.starts_with("JUPYTER_TOKEN is not set"), "{e}");

        let with_dir = |d: &str| config::Jupyter {
            dir: PathBuf::from(d),
            ..good.clone()
        };
        assert_eq!(
            check(&root, &with_dir("/nope"), token).unwrap_err(),
            "jupyter dir /nope does not exist in the container"
        );
        assert_eq!(
            check(&root, &with_dir("/.berth/state/tls.crt"), token).unwrap_err(),
            "jupyter dir /.berth/state/tls.crt is not a directory in the container"
        );
        assert_eq!(
            check(&root, &with_dir("workspace"), token).unwrap_err(),
            "jupyter dir workspace is not an absolute path"
        );

        let no_cert = config::Jupyter {
            certfile: PathBuf::from("/.berth/state/none.crt"),
            ..good.clone()
        };
        assert_eq!(
            check(&root, &no_cert, token).unwrap_err(),
            "Jupyter's TLS certificate (certfile) /.berth/state/none.crt is missing: \
             berth's agent writes it before the container starts"
        );
        let no_key = config::Jupyter {
            keyfile: PathBuf::from("/.berth/state/none.key"),
            ..good.clone()
        };
        assert_eq!(
            check(&root, &no_key, token).unwrap_err(),
            "Jupyter's TLS private key (keyfile) /.berth/state/none.key is missing: \
             berth's agent writes it before the container starts"
        );
        fs::write(root.join(".berth/state/tls.key"), "").unwrap();
        assert_eq!(
            check(&root, &good, token).unwrap_err(),
            "Jupyter's TLS private key (keyfile) /.berth/state/tls.key is empty or not a file"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn command_runs_in_dir_with_home_and_no_token_argument() {
        let j = Jupyter {
            program: PathBuf::from("/usr/bin/jupyter-notebook"),
            args: args(&config::Jupyter::default()),
            dir: PathBuf::from("/"),
            port: 8080,
            set_home: true,
        };
        let cmd = j.command();
        assert_eq!(cmd.get_program(), "/usr/bin/jupyter-notebook");
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/")));
        let envs: Vec<_> = cmd.get_envs().collect();
        assert_eq!(envs, vec![(OsStr::new("HOME"), Some(OsStr::new("/root")))]);
        assert_eq!(cmd.get_args().count(), 8);
        let j = Jupyter {
            set_home: false,
            ..j
        };
        assert_eq!(j.command().get_envs().count(), 0);
        assert_eq!(j.probe_addr(), "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn client_hello_lengths_add_up() {
        let h = client_hello();
        assert_eq!(&h[..3], &[0x16, 0x03, 0x01]);
        let record_len = u16::from_be_bytes([h[3], h[4]]) as usize;
        assert_eq!(record_len, h.len() - 5);
        assert_eq!(h[5], 0x01);
        let hs_len = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
        assert_eq!(hs_len, h.len() - 9);
    }

    /// `openssl s_server` with a fresh self-signed certificate: the real TLS stack Jupyter
    /// uses (Python's ssl is OpenSSL too) answers the probe.
    struct Server {
        child: Child,
        dir: PathBuf,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn s_server(tls1_2_only: bool) -> (Server, u16) {
        let dir = fake_root("tls");
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(dir.join("k.pem"))
            .arg("-out")
            .arg(dir.join("c.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the openssl CLI runs (the tests need it)")
            .success();
        assert!(ok, "openssl req failed");
        let port = free_port();
        let mut cmd = Command::new("openssl");
        cmd.args(["s_server", "-quiet", "-accept", &port.to_string(), "-cert"])
            .arg(dir.join("c.pem"))
            .arg("-key")
            .arg(dir.join("k.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if tls1_2_only {
            cmd.arg("-tls1_2");
        }
        let child = cmd.spawn().expect("openssl s_server starts");
        (Server { child, dir }, port)
    }

    #[test]
    fn probe_sees_a_real_tls_server() {
        for tls1_2_only in [false, true] {
            let (_server, port) = s_server(tls1_2_only);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !answers_tls(addr, Duration::from_millis(500)) {
                assert!(
                    Instant::now() < deadline,
                    "no TLS answer from s_server (tls1_2_only {tls1_2_only})"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    #[test]
    fn probe_refuses_closed_silent_and_plain_ports() {
        let t = Duration::from_millis(300);
        // Closed.
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        assert!(!answers_tls(addr, t));
        // Bound and listening, but nobody accepts (Jupyter between bind and serving).
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!answers_tls(silent.local_addr().unwrap(), t));
        // Answers, but not TLS.
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = plain.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = plain.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        });
        assert!(!answers_tls(addr, t));
        server.join().unwrap();
    }
}
