//! One worker per instance: converges the instance's container to its desired state and
//! records what it sees. Driven by desired-state changes, engine events and a slow tick.
use crate::engine::ContainerInfo;
use crate::Shared;
use crate::{ports, ssh};
use berth_core::protocol::{
    labels, ActualInstance, DesiredInstance, Phase, PullProgress, RunState,
};
use berth_core::{LaunchMode, PortProto};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tracing::Instrument;

/// How often a started instance whose services do not answer yet is looked at again.
const CONNECTING_RECHECK: Duration = Duration::from_millis(100);
/// How often a settled instance is looked at again without an event.
const IDLE_RECHECK: Duration = Duration::from_secs(10);
/// How often the services of a running ssh/jupyter instance are probed again: every probe
/// is a connection sshd logs in the container's output.
const REPROBE: Duration = Duration::from_secs(30);
/// After an engine error, try again this soon.
const RETRY: Duration = Duration::from_secs(2);

/// What a worker remembers between passes.
#[derive(Default)]
struct Memory {
    container: Option<String>,
    /// The desired run state that failed, and why: not retried until the user asks again.
    failed: Option<(RunState, String)>,
    /// When the services last answered, and in which run of the container (its start time).
    answered: Option<(Option<String>, Instant)>,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    id: i64,
    mut desired: watch::Receiver<Option<DesiredInstance>>,
    poke: Arc<Notify>,
) {
    let span = tracing::info_span!("instance", id);
    async move {
        let mut mem = Memory::default();
        loop {
            let current = desired.borrow_and_update().clone();
            let Some(d) = current else {
                remove(&shared, id).await;
                return;
            };
            let wait = converge(&shared, id, &d, &mut mem, &mut desired).await;
            tokio::select! {
                r = desired.changed() => if r.is_err() { return },
                _ = poke.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shared.shutdown.cancelled() => return,
            }
        }
    }
    .instrument(span)
    .await
}

