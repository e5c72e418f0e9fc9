//! Direct or through the proxy: the two ways to an ssh or jupyter instance, which one to
//! take, and the quick probes that tell whether the direct one answers.
//!
//! A host with open ports gives an instance a direct endpoint (the host's public IP and a
//! mapped port) and, when the deployment runs a proxy, a proxy endpoint too; a host
//! without open ports gives the proxy endpoint only. [`pick`] chooses, given whether each
//! path answers (asked lazily, so it is tested without a network); [`ssh_answers`] and
//! [`port_answers`] are the probes.
use anyhow::{bail, Result};
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a probe may take in all (name resolution, connect, banner).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// One of the two paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Direct,
    Proxy,
}

/// What the user asked for: `--direct`, `--proxy`, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Want {
    /// Direct when it answers, else the proxy.
    #[default]
    Auto,
    Direct,
    Proxy,
}

/// Why [`pick`] found no path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// `--direct`, and there is no direct endpoint.
    NoDirect,
    /// `--proxy`, and there is no proxy endpoint.
    NoProxy,
    /// There is neither.
    NoEndpoint,
    /// Both exist and neither answers.
    NeitherAnswers,
}

/// Chooses the path. A forced one must exist; otherwise direct when it exists and
/// answers, else the proxy when it answers. `answers` is asked only when there is a
/// choice to make (both paths exist): a lone path is taken as it is, and its client
/// reports the failure if any.
pub fn pick(
    has_direct: bool,
    has_proxy: bool,
    want: Want,
    mut answers: impl FnMut(Route) -> bool,
) -> Result<Route, NoRoute> {
    match (want, has_direct, has_proxy) {
        (Want::Direct, true, _) => Ok(Route::Direct),
        (Want::Direct, false, _) => Err(NoRoute::NoDirect),
        (Want::Proxy, _, true) => Ok(Route::Proxy),
        (Want::Proxy, _, false) => Err(NoRoute::NoProxy),
        (Want::Auto, false, false) => Err(NoRoute::NoEndpoint),
        (Want::Auto, true, false) => Ok(Route::Direct),
        (Want::Auto, false, true) => Ok(Route::Proxy),
        (Want::Auto, true, true) => {
            if answers(Route::Direct) {
                Ok(Route::Direct)
            } else if answers(Route::Proxy) {
                Ok(Route::Proxy)
            } else {
                Err(NoRoute::NeitherAnswers)
            }
        }
    }
}

/// A TCP endpoint: a host name or IP address (an IPv6 address without brackets) and a
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub host: String,
    pub port: u16,
}

impl Addr {
    /// Reads `HOST:PORT`, an IPv6 address in brackets (`[2001:db8::1]:2222`).
    pub fn parse(s: &str) -> Result<Addr> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let Some((host, port)) = rest.split_once("]:") else {
                bail!("{s:?}: expected [IPV6]:PORT");
            };
            if !host.contains(':') {
                bail!("{s:?}: only an IPv6 address goes in brackets");
            }
            (host, port)
        } else {
            let Some((host, port)) = s.rsplit_once(':') else {
                bail!("{s:?}: expected HOST:PORT");
            };
            if host.contains(':') {
                bail!("{s:?}: an IPv6 address must be in brackets: [IPV6]:PORT");
            }
            (host, port)
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:%".contains(c));
        if !valid_host {
            bail!("{s:?}: not a host name or IP address");
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => bail!("{s:?}: {port:?} is not a port"),
        };
        Ok(Addr {
            host: host.to_string(),
            port,
        })
    }

    /// The host as it goes before `:PORT` in a URL or in scp's `HOST:PATH`: an IPv6
    /// address in brackets.
    pub fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl std::fmt::Display for Addr {
    /// `HOST:PORT`, an IPv6 address in brackets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.bracketed_host(), self.port)
    }
}

/// Whether an SSH server answers at `addr` within `timeout`: a TCP connection that
/// receives `SSH-` first. (A mapped port whose container does not listen still accepts
/// connections on many hosts, so connecting alone proves little.)
pub fn ssh_answers(addr: &Addr, timeout: Duration) -> bool {
    probe(addr, timeout, b"SSH-")
}

/// Whether `addr` accepts a TCP connection within `timeout`.
pub fn port_answers(addr: &Addr, timeout: Duration) -> bool {
    probe(addr, timeout, b"")
}

