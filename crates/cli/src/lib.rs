//! berth's client commands: `login`, `create`, `ls`, `show`, `logs`, `stop`, `start`,
//! `reboot`, `destroy`, `hosts`, `users`. The `berth` binary flattens [`Command`] next to
//! its own subcommands and calls [`run`]; errors are one line when printed with `{:#}`.
//!
//! - [`config`]: where the server URL and API key are kept (and their env overrides);
//! - [`client`]: a typed client of the REST API;
//! - [`output`]: tables and detail lines;
//! - `args`, `commands`, `wait`: the clap definitions, what each command does, and
//!   `create --wait`.
#![forbid(unsafe_code)]

mod args;
pub mod client;
mod commands;
pub mod config;
pub mod output;
mod wait;

pub use args::{Command, CreateArgs, UsersCommand};
pub use client::{ApiError, Client};
pub use commands::run;