/// Removes every container of the instance and forgets it.
async fn remove(shared: &Shared, id: i64) {
    loop {
        match our_containers(shared, id).await {
            Ok(ids) => {
                let mut ok = true;
                for c in ids {
                    if let Err(e) = shared.engine.remove(&c).await {
                        tracing::warn!(container = %c, error = %e, "cannot remove container");
                        ok = false;
                    } else {
                        tracing::info!(container = %c, "container removed");
                    }
                }
                if ok {
                    break;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list containers"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
    // remove_dir_all does not follow symlinks: whatever the container left there, only
    // the instance's own directory goes.
    let dir = shared.instance_dir(id);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the instance's state directory");
        }
    }
    shared.forget(id);
}

async fn our_containers(
    shared: &Shared,
    id: i64,
) -> Result<Vec<String>, crate::engine::EngineError> {
    let all = shared
        .engine
        .list_berth(shared.deployment(), &shared.config.name)
        .await?;
    Ok(all
        .into_iter()
        .filter(|(i, _)| *i == id)
        .map(|(_, c)| c)
        .collect())
}

fn actual(
    shared: &Shared,
    id: i64,
    d: &DesiredInstance,
    phase: Phase,
    info: Option<&ContainerInfo>,
) -> ActualInstance {
    ActualInstance {
        id,
        container_id: info.map(|i| i.id.clone()),
        phase,
        ports: info.map(|i| i.ports.clone()).unwrap_or_default(),
        gpu_ids: info
            .and_then(|i| i.labels.get(labels::GPUS))
            .map(|g| g.split(',').map(String::from).collect())
            .unwrap_or_default(),
        started_at: info.and_then(|i| i.started_at.clone()),
        applied: Some(d.run.clone()),
        ssh_host_keys: match d.spec.mode {
            LaunchMode::Entrypoint => Vec::new(),
            _ => ssh::host_keys(&shared.dirs(id).run),
        },
    }
}

/// One pass; returns how long to wait before the next unless something happens.
async fn converge(
    shared: &Shared,
    id: i64,
    d: &DesiredInstance,
    mem: &mut Memory,
    desired: &mut watch::Receiver<Option<DesiredInstance>>,
) -> Duration {
    let engine = &shared.engine;
    let found = match find(shared, id, mem).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot inspect container");
            return RETRY;
        }
    };
    let failed_now = |mem: &Memory| {
        mem.failed
            .as_ref()
            .filter(|(run, _)| *run == d.run)
            .map(|(_, r)| r.clone())
    };
    let mut info = match found {
        Some(info) => info,
        None => {
            shared.note_address(id, None);
            if d.run == RunState::Stopped {
                shared.record(actual(shared, id, d, Phase::Stopped, None));
                return IDLE_RECHECK;
            }
            if let Some(reason) = failed_now(mem) {
                shared.record(actual(shared, id, d, Phase::Failed { reason }, None));
                return IDLE_RECHECK;
            }
            match create(shared, id, d, desired).await {
                Ok(Some(info)) => {
                    mem.container = Some(info.id.clone());
                    info
                }
                Ok(None) => return Duration::ZERO,
                Err(reason) => {
                    tracing::warn!(%reason, "instance failed");
                    mem.failed = Some((d.run.clone(), reason.clone()));
                    shared.record(actual(shared, id, d, Phase::Failed { reason }, None));
                    return IDLE_RECHECK;
                }
            }
        }
    };

    shared.note_address(id, info.address);
    let ssh_mode = d.spec.mode != LaunchMode::Entrypoint;
    if ssh_mode {
        // Keys added while the instance runs work at the next login, no restart; a renewed
        // certificate or a new public IP is used from the next start.
        if let Err(e) = ssh::prepare(&shared.dirs(id), d, &shared.config.public_ip) {
            tracing::warn!(error = %e, "cannot update the instance's state directory");
        }
    }

    match d.run {
        RunState::Stopped => {
            if info.running {
                if let Err(e) = engine.stop(&info.id).await {
                    tracing::warn!(error = %e, "cannot stop container");
                    return RETRY;
                }
                tracing::info!("container stopped");
                info = match engine.inspect(&info.id).await {
                    Ok(Some(i)) => i,
                    _ => return RETRY,
                };
                shared.note_address(id, info.address);
            }
            shared.record(actual(shared, id, d, Phase::Stopped, Some(&info)));
        }
        RunState::Running { since_ms } => {
            let started_since = info.started_at_ms.is_some_and(|t| t >= since_ms);
            if info.running && !started_since {
                tracing::info!("restarting container");
                if let Err(e) = engine.restart(&info.id).await {
                    tracing::warn!(error = %e, "cannot restart container");
                    return RETRY;
                }
                return Duration::ZERO;
            }
            if info.running {
                // ssh and jupyter: "running" only once sshd really greets.
                if ssh_mode {
                    let fresh = mem
                        .answered
                        .as_ref()
                        .is_some_and(|(run, at)| *run == info.started_at && at.elapsed() < REPROBE);
                    if !fresh {
                        if !services_answer(shared, d, &info).await {
                            mem.answered = None;
                            shared.record(actual(shared, id, d, Phase::Connecting, Some(&info)));
                            return CONNECTING_RECHECK;
                        }
                        mem.answered = Some((info.started_at.clone(), Instant::now()));
                    }
                }
                shared.record(actual(shared, id, d, Phase::Running, Some(&info)));
            } else if let (true, Err(reason)) =
                (ssh_mode && started_since, ssh::status(&shared.dirs(id).run))
            {
                // berth's init could not bring the mode up, and said why.
                shared.record(actual(shared, id, d, Phase::Failed { reason }, Some(&info)));
            } else if let Some(reason) = failed_now(mem) {
                shared.record(actual(shared, id, d, Phase::Failed { reason }, Some(&info)));
            } else if started_since {
                shared.record(actual(
                    shared,
                    id,
                    d,
                    Phase::Exited {
                        code: info.exit_code,
                    },
                    Some(&info),
                ));
            } else {
                match engine.start(&info.id).await {
                    Ok(()) => {
                        tracing::info!("container started");
                        return Duration::ZERO;
                    }
                    Err(e) => {
                        let reason = start_failure(&e.message());
                        tracing::warn!(%reason, "instance failed");
                        mem.failed = Some((d.run.clone(), reason.clone()));
                        shared.record(actual(shared, id, d, Phase::Failed { reason }, Some(&info)));
                    }
                }
            }
        }
    }
    IDLE_RECHECK
}

/// ssh and jupyter: do the mode's services really answer on their mapped ports? sshd must
/// greet; Jupyter must answer `/api` over TLS with the instance's certificate.
async fn services_answer(shared: &Shared, d: &DesiredInstance, info: &ContainerInfo) -> bool {
    let mapped = |port: u16| {
        info.ports
            .iter()
            .find(|m| m.internal == port && m.proto == PortProto::Tcp)
            .map(|m| m.external)
    };
    if let Some(p) = mapped(berth_launch::SSH_PORT) {
        if !ssh::answers(p).await {
            return false;
        }
    }
    if d.spec.mode == LaunchMode::Jupyter {
        if let Some(p) = mapped(ssh::JUPYTER_PORT) {
            return crate::jupyter::answers(
                p,
                shared.ca_pem().as_deref(),
                &shared.config.public_ip,
            )
            .await;
        }
    }
    true
}

/// The instance's container, by the remembered id or by its labels.
async fn find(
    shared: &Shared,
    id: i64,
    mem: &mut Memory,
) -> Result<Option<ContainerInfo>, crate::engine::EngineError> {
    if let Some(c) = &mem.container {
        if let Some(info) = shared.engine.inspect(c).await? {
            return Ok(Some(info));
        }
        mem.container = None;
    }
    let mut ids = our_containers(shared, id).await?;
    let Some(first) = ids.pop() else {
        return Ok(None);
    };
    for extra in ids {
        tracing::warn!(container = %extra, "removing a second container of the same instance");
        shared.engine.remove(&extra).await?;
    }
    let info = shared.engine.inspect(&first).await?;
    mem.container = info.as_ref().map(|i| i.id.clone());
    Ok(info)
}

