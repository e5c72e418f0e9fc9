//! berth's client commands: `login`, `create`, `ls`, `show`, `logs`, `stop`, `start`,
//! `reboot`, `destroy`, `hosts`, `users`, `keys`, `attach-key`, `ssh`, `ssh-url`, `scp`,
//! `ssh-config`, `jupyter`, `cert`. The `berth` binary flattens [`Command`] next to
//! its own subcommands and calls [`run`]; errors are one line when printed with `{:#}`.
//!
//! - [`config`]: where the server URL and API key are kept (and their env overrides);
//! - [`client`]: a typed client of the REST API;
//! - [`output`]: tables and detail lines;
//! - [`ssh`]: the system `ssh`/`scp` argv, `ssh-config` entries and berth's known_hosts;
//! - [`route`]: direct or through the proxy, and the probes that choose;
//! - `args`, `commands`, `input`, `wait`, `cert`, `jupyter`: the clap definitions, what
//!   each command does, FILE-or-stdin arguments, `create --wait`, downloading the CA
//!   certificate, and `berth jupyter`'s choice of link.
#![forbid(unsafe_code)]

mod args;
mod cert;
pub mod client;
mod commands;
pub mod config;
mod input;
mod jupyter;
pub mod output;
pub mod route;
pub mod ssh;
mod wait;

pub use args::{Command, CreateArgs, KeysCommand, RouteArgs, ScpArgs, SshArgs, UsersCommand};
pub use client::{ApiError, Client};
pub use commands::run;
