//! The image's OpenSSH server run on berth's own config: finding `sshd`, `sftp-server` and
//! `ssh-keygen` in the image, rendering the config, and reading `sshd -t` complaints to
//! drop the options an older sshd does not know.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where images put sshd, looked at in this order before PATH.
pub const SSHD_PATHS: [&str; 4] = [
    "/usr/sbin/sshd",
    "/usr/bin/sshd",
    "/sbin/sshd",
    "/usr/local/sbin/sshd",
];

/// Where images put ssh-keygen, looked at in this order before PATH.
pub const SSH_KEYGEN_PATHS: [&str; 4] = [
    "/usr/bin/ssh-keygen",
    "/bin/ssh-keygen",
    "/usr/local/bin/ssh-keygen",
    "/usr/sbin/ssh-keygen",
];

/// Where images put the sftp server; without one, sshd's built-in `internal-sftp` serves.
pub const SFTP_SERVER_PATHS: [&str; 4] = [
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
];

/// sshd's own sftp implementation, used when the image has no sftp-server binary.
pub const INTERNAL_SFTP: &str = "internal-sftp";

/// The pid file of berth's sshd (not the image's default, so the two cannot collide).
pub const PID_FILE: &str = "/run/berth-sshd.pid";

/// The privilege separation directory sshd insists on.
pub const PRIVSEP_DIR: &str = "/run/sshd";

/// Options that make berth's sshd what it promises (port, keys, key-only auth). If sshd
/// rejects one of these, berth's init fails rather than run an sshd that differs.
pub const ESSENTIAL: [&str; 6] = [
    "Port",
    "HostKey",
    "PermitRootLogin",
    "PubkeyAuthentication",
    "PasswordAuthentication",
    "AuthorizedKeysFile",
];

/// How many times a config is retried after dropping options sshd rejected.
pub const MAX_VALIDATION_ROUNDS: usize = 8;

/// Is `path` an executable regular file (following symlinks)?
pub fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `root` joined with the absolute in-image path `path` (`root` is `/` for real; a fake
/// image root in tests).
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Finds `name` in the image at `root`: the first executable of `candidates`, else the first
/// executable `name` in an absolute directory of `path_env`. Returns the in-image path.
pub fn find_program(
    root: &Path,
    candidates: &[&str],
    name: &str,
    path_env: Option<&OsStr>,
) -> Option<PathBuf> {
    let from_candidates = candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| is_executable(&under(root, p)));
    from_candidates.or_else(|| {
        std::env::split_paths(path_env?)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(name))
            .find(|p| is_executable(&under(root, p)))
    })
}

/// The sftp subsystem command for the image at `root`.
pub fn find_sftp_server(root: &Path) -> String {
    find_program(root, &SFTP_SERVER_PATHS, "sftp-server", None)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| INTERNAL_SFTP.to_string())
}

/// What berth's sshd config is made of.
#[derive(Debug, Clone)]
pub struct ConfigInputs<'a> {
    pub host_key: &'a Path,
    pub authorized_keys: &'a Path,
    pub sftp_server: &'a str,
    /// Already filtered (see [`crate::env::session_env`]); all on one SetEnv line.
    pub env: &'a [(String, String)],
}

/// One `Keyword value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLine {
    pub keyword: String,
    pub value: String,
}

/// berth's own sshd config. It includes nothing from `/etc/ssh`, so the image's
/// `sshd_config` cannot change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdConfig {
    lines: Vec<ConfigLine>,
}

const HEADER: &str = "# berth's sshd config, written by berth-init at every container start.\n\
                      # It includes nothing from /etc/ssh; edits here are overwritten.\n";

