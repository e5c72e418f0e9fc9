//! The client subcommands as clap parses them. The `berth` binary flattens [`Command`]
//! next to its own subcommands.
use crate::input;
use crate::route::Want;
use anyhow::Result;
use berth_core::api::CreateInstance;
use berth_core::LaunchMode;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Instance ids are positive integers.
fn id_parser() -> clap::builder::RangedI64ValueParser<i64> {
    clap::value_parser!(i64).range(1..)
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check a server URL and API key, then save them for the next commands
    Login {
        /// The server's URL, e.g. http://127.0.0.1:7878
        #[arg(long)]
        url: String,
        /// Your API key
        #[arg(long)]
        api_key: String,
    },
    /// Launch an instance; prints its id
    Create(CreateArgs),
    /// List your instances
    Ls {
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Show an instance in detail
    Show {
        #[arg(value_parser = id_parser())]
        id: i64,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Print an instance's output
    Logs {
        #[arg(value_parser = id_parser())]
        id: i64,
        /// Keep printing new output until the container stops
        #[arg(short, long)]
        follow: bool,
        /// Start with the last N lines only
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
        /// The onstart script's log (ssh and jupyter modes) instead of the container's output
        #[arg(long)]
        onstart: bool,
    },
    /// Stop an instance (its container is kept)
    Stop {
        #[arg(value_parser = id_parser())]
        id: i64,
        /// Wait until it has stopped
        #[arg(long)]
        wait: bool,
    },
    /// Start a stopped or exited instance
    Start {
        #[arg(value_parser = id_parser())]
        id: i64,
        /// Wait until it is running (or exited or failed)
        #[arg(long)]
        wait: bool,
    },
    /// Restart an instance's container
    Reboot {
        #[arg(value_parser = id_parser())]
        id: i64,
        /// Wait until it is running again (or exited or failed)
        #[arg(long)]
        wait: bool,
    },
    /// Remove an instance and its container
    Destroy {
        #[arg(value_parser = id_parser())]
        id: i64,
    },
    /// List the hosts
    Hosts {
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Manage users (admin)
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage your SSH public keys (installed in all your ssh and jupyter instances)
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage your templates: saved launch settings (`berth create --template NAME`)
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Authorize one more SSH public key for one instance only
    AttachKey {
        /// The instance
        #[arg(value_parser = id_parser())]
        id: i64,
        /// The public key file (e.g. ~/.ssh/id_ed25519.pub), or - for stdin
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
    },
    /// Open an SSH session to an instance (or run a command there) with the system `ssh`;
    /// directly when that answers, else through the proxy
    Ssh(SshArgs),
    /// Print a jupyter instance's HTTPS link with its token: the direct one when its port
    /// answers, else the one through the proxy
    Jupyter {
        /// The instance
        #[arg(value_parser = id_parser())]
        id: i64,
        #[command(flatten)]
        route: RouteArgs,
        /// Open it in the default browser too
        #[arg(long)]
        open: bool,
    },
    /// Print an instance's SSH URLs, ssh://root@HOST:PORT: the direct one first if it has
    /// one, then the one through the proxy (--direct or --proxy: only that one)
    SshUrl {
        /// The instance
        #[arg(value_parser = id_parser())]
        id: i64,
        #[command(flatten)]
        route: RouteArgs,
    },
    /// Copy files to or from an instance with the system `scp`; write the instance side as
    /// ID:PATH
    Scp(ScpArgs),
    /// Print `Host berth-ID` entries (direct, else through the proxy) and `Host
    /// berth-ID-proxy` entries for ~/.ssh/config (and VS Code Remote-SSH), and write the
    /// known_hosts file of your instances' host keys they use
    SshConfig {
        /// Add this IdentityFile (private key) to every entry
        #[arg(short = 'i', value_name = "IDENTITY")]
        identity: Option<PathBuf>,
    },
    /// Download the deployment's CA certificate, to install as a trusted root so jupyter
    /// instances' HTTPS is trusted (needs the server URL only, no API key)
    Cert {
        /// Write it to FILE instead of printing it
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// DER (binary) instead of PEM; to stdout only when that is not a terminal
        #[arg(long)]
        der: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum KeysCommand {
    /// Add a public key to your account; prints its id and fingerprint
    Add {
        /// The public key file (e.g. ~/.ssh/id_ed25519.pub), or - for stdin
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// List your public keys
    Ls {
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove a public key from your account (and from your instances)
    Rm {
        /// The key's id (see `berth keys ls`)
        #[arg(value_parser = id_parser())]
        id: i64,
    },
}

/// `--direct` / `--proxy`: which way to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Args)]
pub struct RouteArgs {
    /// Only the direct endpoint (the host's public IP and a mapped port)
    #[arg(long, conflicts_with = "proxy")]
    pub direct: bool,
    /// Only the proxy endpoint
    #[arg(long)]
    pub proxy: bool,
}

impl RouteArgs {
    pub fn want(&self) -> Want {
        match (self.direct, self.proxy) {
            (true, _) => Want::Direct,
            (false, true) => Want::Proxy,
            (false, false) => Want::Auto,
        }
    }
}

/// `berth ssh`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SshArgs {
    /// The instance
    #[arg(value_parser = id_parser())]
    pub id: i64,
    #[command(flatten)]
    pub route: RouteArgs,
    /// Private key to log in with (passed to ssh as -i)
    #[arg(short = 'i', value_name = "IDENTITY")]
    pub identity: Option<String>,
    /// An ssh option, e.g. -o ServerAliveInterval=30 (repeatable; yours win over berth's)
    #[arg(short = 'o', value_name = "OPTION")]
    pub options: Vec<String>,
    /// The command to run instead of a login shell, after `--` (words as ssh joins them)
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `berth scp`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ScpArgs {
    /// Copy directories recursively
    #[arg(short = 'r')]
    pub recursive: bool,
    #[command(flatten)]
    pub route: RouteArgs,
    /// Private key to log in with (passed to scp as -i)
    #[arg(short = 'i', value_name = "IDENTITY")]
    pub identity: Option<String>,
    /// An ssh option, e.g. -o Compression=yes (repeatable; yours win over berth's)
    #[arg(short = 'o', value_name = "OPTION")]
    pub options: Vec<String>,
    /// What to copy: a local path, or ID:PATH on an instance
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Where to: a local path, or ID:PATH on an instance
    #[arg(value_name = "DST")]
    pub dst: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum UsersCommand {
    /// Add a user; prints the user's API key (shown only this once)
    Add {
        name: String,
        /// Print the API's JSON (name and key)
        #[arg(long)]
        json: bool,
    },
    /// List the users
    Ls {
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove a user
    Rm { name: String },
}

/// `berth create`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CreateArgs {
    /// The image, e.g. debian:12 or registry.example:5000/team/app:v1 (optional with
    /// --template, which gives one)
    #[arg(required_unless_present = "template")]
    pub image: Option<String>,
    /// Start from your template NAME; the options given here override its settings (env
    /// is merged, yours winning; ports are added)
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// Wait until the instance is running (or has exited or failed)
    #[arg(long)]
    pub wait: bool,
    /// Print JSON: {"id": N}, or with --wait the instance
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// The launch settings, shared by `berth create` and `berth templates create|edit`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Args)]
pub struct LaunchArgs {
    /// Replace the image's ENTRYPOINT (and drop its CMD, as Docker does)
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Docker-options string, e.g. '-e K=V -p 8081:8081 -p 7000/udp -p 7860/http'
    /// (PORT/http: as --http-port)
    #[arg(
        long = "env",
        value_name = "DOCKER-OPTIONS",
        allow_hyphen_values = true
    )]
    pub docker_options: Option<String>,
    /// Set an environment variable (repeatable)
    #[arg(short = 'e', value_name = "K=V", value_parser = parse_env_var)]
    pub env: Vec<(String, String)>,
    /// Expose an internal port on a host port (repeatable); PORT/http also serves it over
    /// HTTPS through the proxy, as --http-port
    #[arg(short = 'p', value_name = "PORT[/tcp|/udp|/http]")]
    pub ports: Vec<String>,
    /// Serve this TCP port over HTTPS through the proxy, at a link with an access token
    /// (repeatable; `-p PORT/http` does the same)
    #[arg(long = "http-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub http_ports: Vec<u16>,
    /// A note to tell instances apart ('' for none, over a template's)
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Number of GPUs (0 for none, over a template's)
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// ssh launch mode: berth runs sshd instead of the image's entrypoint
    #[arg(long, conflicts_with_all = ["jupyter", "mode"])]
    pub ssh: bool,
    /// jupyter launch mode: ssh mode plus a Jupyter server
    #[arg(long, conflicts_with = "mode")]
    pub jupyter: bool,
    /// The launch mode by name: entrypoint (the default), ssh or jupyter
    #[arg(long, value_name = "MODE")]
    pub mode: Option<LaunchMode>,
    /// ssh/jupyter: a script run after sshd is up, on every start (FILE, or - for stdin)
    #[arg(long, value_name = "FILE|-", conflicts_with = "onstart_cmd")]
    pub onstart: Option<PathBuf>,
    /// ssh/jupyter: the onstart script given inline, e.g. 'pip install -r req.txt'
    #[arg(long, value_name = "SCRIPT", allow_hyphen_values = true)]
    pub onstart_cmd: Option<String>,
    /// ssh/jupyter: place the instance only on a host with open ports, for direct SSH
    /// (--direct=false as --no-direct)
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        conflicts_with = "no_direct"
    )]
    pub direct: Option<bool>,
    /// ssh/jupyter: no --direct, over a template's
    #[arg(long)]
    pub no_direct: bool,
    /// jupyter: JupyterLab instead of the classic Notebook (--jupyter-lab=false as
    /// --no-jupyter-lab)
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        conflicts_with = "no_jupyter_lab"
    )]
    pub jupyter_lab: Option<bool>,
    /// jupyter: the classic Notebook, over a template's --jupyter-lab
    #[arg(long)]
    pub no_jupyter_lab: bool,
    /// jupyter: the directory Jupyter serves (default /)
    #[arg(long, value_name = "DIR")]
    pub jupyter_dir: Option<String>,
    /// Replace the image's CMD with the REST of the command line, verbatim (no shell);
    /// `--args` alone means an empty CMD
    #[arg(
        long,
        value_name = "ARG",
        num_args = 0..,
        allow_hyphen_values = true
    )]
    pub args: Option<Vec<String>>,
}

impl CreateArgs {
    /// The API request these flags ask for; reads the `--onstart` file (or stdin).
    pub fn to_request(&self) -> Result<CreateInstance> {
        let mut r = self
            .launch
            .to_request(self.image.as_deref().unwrap_or(""))?;
        r.template = self.template.clone();
        Ok(r)
    }
}

impl LaunchArgs {
    /// The settings these flags give, for `image`; reads the `--onstart` file (or stdin).
    /// Only the flags given are set (`mode` is `None` without --ssh/--jupyter/--mode).
    pub fn to_request(&self, image: &str) -> Result<CreateInstance> {
        let onstart = match (&self.onstart, &self.onstart_cmd) {
            (Some(path), _) => Some(input::read_text(path, "the onstart script")?),
            (None, cmd) => cmd.clone(),
        };
        Ok(self.request(image, onstart))
    }

    /// The launch mode the flags name, if any.
    pub fn mode(&self) -> Option<LaunchMode> {
        if self.ssh {
            Some(LaunchMode::Ssh)
        } else if self.jupyter {
            Some(LaunchMode::Jupyter)
        } else {
            self.mode
        }
    }

    /// `--direct[=BOOL]` / `--no-direct`: `None` if neither is given.
    pub fn direct(&self) -> Option<bool> {
        if self.no_direct {
            Some(false)
        } else {
            self.direct
        }
    }

    /// `--jupyter-lab[=BOOL]` / `--no-jupyter-lab`: `None` if neither is given.
    pub fn jupyter_lab(&self) -> Option<bool> {
        if self.no_jupyter_lab {
            Some(false)
        } else {
            self.jupyter_lab
        }
    }

    /// Whether no flag but a mode is given.
    pub fn only_mode(&self) -> bool {
        LaunchArgs {
            ssh: false,
            jupyter: false,
            mode: None,
            ..self.clone()
        } == LaunchArgs::default()
    }

    /// The request with the onstart script given.
    fn request(&self, image: &str, onstart: Option<String>) -> CreateInstance {
        CreateInstance {
            image: image.to_string(),
            mode: self.mode(),
            template: None,
            entrypoint: self.entrypoint.clone(),
            args: self.args.clone(),
            docker_options: self.docker_options.clone(),
            env: self.env.iter().cloned().collect(),
            ports: self.ports.clone(),
            label: self.label.clone(),
            gpus: self.gpus,
            onstart,
            direct: self.direct(),
            jupyter_lab: self.jupyter_lab(),
            jupyter_dir: self.jupyter_dir.clone(),
            http_ports: self.http_ports.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TemplatesCommand {
    /// Save launch settings as a template: --image IMAGE with any `berth create` option, or
    /// --from-image IMAGE [--ssh|--jupyter] to make one from the image's config (prints
    /// what was moved and why)
    Create {
        /// The template's name: 1 to 64 of letters, digits, '.', '_', '-'
        #[arg(value_parser = template_name)]
        name: String,
        /// The image the template launches
        #[arg(
            long,
            value_name = "IMAGE",
            required_unless_present = "from_image",
            conflicts_with = "from_image"
        )]
        image: Option<String>,
        /// Inspect IMAGE (pulling it if needed) and make the template from its config: in
        /// ssh/jupyter mode its ENTRYPOINT+CMD move into the onstart script
        #[arg(long, value_name = "IMAGE")]
        from_image: Option<String>,
        #[command(flatten)]
        readme: ReadmeArgs,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        launch: Box<LaunchArgs>,
    },
    /// List your templates
    Ls {
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Show a template's settings and readme
    Show {
        #[arg(value_parser = template_name)]
        name: String,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Change a template: the options given override its settings (env is merged, ports
    /// are added); with --replace they become its settings
    Edit {
        #[arg(value_parser = template_name)]
        name: String,
        /// The image the template launches
        #[arg(long, value_name = "IMAGE")]
        image: Option<String>,
        /// Replace the settings with exactly the options given (--image is then needed)
        #[arg(long, requires = "image")]
        replace: bool,
        #[command(flatten)]
        readme: ReadmeArgs,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        launch: Box<LaunchArgs>,
    },
    /// Remove a template
    Rm {
        #[arg(value_parser = template_name)]
        name: String,
    },
}

/// `--readme TEXT` / `--readme-file FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Args)]
pub struct ReadmeArgs {
    /// What the template is for (at most 16 KiB; '' removes it)
    #[arg(long, value_name = "TEXT", conflicts_with = "readme_file")]
    pub readme: Option<String>,
    /// The readme from FILE (or - for stdin)
    #[arg(long, value_name = "FILE|-")]
    pub readme_file: Option<PathBuf>,
}

impl ReadmeArgs {
    /// `None`: not given; `Some(None)`: remove it; `Some(Some(text))`: set it.
    pub fn read(&self) -> Result<Option<Option<String>>> {
        let text = match (&self.readme, &self.readme_file) {
            (Some(t), _) => t.clone(),
            (None, Some(path)) => input::read_text(path, "the readme")?,
            (None, None) => return Ok(None),
        };
        Ok(Some(if text.trim().is_empty() {
            None
        } else {
            Some(text)
        }))
    }
}

/// A template name, checked before it goes into a URL.
fn template_name(s: &str) -> Result<String, String> {
    berth_core::template::validate_name(s)?;
    Ok(s.to_string())
}

/// `K=V` of `-e`.
fn parse_env_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| {
        format!("expected NAME=VALUE, got {s:?} (berth does not copy variables from your shell)")
    })?;
    berth_core::spec::validate_env_name(k)?;
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Command,
    }

    fn parse(argv: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("berth").chain(argv.iter().copied())).map(|c| c.cmd)
    }

    fn create(argv: &[&str]) -> CreateArgs {
        let mut full = vec!["create"];
        full.extend(argv);
        match parse(&full) {
            Ok(Command::Create(c)) => c,
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    fn error(argv: &[&str]) -> String {
        parse(argv).expect_err(&argv.join(" ")).to_string()
    }

    #[test]
    fn the_command_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn args_take_the_rest_of_the_line() {
        let c = create(&["img", "--args", "-c", "echo hi", "--label", "x"]);
        assert_eq!(c.launch.args.unwrap(), ["-c", "echo hi", "--label", "x"]);
        assert_eq!(c.launch.label, None);

        let c = create(&[
            "img", "--label", "y", "--args", "a", "--", "-e", "--args", "--help",
        ]);
        assert_eq!(
            c.launch.args.unwrap(),
            ["a", "--", "-e", "--args", "--help"]
        );
        assert_eq!(c.launch.label.as_deref(), Some("y"));
        assert!(c.launch.env.is_empty());

        let c = create(&["img", "--args", "a b", "'q'", "$HOME", ""]);
        assert_eq!(c.launch.args.unwrap(), ["a b", "'q'", "$HOME", ""]);
    }

    #[test]
    fn bare_args_mean_an_empty_cmd() {
        assert_eq!(create(&["img", "--args"]).launch.args, Some(vec![]));
        assert_eq!(create(&["img"]).launch.args, None);
    }

    #[test]
    fn create_flags_build_the_request() {
        let c = create(&[
            "berth-test/busybox",
            "--entrypoint",
            "/bin/sh",
            "--env",
            "-e K=V -p 8081:8081",
            "-e",
            "A=1",
            "-eB=x=y",
            "-e",
            "EMPTY=",
            "-p",
            "8000",
            "-p",
            "7000/udp",
            "--label",
            "run 1",
            "--gpus",
            "2",
            "--wait",
            "--json",
        ]);
        assert!(c.wait && c.json);
        let r = c.to_request().unwrap();
        assert_eq!(r.image, "berth-test/busybox");
        assert_eq!(r.mode, None);
        assert_eq!(r.entrypoint.as_deref(), Some("/bin/sh"));
        assert_eq!(r.docker_options.as_deref(), Some("-e K=V -p 8081:8081"));
        let env: Vec<_> = r
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(env, [("A", "1"), ("B", "x=y"), ("EMPTY", "")]);
        assert_eq!(r.ports, ["8000", "7000/udp"]);
        assert_eq!(r.label.as_deref(), Some("run 1"));
        assert_eq!(r.gpus, Some(2));
        assert_eq!(r.args, None);
        assert_eq!((r.onstart, r.direct, r.jupyter_lab), (None, None, None));
    }

    #[test]
    fn zero_false_and_empty_are_given() {
        let r = create(&["i", "--gpus", "0", "--label", ""])
            .to_request()
            .unwrap();
        assert_eq!((r.gpus, r.label.as_deref()), (Some(0), Some("")));
        let given = |argv: &[&str]| {
            let r = create(argv).to_request().unwrap();
            (r.direct, r.jupyter_lab)
        };
        assert_eq!(given(&["i"]), (None, None));
        assert_eq!(
            given(&["i", "--direct", "--jupyter-lab"]),
            (Some(true), Some(true))
        );
        assert_eq!(
            given(&["i", "--direct=true", "--jupyter-lab=yes"]),
            (Some(true), Some(true))
        );
        assert_eq!(
            given(&["i", "--direct=false", "--jupyter-lab=false"]),
            (Some(false), Some(false))
        );
        assert_eq!(
            given(&["i", "--no-direct", "--no-jupyter-lab"]),
            (Some(false), Some(false))
        );
        // A bare --direct takes no value from the next word: that stays the image.
        let c = create(&["--direct", "img"]);
        assert_eq!(c.image.as_deref(), Some("img"));
        assert_eq!(c.launch.direct(), Some(true));
        let c = create(&["--jupyter-lab", "false"]);
        assert_eq!(c.image.as_deref(), Some("false"));
        for bad in [
            &["create", "i", "--direct=maybe"][..],
            &["create", "i", "--direct", "--no-direct"],
            &["create", "i", "--jupyter-lab=0", "--no-jupyter-lab"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let e = error(&["create", "i", "--direct=maybe"]);
        assert!(e.contains("--direct"), "{e}");
    }

    #[test]
    fn modes() {
        assert_eq!(
            create(&["i", "--ssh"]).to_request().unwrap().mode,
            Some(LaunchMode::Ssh)
        );
        assert_eq!(
            create(&["i", "--jupyter"]).to_request().unwrap().mode,
            Some(LaunchMode::Jupyter)
        );
        let e = error(&["create", "i", "--ssh", "--jupyter"]);
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[test]
    fn env_flags_need_name_and_value() {
        let e = error(&["create", "i", "-e", "HOME"]);
        assert!(e.contains("expected NAME=VALUE"), "{e}");
        let e = error(&["create", "i", "-e", "9X=1"]);
        assert!(e.contains("not a valid variable name"), "{e}");
    }

    #[test]
    fn ids_are_positive_integers() {
        assert_eq!(
            parse(&["show", "7"]).unwrap(),
            Command::Show { id: 7, json: false }
        );
        for bad in ["abc", "0", "-3", "1.5"] {
            assert!(parse(&["stop", bad]).is_err(), "{bad}");
        }
        assert_eq!(
            parse(&["destroy", "12"]).unwrap(),
            Command::Destroy { id: 12 }
        );
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            parse(&["logs", "3", "-f", "--tail", "10"]).unwrap(),
            Command::Logs {
                id: 3,
                follow: true,
                tail: Some(10),
                onstart: false,
            }
        );
        assert_eq!(
            parse(&["logs", "3", "--onstart"]).unwrap(),
            Command::Logs {
                id: 3,
                follow: false,
                tail: None,
                onstart: true,
            }
        );
        assert_eq!(
            parse(&["login", "--url", "http://h:1", "--api-key", "k"]).unwrap(),
            Command::Login {
                url: "http://h:1".into(),
                api_key: "k".into()
            }
        );
        assert!(parse(&["login", "--url", "http://h:1"]).is_err());
        assert_eq!(
            parse(&["ls", "--json"]).unwrap(),
            Command::Ls { json: true }
        );
        assert_eq!(
            parse(&["users", "add", "bob", "--json"]).unwrap(),
            Command::Users(UsersCommand::Add {
                name: "bob".into(),
                json: true
            })
        );
        assert_eq!(
            parse(&["users", "rm", "bob"]).unwrap(),
            Command::Users(UsersCommand::Rm { name: "bob".into() })
        );
        assert!(parse(&["users"]).is_err());
    }

    #[test]
    fn onstart_flags() {
        let c = create(&["i", "--ssh", "--direct", "--onstart-cmd", "-x; echo 'hi'\n"]);
        let r = c.to_request().unwrap();
        assert_eq!(r.mode, Some(LaunchMode::Ssh));
        assert_eq!(r.direct, Some(true));
        assert_eq!(r.onstart.as_deref(), Some("-x; echo 'hi'\n"));

        let path =
            std::env::temp_dir().join(format!("berth-cli-args-{}-onstart.sh", std::process::id()));
        std::fs::write(&path, "#!/bin/sh\necho started\n").unwrap();
        let c = create(&["i", "--jupyter", "--onstart", path.to_str().unwrap()]);
        assert_eq!(c.launch.onstart.as_deref(), Some(path.as_path()));
        let r = c.to_request().unwrap();
        assert_eq!(r.onstart.as_deref(), Some("#!/bin/sh\necho started\n"));
        assert_eq!(r.direct, None);
        std::fs::remove_file(&path).unwrap();
        let e = format!("{:#}", c.to_request().unwrap_err());
        assert!(e.starts_with("reading the onstart script /"), "{e}");

        let e = error(&[
            "create",
            "i",
            "--ssh",
            "--onstart",
            "f",
            "--onstart-cmd",
            "x",
        ]);
        assert!(e.contains("cannot be used with"), "{e}");
        assert_eq!(
            create(&["i", "--ssh", "--onstart", "-"])
                .launch
                .onstart
                .as_deref(),
            Some(std::path::Path::new("-"))
        );
    }

    #[test]
    fn create_from_a_template() {
        let c = create(&["--template", "web", "-e", "A=1", "--gpus", "0", "--wait"]);
        assert_eq!(c.image, None);
        assert!(c.wait);
        let r = c.to_request().unwrap();
        assert_eq!(r.template.as_deref(), Some("web"));
        assert_eq!((r.image.as_str(), r.mode), ("", None));
        assert_eq!(r.env["A"], "1");
        let r = create(&["img", "--template", "web", "--mode", "ssh"])
            .to_request()
            .unwrap();
        assert_eq!(
            (r.image.as_str(), r.mode, r.template.as_deref()),
            ("img", Some(LaunchMode::Ssh), Some("web"))
        );
        // Without a template the image is required.
        let e = error(&["create", "--wait"]);
        assert!(e.contains("<IMAGE>"), "{e}");
        let e = error(&["create", "i", "--mode", "vm"]);
        assert!(e.contains("unknown launch mode"), "{e}");
        let e = error(&["create", "i", "--mode", "ssh", "--jupyter"]);
        assert!(e.contains("cannot be used with"), "{e}");
    }

    fn templates(argv: &[&str]) -> TemplatesCommand {
        let mut full = vec!["templates"];
        full.extend(argv);
        match parse(&full) {
            Ok(Command::Templates(t)) => t,
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    #[test]
    fn templates_commands() {
        match templates(&[
            "create",
            "web",
            "--image",
            "img",
            "--ssh",
            "-e",
            "A=1",
            "-p",
            "8000",
            "--readme",
            "hello",
            "--onstart-cmd",
            "echo hi",
        ]) {
            TemplatesCommand::Create {
                name,
                image,
                from_image,
                readme,
                json,
                launch,
            } => {
                assert_eq!(
                    (name.as_str(), image.as_deref(), from_image),
                    ("web", Some("img"), None)
                );
                assert_eq!(readme.read().unwrap(), Some(Some("hello".into())));
                assert!(!json);
                let r = launch.to_request("img").unwrap();
                assert_eq!(r.mode, Some(LaunchMode::Ssh));
                assert_eq!(r.env["A"], "1");
                assert_eq!(r.ports, ["8000"]);
                assert_eq!(r.onstart.as_deref(), Some("echo hi"));
                assert!(!launch.only_mode());
            }
            other => panic!("{other:?}"),
        }
        match templates(&["create", "web", "--from-image", "img", "--jupyter"]) {
            TemplatesCommand::Create {
                image,
                from_image,
                readme,
                launch,
                ..
            } => {
                assert_eq!((image, from_image.as_deref()), (None, Some("img")));
                assert_eq!(readme.read().unwrap(), None);
                assert!(launch.only_mode());
                assert_eq!(launch.mode(), Some(LaunchMode::Jupyter));
            }
            other => panic!("{other:?}"),
        }
        // One of --image and --from-image, not both.
        let e = error(&["templates", "create", "web"]);
        assert!(e.contains("--image"), "{e}");
        let e = error(&[
            "templates",
            "create",
            "web",
            "--image",
            "a",
            "--from-image",
            "b",
        ]);
        assert!(e.contains("cannot be used with"), "{e}");
        // Names are checked before they go into a URL.
        for bad in ["..", "a/b", "a b", "from-image"] {
            assert!(parse(&["templates", "show", bad]).is_err(), "{bad}");
            assert!(parse(&["templates", "rm", bad]).is_err(), "{bad}");
        }
        assert_eq!(
            templates(&["ls", "--json"]),
            TemplatesCommand::Ls { json: true }
        );
        assert_eq!(
            templates(&["show", "web"]),
            TemplatesCommand::Show {
                name: "web".into(),
                json: false
            }
        );
        assert_eq!(
            templates(&["rm", "web"]),
            TemplatesCommand::Rm { name: "web".into() }
        );
        match templates(&["edit", "web", "--label", "x", "--readme", ""]) {
            TemplatesCommand::Edit {
                image,
                replace,
                readme,
                launch,
                ..
            } => {
                assert_eq!((image, replace), (None, false));
                assert_eq!(readme.read().unwrap(), Some(None));
                assert_eq!(launch.label.as_deref(), Some("x"));
            }
            other => panic!("{other:?}"),
        }
        let e = error(&["templates", "edit", "web", "--replace"]);
        assert!(e.contains("--image"), "{e}");
    }

    #[test]
    fn keys_commands() {
        assert_eq!(
            parse(&["keys", "add", "-"]).unwrap(),
            Command::Keys(KeysCommand::Add {
                file: "-".into(),
                json: false
            })
        );
        assert_eq!(
            parse(&["keys", "ls", "--json"]).unwrap(),
            Command::Keys(KeysCommand::Ls { json: true })
        );
        assert_eq!(
            parse(&["keys", "rm", "4"]).unwrap(),
            Command::Keys(KeysCommand::Rm { id: 4 })
        );
        assert!(parse(&["keys", "rm", "x"]).is_err());
        assert_eq!(
            parse(&["attach-key", "7", "/k.pub"]).unwrap(),
            Command::AttachKey {
                id: 7,
                file: "/k.pub".into()
            }
        );
        assert!(parse(&["attach-key", "7"]).is_err());
    }

    fn ssh(argv: &[&str]) -> SshArgs {
        let mut full = vec!["ssh"];
        full.extend(argv);
        match parse(&full) {
            Ok(Command::Ssh(a)) => a,
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    #[test]
    fn ssh_command_words_are_kept_verbatim() {
        let a = ssh(&["12"]);
        assert_eq!(
            (a.id, a.identity, a.options, a.command),
            (12, None, vec![], vec![])
        );
        let a = ssh(&[
            "-i", "~/.ssh/k", "12", "-o", "A=1", "-oB=2", "--", "-la", "--", "-i", "x y", "",
        ]);
        assert_eq!(a.id, 12);
        assert_eq!(a.identity.as_deref(), Some("~/.ssh/k"));
        assert_eq!(a.options, ["A=1", "B=2"]);
        assert_eq!(a.command, ["-la", "--", "-i", "x y", ""]);
        // Command words need the `--`.
        assert!(parse(&["ssh", "12", "ls"]).is_err());
        assert!(parse(&["ssh", "0"]).is_err());
        assert_eq!(
            parse(&["ssh-url", "3"]).unwrap(),
            Command::SshUrl {
                id: 3,
                route: RouteArgs::default()
            }
        );
        assert_eq!(
            parse(&["ssh-config", "-i", "k"]).unwrap(),
            Command::SshConfig {
                identity: Some("k".into())
            }
        );
        assert_eq!(
            parse(&["ssh-config"]).unwrap(),
            Command::SshConfig { identity: None }
        );
    }

    #[test]
    fn direct_or_proxy_flags() {
        let want = |argv: &[&str]| match parse(argv).unwrap() {
            Command::Ssh(a) => a.route.want(),
            Command::Scp(a) => a.route.want(),
            Command::SshUrl { route, .. } | Command::Jupyter { route, .. } => route.want(),
            other => panic!("{other:?}"),
        };
        assert_eq!(want(&["ssh", "3"]), Want::Auto);
        assert_eq!(want(&["ssh", "--proxy", "3", "--", "ls"]), Want::Proxy);
        assert_eq!(want(&["ssh", "3", "--direct"]), Want::Direct);
        assert_eq!(want(&["scp", "--proxy", "3:/x", "."]), Want::Proxy);
        assert_eq!(want(&["ssh-url", "3", "--direct"]), Want::Direct);
        assert_eq!(want(&["jupyter", "3", "--proxy", "--open"]), Want::Proxy);
        assert_eq!(want(&["jupyter", "3"]), Want::Auto);
        for argv in [
            &["ssh", "3", "--direct", "--proxy"][..],
            &["scp", "--direct", "--proxy", "3:/x", "."],
            &["ssh-url", "3", "--proxy", "--direct"],
            &["jupyter", "3", "--direct", "--proxy"],
        ] {
            let e = error(argv);
            assert!(e.contains("cannot be used with"), "{argv:?}: {e}");
        }
        // After `--`, they are the remote command's words.
        match parse(&["ssh", "3", "--", "--proxy"]).unwrap() {
            Command::Ssh(a) => {
                assert_eq!(a.route.want(), Want::Auto);
                assert_eq!(a.command, ["--proxy"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn http_ports() {
        let r = create(&[
            "i",
            "--http-port",
            "7860",
            "--http-port=8000",
            "-p",
            "9000/http",
        ])
        .to_request()
        .unwrap();
        assert_eq!(r.http_ports, [7860, 8000]);
        // `-p PORT/http` goes to the server as written; it reads the /http itself.
        assert_eq!(r.ports, ["9000/http"]);
        assert!(create(&["i"]).to_request().unwrap().http_ports.is_empty());
        for bad in ["0", "65536", "x", "80/tcp"] {
            assert!(
                parse(&["create", "i", "--http-port", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn scp_takes_two_sides() {
        let a = match parse(&["scp", "-r", "-i", "k", "-o", "X=1", "./d", "12:/root/"]).unwrap() {
            Command::Scp(a) => a,
            other => panic!("{other:?}"),
        };
        assert!(a.recursive);
        assert_eq!(a.identity.as_deref(), Some("k"));
        assert_eq!(a.options, ["X=1"]);
        assert_eq!((a.src.as_str(), a.dst.as_str()), ("./d", "12:/root/"));
        assert!(parse(&["scp", "12:/x"]).is_err());
        assert!(parse(&["scp", "a", "b", "c"]).is_err());
    }
}
