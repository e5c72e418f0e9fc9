//! How the CLI shows things: tables, detail lines, ages, sizes. Pure functions of the API's
//! types, so they are tested without a server. Human output holds no raw control
//! character (but the newlines of a block): values show them as shell quoting does
//! ([`berth_core::visible`]); `--json` output is exact.
use crate::ssh;
use berth_core::api::{Host, Instance, SshKey, Template, User};
use berth_core::protocol::{PortMapping, PullProgress};
use berth_core::visible;
use berth_core::{InstanceState, LaunchMode};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes to stdout; a closed pipe (`berth ls | head -1`) is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Pretty JSON and a newline.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// Left-aligned columns two spaces apart, one line each, no trailing blanks; control
/// characters in a cell are shown escaped ([`visible::text`]).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| visible::text(c, false)).collect())
        .collect();
    let rows = &rows[..];
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            let pad = width - cell.chars().count() + 2;
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn instances_table(instances: &[Instance], now: i64) -> String {
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                state(i),
                i.mode.to_string(),
                i.image.clone(),
                dash(&i.host),
                dash(&ports(&i.ports)),
                dash(i.label.as_deref().unwrap_or("")),
                age(&i.created_at, now),
            ]
        })
        .collect();
    let headers = [
        "ID", "STATE", "MODE", "IMAGE", "HOST", "PORTS", "LABEL", "AGE",
    ];
    table(&headers, &rows)
}

pub fn hosts_table(hosts: &[Host]) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                yes_no(h.online),
                dash(&h.public_ip),
                h.port_range
                    .as_ref()
                    .map_or("-".to_string(), |r| format!("{}-{}", r.first, r.last)),
                h.gpus.len().to_string(),
                h.instances.to_string(),
            ]
        })
        .collect();
    let headers = ["NAME", "ONLINE", "PUBLIC IP", "PORTS", "GPUS", "INSTANCES"];
    table(&headers, &rows)
}

pub fn users_table(users: &[User], now: i64) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| vec![u.name.clone(), yes_no(u.admin), age(&u.created_at, now)])
        .collect();
    table(&["NAME", "ADMIN", "AGE"], &rows)
}

/// `berth keys ls`: the key column is the key's type and comment (its body is long and
/// the fingerprint tells keys apart).
pub fn keys_table(keys: &[SshKey], now: i64) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.id.to_string(),
                k.fingerprint.clone(),
                key_summary(&k.key),
                age(&k.created_at, now),
            ]
        })
        .collect();
    table(&["ID", "FINGERPRINT", "KEY", "AGE"], &rows)
}

/// `ssh-ed25519 alice@laptop`: a public key line without its base64 body.
pub fn key_summary(key: &str) -> String {
    let mut fields = key.split_whitespace();
    let key_type = fields.next().unwrap_or("?");
    let comment: Vec<&str> = fields.skip(1).collect();
    if comment.is_empty() {
        key_type.to_string()
    } else {
        format!("{key_type} {}", comment.join(" "))
    }
}

/// The onstart script in one line: its first line, and `…` if there is more.
pub fn onstart_summary(script: &str) -> String {
    let mut lines = script.trim_end().lines();
    let first = lines.next().unwrap_or("");
    if lines.next().is_some() || first.chars().count() > 60 {
        format!("{}…", first.chars().take(60).collect::<String>())
    } else {
        first.to_string()
    }
}