/// Connects to `addr` (each of its addresses in turn) and reads `banner`, all within
/// `timeout`.
fn probe(addr: &Addr, timeout: Duration, banner: &[u8]) -> bool {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let Ok(addrs) = (addr.host.as_str(), addr.port).to_socket_addrs() else {
        return false;
    };
    for sa in addrs {
        if left().is_zero() {
            return false;
        }
        let Ok(mut stream) = TcpStream::connect_timeout(&sa, left()) else {
            continue;
        };
        let mut got = Vec::with_capacity(banner.len());
        while got.len() < banner.len() {
            let wait = left();
            if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
                return false;
            }
            let mut buf = [0u8; 16];
            let want = banner.len() - got.len();
            match stream.read(&mut buf[..want.min(16)]) {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        return got == banner;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// `pick` with fixed answers; also reports which paths it asked about.
    fn run(
        has_direct: bool,
        has_proxy: bool,
        want: Want,
        direct_ok: bool,
        proxy_ok: bool,
    ) -> (Result<Route, NoRoute>, Vec<Route>) {
        let mut asked = Vec::new();
        let r = pick(has_direct, has_proxy, want, |route| {
            asked.push(route);
            match route {
                Route::Direct => direct_ok,
                Route::Proxy => proxy_ok,
            }
        });
        (r, asked)
    }

    #[test]
    fn auto_prefers_a_direct_endpoint_that_answers() {
        use Route::*;
        assert_eq!(
            run(true, true, Want::Auto, true, true),
            (Ok(Direct), vec![Direct])
        );
        assert_eq!(
            run(true, true, Want::Auto, false, true),
            (Ok(Proxy), vec![Direct, Proxy])
        );
        assert_eq!(
            run(true, true, Want::Auto, false, false),
            (Err(NoRoute::NeitherAnswers), vec![Direct, Proxy])
        );
        // A lone path is taken without a probe.
        assert_eq!(
            run(true, false, Want::Auto, false, false),
            (Ok(Direct), vec![])
        );
        assert_eq!(
            run(false, true, Want::Auto, false, false),
            (Ok(Proxy), vec![])
        );
        assert_eq!(
            run(false, false, Want::Auto, true, true),
            (Err(NoRoute::NoEndpoint), vec![])
        );
    }

    #[test]
    fn forced_paths_must_exist_and_are_not_probed() {
        use Route::*;
        for (d, p) in [(true, true), (true, false)] {
            assert_eq!(run(d, p, Want::Direct, false, false), (Ok(Direct), vec![]));
        }
        for (d, p) in [(true, true), (false, true)] {
            assert_eq!(run(d, p, Want::Proxy, false, false), (Ok(Proxy), vec![]));
        }
        assert_eq!(
            run(false, true, Want::Direct, true, true),
            (Err(NoRoute::NoDirect), vec![])
        );
        assert_eq!(
            run(true, false, Want::Proxy, true, true),
            (Err(NoRoute::NoProxy), vec![])
        );
    }

    #[test]
    fn addresses_parse() {
        let a = Addr::parse("proxy.example:2222").unwrap();
        assert_eq!(
            a,
            Addr {
                host: "proxy.example".into(),
                port: 2222
            }
        );
        assert_eq!(a.to_string(), "proxy.example:2222");
        let a = Addr::parse("203.0.113.9:40022").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("203.0.113.9", 40022));
        let a = Addr::parse("[2001:db8::1]:2222").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("2001:db8::1", 2222));
        assert_eq!(a.bracketed_host(), "[2001:db8::1]");
        assert_eq!(a.to_string(), "[2001:db8::1]:2222");
        let a = Addr::parse("[fe80::1%eth0]:22").unwrap();
        assert_eq!(a.host, "fe80::1%eth0");
        for bad in [
            "",
            "host",
            "host:",
            ":22",
            "host:0",
            "host:65536",
            "host:+22",
            "host:x",
            "2001:db8::1:2222",
            "[2001:db8::1]",
            "[2001:db8::1]2222",
            "[host]:22",
            "[]:22",
            "a b:22",
            "h/x:22",
        ] {
            let e = format!("{:#}", Addr::parse(bad).unwrap_err());
            assert!(e.starts_with(&format!("{bad:?}: ")), "{bad}: {e}");
        }
    }

    fn local(port: u16) -> Addr {
        Addr {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn probes_read_the_ssh_banner() {
        let short = Duration::from_millis(300);
        // An SSH server.
        let sshd = TcpListener::bind("127.0.0.1:0").unwrap();
        let ssh_port = sshd.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = sshd.accept().unwrap();
            c.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").unwrap();
            // Held open until the probe is done.
            let _ = c.read(&mut [0u8; 1]);
        });
        assert!(ssh_answers(&local(ssh_port), short));
        server.join().unwrap();

        // Something that accepts but says nothing (a mapped port nobody serves), and
        // something that says something else.
        let mute = TcpListener::bind("127.0.0.1:0").unwrap();
        let mute_port = mute.local_addr().unwrap().port();
        let started = Instant::now();
        assert!(!ssh_answers(&local(mute_port), short));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(port_answers(&local(mute_port), short));

        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let http_port = http.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = http.accept().unwrap();
            c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        });
        assert!(!ssh_answers(&local(http_port), short));
        server.join().unwrap();

        // Nothing listens.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(!ssh_answers(&local(closed_port), short));
        assert!(!port_answers(&local(closed_port), short));
        drop(mute);
    }
}
