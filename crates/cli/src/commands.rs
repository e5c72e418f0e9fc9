//! What each subcommand does: one function each, talking to the server through [`Client`]
//! and printing through [`output`].
use crate::args::{
    Command, CreateArgs, KeysCommand, LaunchArgs, ReadmeArgs, ScpArgs, SshArgs, TemplatesCommand,
    UsersCommand,
};
use crate::client::Client;
use crate::output::{self, print};
use crate::route::{self, Route, Want};
use crate::{config, input, jupyter, ssh, wait};
use anyhow::{bail, Context, Result};
use berth_core::api::{Instance, Template, TemplateBody, TemplateFromImage};
use berth_core::{InstanceState, Secret};
use futures_util::StreamExt;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;

/// Runs one client subcommand. Errors are meant to be printed with `{:#}`: one line each.
pub async fn run(cmd: Command) -> Result<ExitCode> {
    if let Command::Login { url, api_key } = &cmd {
        login(url, api_key).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Cert { out, der } = &cmd {
        crate::cert::run(&config::load_url()?, out.as_deref(), *der).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::from_config(&config::load()?)?;
    match cmd {
        Command::Login { .. } | Command::Cert { .. } => unreachable!("handled above"),
        Command::Create(args) => create(&client, &args).await?,
        Command::Ls { json } => {
            let list = client.instances().await?;
            print(&if json {
                output::json(&list)?
            } else {
                output::instances_table(&list, output::now())
            })?
        }
        Command::Show { id, json } => {
            let i = client.instance(id).await?;
            print(&if json {
                output::json(&i)?
            } else {
                output::instance_details(&i, output::now())
            })?
        }
        Command::Logs {
            id,
            follow,
            tail,
            onstart,
        } => logs(&client, id, follow, tail, onstart).await?,
        Command::Stop { id, wait } => {
            let i = client.stop(id).await?;
            requested(client, "stop", i, wait, |i| {
                !matches!(i.state, InstanceState::Running | InstanceState::Connecting)
            })
            .await?
        }
        Command::Start { id, wait } => {
            let i = client.start(id).await?;
            requested(client, "start", i, wait, |i| i.state.is_settled()).await?
        }
        Command::Reboot { id, wait } => {
            let i = client.reboot(id).await?;
            requested(client, "reboot", i, wait, |i| i.state.is_settled()).await?
        }
        Command::Destroy { id } => {
            client.destroy(id).await?;
            print(&format!("instance {id} destroyed\n"))?
        }
        Command::Hosts { json } => {
            let hosts = client.hosts().await?;
            print(&if json {
                output::json(&hosts)?
            } else {
                output::hosts_table(&hosts)
            })?
        }
        Command::Users(cmd) => users(&client, cmd).await?,
        Command::Keys(cmd) => keys(&client, cmd).await?,
        Command::Templates(cmd) => templates(&client, cmd).await?,
        Command::AttachKey { id, file } => attach_key(&client, id, &file).await?,
        Command::Ssh(args) => ssh_session(&client, &args).await?,
        Command::Jupyter { id, route, open } => jupyter(&client, id, route.want(), open).await?,
        Command::SshUrl { id, route } => {
            let i = client.instance(id).await?;
            let endpoint = ssh::Endpoint::of(&i)?;
            let mut text = format!("{}\n", endpoint.preferred(route.want())?.url());
            // Without --direct or --proxy, the other way too, on a second line.
            if route.want() == Want::Auto && endpoint.direct.is_some() {
                if let Ok(proxy) = endpoint.preferred(Want::Proxy) {
                    text.push_str(&format!("{}\n", proxy.url()));
                }
            }
            print(&text)?
        }
        Command::Scp(args) => scp(&client, &args).await?,
        Command::SshConfig { identity } => ssh_config(&client, identity.as_deref()).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// After a stop, start or reboot: says it was asked and what the instance shows now (a
/// stopping instance shows running until its container has stopped); with `wait`, waits
/// until `done` and says where it ended.
async fn requested(
    client: Client,
    what: &str,
    now: Instance,
    wait: bool,
    done: impl Fn(&Instance) -> bool,
) -> Result<()> {
    let id = now.id;
    if !wait {
        return print(&format!(
            "instance {id}: {what} requested (now {}; --wait waits for it)\n",
            output::state(&now)
        ));
    }
    let i = wait::until(&client, id, done).await?;
    print(&format!("instance {id}: {}\n", output::state(&i)))?;
    if matches!(i.state, InstanceState::Failed) {
        bail!("instance {id} failed");
    }
    Ok(())
}

async fn login(url: &str, api_key: &str) -> Result<()> {
    let client = Client::new(url, Secret::new(api_key))?;
    let me = client.me().await?;
    config::save(client.url(), api_key)?;
    for var in [config::ENV_URL, config::ENV_API_KEY] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            eprintln!("note: {var} is set and overrides this login while it stays set");
        }
    }
    print(&format!("logged in to {} as {}\n", client.url(), me.name))
}

async fn create(client: &Client, args: &CreateArgs) -> Result<()> {
    let id = client.create_instance(&args.to_request()?).await?.id;
    if !args.wait {
        let created = berth_core::api::Created { id };
        return print(&if args.json {
            output::json(&created)?
        } else {
            format!("{id}\n")
        });
    }
    let instance = wait::until_settled(client, id).await?;
    if instance.state == InstanceState::Exited {
        let code = instance
            .exit_code
            .map_or("?".to_string(), |c| c.to_string());
        eprintln!("instance {id} exited with code {code}");
    }
    print(&if args.json {
        output::json(&instance)?
    } else {
        format!("{id}\n")
    })?;
    if instance.state == InstanceState::Failed {
        let reason = instance.reason.as_deref().unwrap_or("no reason given");
        bail!("instance {id} failed: {reason}");
    }
    Ok(())
}

/// Copies the log body to stdout chunk by chunk, as it arrives.
async fn logs(
    client: &Client,
    id: i64,
    follow: bool,
    tail: Option<u64>,
    onstart: bool,
) -> Result<()> {
    let stream = client.logs(id, follow, tail, onstart).await?;
    let mut stream = std::pin::pin!(stream);
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        match stdout
            .write_all(chunk.as_ref())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn users(client: &Client, cmd: UsersCommand) -> Result<()> {
    match cmd {
        UsersCommand::Add { name, json } => {
            let user = client.add_user(&name).await?;
            print(&if json {
                output::json(&user)?
            } else {
                format!("{}\n", user.api_key)
            })
        }
        UsersCommand::Ls { json } => {
            let users = client.users().await?;
            print(&if json {
                output::json(&users)?
            } else {
                output::users_table(&users, output::now())
            })
        }
        UsersCommand::Rm { name } => {
            client.remove_user(&name).await?;
            print(&format!("user {name} removed\n"))
        }
    }
}

async fn keys(client: &Client, cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Add { file, json } => {
            let key = client.add_key(&input::read_public_key(&file)?).await?;
            print(&if json {
                output::json(&key)?
            } else {
                format!("key {} added: {}\n", key.id, key.fingerprint)
            })
        }
        KeysCommand::Ls { json } => {
            let keys = client.keys().await?;
            print(&if json {
                output::json(&keys)?
            } else {
                output::keys_table(&keys, output::now())
            })
        }
        KeysCommand::Rm { id } => {
            client.remove_key(id).await?;
            print(&format!("key {id} removed\n"))
        }
    }
}

async fn templates(client: &Client, cmd: TemplatesCommand) -> Result<()> {
    match cmd {
        TemplatesCommand::Create {
            name,
            image,
            from_image: Some(from),
            readme,
            json,
            launch,
        } => {
            debug_assert!(image.is_none());
            if !launch.only_mode() {
                bail!(
                    "--from-image takes only --ssh, --jupyter or --mode (and --readme): change the template afterwards with `berth templates edit {name} …`"
                );
            }
            let body = TemplateFromImage {
                name,
                image: from,
                mode: launch.mode().unwrap_or_default(),
                readme: readme.read()?.flatten(),
            };
            let made = client.template_from_image(&body).await?;
            print(&if json {
                output::json(&made)?
            } else {
                let mut out: String = made
                    .notes
                    .iter()
                    .map(|n| format!("- {}\n", berth_core::visible::text(n, false)))
                    .collect();
                out.push_str(&format!(
                    "template {} made from {} ({} mode); launch it with: berth create --template {}\n",
                    made.template.name,
                    berth_core::visible::word(&made.template.settings.image),
                    made.template.settings.mode.unwrap_or_default(),
                    made.template.name
                ));
                out
            })
        }
        TemplatesCommand::Create {
            name,
            image,
            from_image: None,
            readme,
            json,
            launch,
        } => {
            let body = TemplateBody {
                name,
                readme: readme.read()?.flatten(),
                settings: launch.to_request(image.as_deref().unwrap_or(""))?,
            };
            let t = client.create_template(&body).await?;
            print(&if json {
                output::json(&t)?
            } else {
                format!("template {} saved\n", t.name)
            })
        }
        TemplatesCommand::Ls { json } => {
            let list = client.templates().await?;
            print(&if json {
                output::json(&list)?
            } else {
                output::templates_table(&list, output::now())
            })
        }
        TemplatesCommand::Show { name, json } => {
            let t = client.template(&name).await?;
            print(&if json {
                output::json(&t)?
            } else {
                output::template_details(&t, output::now())
            })
        }
        TemplatesCommand::Edit {
            name,
            image,
            replace,
            readme,
            json,
            launch,
        } => {
            let t = edit_template(client, &name, image, replace, &readme, &launch).await?;
            print(&if json {
                output::json(&t)?
            } else {
                format!("template {} saved\n", t.name)
            })
        }
        TemplatesCommand::Rm { name } => {
            client.delete_template(&name).await?;
            print(&format!("template {name} removed\n"))
        }
    }
}

/// `berth templates edit`: the options given laid over the template's settings (or, with
/// `replace`, the settings made of them alone), saved with PUT.
async fn edit_template(
    client: &Client,
    name: &str,
    image: Option<String>,
    replace: bool,
    readme: &ReadmeArgs,
    launch: &LaunchArgs,
) -> Result<Template> {
    let current = client.template(name).await?;
    let given = launch.to_request(image.as_deref().unwrap_or(""))?;
    let settings = if replace {
        given
    } else {
        berth_core::template::merge(&current.settings, &given)
    };
    let readme = match readme.read()? {
        Some(r) => r,
        None => current.readme,
    };
    let body = TemplateBody {
        name: name.to_string(),
        readme,
        settings,
    };
    client.update_template(&body).await
}

async fn attach_key(client: &Client, id: i64, file: &Path) -> Result<()> {
    let key = input::read_public_key(file)?;
    client.attach_key(id, &key).await?;
    let what = match berth_core::ssh_key::parse(&key) {
        Ok(k) => format!("key {}", k.fingerprint),
        Err(_) => "the key".to_string(),
    };
    print(&format!("instance {id}: {what} authorized\n"))
}

/// The instance `id` and every instance of the account (with `id` among them), for
/// connecting to one while keeping the known_hosts file whole.
async fn instance_and_all(client: &Client, id: i64) -> Result<(Instance, Vec<Instance>)> {
    let mut all = client.instances().await?;
    let instance = match all.iter().find(|i| i.id == id) {
        Some(i) => i.clone(),
        None => {
            let i = client.instance(id).await?;
            all.push(i.clone());
            i
        }
    };
    Ok((instance, all))
}

/// Where `berth ssh` and `berth scp` connect: the way `want` names, or direct when an SSH
/// server answers there (a quick probe) and the proxy otherwise. Says on stderr when it
/// falls back to the proxy.
async fn ssh_target(ep: ssh::Endpoint, want: Want) -> Result<ssh::Target> {
    let chosen = tokio::task::spawn_blocking(move || {
        let target = ep.choose(want, |a| route::ssh_answers(a, route::PROBE_TIMEOUT));
        (ep, target)
    })
    .await
    .context("probing the SSH endpoints")?;
    let (ep, target) = chosen;
    let target = target?;
    if let (Route::Proxy, Some(direct), Want::Auto) = (target.route, &ep.direct, want) {
        eprintln!(
            "note: the direct endpoint {direct} does not answer; connecting through the proxy {}",
            target.addr
        );
    } else if target.route == Route::Proxy {
        // Not probed yet. ssh alone would only say "Connection closed by remote host".
        let addr = target.addr.clone();
        let greets =
            tokio::task::spawn_blocking(move || route::ssh_answers(&addr, route::PROBE_TIMEOUT))
                .await
                .unwrap_or(true);
        if !greets {
            eprintln!(
                "warning: nothing greets at the proxy endpoint {} of instance {}: its host's \
                 tunnel to the proxy is down, or the proxy is (see `berth show {}` and `berth \
                 hosts`); trying anyway",
                target.addr, target.id, target.id
            );
        }
    }
    Ok(target)
}

/// `berth ssh`: becomes the system `ssh` (the terminal is the user's).
async fn ssh_session(client: &Client, args: &SshArgs) -> Result<()> {
    let (instance, all) = instance_and_all(client, args.id).await?;
    let ep = ssh::connectable(&instance)?;
    let known_hosts = ssh::refresh_known_hosts(&all)?;
    let target = ssh_target(ep, args.route.want()).await?;
    let argv = ssh::ssh_argv(
        &target,
        &known_hosts,
        args.identity.as_deref(),
        &args.options,
        &args.command,
    );
    exec("ssh", &argv)
}

/// `berth scp`: becomes the system `scp`.
async fn scp(client: &Client, args: &ScpArgs) -> Result<()> {
    let (src, dst, id) = ssh::scp_sides(&args.src, &args.dst)?;
    let (instance, all) = instance_and_all(client, id).await?;
    let ep = ssh::connectable(&instance)?;
    let known_hosts = ssh::refresh_known_hosts(&all)?;
    let target = ssh_target(ep, args.route.want()).await?;
    let argv = ssh::scp_argv(
        &target,
        &known_hosts,
        args.recursive,
        args.identity.as_deref(),
        &args.options,
        &src,
        &dst,
    );
    exec("scp", &argv)
}

/// `berth ssh-config`: writes the known_hosts file, prints the `Host` entries.
async fn ssh_config(client: &Client, identity: Option<&Path>) -> Result<()> {
    let identity = match identity {
        Some(p) => {
            let abs = std::path::absolute(p)
                .with_context(|| format!("finding the absolute path of {}", p.display()))?;
            Some(ssh::config_path_value(&abs)?)
        }
        None => None,
    };
    let all = client.instances().await?;
    let known_hosts = ssh::refresh_known_hosts(&all)?;
    print(&ssh::render_ssh_config(
        &all,
        &known_hosts,
        identity.as_deref(),
    ))
}

/// Replaces this process with `program argv…`; answers only if that fails.
fn exec(program: &str, argv: &[String]) -> Result<()> {
    let e = std::process::Command::new(program).args(argv).exec();
    if e.kind() == std::io::ErrorKind::NotFound {
        bail!(
            "cannot run {program}: it is not installed or not on PATH (berth uses the system OpenSSH client: install it, e.g. `apt install openssh-client`)"
        );
    }
    bail!("cannot run {program}: {e}")
}

/// `berth jupyter ID [--direct|--proxy] [--open]`: the HTTPS link with the token, direct
/// when Jupyter's port answers there (a quick probe), else through the proxy.
async fn jupyter(client: &Client, id: i64, want: Want, open: bool) -> Result<()> {
    let links = jupyter::Links::of(&client.instance(id).await?)?;
    let direct = links.direct.as_ref().map(|(_, addr)| addr.to_string());
    let (route, url) = tokio::task::spawn_blocking(move || {
        links
            .choose(want, |a| route::port_answers(a, route::PROBE_TIMEOUT))
            .map(|(route, url)| (route, url.to_string()))
    })
    .await
    .context("probing Jupyter's direct port")??;
    if let (Route::Proxy, Some(direct), Want::Auto) = (route, direct, want) {
        eprintln!("note: Jupyter's direct port {direct} does not answer; this link goes through the proxy");
    }
    print(&format!("{url}\n"))?;
    if open {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        let status = std::process::Command::new(opener)
            .arg(&url)
            .status()
            .map_err(|e| anyhow::anyhow!("cannot run {opener} to open a browser: {e}"))?;
        if !status.success() {
            anyhow::bail!("{opener} could not open a browser ({status})");
        }
        eprintln!("(Jupyter's certificate is from berth's CA: install it once with `berth cert`, see the README)");
    }
    Ok(())
}
