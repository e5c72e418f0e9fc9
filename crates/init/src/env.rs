//! The instance's environment for SSH sessions, `su -` and tmux: which of init's own
//! variables are passed on, and how they are quoted for `sh` (`/etc/profile.d/berth-env.sh`)
//! and for sshd's `SetEnv`; and the values berth sets over the container's own
//! (config.json's `env`).

use std::ffi::OsString;

/// Variables that describe one process or terminal, not the instance: never passed on.
pub const EXCLUDED: [&str; 6] = ["HOME", "HOSTNAME", "PWD", "SHLVL", "TERM", "_"];

/// Where the profile script goes.
pub const PROFILE_SCRIPT: &str = "/etc/profile.d/berth-env.sh";

/// The environment split into what SSH sessions get and what is left out (with why).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SessionEnv {
    /// Passed on, sorted by name.
    pub vars: Vec<(String, String)>,
    /// Values with a line break, sorted by name: sshd's `SetEnv` cannot carry them, so
    /// they reach login shells only (ssh sessions with a shell, `su -`, tmux) through the
    /// profile script, not `ssh HOST CMD`.
    pub login_only: Vec<(String, String)>,
    /// Left out: (name, reason), sorted by name. Names only: values may be secrets.
    pub left_out: Vec<(String, &'static str)>,
}

/// Splits `vars` (init's own environment) into what sessions get and what is left out.
pub fn session_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> SessionEnv {
    let mut env = SessionEnv::default();
    for (name, value) in vars {
        let name = match name.into_string() {
            Ok(n) => n,
            Err(n) => {
                env.left_out
                    .push((n.to_string_lossy().into_owned(), "name is not UTF-8"));
                continue;
            }
        };
        let reason = if EXCLUDED.contains(&name.as_str()) {
            Some("describes init's own process")
        } else if !is_shell_name(&name) {
            Some("not a valid shell variable name")
        } else {
            None
        };
        if let Some(reason) = reason {
            env.left_out.push((name, reason));
            continue;
        }
        match value.into_string() {
            Ok(v) if v.contains('\n') || v.contains('\r') => env.login_only.push((name, v)),
            Ok(v) => env.vars.push((name, v)),
            Err(_) => env.left_out.push((name, "value is not UTF-8")),
        }
    }
    env.vars.sort();
    env.login_only.sort();
    env.left_out.sort();
    env
}

/// Why `name=value` cannot be set in a process environment, if it cannot: the kernel's
/// `NAME=value` strings end at a NUL, and a name ends at the first `=`.
pub fn override_problem(name: &str, value: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name.contains('=') {
        Some("name holds '='")
    } else if name.contains('\0') {
        Some("name holds a NUL")
    } else if value.contains('\0') {
        Some("value holds a NUL")
    } else {
        None
    }
}

