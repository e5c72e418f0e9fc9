//! The Docker engine, through bollard: the only place the agent touches Docker.
use berth_core::protocol::{labels, ImageFacts, PortMapping, PullProgress};
use berth_core::{PortProto, PortSpec};
use berth_launch::{ContainerPlan, ImageConfig};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, DeviceRequest, HostConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use std::collections::HashMap;

/// Where a host without open ports binds instances' ports: only the agent's tunnel reaches them.
const LOOPBACK: &str = "127.0.0.1";

/// Seconds a container gets to stop before it is killed.
pub const STOP_TIMEOUT_SECS: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to the Docker engine: {0}")]
    Connect(bollard::errors::Error),
    #[error("{0}")]
    Docker(#[from] bollard::errors::Error),
}

impl EngineError {
    /// The engine's own message, without bollard's wrapping.
    pub fn message(&self) -> String {
        match self {
            EngineError::Docker(bollard::errors::Error::DockerResponseServerError {
                message,
                ..
            }) => message.clone(),
            other => other.to_string(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            EngineError::Docker(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        )
    }
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

/// What the agent needs to know of one of its containers.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub id: String,
    pub running: bool,
    pub exit_code: i64,
    /// Unix ms of the last start; `None` if never started.
    pub started_at_ms: Option<i64>,
    pub started_at: Option<String>,
    pub ports: Vec<PortMapping>,
    pub labels: HashMap<String, String>,
    /// The running container's address on its Docker network (the default bridge), which
    /// the host reaches without Docker's port mapping in between.
    pub address: Option<std::net::IpAddr>,
}

impl Engine {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket) and negotiates
    /// the API version, since the engine may speak an older one than bollard's default.
    pub async fn connect() -> Result<Engine, EngineError> {
        let docker = Docker::connect_with_local_defaults().map_err(EngineError::Connect)?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(EngineError::Connect)?;
        Ok(Engine { docker })
    }

    pub async fn version(&self) -> Result<String, EngineError> {
        Ok(self.docker.version().await?.version.unwrap_or_default())
    }

    /// The image's config, or `None` if the image is not present.
    pub async fn image_config(&self, image: &str) -> Result<Option<ImageConfig>, EngineError> {
        let inspect = match self.docker.inspect_image(image).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let cfg = inspect.config.unwrap_or_default();
        let exposed = cfg
            .exposed_ports
            .unwrap_or_default()
            .iter()
            .filter_map(|p| parse_port_key(p))
            .collect();
        Ok(Some(ImageConfig {
            entrypoint: cfg.entrypoint.unwrap_or_default(),
            cmd: cfg.cmd.unwrap_or_default(),
            exposed,
        }))
    }

    /// What the image's config says (for a template made from it), or `None` if the image
    /// is not present.
    pub async fn image_facts(&self, image: &str) -> Result<Option<ImageFacts>, EngineError> {
        let inspect = match self.docker.inspect_image(image).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let cfg = inspect.config.unwrap_or_default();
        let mut exposed: Vec<PortSpec> = cfg
            .exposed_ports
            .unwrap_or_default()
            .iter()
            .filter_map(|p| parse_port_key(p))
            .collect();
        exposed.sort();
        Ok(Some(ImageFacts {
            entrypoint: cfg.entrypoint.unwrap_or_default(),
            cmd: cfg.cmd.unwrap_or_default(),
            env: cfg.env.unwrap_or_default(),
            workdir: cfg.working_dir.unwrap_or_default(),
            user: cfg.user.unwrap_or_default(),
            exposed,
        }))
    }

    /// Pulls `image`, calling `progress` as layers download.
    pub async fn pull(
        &self,
        image: &str,
        mut progress: impl FnMut(PullProgress),
    ) -> Result<(), EngineError> {
        let mut opts = CreateImageOptionsBuilder::new();
        opts = match split_tag(image) {
            (name, Some(tag)) => opts.from_image(name).tag(tag),
            (name, None) if image.contains('@') => opts.from_image(name),
            (name, None) => opts.from_image(name).tag("latest"),
        };
        let mut stream = self.docker.create_image(Some(opts.build()), None, None);
        let mut layers: HashMap<String, (u64, u64, bool)> = HashMap::new();
        while let Some(item) = stream.next().await {
            let info = item?;
            if let Some(err) = info.error_detail.and_then(|e| e.message) {
                return Err(EngineError::Docker(
                    bollard::errors::Error::DockerResponseServerError {
                        status_code: 500,
                        message: err,
                    },
                ));
            }
            let (Some(id), Some(status)) = (info.id, info.status) else {
                continue;
            };
            let entry = layers.entry(id).or_insert((0, 0, false));
            match status.as_str() {
                "Downloading" => {
                    if let Some(d) = info.progress_detail {
                        entry.0 = d.current.unwrap_or(0).max(0) as u64;
                        entry.1 = d.total.unwrap_or(0).max(0) as u64;
                    }
                }
                "Download complete" | "Pull complete" | "Already exists" => {
                    entry.0 = entry.1;
                    entry.2 = true;
                }
                _ => continue,
            }
            progress(PullProgress {
                current: layers.values().map(|l| l.0).sum(),
                total: layers.values().map(|l| l.1).sum(),
                layers_done: layers.values().filter(|l| l.2).count() as u32,
                layers_total: layers.len() as u32,
            });
        }
        Ok(())
    }

    /// Creates the container of a plan; returns its id.
    pub async fn create(&self, plan: &ContainerPlan) -> Result<String, EngineError> {
        let mut port_bindings = HashMap::new();
        let mut exposed = Vec::new();
        for m in &plan.ports {
            let key = format!("{}/{}", m.internal, m.proto.as_str());
            exposed.push(key.clone());
            port_bindings.insert(
                key,
                Some(vec![PortBinding {
                    host_ip: m.local.then(|| LOOPBACK.to_string()),
                    host_port: Some(m.external.to_string()),
                }]),
            );
        }
        let device_requests = (!plan.gpu_device_ids.is_empty()).then(|| {
            vec![DeviceRequest {
                driver: Some("nvidia".into()),
                device_ids: Some(plan.gpu_device_ids.clone()),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]
        });
        let body = ContainerCreateBody {
            image: Some(plan.image.clone()),
            entrypoint: Some(plan.entrypoint.clone()),
            cmd: Some(plan.cmd.clone()),
            env: Some(plan.env.clone()),
            labels: Some(plan.labels.clone().into_iter().collect()),
            exposed_ports: Some(exposed),
            user: plan.user.clone(),
            stop_signal: plan.stop_signal.clone(),
            host_config: Some(HostConfig {
                binds: Some(
                    plan.mounts
                        .iter()
                        .map(|m| {
                            format!(
                                "{}:{}:{}",
                                m.source,
                                m.target,
                                if m.read_only { "ro" } else { "rw" }
                            )
                        })
                        .collect(),
                ),
                port_bindings: Some(port_bindings),
                device_requests,
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new()
            .name(&plan.name)
            .build();
        Ok(self.docker.create_container(Some(opts), body).await?.id)
    }

    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        Ok(self.docker.start_container(id, None).await?)
    }

    pub async fn stop(&self, id: &str) -> Result<(), EngineError> {
        let opts = StopContainerOptionsBuilder::new()
            .t(STOP_TIMEOUT_SECS)
            .build();
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn restart(&self, id: &str) -> Result<(), EngineError> {
        let opts = RestartContainerOptionsBuilder::new()
            .t(STOP_TIMEOUT_SECS)
            .build();
        Ok(self.docker.restart_container(id, Some(opts)).await?)
    }

    /// Removes a container (and its anonymous volumes), stopping it first.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, EngineError> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(container_info(c))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every container of this deployment and host, running or not: (instance id, container id).
    pub async fn list_berth(
        &self,
        deployment: &str,
        host: &str,
    ) -> Result<Vec<(i64, String)>, EngineError> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{}={deployment}", labels::DEPLOYMENT),
                format!("{}={host}", labels::HOST),
            ],
        )]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self.docker.list_containers(Some(opts)).await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let inst = c.labels.as_ref()?.get(labels::INSTANCE)?.parse().ok()?;
                Some((inst, c.id?))
            })
            .collect())
    }

    /// Container events of this deployment: yields the instance id of each.
    pub fn events(&self, deployment: &str) -> impl Stream<Item = Result<i64, EngineError>> + use<> {
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            (
                "label",
                vec![format!("{}={deployment}", labels::DEPLOYMENT)],
            ),
        ]);
        let opts = EventsOptionsBuilder::new().filters(&filters).build();
        self.docker.events(Some(opts)).filter_map(|e| async move {
            match e {
                Ok(ev) => ev
                    .actor
                    .and_then(|a| a.attributes)
                    .and_then(|attrs| attrs.get(labels::INSTANCE).and_then(|i| i.parse().ok()))
                    .map(Ok),
                Err(err) => Some(Err(err.into())),
            }
        })
    }

    /// The container's stdout and stderr, interleaved as the engine keeps them.
    pub fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> impl Stream<Item = Result<bytes::Bytes, EngineError>> + use<> {
        let tail = tail.map(|t| t.to_string()).unwrap_or_else(|| "all".into());
        let opts = LogsOptionsBuilder::new()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        self.docker
            .logs(id, Some(opts))
            .map(|r| r.map(|o| o.into_bytes()).map_err(EngineError::from))
    }
}

