//! Connecting to ssh and jupyter instances with the system OpenSSH client: the argv of
//! `berth ssh` and `berth scp`, the `Host` entries of `berth ssh-config`, and berth's own
//! known_hosts file.
//!
//! An instance has up to two SSH endpoints: direct (its host's public IP and the port 22 is
//! mapped to, on a host with open ports) and through the proxy (`proxy_ssh`). `berth ssh`
//! and `berth scp` take the direct one when it answers, else the proxy (see
//! [`crate::route`]).
//!
//! Host keys are pinned per instance, not per address or path: every connection names the
//! instance with `HostKeyAlias=berth-i<ID>` and reads berth's known_hosts file (`known_hosts` beside
//! the CLI config file), which holds the host keys the server reports for each instance. So
//! strict host key checking stays on, a host port reused by another instance never looks
//! like a changed key, an instance keeps its keys across stop/start, and the direct and the
//! proxy paths check the same keys.
//!
//! Everything here but [`write_known_hosts`] and [`known_hosts_path`] is pure.
use crate::config;
use crate::route::{self, Addr, NoRoute, Route, Want};
use anyhow::{bail, Context, Result};
use berth_core::api::Instance;
use berth_core::{InstanceState, LaunchMode, PortProto};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// sshd's port inside the container.
pub const SSH_PORT: u16 = 22;

/// The first line `berth ssh-config` prints.
pub const SSH_CONFIG_HEADER: &str =
    "# berth instances — add to ~/.ssh/config (or Include this file); VS Code Remote-SSH reads it";

/// The known_hosts name of an instance: `berth-i12`.
pub fn host_key_alias(id: i64) -> String {
    format!("berth-i{id}")
}

/// The `Host` name `berth ssh-config` gives an instance: `berth-12` (directly when it can,
/// else through the proxy).
pub fn host_alias(id: i64) -> String {
    format!("berth-{id}")
}

/// The `Host` name `berth ssh-config` gives the way through the proxy: `berth-12-proxy`.
pub fn proxy_host_alias(id: i64) -> String {
    format!("berth-{id}-proxy")
}

/// Whether berth runs sshd in this instance.
pub fn runs_sshd(i: &Instance) -> bool {
    matches!(i.mode, LaunchMode::Ssh | LaunchMode::Jupyter)
}

/// The host port that internal 22/tcp is mapped to for direct connections, if any: a
/// loopback-only mapping (`local`, on a host without open ports) does not count.
pub fn direct_port(i: &Instance) -> Option<u16> {
    i.ports
        .iter()
        .find(|p| p.internal == SSH_PORT && p.proto == PortProto::Tcp && !p.local)
        .map(|p| p.external)
}

/// Where an instance's sshd answers directly: its host's public IP and the non-local port
/// 22/tcp is mapped to.
pub fn direct_addr(i: &Instance) -> Option<Addr> {
    let port = direct_port(i).filter(|_| !i.public_ip.is_empty())?;
    Some(Addr {
        host: i.public_ip.clone(),
        port,
    })
}

/// Where an instance's sshd answers through the proxy: `proxy_ssh` read as `HOST:PORT`.
/// Errors (one line) when the server's value cannot be read.
pub fn proxy_addr(i: &Instance) -> Result<Option<Addr>> {
    i.proxy_ssh
        .as_deref()
        .map(|s| {
            Addr::parse(s).with_context(|| format!("the proxy SSH address of instance {}", i.id))
        })
        .transpose()
}

/// Both ways to an instance's sshd: directly and through the proxy, each if it has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: i64,
    pub direct: Option<Addr>,
    pub proxy: Option<Addr>,
}

/// One way to an instance's sshd, chosen: `root@HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: i64,
    pub route: Route,
    pub addr: Addr,
}

impl Endpoint {
    /// The SSH endpoints of an ssh or jupyter instance, whatever its state. Errors (one
    /// line) for an entrypoint instance or an unreadable proxy address.
    pub fn of(i: &Instance) -> Result<Endpoint> {
        if !runs_sshd(i) {
            bail!(
                "instance {} runs in {} mode: berth runs no sshd there",
                i.id,
                i.mode
            );
        }
        Ok(Endpoint {
            id: i.id,
            direct: direct_addr(i),
            proxy: proxy_addr(i)?,
        })
    }

    /// The way `want` names, or the direct one when there is one and the proxy otherwise
    /// (what `ssh-url` and `ssh-config` show: no probe).
    pub fn preferred(&self, want: Want) -> Result<Target> {
        self.choose(want, |_| true)
    }

