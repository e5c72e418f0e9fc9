//! The agent ↔ server wire protocol, version [`PROTOCOL_VERSION`].
//!
//! The agent dials the server's WebSocket at `/agent/v1/connect` with
//! `Authorization: Bearer <agent token>` and sends [`AgentMessage::Hello`] with its host
//! facts; the server answers [`ServerMessage::Welcome`]. From then on the exchange is
//! level-triggered: the server sends [`ServerMessage::Desired`] with the full desired set of
//! the host whenever it changes (and right after Hello); the agent converges Docker to it
//! and sends [`AgentMessage::Report`] with the full actual set whenever that changes, and at
//! least every [`REPORT_INTERVAL_SECS`]. JSON messages travel as text frames. Log bytes
//! travel as binary frames: 8 bytes of big-endian stream id, then the bytes.
use crate::spec::{InstanceSpec, PortProto, PortSpec};
use serde::{Deserialize, Serialize};

pub const PROTOCOL_VERSION: u32 = 1;
/// The agent reports at least this often, so the server can tell a live host.
pub const REPORT_INTERVAL_SECS: u64 = 5;
/// Path of the agent endpoint on the server.
pub const AGENT_PATH: &str = "/agent/v1/connect";

/// Container labels by which an agent finds its containers again.
pub mod labels {
    pub const DEPLOYMENT: &str = "berth.deployment";
    pub const HOST: &str = "berth.host";
    pub const INSTANCE: &str = "berth.instance";
    pub const GPUS: &str = "berth.gpus";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn contains(&self, p: u16) -> bool {
        (self.first..=self.last).contains(&p)
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?}: expected FIRST-LAST, e.g. 40000-40999"))?;
        let p = |x: &str| -> Result<u16, String> {
            x.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{x:?} is not a port number from 1 to 65535"))
        };
        let (first, last) = (p(a)?, p(b)?);
        if first > last {
            return Err(format!("{s:?}: the range ends before it starts"));
        }
        Ok(PortRange { first, last })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    pub uuid: String,
}

/// What an agent says of its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Unique name of the host within the deployment.
    pub name: String,
    /// The address users reach the host's open ports at.
    pub public_ip: String,
    /// Open host ports; `None` for a host with no open ports (behind NAT).
    pub port_range: Option<PortRange>,
    pub gpus: Vec<Gpu>,
    /// DNS names users reach the host by (named in jupyter certificates).
    #[serde(default)]
    pub dns_names: Vec<String>,
    pub docker_version: String,
    pub agent_version: String,
}

/// Whether the user wants the instance's container running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum RunState {
    /// Running, started no earlier than `since_ms` (unix ms). A container that started
    /// before it is (re)started; one that started after it and ended is left ended.
    Running {
        since_ms: i64,
    },
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredInstance {
    pub id: i64,
    pub spec: InstanceSpec,
    pub run: RunState,
    /// ssh/jupyter: the authorized_keys lines (the owner's account keys and the instance's).
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// jupyter: token and TLS certificate.
    #[serde(default)]
    pub jupyter: Option<JupyterMaterial>,
}

/// What a jupyter instance needs from the server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JupyterMaterial {
    pub token: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for JupyterMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JupyterMaterial(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub internal: u16,
    pub external: u16,
    pub proto: PortProto,
    /// Bound to the host's loopback only (a host without open ports): reachable through
    /// the agent's tunnel, not directly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PullProgress {
    /// Bytes downloaded and to download, over the layers whose size is known.
    pub current: u64,
    pub total: u64,
    pub layers_done: u32,
    pub layers_total: u32,
}

