//! The Docker-options string GPU clouds accept in their "env" field, e.g.
//! `-e HF_TOKEN=abc -e 'MSG=hello world' -p 8081:8081 -p 7000/udp`.
//!
//! Accepted options: `-e/--env K=V` and `-p/--publish [[IP:]HOST:]CONTAINER[-END][/tcp|/udp]`,
//! in their `-eK=V`, `--env=K=V` spellings too. The host side of `-p` is checked but not
//! used: berth allocates the external port from the host's open range (as GPU clouds do).
//! Quoting follows POSIX shell words: '…', "…" with `\"` `\\` `\$` escapes, and `\` outside
//! quotes. Anything else is an error that names the option.
use crate::spec::{PortProto, PortSpec};

/// What the string asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DockerOptions {
    pub env: Vec<(String, String)>,
    pub ports: Vec<PortSpec>,
    /// Ports given as `PORT/http`: TCP ports served over HTTPS through the proxy.
    pub http_ports: Vec<u16>,
}

/// Parses the options string.
pub fn parse(s: &str) -> Result<DockerOptions, String> {
    let words = split_words(s)?;
    let mut out = DockerOptions::default();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let (opt, inline) = if let Some(rest) = w.strip_prefix("--") {
            match rest.split_once('=') {
                Some((o, v)) => (format!("--{o}"), Some(v.to_string())),
                None => (w.clone(), None),
            }
        } else if let Some(short) = w.strip_prefix('-').and_then(|r| r.chars().next()) {
            // `-eK=V`, and `-e=K=V` as Docker's flag parser takes it too.
            let rest = &w[1 + short.len_utf8()..];
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            let opt = format!("-{short}");
            if rest.is_empty() && w.len() == opt.len() {
                (opt, None)
            } else {
                (opt, Some(rest.to_string()))
            }
        } else {
            (w.clone(), None)
        };
        let mut value = |name: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .ok_or_else(|| format!("option {name} needs a value")),
            }
        };
        match opt.as_str() {
            "-e" | "--env" => {
                let v = value(&opt)?;
                let (k, val) = v.split_once('=').ok_or_else(|| {
                    format!("{opt} {v:?}: expected NAME=VALUE (berth does not copy variables from your shell)")
                })?;
                crate::spec::validate_env_name(k)?;
                out.env.push((k.to_string(), val.to_string()));
            }
            "-p" | "--publish" => {
                let v = value(&opt)?;
                let (ports, http) = parse_publish(&v)?;
                if http {
                    out.http_ports.extend(ports.iter().map(|p| p.port));
                }
                out.ports.extend(ports);
            }
            _ if opt.starts_with('-') => {
                return Err(format!(
                    "unknown option {opt:?} in the Docker-options string (berth accepts -e NAME=VALUE and -p PORT[/tcp|/udp])"
                ))
            }
            _ => {
                return Err(format!(
                    "unexpected word {w:?} in the Docker-options string (each value must follow -e or -p)"
                ))
            }
        }
    }
    Ok(out)
}

/// `[[IP:]HOST:]CONTAINER[-END][/PROTO]` → the container ports it names, and whether
/// PROTO was `http` (a TCP port that the proxy serves over HTTPS).
pub fn parse_publish(v: &str) -> Result<(Vec<PortSpec>, bool), String> {
    let bad = |why: &str| format!("-p {v:?}: {why}");
    let (ports, proto, http) = match v.rsplit_once('/') {
        Some((p, "tcp")) => (p, PortProto::Tcp, false),
        Some((p, "udp")) => (p, PortProto::Udp, false),
        Some((p, "http")) => (p, PortProto::Tcp, true),
        Some((_, other)) => {
            return Err(bad(&format!(
                "unknown protocol {other:?} (tcp, udp or http)"
            )))
        }
        None => (v, PortProto::Tcp, false),
    };
    let parts: Vec<&str> = if ports.starts_with('[') {
        // [IPv6]:HOST:CONTAINER
        let end = ports.find(']').ok_or_else(|| bad("unclosed '['"))?;
        let rest = ports[end + 1..].trim_start_matches(':');
        rest.split(':').collect()
    } else {
        ports.split(':').collect()
    };
    let container = match parts.as_slice() {
        [c] => *c,
        [host, c] => {
            if !host.is_empty() {
                parse_range(host).map_err(|e| bad(&format!("host port: {e}")))?;
            }
            c
        }
        [ip, host, c] => {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(bad(&format!("{ip:?} is not an IP address")));
            }
            if !host.is_empty() {
                parse_range(host).map_err(|e| bad(&format!("host port: {e}")))?;
            }
            c
        }
        _ => return Err(bad("expected [[IP:]HOST:]CONTAINER[/tcp|/udp]")),
    };
    let (lo, hi) = parse_range(container).map_err(|e| bad(&e))?;
    if usize::from(hi - lo) >= crate::spec::MAX_PORTS {
        return Err(bad(&format!(
            "a range of more than {} ports",
            crate::spec::MAX_PORTS
        )));
    }
    Ok((
        (lo..=hi).map(|port| PortSpec { port, proto }).collect(),
        http,
    ))
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n >= 1 && !p.starts_with('+') => Ok(n),
            _ => Err(format!("{p:?} is not a port number from 1 to 65535")),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(format!("range {s:?} ends before it starts"));
            }
            Ok((a, b))
        }
        None => {
            let p = one(s)?;
            Ok((p, p))
        }
    }
}

