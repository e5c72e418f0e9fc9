//! The little HTTP/1.1 the HTTPS front needs: find the end of the first request's head, read
//! its Host, target and cookies, parse `i<ID>-<PORT>.<domain>`, and write the proxy's own
//! short answers. Everything after the first head is piped as bytes, untouched.

/// The longest first request head the front reads.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// The query parameter of a link that carries an instance's access token.
pub(crate) const TOKEN_PARAM: &str = "berth_token";

/// Where the head that starts in `buf` ends (just past its blank line), searching from `from`
/// (where the previous search stopped, so a slowly arriving head costs linear time).
/// Leading blank lines (allowed before a request line) are skipped.
pub(crate) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = buf.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    let from = from.saturating_sub(3).max(start);
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// What the front reads from the first request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub target: String,
    pub host: Option<String>,
    pub cookies: Vec<String>,
}

/// Parses a request head (request line and header fields). Refuses what a careful HTTP/1.1
/// server refuses: a malformed request line, folded or nameless header lines, whitespace
/// before a colon, and more than one Host.
pub(crate) fn parse_head(head: &str) -> Option<Head> {
    let mut lines = head
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let request = lines.next()?;
    let mut parts = request.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_graphic())
        || target.is_empty()
        || !version.starts_with("HTTP/1.")
    {
        return None;
    }
    let mut host = None;
    let mut cookies = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            return None;
        }
        let (name, value) = line.split_once(':')?;
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
            return None;
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return None;
            }
            host = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("cookie") {
            cookies.push(value.to_string());
        }
    }
    Some(Head {
        target: target.to_string(),
        host,
        cookies,
    })
}

