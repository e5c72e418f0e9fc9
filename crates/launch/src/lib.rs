//! The heart of the launch modes: a pure function from (instance spec, image config, host
//! facts, allocated ports) to the container plan the agent hands to Docker. No I/O.
//!
//! Entrypoint mode reproduces `docker run IMAGE` exactly: the image's ENTRYPOINT and CMD
//! (resolved here, so an empty `--args` really means "no CMD"), with ENV, WORKDIR and USER
//! left to the engine, which takes them from the image. berth adds only env vars, port
//! mappings, labels and GPU device requests.
#![forbid(unsafe_code)]

use berth_core::protocol::{labels, PortMapping};
use berth_core::spec::MAX_PORTS;
use berth_core::{InstanceSpec, LaunchMode, PortProto, PortSpec};
use std::collections::BTreeMap;

/// What the launch plan needs to know of the image (from `docker image inspect`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub exposed: Vec<PortSpec>,
}

/// Where the instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostContext {
    pub deployment: String,
    pub host: String,
    pub public_ip: String,
    /// Host path of berth's static init binary (ssh and jupyter modes).
    pub init_path: String,
    /// Host directory under which each instance gets its directory (see [`instance_dir`]).
    pub state_root: String,
}

/// Where berth's init is mounted in ssh and jupyter containers, and its entrypoint.
pub const INIT_IN_CONTAINER: &str = "/.berth/init";
/// Where the instance's state directory is mounted, READ-ONLY: what the agent gives init
/// (config.json, authorized_keys, onstart.sh, Jupyter's certificate and key), kept current.
/// Read-only, so that nothing in the container can turn the agent's writes against the host.
pub const STATE_IN_CONTAINER: &str = "/.berth/state";
/// Where the instance's run directory is mounted, read-write: what init writes (its status,
/// the host key, its sshd_config, the onstart log), kept across stop/start. The agent reads
/// it as the container's word: never through a symlink, never more than it needs.
pub const RUN_IN_CONTAINER: &str = "/.berth/run";
/// The internal port of sshd.
pub const SSH_PORT: u16 = 22;
/// The internal port of Jupyter.
pub const JUPYTER_PORT: u16 = 8080;