/// Splits like a POSIX shell (no expansion): quotes group, backslash escapes.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => {
                            return Err("unclosed single quote in the Docker-options string".into())
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => cur.push(e),
                            Some('\n') => {}
                            Some(o) => {
                                cur.push('\\');
                                cur.push(o)
                            }
                            None => {
                                return Err(
                                    "unclosed double quote in the Docker-options string".into()
                                )
                            }
                        },
                        Some(c) => cur.push(c),
                        None => {
                            return Err("unclosed double quote in the Docker-options string".into())
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => cur.push(c),
                    None => return Err("trailing backslash in the Docker-options string".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16) -> PortSpec {
        PortSpec {
            port,
            proto: PortProto::Tcp,
        }
    }

    #[test]
    fn parses_env_and_ports_in_every_spelling() {
        let o = parse(
            r#"-e A=1 -eB=2 --env C=3 --env=D=4 -e 'MSG=hello world' -e "Q=say \"hi\" \$HOME" -e E= -e=F=ü -p 8081:8081 -p7000/udp --publish 9000-9002 --publish=127.0.0.1:80:8080/tcp -p :5000 -p=5001"#,
        )
        .unwrap();
        assert_eq!(
            o.env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "2".into()),
                ("C".into(), "3".into()),
                ("D".into(), "4".into()),
                ("MSG".into(), "hello world".into()),
                ("Q".into(), "say \"hi\" $HOME".into()),
                ("E".into(), "".into()),
                ("F".into(), "ü".into()),
            ]
        );
        assert_eq!(
            o.ports,
            vec![
                tcp(8081),
                PortSpec {
                    port: 7000,
                    proto: PortProto::Udp
                },
                tcp(9000),
                tcp(9001),
                tcp(9002),
                tcp(8080),
                tcp(5000),
                tcp(5001),
            ]
        );
    }

    #[test]
    fn http_ports_are_tcp_ports_served_by_the_proxy() {
        let o = parse("-p 7860:7860/http -p 8000").unwrap();
        assert_eq!(o.http_ports, vec![7860]);
        assert_eq!(o.ports, vec![tcp(7860), tcp(8000)]);
    }

    #[test]
    fn empty_and_blank_strings_ask_for_nothing() {
        assert_eq!(parse("").unwrap(), DockerOptions::default());
        assert_eq!(parse("  \n\t ").unwrap(), DockerOptions::default());
    }

    #[test]
    fn values_may_hold_equals_signs_and_newlines() {
        let o = parse("-e 'X=a=b\nc'").unwrap();
        assert_eq!(o.env, vec![("X".into(), "a=b\nc".into())]);
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("--privileged", "unknown option \"--privileged\""),
            ("-v /:/host", "unknown option \"-v\""),
            ("-e", "needs a value"),
            ("-e FOO", "expected NAME=VALUE"),
            ("-e 1BAD=x", "variable name"),
            ("-p 0", "not a port number"),
            ("-p 70000", "not a port number"),
            ("-p 80/sctp", "unknown protocol"),
            ("-p abc:80", "host port"),
            ("-p 1:2:3:4", "expected [[IP:]HOST:]CONTAINER"),
            ("-p 10-1", "ends before it starts"),
            ("-p 1000-2000", "more than 64 ports"),
            ("hello", "unexpected word"),
            ("-e 'A=1", "unclosed single quote"),
            ("-e \"A=1", "unclosed double quote"),
            // Words that are not ASCII are refused, never cut inside a character.
            ("-é", "unknown option \"-é\""),
            ("-éx=1", "unknown option \"-é\""),
            ("--é", "unknown option \"--é\""),
            ("-", "unknown option \"-\""),
            ("-e=", "expected NAME=VALUE"),
        ];
        for (input, want) in cases {
            let err = parse(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn split_words_follows_the_shell() {
        assert_eq!(
            split_words(r#"a 'b c' "d \"e\"" f\ g ''"#).unwrap(),
            vec!["a", "b c", "d \"e\"", "f g", ""]
        );
    }
}