/// `berth show`: one `key: value` line each; lists continue on indented lines.
pub fn instance_details(i: &Instance, now: i64) -> String {
    let http_keys: Vec<String> = i
        .http_urls
        .iter()
        .map(|h| format!("http {}", h.port))
        .collect();
    let mut lines: Vec<(&str, Vec<String>)> = vec![
        ("id", vec![i.id.to_string()]),
        ("state", vec![i.state.to_string()]),
    ];
    if let Some(code) = i.exit_code {
        lines.push(("exit code", vec![code.to_string()]));
    }
    if let Some(reason) = &i.reason {
        lines.push(("reason", vec![reason.clone()]));
    }
    if let Some(p) = &i.progress {
        lines.push(("pull", vec![progress(p)]));
    }
    lines.extend([
        ("owner", vec![i.owner.clone()]),
        ("image", vec![i.image.clone()]),
        ("mode", vec![i.mode.to_string()]),
        (
            "label",
            vec![dash(&visible::word(i.label.as_deref().unwrap_or("")))],
        ),
        ("host", vec![dash(&i.host)]),
        ("public ip", vec![dash(&i.public_ip)]),
    ]);
    let ports: Vec<String> = i
        .ports
        .iter()
        .map(|p| {
            if p.local {
                format!(
                    "loopback:{} -> {}/{} (on the host only: no direct connection)",
                    p.external,
                    p.internal,
                    p.proto.as_str()
                )
            } else {
                format!(
                    "{}:{} -> {}/{}",
                    i.public_ip,
                    p.external,
                    p.internal,
                    p.proto.as_str()
                )
            }
        })
        .collect();
    lines.push(("ports", ports));
    if ssh::runs_sshd(i) {
        let ssh_line = match ssh::direct_addr(i) {
            Some(a) => format!("ssh -p {} root@{}", a.port, a.host),
            None => "- (no direct SSH port)".to_string(),
        };
        lines.push(("ssh", vec![ssh_line]));
        match ssh::proxy_addr(i) {
            Ok(Some(a)) => lines.push((
                "ssh (proxy)",
                vec![format!("ssh -p {} root@{}", a.port, a.host)],
            )),
            Ok(None) => {}
            Err(_) => lines.push((
                "ssh (proxy)",
                vec![format!(
                    "- (unreadable proxy address {})",
                    quote(i.proxy_ssh.as_deref().unwrap_or(""))
                )],
            )),
        }
        let host_keys: Vec<String> = i
            .ssh_host_keys
            .iter()
            .map(|k| match berth_core::ssh_key::parse(k) {
                Ok(k) => format!("{} {}", k.key_type, k.fingerprint),
                Err(_) => key_summary(k),
            })
            .collect();
        lines.push(("host keys", host_keys));
    }
    lines.push(("gpus", vec![i.gpus.to_string()]));
    let env: Vec<String> = i.env.iter().map(|(k, v)| env_line(k, v)).collect();
    lines.push(("env", env));
    lines.push((
        "entrypoint",
        vec![i.entrypoint.as_deref().map_or("-".into(), quote)],
    ));
    let args = match &i.args {
        None => "-".to_string(),
        Some(a) => format!(
            "[{}]",
            a.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
        ),
    };
    lines.push(("args", vec![args]));
    if ssh::runs_sshd(i) {
        let onstart = match i.onstart.as_deref() {
            Some(s) if !s.trim().is_empty() => onstart_summary(s),
            _ => "-".to_string(),
        };
        lines.push(("onstart", vec![onstart]));
        lines.push(("direct", vec![yes_no(i.direct)]));
        if let Some((url, _)) = crate::jupyter::Links::of(i).ok().and_then(|l| l.direct) {
            lines.push(("jupyter", vec![url]));
        }
        if let Some(url) = i
            .proxy_jupyter_url
            .as_ref()
            .filter(|_| i.mode == LaunchMode::Jupyter)
        {
            lines.push(("jupyter (proxy)", vec![url.clone()]));
        }
    }
    for (key, h) in http_keys.iter().zip(&i.http_urls) {
        lines.push((key, vec![h.url.clone()]));
    }
    lines.push((
        "container id",
        vec![dash(i.container_id.as_deref().unwrap_or(""))],
    ));
    lines.push((
        "created",
        vec![format!(
            "{} ({} ago)",
            i.created_at,
            age(&i.created_at, now)
        )],
    ));
    if let Some(s) = &i.started_at {
        lines.push(("started", vec![s.clone()]));
    }

    key_values(lines)
}