/// `name[:tag]` split, leaving digests whole.
fn split_tag(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    }
}

/// `8000/tcp` → port spec.
pub fn parse_port_key(k: &str) -> Option<PortSpec> {
    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let proto = match proto {
        "tcp" => PortProto::Tcp,
        "udp" => PortProto::Udp,
        _ => return None,
    };
    Some(PortSpec {
        port: p.parse().ok().filter(|p| *p > 0)?,
        proto,
    })
}

fn container_info(c: ContainerInspectResponse) -> ContainerInfo {
    let state = c.state.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    let address = c
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_values()
        .filter_map(|e| e.ip_address?.parse().ok())
        .min()
        .filter(|_| running);
    let started_at = state.started_at.filter(|s| !s.starts_with("0001-"));
    let started_at_ms = started_at.as_deref().and_then(parse_rfc3339_ms);
    let mut ports = Vec::new();
    for (key, bindings) in c
        .host_config
        .and_then(|h| h.port_bindings)
        .unwrap_or_default()
    {
        let (Some(spec), Some(b)) = (parse_port_key(&key), bindings) else {
            continue;
        };
        if let Some(bind) = b.iter().find(|b| {
            b.host_port
                .as_deref()
                .and_then(|p| p.parse::<u16>().ok())
                .is_some()
        }) {
            ports.push(PortMapping {
                internal: spec.port,
                external: bind
                    .host_port
                    .as_deref()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_default(),
                proto: spec.proto,
                local: bind.host_ip.as_deref() == Some(LOOPBACK),
            });
        }
    }
    ports.sort_by_key(|m| (m.internal, m.proto));
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        running,
        exit_code: state.exit_code.unwrap_or(0),
        started_at_ms,
        started_at,
        ports,
        labels: c.config.and_then(|c| c.labels).unwrap_or_default(),
        address,
    }
}

pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_like_the_engine() {
        assert_eq!(split_tag("busybox"), ("busybox", None));
        assert_eq!(split_tag("a/b:1.0"), ("a/b", Some("1.0")));
        assert_eq!(
            split_tag("127.0.0.1:5000/x/y"),
            ("127.0.0.1:5000/x/y", None)
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/x/y:t"),
            ("127.0.0.1:5000/x/y", Some("t"))
        );
        assert_eq!(split_tag("x@sha256:00"), ("x@sha256:00", None));
    }

    #[test]
    fn engine_times_parse() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_rfc3339_ms("2026-12-03T18:30:00.123456789Z").map(|v| v % 1000),
            Some(123)
        );
        assert_eq!(parse_rfc3339_ms("garbage"), None);
    }

    #[test]
    fn port_keys_parse() {
        assert_eq!(
            parse_port_key("8000/tcp"),
            Some(PortSpec {
                port: 8000,
                proto: PortProto::Tcp
            })
        );
        assert_eq!(
            parse_port_key("53/udp"),
            Some(PortSpec {
                port: 53,
                proto: PortProto::Udp
            })
        );
        assert_eq!(parse_port_key("1/sctp"), None);
    }
}