/// Where an instance's container is, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum Phase {
    Pulling { progress: Option<PullProgress> },
    Creating,
    Connecting,
    Running,
    Stopped,
    Exited { code: i64 },
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualInstance {
    pub id: i64,
    pub container_id: Option<String>,
    #[serde(flatten)]
    pub phase: Phase,
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub gpu_ids: Vec<String>,
    /// RFC 3339, from the engine.
    pub started_at: Option<String>,
    /// The desired run state this report reflects; a report whose `applied` differs from the
    /// server's current desire is older than the user's last start/stop/reboot.
    pub applied: Option<RunState>,
    /// ssh/jupyter: the instance's SSH host public keys, once generated.
    #[serde(default)]
    pub ssh_host_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// First message; the full actual set follows in a Report once the agent has its
    /// deployment from [`ServerMessage::Welcome`].
    Hello {
        protocol: u32,
        host: HostFacts,
    },
    Report {
        actual: Vec<ActualInstance>,
    },
    /// The log stream ended (the container stopped, or reading failed).
    LogEnd {
        stream: u64,
        error: Option<String>,
    },
    /// Answer to [`ServerMessage::InspectImage`]: the image's config, or why it could not
    /// be had (the pull failed, …).
    ImageInspected {
        request: u64,
        result: Result<ImageFacts, String>,
    },
}

/// What an image's config says (`docker image inspect`'s `.Config`), for making a template
/// from it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageFacts {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `NAME=VALUE` each, in the image's order.
    #[serde(default)]
    pub env: Vec<String>,
    /// Empty: not set.
    #[serde(default)]
    pub workdir: String,
    /// Empty: not set (root).
    #[serde(default)]
    pub user: String,
    /// The EXPOSEd ports.
    #[serde(default)]
    pub exposed: Vec<PortSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First answer to Hello: the deployment this agent serves (used in container labels),
    /// its certificate authority (to check the instances' TLS services and the proxy), and
    /// where the agent dials its tunnel to the proxy, if the deployment has one.
    Welcome {
        deployment: String,
        #[serde(default)]
        ca_cert_pem: Option<String>,
        #[serde(default)]
        tunnel: Option<proxy::TunnelEndpoint>,
    },
    Desired {
        instances: Vec<DesiredInstance>,
    },
    /// `onstart`: the onstart script's log instead of the container's output.
    OpenLogs {
        stream: u64,
        instance: i64,
        follow: bool,
        tail: Option<u64>,
        #[serde(default)]
        onstart: bool,
    },
    CloseLogs {
        stream: u64,
    },
    /// Inspect `image` (pulling it first if it is not on the host) and answer with
    /// [`AgentMessage::ImageInspected`] carrying the same `request`.
    InspectImage {
        request: u64,
        image: String,
    },
    /// The server refuses this agent (bad protocol version, duplicate name, …).
    Refused {
        reason: String,
    },
}