/// `berth templates ls`: the readme column is its first line.
pub fn templates_table(templates: &[Template], now: i64) -> String {
    let rows: Vec<Vec<String>> = templates
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.settings.mode.unwrap_or_default().to_string(),
                t.settings.image.clone(),
                age(&t.updated_at, now),
                dash(&t.readme.as_deref().map(onstart_summary).unwrap_or_default()),
            ]
        })
        .collect();
    table(&["NAME", "MODE", "IMAGE", "UPDATED", "README"], &rows)
}

/// `berth templates show`: the settings that are set, one `key: value` line each; the
/// onstart script and the readme in full, indented.
pub fn template_details(t: &Template, now: i64) -> String {
    let s = &t.settings;
    let mut lines: Vec<(&str, Vec<String>)> = vec![
        ("name", vec![visible::word(&t.name).into_owned()]),
        ("image", vec![visible::word(&s.image).into_owned()]),
        ("mode", vec![s.mode.unwrap_or_default().to_string()]),
    ];
    if let Some(e) = &s.entrypoint {
        lines.push(("entrypoint", vec![quote(e)]));
    }
    if let Some(a) = &s.args {
        lines.push((
            "args",
            vec![format!(
                "[{}]",
                a.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
            )],
        ));
    }
    if let Some(o) = s.docker_options.as_ref().filter(|o| !o.trim().is_empty()) {
        lines.push(("docker options", vec![visible::script(o, false)]));
    }
    if !s.env.is_empty() {
        lines.push(("env", s.env.iter().map(|(k, v)| env_line(k, v)).collect()));
    }
    if !s.ports.is_empty() {
        lines.push(("ports", vec![s.ports.join(" ")]));
    }
    if !s.http_ports.is_empty() {
        let p: Vec<String> = s.http_ports.iter().map(u16::to_string).collect();
        lines.push(("http ports", vec![p.join(" ")]));
    }
    if let Some(l) = &s.label {
        lines.push(("label", vec![visible::word(l).into_owned()]));
    }
    if let Some(gpus) = s.gpus.filter(|n| *n > 0) {
        lines.push(("gpus", vec![gpus.to_string()]));
    }
    if s.direct == Some(true) {
        lines.push(("direct", vec!["yes".into()]));
    }
    if s.jupyter_lab == Some(true) {
        lines.push(("jupyter lab", vec!["yes".into()]));
    }
    if let Some(d) = &s.jupyter_dir {
        lines.push(("jupyter dir", vec![visible::word(d).into_owned()]));
    }
    lines.push((
        "created",
        vec![format!(
            "{} ({} ago)",
            t.created_at,
            age(&t.created_at, now)
        )],
    ));
    lines.push((
        "updated",
        vec![format!(
            "{} ({} ago)",
            t.updated_at,
            age(&t.updated_at, now)
        )],
    ));
    let mut out = key_values(lines);
    // The onstart script shows its control characters as shell reads them where they
    // stand (in quotes or not), the readme as text; both keep their newlines.
    let onstart = s.onstart.as_deref().map(|o| visible::script(o, true));
    let readme = t.readme.as_deref().map(|r| visible::text(r, true));
    for (key, text) in [("onstart", onstart), ("readme", readme)] {
        if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
            out.push_str(&format!("{key}:\n"));
            for line in text.trim_end_matches('\n').split('\n') {
                out.push_str(format!("    {line}").trim_end());
                out.push('\n');
            }
        }
    }
    out
}

/// `key: value` lines, the values in one column; a key's further values go on indented
/// lines of their own, its missing value shows as `-`. Control characters in a value are
/// shown escaped ([`visible::text`]).
fn key_values(lines: Vec<(&str, Vec<String>)>) -> String {
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (key, values) in lines {
        let key = format!("{key}:");
        let mut values = values.into_iter().map(|v| visible::text(&v, false));
        let first = values.next().unwrap_or_else(|| "-".to_string());
        out.push_str(format!("{key:width$}{first}").trim_end());
        out.push('\n');
        for v in values {
            out.push_str(&format!("{:width$}{v}\n", ""));
        }
    }
    out
}

