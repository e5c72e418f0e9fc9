//! What each subcommand does: one function each, talking to the server through [`Client`]
//! and printing through [`output`].
use crate::args::{Command, CreateArgs, UsersCommand};
use crate::client::Client;
use crate::output::{self, print};
use crate::{config, wait};
use anyhow::{bail, Result};
use berth_core::{InstanceState, Secret};
use futures_util::StreamExt;
use std::io::Write;
use std::process::ExitCode;

/// Runs one client subcommand. Errors are meant to be printed with `{:#}`: one line each.
pub async fn run(cmd: Command) -> Result<ExitCode> {
    if let Command::Login { url, api_key } = &cmd {
        login(url, api_key).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::from_config(&config::load()?)?;
    match cmd {
        Command::Login { .. } => unreachable!("handled above"),
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
        Command::Logs { id, follow, tail } => logs(&client, id, follow, tail).await?,
        Command::Stop { id } => {
            let i = client.stop(id).await?;
            print(&format!("instance {id}: {}\n", output::state(&i)))?
        }
        Command::Start { id } => {
            let i = client.start(id).await?;
            print(&format!("instance {id}: {}\n", output::state(&i)))?
        }
        Command::Reboot { id } => {
            let i = client.reboot(id).await?;
            print(&format!("instance {id}: {}\n", output::state(&i)))?
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
    }
    Ok(ExitCode::SUCCESS)
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
    let id = client.create_instance(&args.to_request()).await?.id;
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
async fn logs(client: &Client, id: i64, follow: bool, tail: Option<u64>) -> Result<()> {
    let stream = client.logs(id, follow, tail).await?;
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