    /// The way to connect: see [`route::pick`]; `answers` tells whether an SSH server
    /// answers at an address (see [`route::ssh_answers`]), and is asked only when both ways
    /// exist and `want` is [`Want::Auto`].
    pub fn choose(&self, want: Want, mut answers: impl FnMut(&Addr) -> bool) -> Result<Target> {
        let picked = route::pick(
            self.direct.is_some(),
            self.proxy.is_some(),
            want,
            |r| match (r, &self.direct, &self.proxy) {
                (Route::Direct, Some(a), _) | (Route::Proxy, _, Some(a)) => answers(a),
                _ => false,
            },
        );
        let id = self.id;
        let route = match picked {
            Ok(r) => r,
            Err(NoRoute::NoDirect) => {
                bail!("instance {id} has no direct SSH endpoint (its host has no open ports)")
            }
            Err(NoRoute::NoProxy) => {
                bail!("instance {id} has no proxy SSH endpoint: this deployment has no proxy")
            }
            Err(NoRoute::NoEndpoint) => bail!(
                "instance {id} has no SSH endpoint: its host has no open ports and this deployment has no proxy"
            ),
            Err(NoRoute::NeitherAnswers) => bail!(
                "instance {id}: neither the direct endpoint {} nor the proxy {} answers",
                self.direct.as_ref().expect("both exist"),
                self.proxy.as_ref().expect("both exist"),
            ),
        };
        let addr = match route {
            Route::Direct => self.direct.clone(),
            Route::Proxy => self.proxy.clone(),
        }
        .expect("pick chooses a way that exists");
        Ok(Target { id, route, addr })
    }
}

impl Target {
    /// `ssh://root@HOST:PORT` (an IPv6 address in brackets).
    pub fn url(&self) -> String {
        format!("ssh://root@{}", self.addr)
    }

    /// `root@HOST`, ssh's destination.
    pub fn destination(&self) -> String {
        format!("root@{}", self.addr.host)
    }

    /// `root@HOST:PATH`, scp's remote side (an IPv6 address in brackets).
    pub fn scp_target(&self, path: &str) -> String {
        format!("root@{}:{path}", self.addr.bracketed_host())
    }
}

/// The endpoints of an instance one can connect to now: [`Endpoint::of`], and the
/// instance is running or connecting and has reported its host keys.
pub fn connectable(i: &Instance) -> Result<Endpoint> {
    let ep = Endpoint::of(i)?;
    if !matches!(i.state, InstanceState::Running | InstanceState::Connecting) {
        bail!("instance {} is {}", i.id, crate::output::state(i));
    }
    if known_host_lines(i).is_empty() {
        bail!(
            "instance {} has not reported its SSH host keys yet: try again in a moment",
            i.id
        );
    }
    Ok(ep)
}