/// `K=V`, the value shown as a shell would quote it if it holds control characters.
fn env_line(k: &str, v: &str) -> String {
    format!("{}={}", visible::word(k), visible::word(v))
}

/// `running`, or `exited(3)` when there is an exit code.
pub fn state(i: &Instance) -> String {
    match (i.state, i.exit_code) {
        (InstanceState::Exited, Some(code)) => format!("exited({code})"),
        (s, _) => s.to_string(),
    }
}

/// `40001->8000/tcp,40002->7000/udp`: the direct mappings (loopback-only ones, on a host
/// without open ports, are left out: nothing connects to them directly).
pub fn ports(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .filter(|p| !p.local)
        .map(|p| format!("{}->{}/{}", p.external, p.internal, p.proto.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `12.3 MB / 45.6 MB (2/5 layers)`.
pub fn progress(p: &PullProgress) -> String {
    format!(
        "{} / {} ({}/{} layers)",
        bytes(p.current),
        bytes(p.total),
        p.layers_done,
        p.layers_total
    )
}

/// Decimal units, as Docker shows them: `980 B`, `12.3 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.95 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A JSON-quoted string: the exact characters, visibly delimited, every control character
/// escaped (JSON escapes U+0000–U+001F; DEL and C1 are escaped here too, as `\u007f`).
pub fn quote(s: &str) -> String {
    let json = serde_json::Value::from(s).to_string();
    if !visible::has_controls(&json) {
        return json;
    }
    json.chars()
        .map(|c| {
            if c.is_control() {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Time since an RFC 3339 timestamp, in its largest whole unit: `42s`, `5m`, `2h`, `3d`.
/// A timestamp that cannot be read shows as `?`; one in the future as `0s`.
pub fn age(rfc3339: &str, now: i64) -> String {
    let Some(then) = parse_rfc3339(rfc3339) else {
        return "?".to_string();
    };
    let secs = (now - then).max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Seconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let sep = |at: usize, ok: &[u8]| b.get(at).is_some_and(|c| ok.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if sep(i, b".") {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && sep(i + 3, b":") => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            let sign = if *c == b'+' { 1 } else { -1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86400 + hour * 3600 + min * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::api::Instance;
    use berth_core::protocol::{Gpu, PortRange};
    use berth_core::{LaunchMode, PortProto};

    const NOW: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn instance() -> Instance {
        Instance {
            id: 7,
            owner: "alice".into(),
            host: "gpu1".into(),
            image: "berth-test/busybox".into(),
            mode: LaunchMode::Entrypoint,
            label: Some("train run".into()),
            state: InstanceState::Exited,
            exit_code: Some(3),
            reason: None,
            progress: None,
            public_ip: "203.0.113.5".into(),
            ports: vec![
                PortMapping {
                    internal: 8000,
                    external: 40001,
                    proto: PortProto::Tcp,
                    local: false,
                },
                PortMapping {
                    internal: 7000,
                    external: 40002,
                    proto: PortProto::Udp,
                    local: false,
                },
            ],
            entrypoint: Some("/bin/sh".into()),
            args: Some(vec!["-c".into(), "echo \"hi\" $HOME".into()]),
            env: [("A".to_string(), "1".to_string())].into(),
            gpus: 0,
            onstart: None,
            direct: false,
            ssh_host_keys: vec![],
            jupyter_lab: false,
            jupyter_dir: None,
            jupyter_token: None,
            jupyter_url: None,
            proxy_ssh: None,
            proxy_jupyter_url: None,
            http_urls: vec![],
            container_id: Some("abc123".into()),
            created_at: "2023-11-14T22:08:20Z".into(),
            started_at: None,
        }
    }

    #[test]
    fn rfc3339_parses() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(NOW));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123456789Z"), Some(NOW));
        assert_eq!(parse_rfc3339("2023-11-15T00:13:20+02:00"), Some(NOW));
        assert_eq!(parse_rfc3339("2023-11-14t20:13:20-02:00"), Some(NOW));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20Zx",
            "2023-11-14T22:13:20+0200",
            "２023-11-14T22:13:20Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let at = |secs_ago: i64| age("2023-11-14T22:13:20Z", NOW + secs_ago);
        assert_eq!(at(0), "0s");
        assert_eq!(at(59), "59s");
        assert_eq!(at(300), "5m");
        assert_eq!(at(2 * 3600 + 59 * 60), "2h");
        assert_eq!(at(3 * 86400 + 5), "3d");
        assert_eq!(at(-30), "0s");
        assert_eq!(age("yesterday", NOW), "?");
    }

    #[test]
    fn instance_table() {
        let mut running = instance();
        running.id = 12;
        running.state = InstanceState::Running;
        running.exit_code = None;
        running.label = None;
        running.ports.clear();
        running.created_at = "2023-11-12T22:13:20Z".into();
        let t = instances_table(&[instance(), running], NOW);
        let expected = "\
ID  STATE      MODE        IMAGE               HOST  PORTS                            LABEL      AGE
7   exited(3)  entrypoint  berth-test/busybox  gpu1  40001->8000/tcp,40002->7000/udp  train run  5m
12  running    entrypoint  berth-test/busybox  gpu1  -                                -          2d
";
        assert_eq!(t, expected);
        assert_eq!(instances_table(&[], NOW).lines().count(), 1);
    }

    #[test]
    fn host_and_user_tables() {
        let h = Host {
            name: "local".into(),
            public_ip: "203.0.113.5".into(),
            port_range: Some(PortRange {
                first: 40000,
                last: 40999,
            }),
            gpus: vec![Gpu {
                index: 0,
                name: "A100".into(),
                uuid: "GPU-1".into(),
            }],
            online: true,
            last_seen: None,
            instances: 2,
            docker_version: "26.1".into(),
        };
        let mut nat = h.clone();
        nat.name = "behind-nat".into();
        nat.port_range = None;
        nat.gpus.clear();
        nat.online = false;
        assert_eq!(
            hosts_table(&[h, nat]),
            "\
NAME        ONLINE  PUBLIC IP    PORTS        GPUS  INSTANCES
local       yes     203.0.113.5  40000-40999  1     2
behind-nat  no      203.0.113.5  -            0     2
"
        );
        let u = User {
            name: "admin".into(),
            admin: true,
            created_at: "2023-11-14T21:13:20Z".into(),
        };
        assert_eq!(
            users_table(&[u], NOW),
            "NAME   ADMIN  AGE\nadmin  yes    1h\n"
        );
    }

    #[test]
    fn details_show_everything() {
        let d = instance_details(&instance(), NOW);
        let expected = r#"id:           7
state:        exited
exit code:    3
owner:        alice
image:        berth-test/busybox
mode:         entrypoint
label:        train run
host:         gpu1
public ip:    203.0.113.5
ports:        203.0.113.5:40001 -> 8000/tcp
              203.0.113.5:40002 -> 7000/udp
gpus:         0
env:          A=1
entrypoint:   "/bin/sh"
args:         ["-c", "echo \"hi\" $HOME"]
container id: abc123
created:      2023-11-14T22:08:20Z (5m ago)
"#;
        assert_eq!(d, expected);

        let mut loading = instance();
        loading.state = InstanceState::Loading;
        loading.exit_code = None;
        loading.progress = Some(PullProgress {
            current: 12_345_678,
            total: 45_600_000,
            layers_done: 2,
            layers_total: 5,
        });
        loading.ports.clear();
        loading.env.clear();
        loading.args = Some(vec![]);
        let d = instance_details(&loading, NOW);
        assert!(
            d.contains("\npull:         12.3 MB / 45.6 MB (2/5 layers)\n"),
            "{d}"
        );
        assert!(d.contains("\nports:        -\n"), "{d}");
        assert!(d.contains("\nenv:          -\n"), "{d}");
        assert!(d.contains("\nargs:         []\n"), "{d}");

        let mut failed = instance();
        failed.state = InstanceState::Failed;
        failed.exit_code = None;
        failed.reason = Some("image not found".into());
        let d = instance_details(&failed, NOW);
        assert!(d.contains("\nreason:       image not found\n"), "{d}");
    }

    #[test]
    fn ssh_details() {
        let mut i = instance();
        i.mode = LaunchMode::Ssh;
        i.state = InstanceState::Running;
        i.exit_code = None;
        i.args = None;
        i.entrypoint = None;
        i.ports[0].internal = 22;
        i.onstart = Some("pip install -r requirements.txt\npython serve.py\n".into());
        i.direct = true;
        i.ssh_host_keys = vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl berth-instance".into(),
        ];
        let d = instance_details(&i, NOW);
        assert!(
            d.contains("\nports:        203.0.113.5:40001 -> 22/tcp\n              203.0.113.5:40002 -> 7000/udp\nssh:          ssh -p 40001 root@203.0.113.5\nhost keys:    ssh-ed25519 SHA256:"),
            "{d}"
        );
        assert!(
            d.contains("\nonstart:      pip install -r requirements.txt…\ndirect:       yes\n"),
            "{d}"
        );
        i.ports.clear();
        i.onstart = Some("echo one line\n".into());
        i.ssh_host_keys.clear();
        i.direct = false;
        let d = instance_details(&i, NOW);
        assert!(
            d.contains("\nssh:          - (no direct SSH port)\nhost keys:    -\n"),
            "{d}"
        );
        assert!(
            d.contains("\nonstart:      echo one line\ndirect:       no\n"),
            "{d}"
        );
        // Entrypoint instances show none of it.
        let d = instance_details(&instance(), NOW);
        assert!(
            !d.contains("ssh") && !d.contains("onstart") && !d.contains("direct"),
            "{d}"
        );
    }

    #[test]
    fn direct_and_proxy_details() {
        let mut i = instance();
        i.mode = LaunchMode::Jupyter;
        i.state = InstanceState::Running;
        i.exit_code = None;
        i.ports = vec![
            PortMapping {
                internal: 22,
                external: 40001,
                proto: PortProto::Tcp,
                local: false,
            },
            PortMapping {
                internal: 8080,
                external: 40002,
                proto: PortProto::Tcp,
                local: false,
            },
        ];
        i.jupyter_url = Some("https://203.0.113.5:40002/tree?token=t".into());
        i.proxy_ssh = Some("proxy.example:2207".into());
        i.proxy_jupyter_url = Some("https://i7-8080.berth.example:8443/tree?token=t".into());
        i.http_urls = vec![berth_core::api::HttpUrl {
            port: 7860,
            url: "https://i7-7860.berth.example:8443/?berth_token=a".into(),
        }];
        let d = instance_details(&i, NOW);
        assert!(
            d.contains(
                "\nssh:             ssh -p 40001 root@203.0.113.5\nssh (proxy):     ssh -p 2207 root@proxy.example\n"
            ),
            "{d}"
        );
        assert!(
            d.contains(
                "\njupyter:         https://203.0.113.5:40002/tree?token=t\njupyter (proxy): https://i7-8080.berth.example:8443/tree?token=t\nhttp 7860:       https://i7-7860.berth.example:8443/?berth_token=a\n"
            ),
            "{d}"
        );

        // A host without open ports: loopback-only mappings, no direct lines.
        for p in &mut i.ports {
            p.local = true;
        }
        i.proxy_ssh = Some("[2001:db8::9]:2207".into());
        let d = instance_details(&i, NOW);
        assert!(
            d.contains("\nports:           loopback:40001 -> 22/tcp (on the host only: no direct connection)\n"),
            "{d}"
        );
        assert!(
            d.contains("\nssh:             - (no direct SSH port)\nssh (proxy):     ssh -p 2207 root@2001:db8::9\n"),
            "{d}"
        );
        assert!(!d.contains("\njupyter: "), "{d}");
        assert!(d.contains("\njupyter (proxy): https://i7-8080"), "{d}");

        // Without a proxy, no proxy lines.
        i.proxy_ssh = None;
        i.proxy_jupyter_url = None;
        i.http_urls.clear();
        let d = instance_details(&i, NOW);
        assert!(!d.contains("proxy") && !d.contains("http "), "{d}");

        // The table leaves loopback-only mappings out.
        i.ports[1].local = false;
        let t = instances_table(&[i], NOW);
        assert!(t.contains("  40002->8080/tcp  "), "{t}");
        assert!(!t.contains("->22/"), "{t}");

        // http links show for entrypoint instances too.
        let mut e = instance();
        e.http_urls = vec![berth_core::api::HttpUrl {
            port: 8000,
            url: "https://i7-8000.berth.example:8443/?berth_token=a".into(),
        }];
        let d = instance_details(&e, NOW);
        assert!(
            d.contains("\nhttp 8000:    https://i7-8000.berth.example:8443/?berth_token=a\n"),
            "{d}"
        );
    }

    /// Every control character a value may hold, but NUL (no value holds one).
    fn controls() -> String {
        (1u32..0x20)
            .chain(0x7f..0xa0)
            .filter_map(char::from_u32)
            .collect()
    }

    /// Whether `out` holds a control character other than the newlines ending its lines.
    fn raw_controls(out: &str) -> Vec<char> {
        out.chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect()
    }

    #[test]
    fn control_characters_show_escaped() {
        let t = Template {
            name: "ctl".into(),
            readme: Some("line one\nred \u{1b}[31mtext\u{1b}[0m\rover\n".into()),
            settings: berth_core::api::CreateInstance {
                image: "berth-test/busybox".into(),
                mode: Some(LaunchMode::Jupyter),
                args: Some(vec![
                    "a\rb".into(),
                    "\u{1b}]0;t\u{7}".into(),
                    "\u{9b}".into(),
                ]),
                entrypoint: Some("/bin/\u{7f}".into()),
                env: [
                    ("K".to_string(), "x\ty".to_string()),
                    ("ALL".to_string(), controls()),
                ]
                .into(),
                docker_options: Some("-e 'O=p\rq' -e P=\u{1b}".into()),
                label: Some("l\u{85}".into()),
                jupyter_dir: Some("/w\rx".into()),
                onstart: Some(
                    "# it's the image's\ncd '/w\rx' || exit 1\nexec p 'a\rb' '\u{1b}[2J'\n\tdone\n"
                        .into(),
                ),
                ..Default::default()
            },
            created_at: "2023-11-14T22:13:20Z".into(),
            updated_at: "2023-11-14T22:13:20Z".into(),
        };
        let d = template_details(&t, NOW + 90);
        assert_eq!(raw_controls(&d), Vec::<char>::new(), "{d}");
        for want in [
            "\nentrypoint:     \"/bin/\\u007f\"\n",
            "\nargs:           [\"a\\rb\", \"\\u001b]0;t\\u0007\", \"\\u009b\"]\n",
            "\ndocker options: -e 'O=p'$'\\r''q' -e P=$'\\e'\n",
            "\nenv:            ALL=$'\\x01\\x02",
            "\\x1f\\x7f\\u0080",
            "\\u009f'\n                K=$'x\\ty'\n",
            "\nlabel:          $'l\\u0085'\n",
            "\njupyter dir:    $'/w\\rx'\n",
            "\nonstart:\n    # it's the image's\n    cd '/w'$'\\r''x' || exit 1\n    exec p 'a'$'\\r''b' $'\\e''[2J'\n    $'\\t'done\n",
            "\nreadme:\n    line one\n    red $'\\e'[31mtext$'\\e'[0m$'\\r'over\n",
        ] {
            assert!(d.contains(want), "{want:?} not in:\n{d}");
        }
        let ls = templates_table(std::slice::from_ref(&t), NOW);
        assert_eq!(raw_controls(&ls), Vec::<char>::new(), "{ls}");

        // berth show and berth ls, likewise.
        let mut i = instance();
        i.label = Some("l\u{1b}".into());
        i.args = Some(vec!["a\rb".into()]);
        i.env = [("K".to_string(), "x\ry".to_string())].into();
        i.reason = Some("failed: \u{1b}[2Jgone".into());
        let d = instance_details(&i, NOW);
        assert_eq!(raw_controls(&d), Vec::<char>::new(), "{d}");
        for want in [
            "reason:       failed: $'\\e'[2Jgone\n",
            "label:        $'l\\e'\n",
            "env:          K=$'x\\ry'\n",
            "args:         [\"a\\rb\"]\n",
        ] {
            assert!(d.contains(want), "{want:?} not in:\n{d}");
        }
        let ls = instances_table(&[i], NOW);
        assert_eq!(raw_controls(&ls), Vec::<char>::new(), "{ls}");
        assert!(ls.contains(" l$'\\e' "), "{ls}");
    }

    #[test]
    fn templates_shown() {
        let t = Template {
            name: "web".into(),
            readme: Some("Serves the app.\nUse --gpus 1.\n".into()),
            settings: berth_core::api::CreateInstance {
                image: "berth-test/argserver".into(),
                mode: Some(LaunchMode::Ssh),
                env: [("GREETING_STYLE".to_string(), "loud".to_string())].into(),
                ports: vec!["8765/tcp".into()],
                onstart: Some("cd '/srv/app dir' || exit 1\nexec python3 'a b'\n".into()),
                ..Default::default()
            },
            created_at: "2023-11-14T22:13:20Z".into(),
            updated_at: "2023-11-14T22:13:20Z".into(),
        };
        assert_eq!(
            templates_table(std::slice::from_ref(&t), NOW + 90),
            "NAME  MODE  IMAGE                 UPDATED  README\nweb   ssh   berth-test/argserver  1m       Serves the app.…\n"
        );
        let d = template_details(&t, NOW + 90);
        let expected = "name:    web
image:   berth-test/argserver
mode:    ssh
env:     GREETING_STYLE=loud
ports:   8765/tcp
created: 2023-11-14T22:13:20Z (1m ago)
updated: 2023-11-14T22:13:20Z (1m ago)
onstart:
    cd '/srv/app dir' || exit 1
    exec python3 'a b'
readme:
    Serves the app.
    Use --gpus 1.
";
        assert_eq!(d, expected);
    }

    #[test]
    fn key_table() {
        let keys = [
            SshKey {
                id: 1,
                key: "ssh-ed25519 AAAAC3Nz alice@laptop two".into(),
                fingerprint: "SHA256:abc".into(),
                created_at: "2023-11-14T21:13:20Z".into(),
            },
            SshKey {
                id: 12,
                key: "ssh-rsa AAAAB3".into(),
                fingerprint: "SHA256:defgh".into(),
                created_at: "2023-11-14T22:13:00Z".into(),
            },
        ];
        assert_eq!(
            keys_table(&keys, NOW),
            "\
ID  FINGERPRINT   KEY                           AGE
1   SHA256:abc    ssh-ed25519 alice@laptop two  1h
12  SHA256:defgh  ssh-rsa                       20s
"
        );
        assert_eq!(
            onstart_summary(&"x".repeat(70)),
            format!("{}…", "x".repeat(60))
        );
        assert_eq!(onstart_summary("a\n\n"), "a");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1000), "1.0 kB");
        assert_eq!(bytes(999_999), "1.0 MB");
        assert_eq!(bytes(45_600_000), "45.6 MB");
        assert_eq!(bytes(3_000_000_000), "3.0 GB");
    }
}