/// Frames a chunk of log bytes for stream `stream`.
pub fn encode_log_frame(stream: u64, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// Splits a binary frame into its stream id and bytes.
pub fn decode_log_frame(frame: &[u8]) -> Option<(u64, &[u8])> {
    let id = u64::from_be_bytes(frame.get(..8)?.try_into().ok()?);
    Some((id, &frame[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = AgentMessage::Report {
            actual: vec![ActualInstance {
                id: 7,
                container_id: Some("abc".into()),
                phase: Phase::Exited { code: 3 },
                ports: vec![PortMapping {
                    internal: 80,
                    external: 40001,
                    proto: PortProto::Tcp,
                    local: false,
                }],
                gpu_ids: vec![],
                started_at: None,
                applied: Some(RunState::Running { since_ms: 5 }),
                ssh_host_keys: vec![],
            }],
        };
        let s = serde_json::to_string(&m).unwrap();
        assert!(s.contains(r#""phase":"exited","code":3"#), "{s}");
        assert_eq!(serde_json::from_str::<AgentMessage>(&s).unwrap(), m);
        let m = AgentMessage::ImageInspected {
            request: 4,
            result: Ok(ImageFacts {
                entrypoint: vec!["python3".into()],
                cmd: vec!["a b".into(), "".into()],
                env: vec!["A=1".into()],
                workdir: "/srv/app dir".into(),
                user: "app".into(),
                exposed: vec![PortSpec {
                    port: 8765,
                    proto: PortProto::Tcp,
                }],
            }),
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<AgentMessage>(&s).unwrap(), m);
        let m = AgentMessage::ImageInspected {
            request: 5,
            result: Err("pull failed".into()),
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<AgentMessage>(&s).unwrap(), m);
        let m = ServerMessage::InspectImage {
            request: 5,
            image: "x".into(),
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ServerMessage>(&s).unwrap(), m);
        let f = encode_log_frame(9, b"hi");
        assert_eq!(decode_log_frame(&f), Some((9, &b"hi"[..])));
        assert_eq!(decode_log_frame(b"short"), None);
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!("40000-40999".parse::<PortRange>().unwrap().len(), 1000);
        assert!("40999-40000".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("80".parse::<PortRange>().is_err());
    }
}

/// The proxy ↔ server protocol. The proxy polls the server (bearer: the agent token):
/// `GET /proxy/v1/config` for its settings and TLS material, `GET /proxy/v1/routes` for the
/// full route table (level-triggered, like the agents' desired sets).
pub mod proxy {
    use super::PortRange;
    use serde::{Deserialize, Serialize};

    pub const CONFIG_PATH: &str = "/proxy/v1/config";
    pub const ROUTES_PATH: &str = "/proxy/v1/routes";

    /// What the proxy serves and how users and agents reach it.
    #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProxyConfig {
        /// Host name or IP users and agents reach the proxy at.
        pub public_host: String,
        /// HTTPS names are `<instance>-<port>.<domain>`, e.g. `i42-8080.berth.localhost`.
        pub domain: String,
        /// Agents' tunnels (TLS).
        pub tunnel_port: u16,
        /// The HTTPS front.
        pub https_port: u16,
        /// The range the instances' SSH proxy ports come from.
        pub ssh_ports: PortRange,
        /// Certificate for `*.<domain>`, `<domain>` and `public_host`, from berth's CA.
        pub cert_pem: String,
        pub key_pem: String,
        pub ca_pem: String,
    }

    impl std::fmt::Debug for ProxyConfig {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ProxyConfig")
                .field("public_host", &self.public_host)
                .field("domain", &self.domain)
                .field("tunnel_port", &self.tunnel_port)
                .field("https_port", &self.https_port)
                .field("ssh_ports", &self.ssh_ports)
                .finish_non_exhaustive()
        }
    }

    /// How to reach one instance through the proxy.
    #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Route {
        pub instance: i64,
        /// The host whose agent tunnel leads to the instance.
        pub host: String,
        /// The host's public IP: the name Jupyter's certificate carries.
        pub public_ip: String,
        /// The proxy port that leads to the instance's port 22.
        pub ssh_port: Option<u16>,
        /// Port 8080 is Jupyter: TLS upstream, Jupyter's own token.
        pub jupyter: bool,
        /// Ports the user marked http (served at `i<ID>-<PORT>.<domain>`, behind the access token).
        pub http_ports: Vec<u16>,
        /// The token that opens the http ports (a link with `?berth_token=` sets a cookie).
        pub access_token: String,
    }

    impl std::fmt::Debug for Route {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Route")
                .field("instance", &self.instance)
                .field("host", &self.host)
                .field("ssh_port", &self.ssh_port)
                .field("jupyter", &self.jupyter)
                .field("http_ports", &self.http_ports)
                .finish_non_exhaustive()
        }
    }

    /// The full route table. `GET /proxy/v1/routes?after=V` answers at once if the table's
    /// version is not `V`, else waits (up to [`LONG_POLL_SECS`]) until it changes: new
    /// instances are reachable through the proxy as soon as they exist.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    pub struct Routes {
        #[serde(default)]
        pub version: u64,
        pub routes: Vec<Route>,
    }

    /// How long the server holds a routes request that has nothing new.
    pub const LONG_POLL_SECS: u64 = 20;

    /// Where an agent dials its tunnel (sent in the server's welcome).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TunnelEndpoint {
        /// `host:port` to connect to.
        pub addr: String,
        /// The name the proxy's certificate must carry.
        pub server_name: String,
    }
}