impl SshdConfig {
    pub fn new(inputs: &ConfigInputs<'_>) -> Self {
        let mut lines = Vec::new();
        let mut add = |k: &str, v: &str| {
            lines.push(ConfigLine {
                keyword: k.to_string(),
                value: v.to_string(),
            })
        };
        add("Port", "22");
        add("HostKey", &inputs.host_key.display().to_string());
        add("PidFile", PID_FILE);
        add("PermitRootLogin", "prohibit-password");
        add("PubkeyAuthentication", "yes");
        add("PasswordAuthentication", "no");
        add("KbdInteractiveAuthentication", "no");
        add("ChallengeResponseAuthentication", "no");
        add("UsePAM", "no");
        add(
            "AuthorizedKeysFile",
            &inputs.authorized_keys.display().to_string(),
        );
        // The state dir is a bind mount of a host directory: its owner and modes are the
        // host's business.
        add("StrictModes", "no");
        add("AllowTcpForwarding", "yes");
        add("AllowStreamLocalForwarding", "yes");
        add("GatewayPorts", "no");
        add("X11Forwarding", "no");
        add("PrintMotd", "no");
        add("PrintLastLog", "no");
        add("ClientAliveInterval", "30");
        add("ClientAliveCountMax", "6");
        // Every connection reaches sshd from one address, the Docker bridge's gateway (the
        // port mapping, the proxy's tunnel, the agent's health check): OpenSSH 9.8+'s
        // per-source penalties would soon lock every user out. (Older sshd do not know the
        // option; validation drops it.)
        add("PerSourcePenalties", "no");
        add("Subsystem", &format!("sftp {}", inputs.sftp_server));
        // sshd takes only the FIRST SetEnv line, so every variable goes on one line.
        if !inputs.env.is_empty() {
            let args: Vec<String> = inputs
                .env
                .iter()
                .map(|(n, v)| crate::env::setenv_arg(n, v))
                .collect();
            add("SetEnv", &args.join(" "));
        }
        SshdConfig { lines }
    }

    pub fn lines(&self) -> &[ConfigLine] {
        &self.lines
    }

    /// The file text.
    pub fn render(&self) -> String {
        let mut out = String::from(HEADER);
        for l in &self.lines {
            out.push_str(&l.keyword);
            out.push(' ');
            out.push_str(&l.value);
            out.push('\n');
        }
        out
    }

    /// The keyword on line `n` (1-based) of [`render`](Self::render)'s text.
    pub fn keyword_at_line(&self, n: usize) -> Option<&str> {
        let header = HEADER.lines().count();
        let i = n.checked_sub(header + 1)?;
        self.lines.get(i).map(|l| l.keyword.as_str())
    }

    /// Removes every line of `keyword` (case-insensitive, as sshd reads keywords); returns
    /// how many there were.
    pub fn drop_keyword(&mut self, keyword: &str) -> usize {
        let before = self.lines.len();
        self.lines
            .retain(|l| !l.keyword.eq_ignore_ascii_case(keyword));
        before - self.lines.len()
    }
}

/// What to do after an `sshd -t` run.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// sshd takes the config as it is.
    Accepted,
    /// Drop these keywords (as written in the config) and test again.
    Drop(Vec<String>),
    /// No way to make sshd take it: the reason.
    Rejected(String),
}

/// The option word after `marker` in `line`, if there.
fn word_after<'l>(line: &'l str, marker: &str) -> Option<&'l str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let word = rest
        .split_whitespace()
        .next()?
        .trim_matches(|c: char| !c.is_ascii_alphanumeric());
    (!word.is_empty()).then_some(word)
}

