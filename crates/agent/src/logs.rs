//! Log streams the server asks for: the container's output, sent back as binary frames.
use crate::conn::Outgoing;
use crate::Shared;
use berth_core::protocol::AgentMessage;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Streams the logs of `instance` into `out` until they end or the task is aborted.
pub(crate) async fn stream(
    shared: Arc<Shared>,
    stream: u64,
    instance: i64,
    follow: bool,
    tail: Option<u64>,
    out: mpsc::Sender<Outgoing>,
) {
    let error = match shared.container_of(instance) {
        None => Some(format!("instance {instance} has no container on this host")),
        Some(container) => {
            let mut logs = Box::pin(shared.engine.logs(&container, follow, tail));
            let mut error = None;
            while let Some(chunk) = logs.next().await {
                match chunk {
                    Ok(bytes) => {
                        if out.send(Outgoing::Log(stream, bytes)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        error = Some(format!("reading logs failed: {}", e.message()));
                        break;
                    }
                }
            }
            error
        }
    };
    let _ = out
        .send(Outgoing::Message(AgentMessage::LogEnd { stream, error }))
        .await;
}