/// Pulls the image if needed, allocates ports and GPUs, and creates the container.
/// `Ok(None)`: a newer desire arrived meanwhile.
async fn create(
    shared: &Shared,
    id: i64,
    d: &DesiredInstance,
    desired: &mut watch::Receiver<Option<DesiredInstance>>,
) -> Result<Option<ContainerInfo>, String> {
    let engine = &shared.engine;
    let image = &d.spec.image;
    let cfg = match engine
        .image_config(image)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(cfg) => cfg,
        None => {
            tracing::info!(%image, "pulling image");
            shared.record(actual(
                shared,
                id,
                d,
                Phase::Pulling { progress: None },
                None,
            ));
            // The first progress at once, then at most five a second.
            let mut last: Option<Instant> = None;
            let pull = engine.pull(image, |p: PullProgress| {
                if last.is_none_or(|l| l.elapsed() >= Duration::from_millis(200)) {
                    last = Some(Instant::now());
                    shared.record(actual(
                        shared,
                        id,
                        d,
                        Phase::Pulling { progress: Some(p) },
                        None,
                    ));
                }
            });
            tokio::select! {
                r = pull => r.map_err(|e| format!("image {image} could not be pulled: {}", e.message()))?,
                _ = desired.changed() => return Ok(None),
            }
            engine
                .image_config(image)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("image {image} is missing right after pulling it"))?
        }
    };
    shared.record(actual(shared, id, d, Phase::Creating, None));
    let wanted = berth_launch::wanted_ports(&d.spec, &cfg).map_err(|e| e.to_string())?;

    // One creation at a time: ports and GPUs are read, chosen and taken together.
    let mut allocator = shared.allocator.lock().await;
    let mut used_ports = HashSet::new();
    let mut used_gpus = HashSet::new();
    let mine = engine
        .list_berth(shared.deployment(), &shared.config.name)
        .await
        .map_err(|e| e.to_string())?;
    for (_, c) in mine {
        if let Ok(Some(info)) = engine.inspect(&c).await {
            used_ports.extend(info.ports.iter().map(|m| m.external));
            if let Some(g) = info.labels.get(labels::GPUS) {
                used_gpus.extend(g.split(',').map(String::from));
            }
        }
    }
    let free_gpus: Vec<String> = shared
        .gpus
        .iter()
        .map(|g| g.uuid.clone())
        .filter(|u| !used_gpus.contains(u))
        .collect();
    if (free_gpus.len() as u32) < d.spec.gpus {
        return Err(format!(
            "{} GPUs asked for, but this host has {} free of {}",
            d.spec.gpus,
            free_gpus.len(),
            shared.gpus.len()
        ));
    }
    let gpu_ids: Vec<String> = free_gpus.into_iter().take(d.spec.gpus as usize).collect();
    let mappings = allocator
        .allocate(&wanted, &used_ports, ports::bindable, shared.has_tunnel())
        .map_err(|e| e.to_string())?;
    let host = shared.host_context();
    if d.spec.mode != LaunchMode::Entrypoint {
        ssh::prepare(&shared.dirs(id), d, &shared.config.public_ip)
            .map_err(|e| format!("cannot prepare the instance's state directory: {e}"))?;
    }
    let token = d.jupyter.as_ref().map(|j| j.token.as_str());
    let plan = berth_launch::plan(id, &d.spec, &cfg, &host, &mappings, &gpu_ids, token)
        .map_err(|e| e.to_string())?;
    let cid = engine
        .create(&plan)
        .await
        .map_err(|e| format!("cannot create the container: {}", e.message()))?;
    drop(allocator);
    tracing::info!(container = %cid, ports = ?mappings, "container created");
    engine
        .inspect(&cid)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the container vanished right after it was created".to_string())
        .map(Some)
}

/// The useful part of the engine's start error: OCI runtimes wrap "exec: …" in layers.
fn start_failure(message: &str) -> String {
    match message.find("exec: ") {
        Some(i) => {
            let core = message[i..].trim_end_matches(": unknown");
            if core.contains("no such file or directory")
                || core.contains("executable file not found")
            {
                format!("entrypoint not found in the image: {core}")
            } else {
                format!("cannot start the container: {core}")
            }
        }
        None => format!("cannot start the container: {message}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_failures_are_short() {
        let m = "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/nope\": stat /nope: no such file or directory: unknown";
        assert_eq!(
            super::start_failure(m),
            "entrypoint not found in the image: exec: \"/nope\": stat /nope: no such file or directory"
        );
        assert_eq!(
            super::start_failure("boom"),
            "cannot start the container: boom"
        );
    }
}