/// `i<ID>-<PORT>.<domain>` (a Host header value, optionally with `:port`) → (ID, PORT).
pub(crate) fn parse_name(host: &str, domain: &str) -> Option<(i64, u16)> {
    if host.starts_with('[') {
        return None;
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let (label, rest) = name.split_once('.')?;
    if domain.is_empty() || !rest.eq_ignore_ascii_case(domain) {
        return None;
    }
    let label = label
        .strip_prefix('i')
        .or_else(|| label.strip_prefix('I'))?;
    let (id, port) = label.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(id) || !digits(port) {
        return None;
    }
    let id: i64 = id.parse().ok().filter(|i| *i > 0)?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    Some((id, port))
}

/// If the target's query has `berth_token=…`: the (percent-decoded) token and the same
/// target without any `berth_token` parameter (where to send the browser next).
pub(crate) fn take_token(target: &str) -> Option<(String, String)> {
    let (path, query) = target.split_once('?')?;
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == TOKEN_PARAM {
            if token.is_none() {
                token = Some(percent_decode(value).unwrap_or_default());
            }
        } else {
            rest.push(pair);
        }
    }
    let token = token?;
    // Always a path on this same site: never `//other.site/…` or an absolute URL.
    let path = match path.strip_prefix('/') {
        Some(p) => p.trim_start_matches(['/', '\\']),
        None => "",
    };
    let location = if rest.is_empty() {
        format!("/{path}")
    } else {
        format!("/{path}?{}", rest.join("&"))
    };
    Some((token, location))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The cookie that carries instance `id`'s access token.
pub(crate) fn cookie_name(id: i64) -> String {
    format!("berth_i{id}")
}

/// Whether any Cookie header carries `name=token` (tokens compared in constant time).
pub(crate) fn cookie_matches(cookies: &[String], name: &str, token: &str) -> bool {
    let mut found = false;
    for header in cookies {
        for pair in header.split(';') {
            if let Some((n, v)) = pair.trim_matches([' ', '\t']).split_once('=') {
                let v = v.trim_matches('"');
                found |= n == name && ct_eq(v.as_bytes(), token.as_bytes());
            }
        }
    }
    found
}

/// Equality whose time does not depend on where two equally long secrets differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A complete short answer that closes the connection.
pub(crate) fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The same answer for every name the proxy does not serve, whatever the reason.
/// The answer for a name that leads nowhere AND for an http port asked without its access
/// token: the same, so that nobody learns which instances and ports exist.
pub(crate) fn not_found() -> Vec<u8> {
    response(
        "404 Not Found",
        "berth: not found. An instance's http port opens with its link from `berth show` or \
         the web GUI, which carries the instance's access token.\n",
    )
}

pub(crate) fn bad_gateway(reason: &str) -> Vec<u8> {
    response("502 Bad Gateway", &format!("berth: {reason}\n"))
}

/// Sets the access cookie and sends the browser to `location` (the link without the token).
pub(crate) fn token_redirect(location: &str, cookie: &str, token: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\n\
         Set-Cookie: {cookie}={token}; Path=/; Secure; HttpOnly; SameSite=Lax\r\n\
         Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_end_at_the_blank_line() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"\r\n\r\n", 0), None);
        assert_eq!(head_end(b"\r\nGET / HTTP/1.1\r\n\r\n", 0), Some(20));
        // Resuming a search just before the end still finds it.
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(head_end(buf, 26), Some(27));
    }

    #[test]
    fn heads_parse_and_bad_ones_are_refused() {
        let h = parse_head("GET /x?a=1 HTTP/1.1\r\nhOsT:  i7-8080.b.test:443 \r\nCookie: a=1\r\nCookie: b=2\r\n\r\n")
            .unwrap();
        assert_eq!(h.target, "/x?a=1");
        assert_eq!(h.host.as_deref(), Some("i7-8080.b.test:443"));
        assert_eq!(h.cookies, vec!["a=1", "b=2"]);
        assert_eq!(parse_head("GET / HTTP/1.1\r\n\r\n").unwrap().host, None);
        for bad in [
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /  HTTP/1.1\r\n\r\n",
            "GET / SPDY/3\r\n\r\n",
            "GET\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_parse() {
        let d = "berth.test";
        assert_eq!(parse_name("i7-8080.berth.test", d), Some((7, 8080)));
        assert_eq!(parse_name("I42-7860.BERTH.Test:8443", d), Some((42, 7860)));
        assert_eq!(
            parse_name("i7-8080.berth.test.", "berth.test."),
            Some((7, 8080))
        );
        for bad in [
            "berth.test",
            "i7.berth.test",
            "i7-8080.other.test",
            "i7-8080.x.berth.test",
            "x7-8080.berth.test",
            "i-8080.berth.test",
            "i0-8080.berth.test",
            "i7-0.berth.test",
            "i7-70000.berth.test",
            "i+7-8080.berth.test",
            "i7--8080.berth.test",
            "i7-8080.berth.test:x",
            "[::1]:443",
            "",
        ] {
            assert_eq!(parse_name(bad, d), None, "{bad:?}");
        }
    }

    #[test]
    fn token_links_lose_their_token() {
        assert_eq!(
            take_token("/lab?berth_token=abc"),
            Some(("abc".into(), "/lab".into()))
        );
        assert_eq!(
            take_token("/?a=1&berth_token=a%2Db&b=2"),
            Some(("a-b".into(), "/?a=1&b=2".into()))
        );
        assert_eq!(
            take_token("?berth_token=x&berth_token=y"),
            Some(("x".into(), "/".into()))
        );
        assert_eq!(
            take_token("//evil.example/x?berth_token=t"),
            Some(("t".into(), "/evil.example/x".into()))
        );
        assert_eq!(
            take_token("/\\evil.example?berth_token=t"),
            Some(("t".into(), "/evil.example".into()))
        );
        assert_eq!(
            take_token("https://evil.example/x?berth_token=t"),
            Some(("t".into(), "/".into()))
        );
        assert_eq!(take_token("/?a=1"), None);
        assert_eq!(take_token("/"), None);
    }

    #[test]
    fn cookies_match_by_name_and_value() {
        let c = vec!["a=1; berth_i7=tok".to_string()];
        assert!(cookie_matches(&c, "berth_i7", "tok"));
        assert!(!cookie_matches(&c, "berth_i7", "tok2"));
        assert!(!cookie_matches(&c, "berth_i8", "tok"));
        let c = vec!["berth_i7=old".to_string(), "berth_i7=\"tok\"".to_string()];
        assert!(cookie_matches(&c, "berth_i7", "tok"));
        assert!(!cookie_matches(&[], "berth_i7", "tok"));
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
