//! Templates: saved launch settings ([`CreateInstance`]) that a create request starts from
//! ([`merge`]), and templates made from an image's config ([`from_image`]).
use crate::api::CreateInstance;
use crate::protocol::ImageFacts;
use crate::spec::{is_reserved_env, validate_env_name, PortProto};
use crate::visible;
use crate::LaunchMode;

/// At most this many bytes of readme a template.
pub const MAX_README_BYTES: usize = 16 * 1024;
/// At most this many characters of template name.
pub const MAX_NAME_CHARS: usize = 64;
/// A template name the API's routes keep for themselves (`/api/v1/templates/from-image`).
pub const RESERVED_NAMES: [&str; 1] = ["from-image"];

/// A template name: 1 to 64 of `[a-zA-Z0-9._-]`, not `.` or `..`, not a reserved name.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "."
        && name != "..";
    if !ok {
        return Err(format!(
            "{name:?}: a template name is 1 to {MAX_NAME_CHARS} of letters, digits, '.', '_', '-'"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "{name:?} is reserved; choose another template name"
        ));
    }
    Ok(())
}

/// A readme: at most [`MAX_README_BYTES`], no NUL.
pub fn validate_readme(readme: &str) -> Result<(), String> {
    if readme.len() > MAX_README_BYTES {
        return Err(format!(
            "the readme is {} bytes; at most {MAX_README_BYTES} are allowed",
            readme.len()
        ));
    }
    if readme.contains('\0') {
        return Err("the readme holds a NUL byte".into());
    }
    Ok(())
}

