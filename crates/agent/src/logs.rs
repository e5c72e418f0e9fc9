//! Log streams the server asks for: the container's output, or (ssh and jupyter modes) the
//! onstart script's log from the instance's state directory; sent back as binary frames.
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
    onstart: bool,
    out: mpsc::Sender<Outgoing>,
) {
    if onstart {
        let error = onstart_log(&shared, instance, follow, tail, stream, &out)
            .await
            .err();
        let _ = out
            .send(Outgoing::Message(AgentMessage::LogEnd { stream, error }))
            .await;
        return;
    }
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

/// How much of the onstart log is read at a time; with `--tail`, how far back from its end
/// the last lines are looked for.
const ONSTART_CHUNK: u64 = 256 * 1024;
const TAIL_WINDOW: u64 = 1024 * 1024;

/// Sends the onstart log (its last `tail` lines); with `follow`, keeps sending what is
/// appended while the container runs. The log is the container's file: it is read in
/// bounded pieces from where the last read ended, whatever its size.
async fn onstart_log(
    shared: &Shared,
    instance: i64,
    follow: bool,
    tail: Option<u64>,
    stream: u64,
    out: &mpsc::Sender<Outgoing>,
) -> Result<(), String> {
    use berth_core::protocol::Phase;
    let run = shared.dirs(instance).run;
    let read = |offset: u64, max: u64| {
        let run = run.clone();
        async move {
            tokio::task::spawn_blocking(move || crate::ssh::read_onstart_log(&run, offset, max))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot read the onstart log: {e}"))
        }
    };
    let mut sent = match tail {
        Some(n) => {
            let (_, len) = read(0, 0).await?;
            let from = len.saturating_sub(TAIL_WINDOW);
            let (data, _) = read(from, TAIL_WINDOW).await?;
            let last = last_lines(&data, n as usize);
            if !last.is_empty()
                && out
                    .send(Outgoing::Log(stream, bytes::Bytes::copy_from_slice(last)))
                    .await
                    .is_err()
            {
                return Ok(());
            }
            from + data.len() as u64
        }
        None => 0,
    };
    loop {
        let (data, len) = read(sent, ONSTART_CHUNK).await?;
        if len < sent {
            sent = 0; // the log was replaced
            continue;
        }
        if !data.is_empty() {
            sent += data.len() as u64;
            if out
                .send(Outgoing::Log(stream, bytes::Bytes::from(data)))
                .await
                .is_err()
            {
                return Ok(());
            }
            continue;
        }
        let running = shared
            .actual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&instance)
            .is_some_and(|a| matches!(a.phase, Phase::Running | Phase::Connecting));
        if !follow || !running {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The last `n` lines of `data`.
fn last_lines(data: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &data[data.len()..];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    #[test]
    fn last_lines_counts_from_the_end() {
        assert_eq!(super::last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(super::last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(super::last_lines(b"a\n", 5), b"a\n");
        assert_eq!(super::last_lines(b"a\n", 0), b"");
    }
}