/// The `line N:` number in an sshd message.
fn line_number(line: &str) -> Option<usize> {
    let rest = &line[line.find("line ")? + 5..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Reads the output of `sshd -t -f CONFIG` (`ok`: its exit status was 0). sshd names an
/// option it does not know ("Bad configuration option: X"), was built without
/// ("Unsupported option X") or has retired ("Deprecated option X"); those are dropped and
/// the test repeated, the latter two even though sshd only warns about them. Any other
/// failure that points at one of our lines (`line N:`) drops that line's option. An
/// essential option is never dropped: that is a rejection.
pub fn judge(config: &SshdConfig, ok: bool, output: &str) -> Verdict {
    const MARKERS: [&str; 3] = [
        "Bad configuration option:",
        "Unsupported option",
        "Deprecated option",
    ];
    let mut drop: Vec<String> = Vec::new();
    let mut push = |kw: &str| {
        // Map to the keyword as we wrote it, if it is one of ours.
        let ours = config
            .lines
            .iter()
            .find(|l| l.keyword.eq_ignore_ascii_case(kw))
            .map(|l| l.keyword.clone());
        if let Some(k) = ours {
            if !drop.contains(&k) {
                drop.push(k);
            }
        }
    };
    for line in output.lines() {
        if let Some(word) = MARKERS.iter().find_map(|m| word_after(line, m)) {
            push(word);
        } else if !ok {
            if let Some(kw) = line_number(line).and_then(|n| config.keyword_at_line(n)) {
                push(kw);
            }
        }
    }
    let summary = || {
        let text: Vec<&str> = output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(5)
            .collect();
        if text.is_empty() {
            "no output".to_string()
        } else {
            text.join(" / ")
        }
    };
    if let Some(essential) = drop
        .iter()
        .find(|k| ESSENTIAL.iter().any(|e| e.eq_ignore_ascii_case(k)))
    {
        return Verdict::Rejected(format!(
            "the image's sshd does not accept the {essential} option berth needs: {}",
            summary()
        ));
    }
    if !drop.is_empty() {
        return Verdict::Drop(drop);
    }
    if ok {
        Verdict::Accepted
    } else {
        Verdict::Rejected(format!(
            "the image's sshd rejects berth's config: {}",
            summary()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn inputs<'a>(env: &'a [(String, String)]) -> ConfigInputs<'a> {
        ConfigInputs {
            host_key: Path::new("/.berth/run/ssh_host_ed25519_key"),
            authorized_keys: Path::new("/.berth/state/authorized_keys"),
            sftp_server: "/usr/lib/openssh/sftp-server",
            env,
        }
    }

    #[test]
    fn config_renders_berths_options_and_no_include() {
        let env = vec![
            ("BERTH_INSTANCE_ID".to_string(), "i-1".to_string()),
            ("Q".to_string(), "a \"b\"".to_string()),
        ];
        let text = SshdConfig::new(&inputs(&env)).render();
        for want in [
            "\nPort 22\n",
            "\nHostKey /.berth/run/ssh_host_ed25519_key\n",
            "\nPidFile /run/berth-sshd.pid\n",
            "\nPermitRootLogin prohibit-password\n",
            "\nPubkeyAuthentication yes\n",
            "\nPasswordAuthentication no\n",
            "\nKbdInteractiveAuthentication no\n",
            "\nChallengeResponseAuthentication no\n",
            "\nUsePAM no\n",
            "\nAuthorizedKeysFile /.berth/state/authorized_keys\n",
            "\nStrictModes no\n",
            "\nAllowTcpForwarding yes\n",
            "\nAllowStreamLocalForwarding yes\n",
            "\nGatewayPorts no\n",
            "\nX11Forwarding no\n",
            "\nPrintMotd no\n",
            "\nPrintLastLog no\n",
            "\nClientAliveInterval 30\n",
            "\nClientAliveCountMax 6\n",
            "\nPerSourcePenalties no\n",
            "\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
            "\nSetEnv BERTH_INSTANCE_ID=\"i-1\" Q=\"a \\\"b\\\"\"\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(!line.to_ascii_lowercase().starts_with("include"), "{line}");
            assert!(!line.contains("/etc/ssh"), "{line}");
        }
    }

    #[test]
    fn keyword_at_line_counts_the_header() {
        let c = SshdConfig::new(&inputs(&[]));
        let text = c.render();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            match c.keyword_at_line(n) {
                Some(k) => assert!(line.starts_with(&format!("{k} ")), "line {n}: {line}"),
                None => assert!(line.starts_with('#'), "line {n}: {line}"),
            }
        }
        assert_eq!(c.keyword_at_line(0), None);
        assert_eq!(c.keyword_at_line(1000), None);
    }

    #[test]
    fn drop_keyword_is_case_insensitive_and_removes_all() {
        let env = vec![("A".into(), "1".into()), ("B".into(), "2".into())];
        let mut c = SshdConfig::new(&inputs(&env));
        assert_eq!(
            c.drop_keyword("setenv"),
            1,
            "all variables are on one SetEnv line"
        );
        assert_eq!(c.drop_keyword("SetEnv"), 0);
        assert_eq!(c.drop_keyword("subsystem"), 1);
        assert_eq!(c.drop_keyword("Subsystem"), 0);
        assert!(!c.render().contains("SetEnv"));
    }

    #[test]
    fn judge_drops_bad_and_unsupported_options() {
        let env = vec![("A".into(), "1".into())];
        let c = SshdConfig::new(&inputs(&env));
        // OpenSSH 7.4 style: unknown keywords are fatal.
        let out = "/.berth/run/sshd_config: line 9: Bad configuration option: KbdInteractiveAuthentication\n\
                   /.berth/run/sshd_config: line 25: Bad configuration option: SetEnv\n\
                   /.berth/run/sshd_config: terminating, 2 bad configuration options\n";
        assert_eq!(
            judge(&c, false, out),
            Verdict::Drop(vec!["KbdInteractiveAuthentication".into(), "SetEnv".into()])
        );
        // Built without PAM: a warning, exit 0, still dropped to keep the log clean.
        let out = "/.berth/run/sshd_config line 11: Unsupported option UsePAM\n";
        assert_eq!(judge(&c, true, out), Verdict::Drop(vec!["UsePAM".into()]));
        let out =
            "/.berth/run/sshd_config line 10: Deprecated option ChallengeResponseAuthentication\n";
        assert_eq!(
            judge(&c, true, out),
            Verdict::Drop(vec!["ChallengeResponseAuthentication".into()])
        );
    }

    #[test]
    fn judge_drops_by_line_number_when_no_option_is_named() {
        let env = vec![("A".into(), "1".into())];
        let c = SshdConfig::new(&inputs(&env));
        let n = c
            .render()
            .lines()
            .position(|l| l.starts_with("SetEnv"))
            .unwrap()
            + 1;
        let out = format!("/.berth/run/sshd_config line {n}: Invalid environment.\n");
        assert_eq!(judge(&c, false, &out), Verdict::Drop(vec!["SetEnv".into()]));
    }

    #[test]
    fn judge_never_drops_essential_options() {
        let c = SshdConfig::new(&inputs(&[]));
        let out = "/x: line 6: Bad configuration option: PermitRootLogin\n";
        match judge(&c, false, out) {
            Verdict::Rejected(r) => assert!(r.contains("PermitRootLogin"), "{r}"),
            v => panic!("{v:?}"),
        }
        let n = c
            .render()
            .lines()
            .position(|l| l.starts_with("Port "))
            .unwrap()
            + 1;
        let out = format!("/x line {n}: Badly formatted port number.\n");
        assert!(matches!(judge(&c, false, &out), Verdict::Rejected(_)));
    }

    #[test]
    fn judge_accepts_clean_output_and_rejects_unexplained_failures() {
        let c = SshdConfig::new(&inputs(&[]));
        assert_eq!(judge(&c, true, ""), Verdict::Accepted);
        // An option not in our config is not ours to drop.
        assert_eq!(
            judge(&c, true, "x line 3: Deprecated option Protocol\n"),
            Verdict::Accepted
        );
        match judge(&c, false, "Privilege separation user sshd does not exist\n") {
            Verdict::Rejected(r) => {
                assert!(r.contains("Privilege separation user sshd"), "{r}")
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(judge(&c, false, ""), Verdict::Rejected(r) if r.contains("no output")));
    }

    fn fake_root() -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-init-root-{}-{}",
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
    fn find_sshd_in_order_then_path() {
        let root = fake_root();
        let path = OsStr::new("relative/bin:/opt/ssh/bin:/usr/local/bin");
        assert_eq!(find_program(&root, &SSHD_PATHS, "sshd", Some(path)), None);
        put(&root, "/opt/ssh/bin/sshd", 0o755);
        assert_eq!(
            find_program(&root, &SSHD_PATHS, "sshd", Some(path)),
            Some(PathBuf::from("/opt/ssh/bin/sshd"))
        );
        put(&root, "/usr/local/sbin/sshd", 0o755);
        assert_eq!(
            find_program(&root, &SSHD_PATHS, "sshd", Some(path)),
            Some(PathBuf::from("/usr/local/sbin/sshd"))
        );
        // Not executable: skipped.
        put(&root, "/usr/sbin/sshd", 0o644);
        assert_eq!(
            find_program(&root, &SSHD_PATHS, "sshd", None),
            Some(PathBuf::from("/usr/local/sbin/sshd"))
        );
        put(&root, "/usr/sbin/sshd", 0o700);
        assert_eq!(
            find_program(&root, &SSHD_PATHS, "sshd", None),
            Some(PathBuf::from("/usr/sbin/sshd"))
        );
        // A directory named sshd is no program.
        let root2 = fake_root();
        fs::create_dir_all(root2.join("usr/sbin/sshd")).unwrap();
        assert_eq!(find_program(&root2, &SSHD_PATHS, "sshd", None), None);
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&root2).unwrap();
    }

    #[test]
    fn find_sftp_server_falls_back_to_internal_sftp() {
        let root = fake_root();
        assert_eq!(find_sftp_server(&root), "internal-sftp");
        put(&root, "/usr/libexec/sftp-server", 0o755);
        assert_eq!(find_sftp_server(&root), "/usr/libexec/sftp-server");
        put(&root, "/usr/libexec/openssh/sftp-server", 0o755);
        assert_eq!(find_sftp_server(&root), "/usr/libexec/openssh/sftp-server");
        fs::remove_dir_all(&root).unwrap();
    }
}