/// A create request laid over a template's settings. What the request gives wins:
///
/// - `image`: the request's if not blank, else the template's;
/// - `mode`, `entrypoint`, `args`, `label`, `onstart`, `jupyter_dir`, `gpus`, `direct`,
///   `jupyter_lab`: the request's if given (`Some`, even `Some(0)`, `Some(false)` or
///   `Some("")`), else the template's;
/// - `env`: both maps, the request's value winning for a name in both;
/// - `docker_options`: both strings, the template's first (later `-e` wins, so the
///   request's do);
/// - `ports`, `http_ports`: both lists, without repeats.
///
/// When the request switches to another mode, the template's settings that apply only to
/// the template's mode are dropped instead of failing validation: its `onstart` and
/// `direct` in entrypoint mode, its `entrypoint` and `args` in ssh/jupyter mode, its
/// `jupyter_lab` and `jupyter_dir` outside jupyter mode. The request's own settings are
/// kept as given, so that a request that contradicts itself is refused by name.
///
/// The result names no template.
pub fn merge(template: &CreateInstance, request: &CreateInstance) -> CreateInstance {
    let mode = request.mode.or(template.mode);
    let m = mode.unwrap_or_default();
    let entrypoint_mode = m == LaunchMode::Entrypoint;
    let jupyter_mode = m == LaunchMode::Jupyter;
    // The template's value of a setting, if the setting applies in the mode launched.
    fn kept<T: Clone>(applies: bool, v: &Option<T>) -> Option<T> {
        v.clone().filter(|_| applies)
    }

    let mut env = template.env.clone();
    env.extend(request.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let given = |o: &Option<String>| o.as_ref().filter(|s| !s.trim().is_empty()).cloned();
    let docker_options = match (
        given(&template.docker_options),
        given(&request.docker_options),
    ) {
        (Some(t), Some(r)) => Some(format!("{t} {r}")),
        (t, r) => r.or(t),
    };
    let mut ports = template.ports.clone();
    for p in &request.ports {
        if !ports.contains(p) {
            ports.push(p.clone());
        }
    }
    let mut http_ports = template.http_ports.clone();
    for p in &request.http_ports {
        if !http_ports.contains(p) {
            http_ports.push(*p);
        }
    }

    CreateInstance {
        image: if request.image.trim().is_empty() {
            template.image.clone()
        } else {
            request.image.clone()
        },
        mode,
        template: None,
        entrypoint: request
            .entrypoint
            .clone()
            .or_else(|| kept(entrypoint_mode, &template.entrypoint)),
        args: request
            .args
            .clone()
            .or_else(|| kept(entrypoint_mode, &template.args)),
        docker_options,
        env,
        ports,
        label: request.label.clone().or_else(|| template.label.clone()),
        gpus: request.gpus.or(template.gpus),
        onstart: request
            .onstart
            .clone()
            .or_else(|| kept(!entrypoint_mode, &template.onstart)),
        direct: request
            .direct
            .or_else(|| kept(!entrypoint_mode, &template.direct)),
        jupyter_lab: request
            .jupyter_lab
            .or_else(|| kept(jupyter_mode, &template.jupyter_lab)),
        jupyter_dir: request
            .jupyter_dir
            .clone()
            .or_else(|| kept(jupyter_mode, &template.jupyter_dir)),
        http_ports,
    }
}

/// `word` quoted for a POSIX shell so that it arrives as exactly one argument, byte for
/// byte: left bare if it is made only of characters no shell treats specially, else in
/// single quotes, each `'` in it written `'\''`. The empty word is `''`.
pub fn sh_quote(word: &str) -> String {
    // `=` would be safe but in a first word, `~` but at a word's start: both are quoted.
    let bare = !word.is_empty()
        && word.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | '/' | ',' | ':' | '@' | '%' | '+')
        });
    if bare {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A command line for a POSIX shell that runs exactly `argv`.
pub fn sh_join(argv: &[String]) -> String {
    argv.iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a USER value means root.
fn is_root_user(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or("");
    name.is_empty() || name == "root" || name == "0"
}

/// The settings of a template made from `image` whose config is `facts`, to run in `mode`,
/// and one note per thing done (or not done) and why. The notes hold no control
/// character: the image's values are shown in them as [`visible`] makes them.
///
/// - ssh/jupyter mode: berth's init replaces the image's ENTRYPOINT and CMD, so they are
///   moved into the onstart script as one `exec` line (every word quoted with
///   [`sh_quote`], so any argv survives exactly), preceded by `cd WORKDIR` if the image
///   sets one; ENV is carried into `env` (but berth's own names); a USER other than root
///   is noted (init and the onstart script run as root);
/// - entrypoint mode: the image runs as it is (its ENTRYPOINT, CMD, ENV, WORKDIR and USER
///   apply unchanged); nothing is moved;
/// - every mode: EXPOSEd ports become `ports` (`N/tcp`, `N/udp`), except those berth's own
///   services use in the mode (22 in ssh/jupyter, 8080 in jupyter).
pub fn from_image(
    image: &str,
    mode: LaunchMode,
    facts: &ImageFacts,
) -> (CreateInstance, Vec<String>) {
    let mut notes = Vec::new();
    let mut settings = CreateInstance {
        image: image.to_string(),
        mode: Some(mode),
        ..Default::default()
    };

    // Ports.
    let mut carried = Vec::new();
    for p in &facts.exposed {
        let berths = p.proto == PortProto::Tcp
            && ((mode != LaunchMode::Entrypoint && p.port == 22)
                || (mode == LaunchMode::Jupyter && p.port == 8080));
        if berths {
            let what = if p.port == 22 {
                "berth's sshd"
            } else {
                "Jupyter"
            };
            notes.push(format!(
                "did not carry EXPOSE {p}: in {mode} mode that port is {what}'s"
            ));
            continue;
        }
        let s = p.to_string();
        if !settings.ports.contains(&s) {
            settings.ports.push(s);
            carried.push(p.to_string());
        }
    }
    if !carried.is_empty() {
        notes.push(format!(
            "carried EXPOSE {} into ports: each gets a host port (and BERTH_{{TCP,UDP}}_PORT_<port> says which)",
            carried.join(" ")
        ));
    }

    if mode == LaunchMode::Entrypoint {
        notes.push(
            "entrypoint mode runs the image as it is: its ENTRYPOINT, CMD, ENV, WORKDIR and USER apply unchanged, so nothing was moved"
                .to_string(),
        );
        return (settings, notes);
    }

    // ENV.
    let mut kept = Vec::new();
    for entry in &facts.env {
        let Some((name, value)) = entry.split_once('=') else {
            notes.push(format!(
                "did not carry ENV {entry:?}: it has no '=' (not NAME=VALUE)"
            ));
            continue;
        };
        if is_reserved_env(name) {
            notes.push(format!(
                "did not carry ENV {}: berth sets that variable itself",
                visible::word(name)
            ));
            continue;
        }
        if let Err(why) = validate_env_name(name) {
            notes.push(format!("did not carry ENV {name:?}: {why}"));
            continue;
        }
        settings.env.insert(name.to_string(), value.to_string());
        kept.push(name.to_string());
    }
    if !kept.is_empty() {
        notes.push(format!(
            "carried ENV {} into env, so the template shows them and an instance can override them with -e",
            kept.join(" ")
        ));
    }

    // ENTRYPOINT + CMD.
    let argv: Vec<String> = facts.entrypoint.iter().chain(&facts.cmd).cloned().collect();
    let what = match (facts.entrypoint.is_empty(), facts.cmd.is_empty()) {
        (false, false) => "ENTRYPOINT+CMD",
        (false, true) => "ENTRYPOINT",
        _ => "CMD",
    };
    if argv.is_empty() {
        notes.push(format!(
            "the image has neither ENTRYPOINT nor CMD: nothing to move, the onstart script is empty (in {mode} mode berth's init runs sshd{} and nothing else)",
            if mode == LaunchMode::Jupyter { " and Jupyter" } else { "" }
        ));
        if !facts.workdir.is_empty() {
            notes.push(format!(
                "WORKDIR {} is kept by Docker as the container's working directory",
                visible::word(&facts.workdir)
            ));
        }
    } else {
        let mut script = format!(
            "# The image's {what}, moved here by berth: in {mode} mode berth's init runs instead of them.\n"
        );
        if !facts.workdir.is_empty() {
            script.push_str(&format!("cd {} || exit 1\n", sh_quote(&facts.workdir)));
        }
        script.push_str(&format!("exec {}\n", sh_join(&argv)));
        settings.onstart = Some(script);
        notes.push(format!(
            "moved {what} into the onstart script (`exec {}`), because {mode} mode runs berth's init instead of the image's entrypoint; every word is quoted so it arrives exactly, and exec lets signals reach it",
            truncate(&visible::sh_join(&argv), 120)
        ));
        if !facts.workdir.is_empty() {
            notes.push(format!(
                "the onstart script changes to WORKDIR {} first, where the image's command would have started",
                visible::word(&facts.workdir)
            ));
        }
        if argv[0].starts_with('-') {
            notes.push(format!(
                "the command's first word {:?} starts with '-', which a shell's exec may read as an option; check the onstart script",
                argv[0]
            ));
        }
    }

    // USER.
    if !is_root_user(&facts.user) {
        let name = facts.user.split(':').next().unwrap_or(&facts.user);
        notes.push(format!(
            "the image runs as USER {}; in {mode} mode berth's init and the onstart script run as root, so the command now runs as root: write `exec su {} -s /bin/sh -c '…'` in the onstart script if it must not",
            visible::word(&facts.user),
            visible::sh_word(name)
        ));
    }
    (settings, notes)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PortSpec;
    use crate::InstanceSpec;
    use std::collections::BTreeMap;

    fn req() -> CreateInstance {
        CreateInstance::default()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn template() -> CreateInstance {
        CreateInstance {
            image: "team/app:1".into(),
            mode: Some(LaunchMode::Ssh),
            docker_options: Some("-e A=from-template-options -p 7000/udp".into()),
            env: env(&[("A", "template"), ("B", "template")]),
            ports: vec!["8000".into(), "9000/udp".into()],
            label: Some("tpl".into()),
            gpus: Some(2),
            onstart: Some("echo template".into()),
            direct: Some(true),
            http_ports: vec![7860],
            ..Default::default()
        }
    }

    #[test]
    fn an_empty_request_takes_the_template_whole() {
        let t = template();
        let m = merge(&t, &req());
        assert_eq!(m, t);
        let with_name = CreateInstance {
            template: Some("web".into()),
            ..req()
        };
        assert_eq!(merge(&t, &with_name).template, None);
    }

    #[test]
    fn request_scalars_win() {
        let r = CreateInstance {
            image: "team/app:2".into(),
            label: Some("mine".into()),
            gpus: Some(1),
            onstart: Some("echo mine".into()),
            ..req()
        };
        let m = merge(&template(), &r);
        assert_eq!(m.image, "team/app:2");
        assert_eq!(m.label.as_deref(), Some("mine"));
        assert_eq!(m.gpus, Some(1));
        assert_eq!(m.onstart.as_deref(), Some("echo mine"));
        assert_eq!(m.mode, Some(LaunchMode::Ssh));
        assert_eq!(m.direct, Some(true));
        // A blank image, or scalars left out, are "not given".
        let r = CreateInstance {
            image: "  ".into(),
            ..req()
        };
        let m = merge(&template(), &r);
        assert_eq!((m.image.as_str(), m.gpus), ("team/app:1", Some(2)));
        // An empty label or onstart given on purpose wins (validation then drops it).
        let r = CreateInstance {
            label: Some(String::new()),
            onstart: Some(String::new()),
            ..req()
        };
        let m = merge(&template(), &r);
        assert_eq!(m.label.as_deref(), Some(""));
        assert_eq!(m.onstart.as_deref(), Some(""));
        let spec = InstanceSpec::from_request(&m).unwrap();
        assert_eq!((spec.label, spec.onstart), (None, None));
    }

    #[test]
    fn env_merges_with_the_request_winning() {
        let r = CreateInstance {
            env: env(&[("B", "request"), ("C", "request")]),
            docker_options: Some("-e A=from-request-options -p 7001".into()),
            ..req()
        };
        let m = merge(&template(), &r);
        assert_eq!(
            m.env,
            env(&[("A", "template"), ("B", "request"), ("C", "request")])
        );
        assert_eq!(
            m.docker_options.as_deref(),
            Some("-e A=from-template-options -p 7000/udp -e A=from-request-options -p 7001")
        );
        // In the spec: the options string's later -e wins; the env maps win over both.
        let spec = InstanceSpec::from_request(&m).unwrap();
        assert_eq!(spec.env["A"], "template");
        let r = CreateInstance {
            docker_options: Some("-e Z=request".into()),
            ..req()
        };
        let t = CreateInstance {
            image: "x".into(),
            docker_options: Some("-e Z=template -e Y=1".into()),
            ..req()
        };
        let spec = InstanceSpec::from_request(&merge(&t, &r)).unwrap();
        assert_eq!(spec.env["Z"], "request");
        assert_eq!(spec.env["Y"], "1");
        // One side only, or blank.
        let t = CreateInstance {
            docker_options: Some("-e Y=1".into()),
            ..req()
        };
        assert_eq!(merge(&t, &req()).docker_options.as_deref(), Some("-e Y=1"));
        let r = CreateInstance {
            docker_options: Some("-e X=2".into()),
            ..req()
        };
        assert_eq!(merge(&req(), &r).docker_options.as_deref(), Some("-e X=2"));
        assert_eq!(
            merge(
                &t,
                &CreateInstance {
                    docker_options: Some(" ".into()),
                    ..req()
                }
            )
            .docker_options
            .as_deref(),
            Some("-e Y=1")
        );
        assert_eq!(merge(&req(), &req()).docker_options, None);
    }

    #[test]
    fn ports_are_unioned() {
        let r = CreateInstance {
            ports: vec!["9000/udp".into(), "8001".into()],
            http_ports: vec![7860, 8888],
            ..req()
        };
        let m = merge(&template(), &r);
        assert_eq!(m.ports, ["8000", "9000/udp", "8001"]);
        assert_eq!(m.http_ports, [7860, 8888]);
    }

    #[test]
    fn zero_and_false_given_win_over_the_template() {
        let t = CreateInstance {
            image: "x".into(),
            mode: Some(LaunchMode::Jupyter),
            gpus: Some(1),
            direct: Some(true),
            jupyter_lab: Some(true),
            ..req()
        };
        let r = CreateInstance {
            gpus: Some(0),
            direct: Some(false),
            jupyter_lab: Some(false),
            ..req()
        };
        let m = merge(&t, &r);
        assert_eq!(
            (m.gpus, m.direct, m.jupyter_lab),
            (Some(0), Some(false), Some(false))
        );
        let spec = InstanceSpec::from_request(&m).unwrap();
        assert_eq!(
            (spec.gpus, spec.direct, spec.jupyter_lab),
            (0, false, false)
        );
        // Not given: the template's.
        let m = merge(&t, &req());
        assert_eq!(
            (m.gpus, m.direct, m.jupyter_lab),
            (Some(1), Some(true), Some(true))
        );
        // Switched on by the request over a template that has them off or unset.
        let t = CreateInstance {
            image: "x".into(),
            mode: Some(LaunchMode::Jupyter),
            direct: Some(false),
            ..req()
        };
        let r = CreateInstance {
            gpus: Some(3),
            direct: Some(true),
            jupyter_lab: Some(true),
            ..req()
        };
        let m = merge(&t, &r);
        assert_eq!(
            (m.gpus, m.direct, m.jupyter_lab),
            (Some(3), Some(true), Some(true))
        );
    }

    #[test]
    fn switching_mode_drops_what_applies_to_the_templates_mode_only() {
        // A jupyter template launched in ssh mode.
        let t = CreateInstance {
            image: "x".into(),
            mode: Some(LaunchMode::Jupyter),
            jupyter_lab: Some(true),
            jupyter_dir: Some("/work".into()),
            onstart: Some("echo hi".into()),
            direct: Some(true),
            ..req()
        };
        let r = CreateInstance {
            mode: Some(LaunchMode::Ssh),
            ..req()
        };
        let m = merge(&t, &r);
        assert_eq!(m.mode, Some(LaunchMode::Ssh));
        assert_eq!(m.jupyter_lab, None);
        assert_eq!(m.jupyter_dir, None);
        assert_eq!(m.onstart.as_deref(), Some("echo hi"));
        assert_eq!(m.direct, Some(true));
        InstanceSpec::from_request(&m).unwrap();
        // ... and in entrypoint mode.
        let r = CreateInstance {
            mode: Some(LaunchMode::Entrypoint),
            ..req()
        };
        let m = merge(&t, &r);
        assert_eq!((m.onstart, m.direct), (None, None));
        InstanceSpec::from_request(&merge(&t, &r)).unwrap();
        // An entrypoint template launched in ssh mode loses its entrypoint and args.
        let t = CreateInstance {
            image: "x".into(),
            entrypoint: Some("/bin/sh".into()),
            args: Some(vec!["-c".into(), "echo".into()]),
            ..req()
        };
        let r = CreateInstance {
            mode: Some(LaunchMode::Ssh),
            ..req()
        };
        let m = merge(&t, &r);
        assert_eq!((m.entrypoint, m.args), (None, None));
        // The request's own contradictions are kept, to be refused by name.
        let r = CreateInstance {
            mode: Some(LaunchMode::Ssh),
            args: Some(vec![]),
            ..req()
        };
        let e = InstanceSpec::from_request(&merge(&t, &r)).unwrap_err();
        assert_eq!(e.field, "args");
        // Without a mode anywhere: entrypoint, and the template's argv applies.
        let m = merge(&t, &req());
        assert_eq!(m.mode, None);
        assert_eq!(m.entrypoint.as_deref(), Some("/bin/sh"));
        let r = CreateInstance {
            args: Some(vec!["x".into()]),
            ..req()
        };
        let m = merge(&t, &r);
        assert_eq!(m.args.unwrap(), ["x"]);
        assert_eq!(m.entrypoint.as_deref(), Some("/bin/sh"));
    }

    #[test]
    fn requests_parse_with_and_without_mode_and_image() {
        let r: CreateInstance = serde_json::from_str(r#"{"image":"x","mode":"ssh"}"#).unwrap();
        assert_eq!(r.mode, Some(LaunchMode::Ssh));
        let r: CreateInstance = serde_json::from_str(r#"{"template":"web"}"#).unwrap();
        assert_eq!(
            (r.image.as_str(), r.mode, r.template.as_deref()),
            ("", None, Some("web"))
        );
        let r: CreateInstance = serde_json::from_str(r#"{"image":"x","mode":null}"#).unwrap();
        assert_eq!(r.mode, None);
        assert!(serde_json::from_str::<CreateInstance>(r#"{"image":"x","mode":"vm"}"#).is_err());
        // No template: the field is left out of the JSON.
        let text = serde_json::to_string(&template()).unwrap();
        assert!(!text.contains("\"template\":"), "{text}");
        // A request naming a template is not valid until merged.
        let r = CreateInstance {
            image: "x".into(),
            template: Some("web".into()),
            ..req()
        };
        assert_eq!(
            InstanceSpec::from_request(&r).unwrap_err().field,
            "template"
        );
        assert_eq!(
            InstanceSpec::from_request(&merge(&template(), &r))
                .unwrap()
                .image,
            "x"
        );
    }

    #[test]
    fn names_and_readmes() {
        for ok in ["web", "a", "my.tpl_v-2", &"x".repeat(64), "A9"] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "ä",
            &"x".repeat(65),
            "from-image",
            "x\n",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_readme(&"r".repeat(MAX_README_BYTES)).unwrap();
        assert!(validate_readme(&"r".repeat(MAX_README_BYTES + 1)).is_err());
        assert!(validate_readme("a\0").is_err());
    }

    /// Runs `script` with `shell` (after defining a function that prints its args one per
    /// NUL-terminated record) and returns the args it got.
    fn run_shell(shell: &str, line: &str) -> Option<Vec<String>> {
        let script =
            format!("p() {{ for a in \"$@\"; do printf '%s\\0' \"$a\"; done; }}\n{line}\n");
        let out = std::process::Command::new(shell)
            .arg("-c")
            .arg(&script)
            .env("HOME", "/home/expanded")
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut args: Vec<String> = text.split('\0').map(str::to_string).collect();
        assert_eq!(args.pop().as_deref(), Some(""));
        Some(args)
    }

    fn nasty() -> Vec<String> {
        [
            "--greeting",
            "it's \"odd\" $HOME `x`",
            "a b",
            "back\\slash",
            "line\nbreak",
            "",
            "'",
            "''",
            "\\'",
            "$(echo no)",
            "${HOME}",
            "*",
            "~",
            "~/x",
            "a=b",
            "#not a comment",
            ";|&<>()",
            "\t",
            " leading and trailing ",
            "!history",
            "ünïcødé ✓",
            "\\",
            "-",
            "--",
            "\r\n",
            "{a,b}",
            "[ab]",
            "%",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn quoting_keeps_every_argv_exactly() {
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("plain/word-1.0"), "plain/word-1.0");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("a=b"), "'a=b'");
        assert_eq!(sh_quote("~"), "'~'");
        let argv = nasty();
        let line = format!("p {}", sh_join(&argv));
        let mut ran = 0;
        for shell in [
            "/bin/sh",
            "/bin/bash",
            "/bin/dash",
            "/usr/bin/bash",
            "/bin/busybox",
        ] {
            if !std::path::Path::new(shell).exists() {
                continue;
            }
            let got = if shell.ends_with("busybox") {
                let script =
                    format!("p() {{ for a in \"$@\"; do printf '%s\\0' \"$a\"; done; }}\n{line}\n");
                let out = std::process::Command::new(shell)
                    .args(["sh", "-c", &script])
                    .output()
                    .unwrap();
                let text = String::from_utf8(out.stdout).unwrap();
                let mut a: Vec<String> = text.split('\0').map(str::to_string).collect();
                a.pop();
                a
            } else {
                run_shell(shell, &line).unwrap()
            };
            assert_eq!(got, argv, "{shell}");
            ran += 1;
        }
        assert!(ran >= 2, "no POSIX shells found to check the quoting with");
    }

    #[test]
    fn every_single_byte_survives_quoting() {
        // Each printable ASCII character and the control characters a value may hold,
        // alone and between letters.
        let mut argv = Vec::new();
        for b in 1u8..=127 {
            let c = b as char;
            argv.push(c.to_string());
            argv.push(format!("a{c}b"));
        }
        let got = run_shell("/bin/sh", &format!("p {}", sh_join(&argv))).unwrap();
        assert_eq!(got, argv);
    }

    fn argserver_facts() -> ImageFacts {
        ImageFacts {
            entrypoint: vec!["python3".into(), "/usr/local/bin/argserver.py".into()],
            cmd: vec![
                "--greeting".into(),
                "it's \"odd\" $HOME `x`".into(),
                "a b".into(),
                "back\\slash".into(),
                "line\nbreak".into(),
                "".into(),
            ],
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "GREETING_STYLE=loud".into(),
                "BERTH_INSTANCE_ID=9".into(),
                "EMPTY=".into(),
                "WITH_EQ=a=b".into(),
                "9BAD=x".into(),
                "NOEQUALS".into(),
            ],
            workdir: "/srv/app dir".into(),
            user: String::new(),
            exposed: vec![
                PortSpec {
                    port: 8765,
                    proto: PortProto::Tcp,
                },
                PortSpec {
                    port: 5353,
                    proto: PortProto::Udp,
                },
                PortSpec {
                    port: 22,
                    proto: PortProto::Tcp,
                },
            ],
        }
    }

    #[test]
    fn ssh_mode_moves_the_command_into_onstart() {
        let (s, notes) = from_image("berth-test/argserver", LaunchMode::Ssh, &argserver_facts());
        assert_eq!(s.image, "berth-test/argserver");
        assert_eq!(s.mode, Some(LaunchMode::Ssh));
        assert_eq!(s.ports, ["8765/tcp", "5353/udp"]);
        assert_eq!(
            s.env,
            env(&[
                (
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                ),
                ("GREETING_STYLE", "loud"),
                ("EMPTY", ""),
                ("WITH_EQ", "a=b"),
            ])
        );
        let script = s.onstart.clone().unwrap();
        assert_eq!(
            script,
            "# The image's ENTRYPOINT+CMD, moved here by berth: in ssh mode berth's init runs instead of them.\n\
             cd '/srv/app dir' || exit 1\n\
             exec python3 /usr/local/bin/argserver.py --greeting 'it'\\''s \"odd\" $HOME `x`' 'a b' 'back\\slash' 'line\nbreak' ''\n"
        );
        let all = notes.join("\n");
        for want in [
            "moved ENTRYPOINT+CMD into the onstart script",
            "ssh mode runs berth's init instead of the image's entrypoint",
            "WORKDIR /srv/app dir",
            "carried EXPOSE 8765/tcp 5353/udp into ports",
            "did not carry EXPOSE 22/tcp",
            "carried ENV PATH GREETING_STYLE EMPTY WITH_EQ into env",
            "did not carry ENV BERTH_INSTANCE_ID: berth sets that variable itself",
            "did not carry ENV \"9BAD\"",
            "did not carry ENV \"NOEQUALS\"",
        ] {
            assert!(all.contains(want), "{want:?} not in:\n{all}");
        }
        assert!(!all.contains("USER"), "{all}");
        // The template is a valid launch on its own.
        let spec = InstanceSpec::from_request(&s).unwrap();
        assert_eq!(spec.onstart.as_deref(), Some(script.as_str()));
    }

    /// The script really runs the argv in the directory: run it with `sh`, with `exec`
    /// pointed at a stand-in that prints its args and working directory.
    #[test]
    fn the_onstart_script_runs_exactly_that_argv_there() {
        let dir = std::env::temp_dir().join(format!("berth-tpl-{} dir 'q'", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let printer = dir.join("printargs");
        std::fs::write(
            &printer,
            "#!/bin/sh\npwd\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done\n",
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&printer, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let facts = ImageFacts {
            entrypoint: vec![printer.display().to_string()],
            cmd: nasty(),
            workdir: dir.display().to_string(),
            ..Default::default()
        };
        let (s, _) = from_image("x", LaunchMode::Jupyter, &facts);
        for shell in ["/bin/sh", "/bin/bash", "/bin/dash"] {
            if !std::path::Path::new(shell).exists() {
                continue;
            }
            let out = std::process::Command::new(shell)
                .arg("-c")
                .arg(s.onstart.as_ref().unwrap())
                .current_dir("/")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{shell}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            let (cwd, rest) = text.split_once('\n').unwrap();
            assert_eq!(cwd, dir.display().to_string(), "{shell}");
            let mut args: Vec<String> = rest.split('\0').map(str::to_string).collect();
            assert_eq!(args.pop().as_deref(), Some(""));
            assert_eq!(args, nasty(), "{shell}");
        }
        // A WORKDIR that is not there stops the script instead of running elsewhere.
        let facts = ImageFacts {
            workdir: dir.join("missing").display().to_string(),
            ..facts
        };
        let (s, _) = from_image("x", LaunchMode::Ssh, &facts);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(s.onstart.as_ref().unwrap())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn notes_show_control_characters_escaped() {
        let facts = ImageFacts {
            entrypoint: vec!["/bin/p\u{1b}[2J".into()],
            cmd: vec!["a\rb".into(), "tab\there".into()],
            env: vec!["BERTH_\r=1".into()],
            workdir: "/w\rx".into(),
            user: "app\u{7}".into(),
            ..Default::default()
        };
        let (s, notes) = from_image("img", LaunchMode::Ssh, &facts);
        for n in &notes {
            assert!(!visible::has_controls(n), "{n:?}");
        }
        let all = notes.join("\n");
        for want in [
            "(`exec $'/bin/p\\e[2J' $'a\\rb' $'tab\\there'`)",
            "WORKDIR $'/w\\rx' first",
            "did not carry ENV $'BERTH_\\r'",
            "USER $'app\\a'",
            "exec su $'app\\a' -s",
        ] {
            assert!(all.contains(want), "{want:?} not in:\n{all}");
        }
        // The script itself stays exact (POSIX quoting, the bytes as they are).
        assert!(s
            .onstart
            .unwrap()
            .ends_with("exec '/bin/p\u{1b}[2J' 'a\rb' 'tab\there'\n"),);
    }

    #[test]
    fn entrypoint_mode_moves_nothing() {
        let (s, notes) = from_image("img", LaunchMode::Entrypoint, &argserver_facts());
        assert_eq!(s.mode, Some(LaunchMode::Entrypoint));
        assert_eq!(s.onstart, None);
        assert!(s.env.is_empty());
        assert_eq!((s.entrypoint.clone(), s.args.clone()), (None, None));
        // Port 22 is the image's own in entrypoint mode.
        assert_eq!(s.ports, ["8765/tcp", "5353/udp", "22/tcp"]);
        let all = notes.join("\n");
        assert!(all.contains("nothing was moved"), "{all}");
        assert!(all.contains("carried EXPOSE"), "{all}");
        InstanceSpec::from_request(&s).unwrap();
    }

    #[test]
    fn jupyter_mode_keeps_its_port_and_notes_the_user() {
        let facts = ImageFacts {
            cmd: vec!["/bin/bash".into()],
            user: "app:app".into(),
            exposed: vec![
                PortSpec {
                    port: 8080,
                    proto: PortProto::Tcp,
                },
                PortSpec {
                    port: 8080,
                    proto: PortProto::Udp,
                },
            ],
            ..Default::default()
        };
        let (s, notes) = from_image("img", LaunchMode::Jupyter, &facts);
        assert_eq!(s.ports, ["8080/udp"]);
        assert_eq!(
            s.onstart.as_deref(),
            Some("# The image's CMD, moved here by berth: in jupyter mode berth's init runs instead of them.\nexec /bin/bash\n")
        );
        let all = notes.join("\n");
        assert!(
            all.contains("did not carry EXPOSE 8080/tcp: in jupyter mode that port is Jupyter's"),
            "{all}"
        );
        assert!(all.contains("moved CMD into the onstart script"), "{all}");
        assert!(all.contains("USER app:app"), "{all}");
        assert!(all.contains("su app"), "{all}");
        assert!(!all.contains("WORKDIR"), "{all}");
        InstanceSpec::from_request(&s).unwrap();
        for root in ["", "root", "0", "0:0", "root:wheel"] {
            let facts = ImageFacts {
                user: root.into(),
                ..Default::default()
            };
            let (_, notes) = from_image("img", LaunchMode::Ssh, &facts);
            assert!(!notes.join("\n").contains("USER"), "{root}");
        }
    }

    #[test]
    fn an_image_without_a_command_gets_an_empty_onstart() {
        let facts = ImageFacts {
            workdir: "/w".into(),
            entrypoint: vec![],
            cmd: vec![],
            ..Default::default()
        };
        let (s, notes) = from_image("img", LaunchMode::Ssh, &facts);
        assert_eq!(s.onstart, None);
        let all = notes.join("\n");
        assert!(all.contains("neither ENTRYPOINT nor CMD"), "{all}");
        assert!(all.contains("onstart script is empty"), "{all}");
        InstanceSpec::from_request(&s).unwrap();
        let (_, notes) = from_image(
            "img",
            LaunchMode::Ssh,
            &ImageFacts {
                entrypoint: vec!["/entry".into()],
                ..Default::default()
            },
        );
        assert!(
            notes.join("\n").contains("moved ENTRYPOINT into"),
            "{notes:?}"
        );
        let (s, notes) = from_image(
            "img",
            LaunchMode::Ssh,
            &ImageFacts {
                entrypoint: vec!["-weird".into()],
                ..Default::default()
            },
        );
        assert!(notes.join("\n").contains("starts with '-'"), "{notes:?}");
        assert_eq!(s.onstart.unwrap().lines().last(), Some("exec -weird"));
    }
}
