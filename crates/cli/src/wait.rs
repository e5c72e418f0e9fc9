//! `berth create --wait`: poll an instance until it settles, showing what it does on stderr.
use crate::client::Client;
use crate::output;
use anyhow::Result;
use berth_core::api::Instance;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

const POLL_EVERY: Duration = Duration::from_millis(200);

/// Polls the instance until it is running, stopped, exited or failed, and answers it.
/// On a terminal a progress bar shows image pulls; otherwise each new state is a line.
pub async fn until_settled(client: &Client, id: i64) -> Result<Instance> {
    until(client, id, |i| i.state.is_settled()).await
}

/// Polls the instance until `done`, showing its states as [`until_settled`] does.
pub async fn until(client: &Client, id: i64, done: impl Fn(&Instance) -> bool) -> Result<Instance> {
    let mut display = if std::io::stderr().is_terminal() {
        Display::bar()
    } else {
        Display::Lines { last: None }
    };
    loop {
        let instance = match client.instance(id).await {
            Ok(i) => i,
            Err(e) => {
                display.finish();
                return Err(e);
            }
        };
        if done(&instance) {
            display.finish();
            return Ok(instance);
        }
        display.show(&instance);
        tokio::time::sleep(POLL_EVERY).await;
    }
}

enum Display {
    /// A spinner with the state that turns into a byte bar while the image is pulled.
    Bar { bar: ProgressBar, pulling: bool },
    /// A line on stderr for each new state.
    Lines { last: Option<String> },
}

impl Display {
    fn bar() -> Display {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(style("{spinner} {msg}"));
        bar.enable_steady_tick(Duration::from_millis(100));
        Display::Bar {
            bar,
            pulling: false,
        }
    }

    fn show(&mut self, i: &Instance) {
        let state = format!("instance {}: {}", i.id, output::state(i));
        match self {
            Display::Bar { bar, pulling } => {
                let progress = i.progress.as_ref().filter(|p| p.total > 0);
                if let Some(p) = progress {
                    bar.set_length(p.total);
                    bar.set_position(p.current.min(p.total));
                }
                if progress.is_some() != *pulling {
                    *pulling = progress.is_some();
                    bar.set_style(style(if *pulling {
                        "{spinner} {msg} [{bar:20}] {decimal_bytes}/{decimal_total_bytes}"
                    } else {
                        "{spinner} {msg}"
                    }));
                }
                bar.set_message(match progress {
                    Some(p) => format!(
                        "instance {}: pulling {}/{} layers",
                        i.id, p.layers_done, p.layers_total
                    ),
                    None => state,
                });
            }
            Display::Lines { last } => {
                let state = match i.progress.as_ref() {
                    Some(p) => format!(
                        "{state} (pulling the image: {}/{} layers)",
                        p.layers_done, p.layers_total
                    ),
                    None => state,
                };
                if last.as_deref() != Some(state.as_str()) {
                    eprintln!("{state}");
                    *last = Some(state);
                }
            }
        }
    }

    fn finish(&self) {
        if let Display::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .progress_chars("=> ")
}
