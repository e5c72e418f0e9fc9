//! Bringing ssh (and Jupyter) up, before sshd starts: state dir and config, berth's env
//! values, the directories sshd needs, the environment for sessions, the host key, berth's
//! sshd config validated by the image's own sshd, and in jupyter mode what Jupyter needs.
//! Any error here is fatal: init writes `failed: <reason>` and exits 2.

use crate::config::{self, Mode};
use crate::env;
use crate::jupyter::{self, Jupyter};
use crate::log;
use crate::sshd::{self, ConfigInputs, SshdConfig, Verdict};
use crate::status;
use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The per-instance state directory, bind-mounted read-only: what the agent gives init.
pub const STATE_DIR: &str = "/.berth/state";
/// The per-instance run directory, bind-mounted read-write: what init writes.
pub const RUN_DIR: &str = "/.berth/run";
/// The host key, kept in the run dir so it survives stop/start.
pub const HOST_KEY: &str = "ssh_host_ed25519_key";
/// The authorized keys (state dir), kept current by the agent.
pub const AUTHORIZED_KEYS: &str = "authorized_keys";
/// berth's sshd config (run dir), written by init.
pub const SSHD_CONFIG: &str = "sshd_config";

/// Where init reads what the agent gives it, and where it writes.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub state: PathBuf,
    pub run: PathBuf,
}

impl Dirs {
    /// The real mount points in the container.
    pub fn container() -> Dirs {
        Dirs {
            state: PathBuf::from(STATE_DIR),
            run: PathBuf::from(RUN_DIR),
        }
    }
}

/// How to run berth's sshd once setup succeeded.
#[derive(Debug, Clone)]
pub struct Sshd {
    pub program: PathBuf,
    pub config: PathBuf,
}

impl Sshd {
    /// `sshd -D -e -f CONFIG`: in the foreground, logging to stderr (the container log).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null());
        crate::sys::unblock_signals_in_child(&mut cmd);
        cmd
    }
}

/// What setup found: how to run the services of the mode.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub sshd: Sshd,
    /// In jupyter mode.
    pub jupyter: Option<Jupyter>,
}

/// Everything before sshd starts, in order. The error is the `failed:` reason.
pub fn prepare(dirs: &Dirs) -> Result<Plan, String> {
    let (state_dir, run_dir) = (dirs.state.as_path(), dirs.run.as_path());
    for (dir, what) in [(state_dir, "state"), (run_dir, "run")] {
        if !dir.is_dir() {
            return Err(format!(
                "{} is missing: berth's agent mounts the instance's {what} directory there",
                dir.display()
            ));
        }
    }
    status::write(run_dir, "")
        .map_err(|e| format!("cannot write {}/status: {e}", run_dir.display()))?;
    let config = config::load(&state_dir.join("config.json"))?;
    match config.mode {
        Mode::Ssh => log!("mode ssh"),
        Mode::Jupyter => log!(
            "mode jupyter ({}, port {}, dir {})",
            jupyter::program_name(config.jupyter.lab),
            config.jupyter.port,
            config.jupyter.dir.display()
        ),
    }
    // berth's current values first: everything below reads the environment.
    let (set, skipped) = env::apply_overrides(&config.env);
    if !set.is_empty() {
        log!("env from berth (over the container's): {}", set.join(", "));
    }
    for (name, why) in skipped {
        log!("env var {name:?} from berth not set: {why}");
    }
    make_dirs()?;

    let session = env::session_env(std::env::vars_os());
    if !session.left_out.is_empty() {
        let list: Vec<String> = session
            .left_out
            .iter()
            .map(|(n, why)| format!("{n} ({why})"))
            .collect();
        log!("env vars left out of ssh sessions: {}", list.join(", "));
    }
    if !session.login_only.is_empty() {
        let names: Vec<&str> = session.login_only.iter().map(|(n, _)| n.as_str()).collect();
        log!(
            "env vars with a line break reach login shells (ssh sessions with a shell, su -, \
             tmux) through {} but not `ssh HOST CMD` (sshd's SetEnv takes one line): {}",
            env::PROFILE_SCRIPT,
            names.join(", ")
        );
    }
    let mut profile = session.vars.clone();
    profile.extend(session.login_only.iter().cloned());
    profile.sort();
    if let Err(e) = write_profile(&profile) {
        log!(
            "cannot write {}: {e} (ssh sessions still get the env through sshd)",
            env::PROFILE_SCRIPT
        );
    }

    let root = Path::new("/");
    let path_env = std::env::var_os("PATH");
    let program = sshd::find_program(root, &sshd::SSHD_PATHS, "sshd", path_env.as_deref())
        .ok_or_else(|| {
            format!(
                "the image has no OpenSSH server (sshd): looked in {}, and PATH; install \
                 openssh-server or use the entrypoint launch mode",
                sshd::SSHD_PATHS.join(", ")
            )
        })?;
    log!("sshd: {}", program.display());

    let host_key = run_dir.join(HOST_KEY);
    ensure_host_key(&host_key, path_env.as_deref())?;

    let sftp = sshd::find_sftp_server(root);
    let authorized_keys = state_dir.join(AUTHORIZED_KEYS);
    let sshd_config = SshdConfig::new(&ConfigInputs {
        host_key: &host_key,
        authorized_keys: &authorized_keys,
        sftp_server: &sftp,
        env: &session.vars,
    });
    let config_path = run_dir.join(SSHD_CONFIG);
    validate(&program, sshd_config, &config_path)?;
    let sshd = Sshd {
        program,
        config: config_path,
    };

    let jupyter = match config.mode {
        Mode::Ssh => None,
        Mode::Jupyter => {
            let j = Jupyter::prepare(root, &config.jupyter)?;
            log!("jupyter: {} {}", j.program.display(), j.args.join(" "));
            Some(j)
        }
    };
    Ok(Plan {
        mode: config.mode,
        sshd,
        jupyter,
    })
}

