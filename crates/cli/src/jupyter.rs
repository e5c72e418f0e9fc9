//! `berth jupyter`: a jupyter instance's two links, direct (`jupyter_url`, when Jupyter's
//! port is mapped on a host with open ports) and through the proxy (`proxy_jupyter_url`),
//! and which one to print. Pure; the probe is [`crate::route::port_answers`].
use crate::route::{self, Addr, NoRoute, Route, Want};
use anyhow::{bail, Result};
use berth_core::api::Instance;
use berth_core::{LaunchMode, PortProto};

/// Jupyter's port inside the container.
pub const JUPYTER_PORT: u16 = 8080;

/// A jupyter instance's links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    pub id: i64,
    /// The direct link and the address to probe (public IP, mapped port).
    pub direct: Option<(String, Addr)>,
    /// The link through the proxy.
    pub proxy: Option<String>,
    /// Why there is no direct link, when there is none.
    no_direct: String,
}

impl Links {
    /// Errors (one line) for an instance not in jupyter mode.
    pub fn of(i: &Instance) -> Result<Links> {
        if i.mode != LaunchMode::Jupyter {
            bail!(
                "instance {} runs in {} mode: it has no Jupyter",
                i.id,
                i.mode
            );
        }
        let mapping = i
            .ports
            .iter()
            .find(|p| p.internal == JUPYTER_PORT && p.proto == PortProto::Tcp);
        let direct = match (mapping, &i.jupyter_url) {
            (Some(m), Some(url)) if !m.local && !i.public_ip.is_empty() => Some((
                url.clone(),
                Addr {
                    host: i.public_ip.clone(),
                    port: m.external,
                },
            )),
            _ => None,
        };
        let no_direct = if mapping.is_some_and(|m| m.local) {
            format!(
                "instance {} has no direct Jupyter port (its host has no open ports)",
                i.id
            )
        } else {
            format!(
                "instance {} has no direct Jupyter port yet (state: {})",
                i.id,
                crate::output::state(i)
            )
        };
        Ok(Links {
            id: i.id,
            direct,
            proxy: i.proxy_jupyter_url.clone(),
            no_direct,
        })
    }

    /// The link to give: see [`route::pick`]. `direct_answers` tells whether the direct
    /// port accepts connections, and is asked only when both links exist and `want` is
    /// [`Want::Auto`]; the proxy is not probed (printing its link commits to nothing).
    pub fn choose(
        &self,
        want: Want,
        mut direct_answers: impl FnMut(&Addr) -> bool,
    ) -> Result<(Route, &str)> {
        let picked = route::pick(
            self.direct.is_some(),
            self.proxy.is_some(),
            want,
            |r| match (r, &self.direct) {
                (Route::Direct, Some((_, addr))) => direct_answers(addr),
                (Route::Direct, None) => false,
                (Route::Proxy, _) => true,
            },
        );
        match picked {
            Ok(Route::Direct) => Ok((Route::Direct, &self.direct.as_ref().expect("picked").0)),
            Ok(Route::Proxy) => Ok((Route::Proxy, self.proxy.as_deref().expect("picked"))),
            Err(NoRoute::NoDirect) => bail!("{}", self.no_direct),
            Err(NoRoute::NoProxy) => bail!(
                "instance {} has no Jupyter link through the proxy: this deployment has no proxy",
                self.id
            ),
            Err(NoRoute::NoEndpoint) => {
                bail!("{} and this deployment has no proxy", self.no_direct)
            }
            Err(NoRoute::NeitherAnswers) => bail!(
                "instance {}: neither Jupyter's direct port nor the proxy answers",
                self.id
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::protocol::PortMapping;
    use berth_core::InstanceState;

    const DIRECT: &str = "https://203.0.113.5:40080/tree?token=t";
    const PROXY: &str = "https://i9-8080.berth.localhost:8443/tree?token=t";

    fn instance(local: Option<bool>, proxy: bool) -> Instance {
        let json = serde_json::json!({
            "id": 9, "owner": "alice", "host": "gpu1", "image": "img", "mode": "jupyter",
            "label": null, "state": "running", "exit_code": null, "reason": null,
            "progress": null, "public_ip": "203.0.113.5", "ports": [], "entrypoint": null,
            "args": null, "env": {}, "gpus": 0, "onstart": null, "direct": false,
            "ssh_host_keys": [], "jupyter_lab": false, "jupyter_dir": null,
            "jupyter_token": "t", "jupyter_url": null, "proxy_ssh": null,
            "proxy_jupyter_url": null, "http_urls": [], "container_id": null,
            "created_at": "2023-11-14T22:08:20Z", "started_at": null
        });
        let mut i: Instance = serde_json::from_value(json).unwrap();
        if let Some(local) = local {
            i.ports.push(PortMapping {
                internal: 8080,
                external: 40080,
                proto: PortProto::Tcp,
                local,
            });
            i.jupyter_url = Some(DIRECT.into());
        }
        if proxy {
            i.proxy_jupyter_url = Some(PROXY.into());
        }
        i
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", r.unwrap_err())
    }

    #[test]
    fn direct_when_it_answers_else_the_proxy() {
        let both = Links::of(&instance(Some(false), true)).unwrap();
        let mut probed = Vec::new();
        let picked = both.choose(Want::Auto, |a| {
            probed.push(a.to_string());
            true
        });
        assert_eq!(picked.unwrap(), (Route::Direct, DIRECT));
        assert_eq!(probed, ["203.0.113.5:40080"]);
        assert_eq!(
            both.choose(Want::Auto, |_| false).unwrap(),
            (Route::Proxy, PROXY)
        );
        assert_eq!(
            both.choose(Want::Direct, |_| false).unwrap(),
            (Route::Direct, DIRECT)
        );
        assert_eq!(
            both.choose(Want::Proxy, |_| panic!("no probe")).unwrap(),
            (Route::Proxy, PROXY)
        );
    }

    #[test]
    fn a_loopback_mapping_is_not_a_direct_link() {
        let nat = Links::of(&instance(Some(true), true)).unwrap();
        assert_eq!(nat.direct, None);
        assert_eq!(
            nat.choose(Want::Auto, |_| panic!("no probe")).unwrap(),
            (Route::Proxy, PROXY)
        );
        assert_eq!(
            err(nat.choose(Want::Direct, |_| true)),
            "instance 9 has no direct Jupyter port (its host has no open ports)"
        );
        let alone = Links::of(&instance(Some(true), false)).unwrap();
        assert_eq!(
            err(alone.choose(Want::Auto, |_| true)),
            "instance 9 has no direct Jupyter port (its host has no open ports) and this deployment has no proxy"
        );
    }

    #[test]
    fn errors() {
        let direct_only = Links::of(&instance(Some(false), false)).unwrap();
        assert_eq!(
            direct_only.choose(Want::Auto, |_| false).unwrap(),
            (Route::Direct, DIRECT)
        );
        assert_eq!(
            err(direct_only.choose(Want::Proxy, |_| true)),
            "instance 9 has no Jupyter link through the proxy: this deployment has no proxy"
        );
        let mut loading = instance(None, false);
        loading.state = InstanceState::Loading;
        assert_eq!(
            err(Links::of(&loading).unwrap().choose(Want::Auto, |_| true)),
            "instance 9 has no direct Jupyter port yet (state: loading) and this deployment has no proxy"
        );
        let mut ssh = instance(Some(false), true);
        ssh.mode = LaunchMode::Ssh;
        assert_eq!(
            err(Links::of(&ssh)),
            "instance 9 runs in ssh mode: it has no Jupyter"
        );
    }
}
