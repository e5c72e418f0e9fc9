//! How an instance looks to its user: the stored desire and the agent's last report,
//! folded into one honest state.
use berth_core::api;
use berth_core::protocol::{Phase, RunState};
use berth_core::InstanceState;
use berth_store::InstanceRow;

/// A host that has not reported for this long while disconnected is offline.
pub const OFFLINE_AFTER_MS: i64 = 15_000;

pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Folds desire, report and host liveness into the API view.
pub fn instance(
    row: &InstanceRow,
    public_ip: &str,
    host_online: bool,
    proxy: Option<&crate::ProxySettings>,
) -> api::Instance {
    let mut exit_code = None;
    let mut reason = None;
    let mut progress = None;
    let state = match &row.actual {
        _ if !host_online => InstanceState::Offline,
        None => InstanceState::Created,
        // The agent has not acted on the latest start/stop/reboot yet.
        Some(a) if a.applied.as_ref() != Some(&row.run) => match row.run {
            RunState::Running { .. } => InstanceState::Loading,
            RunState::Stopped => phase_state(&a.phase, &mut exit_code, &mut reason, &mut progress),
        },
        Some(a) => phase_state(&a.phase, &mut exit_code, &mut reason, &mut progress),
    };
    let actual = row.actual.as_ref();
    api::Instance {
        id: row.id,
        owner: row.owner.clone(),
        host: row.host.clone(),
        image: row.spec.image.clone(),
        mode: row.spec.mode,
        label: row.spec.label.clone(),
        state,
        exit_code,
        reason,
        progress,
        public_ip: public_ip.to_string(),
        ports: actual.map(|a| a.ports.clone()).unwrap_or_default(),
        entrypoint: row.spec.entrypoint.clone(),
        args: row.spec.args.clone(),
        env: row.spec.env.clone(),
        gpus: row.spec.gpus,
        onstart: row.spec.onstart.clone(),
        direct: row.spec.direct,
        ssh_host_keys: actual.map(|a| a.ssh_host_keys.clone()).unwrap_or_default(),
        jupyter_lab: row.spec.jupyter_lab,
        jupyter_dir: row.spec.jupyter_dir.clone(),
        jupyter_token: row.secrets.jupyter_token.clone(),
        jupyter_url: jupyter_url(row, public_ip),
        proxy_ssh: proxy
            .zip(row.proxy_port)
            .map(|(p, port)| format!("{}:{port}", p.host_for_url())),
        proxy_jupyter_url: proxy.and_then(|p| proxy_jupyter_url(row, p)),
        http_urls: proxy
            .map(|p| {
                row.spec
                    .http_ports
                    .iter()
                    .map(|port| api::HttpUrl {
                        port: *port,
                        url: format!(
                            "{}/?berth_token={}",
                            proxy_base(row.id, *port, p),
                            row.secrets.access_token.as_deref().unwrap_or_default()
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        container_id: actual.and_then(|a| a.container_id.clone()),
        created_at: rfc3339(row.created_at_ms),
        started_at: actual.and_then(|a| a.started_at.clone()),
    }
}

/// `https://IP:PORT/?token=…` (or `/lab?token=…`) for a jupyter instance whose 8080 is mapped.
fn jupyter_url(row: &InstanceRow, public_ip: &str) -> Option<String> {
    let token = row.secrets.jupyter_token.as_ref()?;
    let port = row
        .actual
        .as_ref()?
        .ports
        .iter()
        .find(|m| m.internal == JUPYTER_PORT && !m.local)?
        .external;
    let host = if public_ip.contains(':') {
        format!("[{public_ip}]")
    } else {
        public_ip.to_string()
    };
    let path = if row.spec.jupyter_lab { "lab" } else { "tree" };
    Some(format!("https://{host}:{port}/{path}?token={token}"))
}

/// `https://i<ID>-<PORT>.<domain>:<https port>`.
fn proxy_base(id: i64, port: u16, p: &crate::ProxySettings) -> String {
    format!("https://i{id}-{port}.{}:{}", p.domain, p.https_port)
}

fn proxy_jupyter_url(row: &InstanceRow, p: &crate::ProxySettings) -> Option<String> {
    let token = row.secrets.jupyter_token.as_ref()?;
    let path = if row.spec.jupyter_lab { "lab" } else { "tree" };
    Some(format!(
        "{}/{path}?token={token}",
        proxy_base(row.id, JUPYTER_PORT, p)
    ))
}

/// Jupyter's internal port.
pub const JUPYTER_PORT: u16 = 8080;

fn phase_state(
    phase: &Phase,
    exit_code: &mut Option<i64>,
    reason: &mut Option<String>,
    progress: &mut Option<berth_core::protocol::PullProgress>,
) -> InstanceState {
    match phase {
        Phase::Pulling { progress: p } => {
            *progress = p.clone();
            InstanceState::Loading
        }
        Phase::Creating => InstanceState::Loading,
        Phase::Connecting => InstanceState::Connecting,
        Phase::Running => InstanceState::Running,
        Phase::Stopped => InstanceState::Stopped,
        Phase::Exited { code } => {
            *exit_code = Some(*code);
            InstanceState::Exited
        }
        Phase::Failed { reason: r } => {
            *reason = Some(r.clone());
            InstanceState::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::protocol::ActualInstance;
    use berth_core::InstanceSpec;

    fn row(run: RunState, actual: Option<ActualInstance>) -> InstanceRow {
        let spec = InstanceSpec::from_request(&api::CreateInstance {
            image: "x".into(),
            ..Default::default()
        })
        .unwrap();
        InstanceRow {
            id: 1,
            owner: "u".into(),
            host: "h".into(),
            spec,
            run,
            actual,
            created_at_ms: 0,
            extra_keys: vec![],
            secrets: Default::default(),
            proxy_port: None,
        }
    }
    fn actual(phase: Phase, applied: RunState) -> ActualInstance {
        ActualInstance {
            id: 1,
            container_id: Some("c".into()),
            phase,
            ports: vec![],
            gpu_ids: vec![],
            started_at: None,
            applied: Some(applied),
            ssh_host_keys: vec![],
        }
    }
    fn instance_t(row: &InstanceRow, ip: &str, online: bool) -> api::Instance {
        instance(row, ip, online, None)
    }
    const RUN1: RunState = RunState::Running { since_ms: 1 };
    const RUN2: RunState = RunState::Running { since_ms: 2 };

    #[test]
    fn states_fold_honestly() {
        assert_eq!(
            instance_t(&row(RUN1, None), "ip", true).state,
            InstanceState::Created
        );
        assert_eq!(
            instance_t(&row(RUN1, None), "ip", false).state,
            InstanceState::Offline
        );
        let v = instance_t(
            &row(RUN1, Some(actual(Phase::Exited { code: 3 }, RUN1))),
            "ip",
            true,
        );
        assert_eq!((v.state, v.exit_code), (InstanceState::Exited, Some(3)));
        // A report from before the latest start is not believed.
        let v = instance_t(
            &row(RUN2, Some(actual(Phase::Exited { code: 3 }, RUN1))),
            "ip",
            true,
        );
        assert_eq!(v.state, InstanceState::Loading);
        // Until the agent confirms a stop, the instance still runs.
        let v = instance_t(
            &row(RunState::Stopped, Some(actual(Phase::Running, RUN1))),
            "ip",
            true,
        );
        assert_eq!(v.state, InstanceState::Running);
        let v = instance_t(
            &row(
                RUN1,
                Some(actual(
                    Phase::Failed {
                        reason: "no".into(),
                    },
                    RUN1,
                )),
            ),
            "ip",
            true,
        );
        assert_eq!(
            (v.state, v.reason.as_deref()),
            (InstanceState::Failed, Some("no"))
        );
    }
}