/// The directories sshd and sessions need; only the privilege separation dir is vital.
fn make_dirs() -> Result<(), String> {
    let privsep = Path::new(sshd::PRIVSEP_DIR);
    fs::create_dir_all(privsep)
        .and_then(|()| fs::set_permissions(privsep, fs::Permissions::from_mode(0o755)))
        .map_err(|e| format!("cannot make sshd's directory {}: {e}", privsep.display()))?;
    if let Err(e) = fs::create_dir_all("/var/log") {
        log!("cannot make /var/log: {e}");
    }
    if !Path::new("/root").exists() {
        if let Err(e) = DirBuilder::new().mode(0o700).create("/root") {
            log!("cannot make /root: {e}");
        }
    }
    Ok(())
}

/// Writes the profile script (through a temp file, so a login never reads half of it).
fn write_profile(vars: &[(String, String)]) -> std::io::Result<()> {
    let path = Path::new(env::PROFILE_SCRIPT);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("sh.berth-tmp");
    fs::write(&tmp, env::profile_script(vars))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
    fs::rename(&tmp, path)
}

/// Generates the host key with the image's ssh-keygen, unless the state dir has one.
fn ensure_host_key(key: &Path, path_env: Option<&std::ffi::OsStr>) -> Result<(), String> {
    if key.exists() {
        log!("host key: {} (kept)", key.display());
        return Ok(());
    }
    let keygen = sshd::find_program(
        Path::new("/"),
        &sshd::SSH_KEYGEN_PATHS,
        "ssh-keygen",
        path_env,
    )
    .ok_or_else(|| {
        format!(
            "the image has no ssh-keygen to make the host key: looked in {}, and PATH; \
             install the OpenSSH client tools",
            sshd::SSH_KEYGEN_PATHS.join(", ")
        )
    })?;
    // A stale public half would make ssh-keygen ask questions.
    let _ = fs::remove_file(key.with_extension("pub"));
    let out = Command::new(&keygen)
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "berth-instance",
            "-f",
        ])
        .arg(key)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", keygen.display()))?;
    if !out.status.success() || !key.exists() {
        let _ = fs::remove_file(key);
        return Err(format!(
            "{} could not make the host key ({}): {}",
            keygen.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    log!("host key: {} (new)", key.display());
    Ok(())
}

/// Writes the config and checks it with `sshd -t`, dropping the options this sshd does
/// not take (bounded); the error is why it cannot be used.
fn validate(program: &Path, mut config: SshdConfig, path: &Path) -> Result<(), String> {
    for _ in 0..sshd::MAX_VALIDATION_ROUNDS {
        fs::write(path, config.render())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let out = Command::new(program)
            .arg("-t")
            .arg("-f")
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match sshd::judge(&config, out.status.success(), &text) {
            Verdict::Accepted => {
                log!("sshd accepts {}", path.display());
                return Ok(());
            }
            Verdict::Drop(keywords) => {
                for k in &keywords {
                    let n = config.drop_keyword(k);
                    log!("the image's sshd does not take {k}: dropped {n} line(s) of it from berth's config");
                }
                log!("sshd -t said: {}", text.trim().replace('\n', " / "));
            }
            Verdict::Rejected(reason) => return Err(reason),
        }
    }
    Err(format!(
        "the image's sshd still rejects berth's config after dropping options {} times",
        sshd::MAX_VALIDATION_ROUNDS
    ))
}
