//! Docker image references (`[registry[:port]/]path[:tag][@digest]`), validated with the
//! grammar of the distribution project so that a bad reference is refused at the API
//! instead of failing later inside the engine.

/// Checks an image reference; the error says what is wrong with it.
pub fn validate(reference: &str) -> Result<(), String> {
    if reference.is_empty() {
        return Err("image reference is empty".into());
    }
    if reference.len() > 512 {
        return Err("image reference is longer than 512 characters".into());
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        validate_digest(d)?;
    }
    // A tag follows the last ':' that comes after the last '/'.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        validate_tag(t)?;
    }
    if name.len() > 255 {
        return Err("image name is longer than 255 characters".into());
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && is_domain_like(parts[0]) {
        validate_domain(parts[0])?;
        parts.remove(0);
    }
    for p in parts {
        validate_path_component(p)?;
    }
    Ok(())
}

fn is_domain_like(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

fn validate_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(stripped) = d.strip_prefix('[') {
        let end = stripped
            .find(']')
            .ok_or_else(|| format!("registry {d:?} has an unclosed '['"))?;
        let after = &stripped[end + 1..];
        (&stripped[..end], after.strip_prefix(':'))
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("registry port {p:?} is not a port number"));
        }
    }
    if d.starts_with('[') {
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("registry address {host:?} is not an IPv6 address"));
        }
        return Ok(());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("registry host {host:?} is not a valid host name"));
        }
    }
    Ok(())
}

fn validate_path_component(p: &str) -> Result<(), String> {
    // [a-z0-9]+ ( ( [._] | __ | -+ ) [a-z0-9]+ )*
    let bad = || {
        format!(
            "image name component {p:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
        )
    };
    if p.is_empty() {
        return Err(
            "image name has an empty component (two '/' in a row, or a leading or trailing '/')"
                .into(),
        );
    }
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn validate_tag(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "image tag {t:?} must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ))
    }
}

fn validate_digest(d: &str) -> Result<(), String> {
    let bad = || format!("image digest {d:?} must look like sha256:<64 hex digits>");
    let (alg, hex) = d.split_once(':').ok_or_else(bad)?;
    if alg.is_empty()
        || !alg
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
    {
        return Err(bad());
    }
    if hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_common_references() {
        for r in [
            "busybox",
            "berth-test/busybox",
            "berth-test/busybox:latest",
            "library/ubuntu:22.04",
            "127.0.0.1:5000/berth-test/busybox-pull:latest",
            "localhost/x",
            "registry.example.org/a/b/c:v1.2-rc_3",
            "pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime",
            "a__b/c.d/e---f",
            "[::1]:5000/img",
            "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(validate(r), Ok(()), "{r}");
        }
    }

    #[test]
    fn refuses_bad_references() {
        for r in [
            "",
            "Busybox",
            "busybox:",
            "busybox:.bad",
            "/busybox",
            "busybox/",
            "a//b",
            "a_-b",
            "-a",
            "host:99999/img",
            "img@sha256:short",
            "img with space",
            "img:tag:tag",
            &"a".repeat(600),
        ] {
            assert!(validate(r).is_err(), "{r} should be refused");
        }
    }
}