/// A bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// Everything the agent passes to the engine to create the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    pub name: String,
    pub image: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=VALUE`, user env first, then berth's.
    pub env: Vec<String>,
    pub ports: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    /// GPU device ids (indexes or UUIDs) for a device request; empty for none.
    pub gpu_device_ids: Vec<String>,
    /// The user PID 1 runs as; `None` keeps the image's USER.
    pub user: Option<String>,
    pub mounts: Vec<Mount>,
    /// The signal `docker stop` sends; `None` keeps the image's STOPSIGNAL.
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the image has no ENTRYPOINT and no CMD, so there is nothing to run; give --entrypoint"
    )]
    NothingToRun,
    #[error(
        "{0} ports wanted (asked for plus the image's EXPOSE); at most {MAX_PORTS} an instance"
    )]
    TooManyPorts(usize),
    #[error("the server sent no Jupyter token for this jupyter instance")]
    NoJupyterToken,
}

/// The internal ports that need a host port: those asked for plus those the image EXPOSEs,
/// sorted and without repeats.
pub fn wanted_ports(spec: &InstanceSpec, image: &ImageConfig) -> Result<Vec<PortSpec>, PlanError> {
    let mut ports: Vec<PortSpec> = spec.ports.iter().chain(&image.exposed).copied().collect();
    if spec.mode != LaunchMode::Entrypoint {
        ports.push(PortSpec {
            port: SSH_PORT,
            proto: PortProto::Tcp,
        });
    }
    if spec.mode == LaunchMode::Jupyter {
        ports.push(PortSpec {
            port: JUPYTER_PORT,
            proto: PortProto::Tcp,
        });
    }
    ports.sort();
    ports.dedup();
    if ports.len() > MAX_PORTS {
        return Err(PlanError::TooManyPorts(ports.len()));
    }
    Ok(ports)
}

/// Host path of instance `id`'s directory: its [`state_dir`] and [`run_dir`].
pub fn instance_dir(host: &HostContext, id: i64) -> String {
    format!(
        "{}/{}",
        host.state_root.trim_end_matches('/'),
        container_name(&host.deployment, id)
    )
}

/// Host path of instance `id`'s state directory ([`STATE_IN_CONTAINER`]).
pub fn state_dir(host: &HostContext, id: i64) -> String {
    format!("{}/state", instance_dir(host, id))
}

/// Host path of instance `id`'s run directory ([`RUN_IN_CONTAINER`]).
pub fn run_dir(host: &HostContext, id: i64) -> String {
    format!("{}/run", instance_dir(host, id))
}

/// Name of the container of instance `id` in `deployment`.
pub fn container_name(deployment: &str, id: i64) -> String {
    let short: String = deployment.chars().take(8).collect();
    format!("berth-{short}-i{id}")
}

/// Builds the container plan. `ports` are the mappings allocated for [`wanted_ports`];
/// `gpu_device_ids` the GPUs reserved for the instance.
pub fn plan(
    id: i64,
    spec: &InstanceSpec,
    image: &ImageConfig,
    host: &HostContext,
    ports: &[PortMapping],
    gpu_device_ids: &[String],
    jupyter_token: Option<&str>,
) -> Result<ContainerPlan, PlanError> {
    let (entrypoint, cmd, user, stop_signal, mounts) = match spec.mode {
        LaunchMode::Entrypoint => {
            let (e, c) = entrypoint_argv(spec, image)?;
            (e, c, None, None, Vec::new())
        }
        // berth's init replaces ENTRYPOINT and CMD; it runs as root to run sshd (and Jupyter),
        // and it stops on SIGTERM, whatever STOPSIGNAL the image's own process wanted.
        LaunchMode::Ssh | LaunchMode::Jupyter => (
            vec![INIT_IN_CONTAINER.to_string()],
            Vec::new(),
            Some("0".to_string()),
            Some("SIGTERM".to_string()),
            vec![
                Mount {
                    source: host.init_path.clone(),
                    target: INIT_IN_CONTAINER.into(),
                    read_only: true,
                },
                Mount {
                    source: state_dir(host, id),
                    target: STATE_IN_CONTAINER.into(),
                    read_only: true,
                },
                Mount {
                    source: run_dir(host, id),
                    target: RUN_IN_CONTAINER.into(),
                    read_only: false,
                },
            ],
        ),
    };

    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("BERTH_INSTANCE_ID={id}"));
    env.push(format!("PUBLIC_IPADDR={}", host.public_ip));
    env.push(format!("GPU_COUNT={}", gpu_device_ids.len()));
    if spec.mode == LaunchMode::Jupyter {
        let token = jupyter_token.ok_or(PlanError::NoJupyterToken)?;
        env.push(format!("JUPYTER_TOKEN={token}"));
    }
    // Direct mappings only: a host without open ports binds its instances' ports to its
    // loopback, for the proxy's tunnel; nobody can reach those from outside.
    for m in ports.iter().filter(|m| !m.local) {
        let proto = match m.proto {
            PortProto::Tcp => "TCP",
            PortProto::Udp => "UDP",
        };
        env.push(format!("BERTH_{proto}_PORT_{}={}", m.internal, m.external));
    }

    let mut labels = BTreeMap::new();
    labels.insert(labels::DEPLOYMENT.to_string(), host.deployment.clone());
    labels.insert(labels::HOST.to_string(), host.host.clone());
    labels.insert(labels::INSTANCE.to_string(), id.to_string());
    if !gpu_device_ids.is_empty() {
        labels.insert(labels::GPUS.to_string(), gpu_device_ids.join(","));
    }

    Ok(ContainerPlan {
        name: container_name(&host.deployment, id),
        image: spec.image.clone(),
        entrypoint,
        cmd,
        env,
        ports: ports.to_vec(),
        labels,
        gpu_device_ids: gpu_device_ids.to_vec(),
        user,
        mounts,
        stop_signal,
    })
}

/// `docker run` semantics: `--entrypoint` replaces ENTRYPOINT and drops CMD; `--args`
/// replaces CMD.
fn entrypoint_argv(
    spec: &InstanceSpec,
    image: &ImageConfig,
) -> Result<(Vec<String>, Vec<String>), PlanError> {
    let entrypoint = match &spec.entrypoint {
        Some(e) => vec![e.clone()],
        None => image.entrypoint.clone(),
    };
    let cmd = match (&spec.args, &spec.entrypoint) {
        (Some(args), _) => args.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone(),
    };
    if entrypoint.is_empty() && cmd.is_empty() {
        return Err(PlanError::NothingToRun);
    }
    Ok((entrypoint, cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InstanceSpec {
        InstanceSpec {
            image: "berth-test/busybox".into(),
            ..Default::default()
        }
    }
    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/usr/local/bin/greet".into()],
            cmd: vec!["hello".into(), "from cmd".into()],
            exposed: vec![PortSpec {
                port: 8000,
                proto: PortProto::Tcp,
            }],
        }
    }
    fn host() -> HostContext {
        HostContext {
            deployment: "d3adb33fcafe".into(),
            host: "h1".into(),
            public_ip: "10.1.2.3".into(),
            init_path: "/var/lib/berth/init".into(),
            state_root: "/var/lib/berth/instances/".into(),
        }
    }
    fn argv(s: &InstanceSpec, i: &ImageConfig) -> (Vec<String>, Vec<String>) {
        let p = plan(7, s, i, &host(), &[], &[], None).unwrap();
        (p.entrypoint, p.cmd)
    }

    #[test]
    fn defaults_are_the_images() {
        assert_eq!(
            argv(&spec(), &image()),
            (
                vec!["/usr/local/bin/greet".into()],
                vec!["hello".into(), "from cmd".into()]
            )
        );
    }

    #[test]
    fn entrypoint_override_drops_cmd() {
        let mut s = spec();
        s.entrypoint = Some("/bin/echo".into());
        assert_eq!(argv(&s, &image()), (vec!["/bin/echo".into()], vec![]));
    }

    #[test]
    fn args_replace_cmd_verbatim() {
        let mut s = spec();
        s.args = Some(vec!["a b".into(), "'$x'".into()]);
        assert_eq!(argv(&s, &image()).1, vec!["a b", "'$x'"]);
        s.entrypoint = Some("/bin/sh".into());
        assert_eq!(
            argv(&s, &image()),
            (vec!["/bin/sh".into()], vec!["a b".into(), "'$x'".into()])
        );
        s.args = Some(vec![]);
        assert_eq!(argv(&s, &image()), (vec!["/bin/sh".into()], vec![]));
    }

    #[test]
    fn empty_args_mean_no_cmd_not_the_images() {
        let mut s = spec();
        s.args = Some(vec![]);
        assert_eq!(
            argv(&s, &image()),
            (vec!["/usr/local/bin/greet".into()], vec![])
        );
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let i = ImageConfig::default();
        assert_eq!(
            plan(1, &spec(), &i, &host(), &[], &[], None),
            Err(PlanError::NothingToRun)
        );
        let mut s = spec();
        s.args = Some(vec!["/bin/true".into()]);
        assert_eq!(argv(&s, &i), (vec![], vec!["/bin/true".into()]));
    }

    #[test]
    fn berth_env_labels_and_ports() {
        let mut s = spec();
        s.env.insert("FOO".into(), "bar baz".into());
        let ports = [
            PortMapping {
                internal: 8000,
                external: 40001,
                proto: PortProto::Tcp,
                local: false,
            },
            PortMapping {
                internal: 7000,
                external: 40002,
                proto: PortProto::Udp,
                local: false,
            },
            // Loopback only (a host without open ports): not a direct mapping, no variable.
            PortMapping {
                internal: 22,
                external: 46001,
                proto: PortProto::Tcp,
                local: true,
            },
        ];
        let p = plan(
            42,
            &s,
            &image(),
            &host(),
            &ports,
            &["0".into(), "1".into()],
            None,
        )
        .unwrap();
        assert_eq!(
            p.env,
            vec![
                "FOO=bar baz",
                "BERTH_INSTANCE_ID=42",
                "PUBLIC_IPADDR=10.1.2.3",
                "GPU_COUNT=2",
                "BERTH_TCP_PORT_8000=40001",
                "BERTH_UDP_PORT_7000=40002",
            ]
        );
        assert_eq!(p.ports.len(), 3, "every mapping is still made");
        assert_eq!(
            p.stop_signal, None,
            "entrypoint mode keeps the image's STOPSIGNAL"
        );
        assert_eq!(p.name, "berth-d3adb33f-i42");
        assert_eq!(p.labels[labels::INSTANCE], "42");
        assert_eq!(p.labels[labels::GPUS], "0,1");
        assert_eq!(p.labels[labels::DEPLOYMENT], "d3adb33fcafe");
    }

    #[test]
    fn wanted_ports_merge_expose_and_cap() {
        let mut s = spec();
        s.ports = vec![
            PortSpec {
                port: 8000,
                proto: PortProto::Tcp,
            },
            PortSpec {
                port: 9000,
                proto: PortProto::Udp,
            },
        ];
        assert_eq!(wanted_ports(&s, &image()).unwrap().len(), 2);
        let mut i = image();
        i.exposed = (1..=64)
            .map(|port| PortSpec {
                port,
                proto: PortProto::Tcp,
            })
            .collect();
        assert_eq!(wanted_ports(&s, &i), Err(PlanError::TooManyPorts(66)));
    }

    #[test]
    fn ssh_mode_runs_berths_init_as_root_and_maps_22() {
        let mut s = spec();
        s.mode = LaunchMode::Ssh;
        s.onstart = Some("echo hi".into());
        let i = image();
        let wanted = wanted_ports(&s, &i).unwrap();
        assert!(wanted.contains(&PortSpec {
            port: 22,
            proto: PortProto::Tcp
        }));
        assert!(
            wanted.contains(&PortSpec {
                port: 8000,
                proto: PortProto::Tcp
            }),
            "EXPOSE still mapped"
        );
        let p = plan(5, &s, &i, &host(), &[], &[], None).unwrap();
        assert_eq!(p.entrypoint, vec!["/.berth/init"]);
        assert!(p.cmd.is_empty(), "the image's CMD is not run");
        assert_eq!(
            p.stop_signal.as_deref(),
            Some("SIGTERM"),
            "init stops on SIGTERM, whatever the image's STOPSIGNAL"
        );
        assert_eq!(p.user.as_deref(), Some("0"));
        assert_eq!(
            p.mounts,
            vec![
                Mount {
                    source: "/var/lib/berth/init".into(),
                    target: "/.berth/init".into(),
                    read_only: true
                },
                Mount {
                    source: "/var/lib/berth/instances/berth-d3adb33f-i5/state".into(),
                    target: "/.berth/state".into(),
                    read_only: true
                },
                Mount {
                    source: "/var/lib/berth/instances/berth-d3adb33f-i5/run".into(),
                    target: "/.berth/run".into(),
                    read_only: false
                },
            ]
        );
        assert!(p.env.contains(&"BERTH_INSTANCE_ID=5".to_string()));
    }

    #[test]
    fn entrypoint_mode_mounts_nothing() {
        let p = plan(5, &spec(), &image(), &host(), &[], &[], None).unwrap();
        assert!(p.mounts.is_empty() && p.user.is_none());
    }

    #[test]
    fn jupyter_mode_is_ssh_mode_plus_8080_and_the_token() {
        let mut s = spec();
        s.mode = LaunchMode::Jupyter;
        let wanted = wanted_ports(&s, &image()).unwrap();
        assert!(wanted.contains(&PortSpec {
            port: 22,
            proto: PortProto::Tcp
        }));
        assert!(wanted.contains(&PortSpec {
            port: 8080,
            proto: PortProto::Tcp
        }));
        let p = plan(9, &s, &image(), &host(), &[], &[], Some("tok")).unwrap();
        assert_eq!(p.entrypoint, vec!["/.berth/init"]);
        assert!(p.env.contains(&"JUPYTER_TOKEN=tok".to_string()));
        assert_eq!(
            plan(9, &s, &image(), &host(), &[], &[], None),
            Err(PlanError::NoJupyterToken)
        );
    }
}