/// Options every berth connection carries: pin the instance's host keys by alias in
/// berth's known_hosts file (`known_hosts` is already a config value, see
/// [`config_path_value`]).
fn pinning_options(id: i64, known_hosts: &str) -> Vec<String> {
    [
        format!("HostKeyAlias={}", host_key_alias(id)),
        format!("UserKnownHostsFile={known_hosts}"),
        "StrictHostKeyChecking=yes".to_string(),
        "LogLevel=ERROR".to_string(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .collect()
}

/// The user's `-i` and `-o`, first: ssh keeps the first value it reads for an option, so
/// the user's win over berth's.
fn user_options(identity: Option<&str>, options: &[String]) -> Vec<String> {
    let mut argv = Vec::new();
    if let Some(i) = identity {
        argv.extend(["-i".to_string(), i.to_string()]);
    }
    for o in options {
        argv.extend(["-o".to_string(), o.clone()]);
    }
    argv
}

/// The arguments of `ssh` (without `ssh` itself) for `berth ssh`:
/// `[-i ID] [-o OPT]… -o HostKeyAlias=berth-iN -o UserKnownHostsFile=KH
/// -o StrictHostKeyChecking=yes -o LogLevel=ERROR -p PORT -- root@IP [CMD…]`.
/// The `--` before the destination keeps ssh from reading command words as its options;
/// ssh joins the command words with spaces for the remote shell, as always.
pub fn ssh_argv(
    target: &Target,
    known_hosts: &str,
    identity: Option<&str>,
    options: &[String],
    command: &[String],
) -> Vec<String> {
    let mut argv = user_options(identity, options);
    argv.extend(pinning_options(target.id, known_hosts));
    argv.extend(["-p".to_string(), target.addr.port.to_string()]);
    argv.push("--".to_string());
    argv.push(target.destination());
    argv.extend(command.iter().cloned());
    argv
}

/// One side of `berth scp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScpPath<'a> {
    Local(&'a str),
    /// `ID:PATH`.
    Remote {
        id: i64,
        path: &'a str,
    },
}

impl<'a> ScpPath<'a> {
    /// `12:/tmp/x` is on instance 12; anything whose part before the first `:` is not all
    /// digits is local (`./a:b`, `/x`, `host:y`). `0:x` is an error: ids start at 1.
    pub fn parse(s: &'a str) -> Result<ScpPath<'a>> {
        let Some((id, path)) = s.split_once(':') else {
            return Ok(ScpPath::Local(s));
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(ScpPath::Local(s));
        }
        match id.parse::<i64>() {
            Ok(id) if id > 0 => Ok(ScpPath::Remote { id, path }),
            _ => bail!("{s:?}: instance ids are positive integers"),
        }
    }

    /// How scp must see it: `root@IP:PATH` for the instance, a local path that scp cannot
    /// mistake for a remote one (`a:b` becomes `./a:b`).
    fn scp_arg(&self, target: &Target) -> String {
        match *self {
            ScpPath::Remote { path, .. } => target.scp_target(path),
            ScpPath::Local(p) => match p.split_once(':') {
                Some((before, _)) if !before.contains('/') => format!("./{p}"),
                _ => p.to_string(),
            },
        }
    }
}

/// The two sides of `berth scp` and the instance they involve: exactly one side is
/// `ID:PATH`.
pub fn scp_sides<'a>(src: &'a str, dst: &'a str) -> Result<(ScpPath<'a>, ScpPath<'a>, i64)> {
    let (s, d) = (ScpPath::parse(src)?, ScpPath::parse(dst)?);
    match (s, d) {
        (ScpPath::Remote { id, .. }, ScpPath::Local(_))
        | (ScpPath::Local(_), ScpPath::Remote { id, .. }) => Ok((s, d, id)),
        (ScpPath::Remote { .. }, ScpPath::Remote { .. }) => bail!(
            "both {src:?} and {dst:?} are on instances: berth scp copies between this machine and one instance"
        ),
        (ScpPath::Local(_), ScpPath::Local(_)) => bail!(
            "neither {src:?} nor {dst:?} is on an instance: write the instance side as ID:PATH, e.g. 12:/root/data"
        ),
    }
}

/// The arguments of `scp` (without `scp` itself) for `berth scp`:
/// `[-r] [-i ID] [-o OPT]… -o HostKeyAlias=… (as ssh) -P PORT -- SRC DST`, the instance
/// side as `root@IP:PATH`.
pub fn scp_argv(
    target: &Target,
    known_hosts: &str,
    recursive: bool,
    identity: Option<&str>,
    options: &[String],
    src: &ScpPath,
    dst: &ScpPath,
) -> Vec<String> {
    let mut argv = Vec::new();
    if recursive {
        argv.push("-r".to_string());
    }
    argv.extend(user_options(identity, options));
    argv.extend(pinning_options(target.id, known_hosts));
    argv.extend(["-P".to_string(), target.addr.port.to_string()]);
    argv.push("--".to_string());
    argv.push(src.scp_arg(target));
    argv.push(dst.scp_arg(target));
    argv
}

/// A path as an ssh_config value (in the file or in `-o K=V`): `%` doubled (ssh expands
/// `%` tokens in these paths) and double-quoted when it holds blanks, `#` or `'`. Paths
/// ssh cannot be told reliably (`"`, `\`, control characters, not UTF-8) are refused.
pub fn config_path_value(path: &Path) -> Result<String> {
    let Some(s) = path.to_str() else {
        bail!(
            "{}: ssh cannot be given a path that is not UTF-8",
            path.display()
        );
    };
    if s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        bail!(
            "{s:?}: ssh cannot be given a path holding a quote, a backslash or a control character"
        );
    }
    let s = s.replace('%', "%%");
    if s.chars()
        .any(|c| c.is_whitespace() || c == '#' || c == '\'')
    {
        Ok(format!("\"{s}\""))
    } else {
        Ok(s)
    }
}

/// An instance's host keys as known_hosts lines: `berth-iN TYPE BASE64` each (the
/// comment dropped). Lines that do not look like a public key are left out.
fn known_host_lines(i: &Instance) -> Vec<String> {
    if !runs_sshd(i) {
        return Vec::new();
    }
    let is_type = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@.-_".contains(&b))
    };
    let is_base64 = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    };
    i.ssh_host_keys
        .iter()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (t, b) = (fields.next()?, fields.next()?);
            (is_type(t) && is_base64(b)).then(|| format!("{} {t} {b}", host_key_alias(i.id)))
        })
        .collect()
}