/// Sets berth's current values (config.json's `env`) in init's own environment, over the
/// container's, so that the session env, sshd's `SetEnv` and every child see them. Call it
/// before any thread exists. Returns the names set and the names skipped with why (names
/// only: values may be secrets).
pub fn apply_overrides<'a>(
    vars: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> (Vec<String>, Vec<(String, &'static str)>) {
    let (mut set, mut skipped) = (Vec::new(), Vec::new());
    for (name, value) in vars {
        match override_problem(name, value) {
            Some(why) => skipped.push((name.clone(), why)),
            None => {
                std::env::set_var(name, value);
                set.push(name.clone());
            }
        }
    }
    (set, skipped)
}

/// `[A-Za-z_][A-Za-z0-9_]*`: what `export NAME=…` accepts in every shell.
pub fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// `s` as one single-quoted shell word: `it's` → `'it'\''s'`.
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The `/etc/profile.d/berth-env.sh` text: one `export NAME='value'` line per variable.
pub fn profile_script(vars: &[(String, String)]) -> String {
    let mut out = String::from(
        "# Written by berth-init at every container start: the instance's environment\n\
         # for login shells (ssh sessions, su -, tmux). Edits here are overwritten.\n",
    );
    for (name, value) in vars {
        out.push_str("export ");
        out.push_str(name);
        out.push('=');
        out.push_str(&sh_quote(value));
        out.push('\n');
    }
    out
}

/// The argument of an sshd `SetEnv` line: `NAME="value"` with `\` and `"` escaped by a
/// backslash, as OpenSSH's `argv_split` (which parses config lines since 8.7) undoes it.
/// Older sshd (7.8–8.6) strip the quotes but not the escapes, so there a value holding
/// `\` or `"` arrives with the backslashes; the profile script still has it right.
pub fn setenv_arg(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 3);
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn override_problem_refuses_what_setenv_cannot_take() {
        assert_eq!(override_problem("PUBLIC_IPADDR", "203.0.113.7"), None);
        assert_eq!(override_problem("lower-case.ok", ""), None);
        assert!(override_problem("", "x").is_some());
        assert!(override_problem("A=B", "x").is_some());
        assert!(override_problem("A\0", "x").is_some());
        assert!(override_problem("A", "x\0y").is_some());
    }

    #[test]
    fn apply_overrides_sets_and_overrides() {
        let name = format!("BERTH_INIT_TEST_OVERRIDE_{}", std::process::id());
        std::env::set_var(&name, "from docker");
        let mut vars = std::collections::BTreeMap::new();
        vars.insert(name.clone(), "from berth".to_string());
        vars.insert("BAD=NAME".to_string(), "x".to_string());
        let (set, skipped) = apply_overrides(&vars);
        assert_eq!(set, vec![name.clone()]);
        assert_eq!(skipped, vec![("BAD=NAME".to_string(), "name holds '='")]);
        assert_eq!(std::env::var(&name).unwrap(), "from berth");
        std::env::remove_var(&name);
    }

    #[test]
    fn sh_quote_escapes_single_quotes() {
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("plain"), "'plain'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("''"), r"''\'''\'''");
        assert_eq!(sh_quote("$HOME `x` \"q\" \\"), "'$HOME `x` \"q\" \\'");
    }

    #[test]
    fn sh_quote_round_trips_through_a_real_shell() {
        let nasty = "a'b\"c$d`e\\f g*h;i|j&k(l)m<n>o!p{q}r~s#t%u";
        let script = format!("printf %s {}", sh_quote(nasty));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), nasty);
    }

    #[test]
    fn setenv_arg_escapes_backslash_and_double_quote() {
        assert_eq!(setenv_arg("A", "b"), r#"A="b""#);
        assert_eq!(setenv_arg("A", ""), r#"A="""#);
        assert_eq!(setenv_arg("A", "x y\tz"), "A=\"x y\tz\"");
        assert_eq!(setenv_arg("A", r#"say "hi" \o/"#), r#"A="say \"hi\" \\o/""#);
        assert_eq!(setenv_arg("A", "it's #1"), r#"A="it's #1""#);
    }

    /// A model of OpenSSH's `argv_split` (misc.c) to check the escaping against.
    fn argv_split(s: &str) -> Vec<String> {
        let b: Vec<char> = s.chars().collect();
        let (mut i, mut out) = (0, Vec::new());
        while i < b.len() {
            if b[i] == ' ' || b[i] == '\t' {
                i += 1;
                continue;
            }
            let (mut quote, mut arg) = (None, String::new());
            while i < b.len() {
                let c = b[i];
                if c == '\\' && i + 1 < b.len() {
                    let n = b[i + 1];
                    if n == '\'' || n == '"' || n == '\\' || (quote.is_none() && n == ' ') {
                        i += 1;
                    }
                    arg.push(b[i]);
                } else if quote.is_none() && (c == ' ' || c == '\t') {
                    break;
                } else if quote.is_none() && (c == '"' || c == '\'') {
                    quote = Some(c);
                } else if quote == Some(c) {
                    quote = None;
                } else {
                    arg.push(c);
                }
                i += 1;
            }
            assert!(quote.is_none(), "unterminated quote in {s:?}");
            out.push(arg);
        }
        out
    }

    #[test]
    fn setenv_arg_round_trips_through_argv_split() {
        for value in [
            "",
            "plain",
            "a b",
            r#"q"uo"te"#,
            r"back\slash\",
            "it's",
            "#x",
            "\\\"",
        ] {
            let line = format!("SetEnv {}", setenv_arg("V", value));
            assert_eq!(
                argv_split(&line),
                vec!["SetEnv".to_string(), format!("V={value}")],
                "{line}"
            );
        }
    }

    #[test]
    fn session_env_filters_and_sorts() {
        let env = session_env(os(&[
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/root"),
            ("HOSTNAME", "abc"),
            ("BERTH_INSTANCE_ID", "i-1"),
            ("MULTI", "a\nb"),
            ("_", "/.berth/init"),
            ("TERM", "xterm"),
            ("PWD", "/"),
            ("SHLVL", "1"),
            ("bad-name", "x"),
            ("1X", "x"),
            ("EMPTY", ""),
        ]));
        assert_eq!(
            env.vars,
            vec![
                ("BERTH_INSTANCE_ID".into(), "i-1".into()),
                ("EMPTY".into(), "".into()),
                ("PATH".into(), "/usr/bin:/bin".into()),
            ]
        );
        assert_eq!(env.login_only, vec![("MULTI".into(), "a\nb".into())]);
        let names: Vec<&str> = env.left_out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec!["1X", "HOME", "HOSTNAME", "PWD", "SHLVL", "TERM", "_", "bad-name"]
        );
    }

    #[test]
    fn profile_script_exports_each_var() {
        let s = profile_script(&[("A".into(), "x".into()), ("B".into(), "it's".into())]);
        assert!(s.ends_with("export A='x'\nexport B='it'\\''s'\n"), "{s}");
        assert!(s
            .lines()
            .all(|l| l.starts_with('#') || l.starts_with("export ")));
    }

    #[test]
    fn profile_script_sources_in_a_real_shell() {
        let vars = vec![
            ("BERTH_T1".to_string(), "it's a \"test\" $x \\n".to_string()),
            ("BERTH_T2".to_string(), String::new()),
        ];
        let script = format!(
            "{}printf '%s|%s' \"$BERTH_T1\" \"$BERTH_T2\"",
            profile_script(&vars)
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "it's a \"test\" $x \\n|"
        );
    }
}