/// berth's known_hosts file: the host keys of every ssh and jupyter instance that has
/// reported them, by instance id.
pub fn render_known_hosts(instances: &[Instance]) -> String {
    let mut sorted: Vec<&Instance> = instances.iter().collect();
    sorted.sort_by_key(|i| i.id);
    let mut out = String::from(
        "# berth: host keys of your ssh and jupyter instances, by HostKeyAlias; berth rewrites this file\n",
    );
    for i in sorted {
        for line in known_host_lines(i) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// `berth ssh-config`'s output: [`SSH_CONFIG_HEADER`], then for every ssh and jupyter
/// instance with an SSH endpoint a `Host berth-N` entry (direct when it has a direct
/// endpoint, else through the proxy) and, when it has a proxy endpoint, a
/// `Host berth-N-proxy` entry. Both name the same `HostKeyAlias`, so one known_hosts line
/// serves both. `known_hosts` and `identity` are config values already (see
/// [`config_path_value`]).
pub fn render_ssh_config(
    instances: &[Instance],
    known_hosts: &str,
    identity: Option<&str>,
) -> String {
    let mut sorted: Vec<&Instance> = instances.iter().collect();
    sorted.sort_by_key(|i| i.id);
    let mut out = format!("{SSH_CONFIG_HEADER}\n");
    let mut entry = |alias: String, target: &Target| {
        out.push_str(&format!(
            "\nHost {alias}\n    HostName {}\n    Port {}\n    User root\n    HostKeyAlias {}\n    UserKnownHostsFile {known_hosts}\n    StrictHostKeyChecking yes\n",
            target.addr.host,
            target.addr.port,
            host_key_alias(target.id),
        ));
        if let Some(id) = identity {
            out.push_str(&format!("    IdentityFile {id}\n"));
        }
    };
    for ep in sorted.into_iter().filter_map(|i| Endpoint::of(i).ok()) {
        if let Ok(main) = ep.preferred(Want::Auto) {
            entry(host_alias(ep.id), &main);
        }
        if let Ok(proxy) = ep.preferred(Want::Proxy) {
            entry(proxy_host_alias(ep.id), &proxy);
        }
    }
    out
}

/// berth's known_hosts file: `known_hosts` in the config file's directory (so
/// `BERTH_CONFIG` moves it too), as an absolute path.
pub fn known_hosts_path() -> Result<PathBuf> {
    let config = std::path::absolute(config::path()?).context("finding the config directory")?;
    let dir = config
        .parent()
        .context("the config path has no directory")?;
    Ok(dir.join("known_hosts"))
}

/// Writes `text` to `path` atomically (temporary file, then rename), mode 0644, creating
/// the directory (0700) if need be. An unchanged file is left alone; answers whether it
/// was written.
pub fn write_known_hosts(path: &Path, text: &str) -> Result<bool> {
    if fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(false);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".known_hosts.tmp{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("writing {}", path.display()))
    })?;
    Ok(true)
}

/// Writes berth's known_hosts file for these instances; answers its path as an ssh
/// config value.
pub fn refresh_known_hosts(instances: &[Instance]) -> Result<String> {
    let path = known_hosts_path()?;
    let value = config_path_value(&path)?;
    write_known_hosts(&path, &render_known_hosts(instances))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::protocol::PortMapping;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthHostKeyForTests0000000000000000000000 berth-instance";
    const KH: &str = "/home/u/.config/berth/known_hosts";

    fn instance(id: i64, mode: LaunchMode, ssh_port: Option<u16>) -> Instance {
        let mut ports = vec![PortMapping {
            internal: 8080,
            external: 40001,
            proto: PortProto::Tcp,
            local: false,
        }];
        if let Some(external) = ssh_port {
            ports.push(PortMapping {
                internal: 22,
                external,
                proto: PortProto::Tcp,
                local: false,
            });
        }
        Instance {
            id,
            owner: "alice".into(),
            host: "gpu1".into(),
            image: "berth-test/ssh".into(),
            mode,
            label: None,
            state: InstanceState::Running,
            exit_code: None,
            reason: None,
            progress: None,
            public_ip: "203.0.113.5".into(),
            ports,
            entrypoint: None,
            args: None,
            env: Default::default(),
            gpus: 0,
            onstart: None,
            direct: false,
            ssh_host_keys: vec![ED.into()],
            jupyter_lab: false,
            jupyter_dir: None,
            jupyter_token: None,
            jupyter_url: None,
            proxy_ssh: None,
            proxy_jupyter_url: None,
            http_urls: vec![],
            container_id: Some("c".into()),
            created_at: "2023-11-14T22:08:20Z".into(),
            started_at: None,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", r.unwrap_err())
    }

    #[test]
    fn endpoints_and_their_errors() {
        let i = instance(12, LaunchMode::Ssh, Some(40022));
        let ep = connectable(&i).unwrap();
        assert_eq!(
            ep,
            Endpoint {
                id: 12,
                direct: Some(addr("203.0.113.5", 40022)),
                proxy: None,
            }
        );
        assert_eq!(
            ep.preferred(Want::Auto).unwrap().url(),
            "ssh://root@203.0.113.5:40022"
        );

        let e = err(connectable(&instance(
            3,
            LaunchMode::Entrypoint,
            Some(40022),
        )));
        assert_eq!(
            e,
            "instance 3 runs in entrypoint mode: berth runs no sshd there"
        );
        let e = err(connectable(&instance(4, LaunchMode::Jupyter, None))
            .and_then(|ep| ep.choose(Want::Auto, |_| true)));
        assert_eq!(
            e,
            "instance 4 has no SSH endpoint: its host has no open ports and this deployment has no proxy"
        );
        let mut udp = instance(4, LaunchMode::Ssh, Some(40022));
        udp.ports[1].proto = PortProto::Udp;
        assert_eq!(Endpoint::of(&udp).unwrap().direct, None);

        let mut stopped = instance(5, LaunchMode::Ssh, Some(40022));
        stopped.state = InstanceState::Stopped;
        assert_eq!(err(connectable(&stopped)), "instance 5 is stopped");
        // ssh-url does not care about the state.
        assert_eq!(
            Endpoint::of(&stopped).unwrap().direct,
            Some(addr("203.0.113.5", 40022))
        );
        stopped.state = InstanceState::Exited;
        stopped.exit_code = Some(2);
        assert_eq!(err(connectable(&stopped)), "instance 5 is exited(2)");

        let mut connecting = instance(6, LaunchMode::Ssh, Some(40022));
        connecting.state = InstanceState::Connecting;
        assert!(connectable(&connecting).is_ok());
        connecting.ssh_host_keys.clear();
        let e = err(connectable(&connecting));
        assert!(e.contains("has not reported its SSH host keys yet"), "{e}");

        let mut v6 = instance(7, LaunchMode::Ssh, Some(40022));
        v6.public_ip = "2001:db8::5".into();
        let ep = Endpoint::of(&v6).unwrap().preferred(Want::Auto).unwrap();
        assert_eq!(ep.url(), "ssh://root@[2001:db8::5]:40022");
        assert_eq!(ep.destination(), "root@2001:db8::5");
        assert_eq!(ep.scp_target("/x"), "root@[2001:db8::5]:/x");
    }

    fn addr(host: &str, port: u16) -> Addr {
        Addr {
            host: host.into(),
            port,
        }
    }

    /// An ssh instance on a host with open ports, with a proxy endpoint too.
    fn both(id: i64) -> Instance {
        let mut i = instance(id, LaunchMode::Ssh, Some(40022));
        i.proxy_ssh = Some("proxy.example:2201".into());
        i
    }

    /// An ssh instance on a host without open ports: 22 is mapped on the host's loopback.
    fn proxy_only(id: i64) -> Instance {
        let mut i = both(id);
        for p in &mut i.ports {
            p.local = true;
        }
        i
    }

    #[test]
    fn direct_and_proxy_endpoints() {
        let ep = Endpoint::of(&both(12)).unwrap();
        assert_eq!(ep.direct, Some(addr("203.0.113.5", 40022)));
        assert_eq!(ep.proxy, Some(addr("proxy.example", 2201)));

        // A loopback-only mapping is no direct endpoint.
        let nat = Endpoint::of(&proxy_only(13)).unwrap();
        assert_eq!(nat.direct, None);
        assert_eq!(nat.proxy, Some(addr("proxy.example", 2201)));

        // IPv6 proxies come in brackets.
        let mut v6 = proxy_only(14);
        v6.proxy_ssh = Some("[2001:db8::9]:2202".into());
        let t = Endpoint::of(&v6).unwrap().preferred(Want::Auto).unwrap();
        assert_eq!(t.route, Route::Proxy);
        assert_eq!(t.addr, addr("2001:db8::9", 2202));
        assert_eq!(t.url(), "ssh://root@[2001:db8::9]:2202");
        assert_eq!(t.destination(), "root@2001:db8::9");
        assert_eq!(t.scp_target("/x"), "root@[2001:db8::9]:/x");

        let mut bad = both(15);
        bad.proxy_ssh = Some("2001:db8::9:2202".into());
        let e = err(Endpoint::of(&bad));
        assert!(
            e.starts_with("the proxy SSH address of instance 15: \"2001:db8::9:2202\""),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn choosing_direct_or_proxy() {
        let ep = Endpoint::of(&both(12)).unwrap();
        let direct = addr("203.0.113.5", 40022);
        let proxy = addr("proxy.example", 2201);

        // Auto: direct when it answers, asking about nothing else.
        let mut asked = Vec::new();
        let t = ep
            .choose(Want::Auto, |a| {
                asked.push(a.clone());
                true
            })
            .unwrap();
        assert_eq!((t.route, &t.addr), (Route::Direct, &direct));
        assert_eq!(asked, vec![direct.clone()]);

        // Else the proxy, once it answers.
        let mut asked = Vec::new();
        let t = ep
            .choose(Want::Auto, |a| {
                asked.push(a.clone());
                *a == proxy
            })
            .unwrap();
        assert_eq!((t.route, &t.addr, t.id), (Route::Proxy, &proxy, 12));
        assert_eq!(asked, [direct.clone(), proxy.clone()]);

        assert_eq!(
            err(ep.choose(Want::Auto, |_| false)),
            "instance 12: neither the direct endpoint 203.0.113.5:40022 nor the proxy proxy.example:2201 answers"
        );

        // Forced: no probe.
        let t = ep.choose(Want::Direct, |_| panic!("no probe")).unwrap();
        assert_eq!(t.addr, direct);
        let t = ep.choose(Want::Proxy, |_| panic!("no probe")).unwrap();
        assert_eq!(t.addr, proxy);

        let nat = Endpoint::of(&proxy_only(13)).unwrap();
        assert_eq!(
            err(nat.choose(Want::Direct, |_| true)),
            "instance 13 has no direct SSH endpoint (its host has no open ports)"
        );
        assert_eq!(
            nat.choose(Want::Auto, |_| panic!("a lone path is not probed"))
                .unwrap()
                .route,
            Route::Proxy
        );
        let no_proxy = Endpoint::of(&instance(14, LaunchMode::Ssh, Some(40022))).unwrap();
        assert_eq!(
            err(no_proxy.choose(Want::Proxy, |_| true)),
            "instance 14 has no proxy SSH endpoint: this deployment has no proxy"
        );
        assert_eq!(
            no_proxy.choose(Want::Auto, |_| false).unwrap().route,
            Route::Direct
        );

        // ssh-url: direct if any, else the proxy; never a probe.
        assert_eq!(
            ep.preferred(Want::Auto).unwrap().url(),
            "ssh://root@203.0.113.5:40022"
        );
        assert_eq!(
            ep.preferred(Want::Proxy).unwrap().url(),
            "ssh://root@proxy.example:2201"
        );
        assert_eq!(
            nat.preferred(Want::Auto).unwrap().url(),
            "ssh://root@proxy.example:2201"
        );
    }

    #[test]
    fn the_proxy_path_pins_the_same_key() {
        let t = Endpoint::of(&both(12))
            .unwrap()
            .preferred(Want::Proxy)
            .unwrap();
        let argv = ssh_argv(&t, KH, None, &[], &[]);
        assert!(argv.contains(&"HostKeyAlias=berth-i12".to_string()));
        assert_eq!(
            argv[argv.len() - 4..],
            strings(&["-p", "2201", "--", "root@proxy.example"])
        );
        let (s, d, _) = scp_sides("12:/x", ".").unwrap();
        let argv = scp_argv(&t, KH, false, None, &[], &s, &d);
        assert!(argv.contains(&"HostKeyAlias=berth-i12".to_string()));
        assert_eq!(
            argv[argv.len() - 5..],
            strings(&["-P", "2201", "--", "root@proxy.example:/x", "."])
        );
    }

    #[test]
    fn ssh_argv_pins_the_instance_key() {
        let ep = Endpoint::of(&instance(12, LaunchMode::Ssh, Some(40022)))
            .unwrap()
            .preferred(Want::Auto)
            .unwrap();
        assert_eq!(
            ssh_argv(&ep, KH, None, &[], &[]),
            strings(&[
                "-o",
                "HostKeyAlias=berth-i12",
                "-o",
                "UserKnownHostsFile=/home/u/.config/berth/known_hosts",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "LogLevel=ERROR",
                "-p",
                "40022",
                "--",
                "root@203.0.113.5",
            ])
        );
        let argv = ssh_argv(
            &ep,
            "\"/a b/known_hosts\"",
            Some("~/.ssh/k"),
            &strings(&["ServerAliveInterval=30", "LogLevel=DEBUG"]),
            &strings(&["-V", "ls -la", "--", "$HOME"]),
        );
        assert_eq!(
            argv,
            strings(&[
                "-i",
                "~/.ssh/k",
                "-o",
                "ServerAliveInterval=30",
                "-o",
                "LogLevel=DEBUG",
                "-o",
                "HostKeyAlias=berth-i12",
                "-o",
                "UserKnownHostsFile=\"/a b/known_hosts\"",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "LogLevel=ERROR",
                "-p",
                "40022",
                "--",
                "root@203.0.113.5",
                "-V",
                "ls -la",
                "--",
                "$HOME",
            ])
        );
    }

    #[test]
    fn scp_sides_parse() {
        assert_eq!(
            ScpPath::parse("12:/tmp/x").unwrap(),
            ScpPath::Remote {
                id: 12,
                path: "/tmp/x"
            }
        );
        assert_eq!(
            ScpPath::parse("3:").unwrap(),
            ScpPath::Remote { id: 3, path: "" }
        );
        assert_eq!(
            ScpPath::parse("3:a:b").unwrap(),
            ScpPath::Remote { id: 3, path: "a:b" }
        );
        for local in [
            "./a:b",
            "a:b",
            "/tmp/12:x",
            "file",
            "",
            ":x",
            "-r",
            "1x:y",
            "+1:y",
        ] {
            assert_eq!(
                ScpPath::parse(local).unwrap(),
                ScpPath::Local(local),
                "{local}"
            );
        }
        assert!(err(ScpPath::parse("0:x")).contains("positive"));
        assert!(err(ScpPath::parse("99999999999999999999:x")).contains("positive"));

        let (s, d, id) = scp_sides("./data", "12:/root/data").unwrap();
        assert_eq!((s, id), (ScpPath::Local("./data"), 12));
        assert_eq!(
            d,
            ScpPath::Remote {
                id: 12,
                path: "/root/data"
            }
        );
        assert_eq!(scp_sides("7:/var/log/onstart.log", ".").unwrap().2, 7);
        let e = err(scp_sides("1:/a", "2:/b"));
        assert!(
            e.starts_with("both \"1:/a\" and \"2:/b\" are on instances"),
            "{e}"
        );
        let e = err(scp_sides("a", "./b:c"));
        assert!(
            e.starts_with("neither \"a\" nor \"./b:c\" is on an instance"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn scp_argv_maps_the_instance_side() {
        let ep = Endpoint::of(&instance(12, LaunchMode::Ssh, Some(40022)))
            .unwrap()
            .preferred(Want::Auto)
            .unwrap();
        let (s, d, _) = scp_sides("a:b", "12:/tmp/x").unwrap();
        assert_eq!(
            scp_argv(
                &ep,
                KH,
                true,
                Some("/k"),
                &strings(&["Compression=yes"]),
                &s,
                &d
            ),
            strings(&[
                "-r",
                "-i",
                "/k",
                "-o",
                "Compression=yes",
                "-o",
                "HostKeyAlias=berth-i12",
                "-o",
                "UserKnownHostsFile=/home/u/.config/berth/known_hosts",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "LogLevel=ERROR",
                "-P",
                "40022",
                "--",
                "./a:b",
                "root@203.0.113.5:/tmp/x",
            ])
        );
        let (s, d, _) = scp_sides("12:out", "-weird").unwrap();
        let argv = scp_argv(&ep, KH, false, None, &[], &s, &d);
        assert_eq!(
            argv[argv.len() - 4..],
            strings(&["40022", "--", "root@203.0.113.5:out", "-weird"])
        );
        assert_ne!(argv[0], "-r");
    }

    #[test]
    fn config_values_are_escaped() {
        assert_eq!(config_path_value(Path::new(KH)).unwrap(), KH);
        assert_eq!(
            config_path_value(Path::new("/Users/A B/50%/kh")).unwrap(),
            "\"/Users/A B/50%%/kh\""
        );
        assert_eq!(
            config_path_value(Path::new("/x#y/it's")).unwrap(),
            "\"/x#y/it's\""
        );
        assert!(config_path_value(Path::new("/a\"b")).is_err());
        assert!(config_path_value(Path::new("/a\\b")).is_err());
        assert!(config_path_value(Path::new("/a\nb")).is_err());
    }

    #[test]
    fn known_hosts_render_by_alias() {
        let mut second = instance(3, LaunchMode::Jupyter, None);
        second.ssh_host_keys = vec![
            "ecdsa-sha2-nistp256 AAAAE2VjZHNh= ".into(),
            "garbage".into(),
            "ssh-rsa AAAA\nevil".into(),
            "ssh-ed25519 AAAA;rm berth".into(),
        ];
        let entry = instance(4, LaunchMode::Entrypoint, None);
        let mut none = instance(5, LaunchMode::Ssh, Some(40023));
        none.ssh_host_keys.clear();
        let text = render_known_hosts(&[
            instance(12, LaunchMode::Ssh, Some(40022)),
            second,
            entry,
            none,
        ]);
        assert_eq!(
            text,
            "# berth: host keys of your ssh and jupyter instances, by HostKeyAlias; berth rewrites this file\n\
             berth-i3 ecdsa-sha2-nistp256 AAAAE2VjZHNh=\n\
             berth-i3 ssh-rsa AAAA\n\
             berth-i12 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthHostKeyForTests0000000000000000000000\n"
        );
        assert_eq!(render_known_hosts(&[]).lines().count(), 1);
    }

    #[test]
    fn ssh_config_renders_hosts_with_a_direct_port() {
        let mut stopped = instance(3, LaunchMode::Jupyter, Some(40100));
        stopped.state = InstanceState::Stopped;
        stopped.public_ip = "198.51.100.7".into();
        let instances = [
            instance(12, LaunchMode::Ssh, Some(40022)),
            stopped,
            instance(4, LaunchMode::Entrypoint, Some(40200)),
            instance(5, LaunchMode::Ssh, None),
        ];
        let text = render_ssh_config(&instances, KH, Some("/home/u/.ssh/id_ed25519"));
        let expected = format!(
            "{SSH_CONFIG_HEADER}

Host berth-3
    HostName 198.51.100.7
    Port 40100
    User root
    HostKeyAlias berth-i3
    UserKnownHostsFile {KH}
    StrictHostKeyChecking yes
    IdentityFile /home/u/.ssh/id_ed25519

Host berth-12
    HostName 203.0.113.5
    Port 40022
    User root
    HostKeyAlias berth-i12
    UserKnownHostsFile {KH}
    StrictHostKeyChecking yes
    IdentityFile /home/u/.ssh/id_ed25519
"
        );
        assert_eq!(text, expected);
        assert!(!render_ssh_config(&instances, KH, None).contains("IdentityFile"));
        assert_eq!(
            render_ssh_config(&instances[2..3], KH, None),
            format!("{SSH_CONFIG_HEADER}\n")
        );
    }

    #[test]
    fn ssh_config_renders_direct_and_proxy_hosts() {
        let mut v6 = proxy_only(7);
        v6.proxy_ssh = Some("[2001:db8::9]:2207".into());
        let instances = [both(12), proxy_only(3), v6];
        let text = render_ssh_config(&instances, KH, Some("/k"));
        let entry = |alias: &str, host: &str, port: u16, id: i64| {
            format!(
                "
Host {alias}
    HostName {host}
    Port {port}
    User root
    HostKeyAlias berth-i{id}
    UserKnownHostsFile {KH}
    StrictHostKeyChecking yes
    IdentityFile /k
"
            )
        };
        let expected = [
            format!("{SSH_CONFIG_HEADER}\n"),
            // Proxy only: both names lead through the proxy.
            entry("berth-3", "proxy.example", 2201, 3),
            entry("berth-3-proxy", "proxy.example", 2201, 3),
            entry("berth-7", "2001:db8::9", 2207, 7),
            entry("berth-7-proxy", "2001:db8::9", 2207, 7),
            // Both: the plain name is direct.
            entry("berth-12", "203.0.113.5", 40022, 12),
            entry("berth-12-proxy", "proxy.example", 2201, 12),
        ]
        .concat();
        assert_eq!(text, expected);
    }

    #[test]
    fn known_hosts_are_written_atomically_beside_the_config() {
        let _guard = config::ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir =
            std::env::temp_dir().join(format!("berth-cli-{}-known-hosts", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        std::env::set_var(config::ENV_CONFIG, dir.join("sub").join("config.json"));
        let path = known_hosts_path().unwrap();
        std::env::remove_var(config::ENV_CONFIG);
        assert_eq!(path, dir.join("sub").join("known_hosts"));

        let one = render_known_hosts(&[instance(12, LaunchMode::Ssh, Some(40022))]);
        assert!(write_known_hosts(&path, &one).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), one);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        // Unchanged: not rewritten.
        let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
        assert!(!write_known_hosts(&path, &one).unwrap());
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap()),
            inode
        );
        // Changed: replaced by rename (a new inode), no temporary file left behind.
        let none = render_known_hosts(&[]);
        assert!(write_known_hosts(&path, &none).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), none);
        assert_ne!(
            std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap()),
            inode
        );
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["known_hosts"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
