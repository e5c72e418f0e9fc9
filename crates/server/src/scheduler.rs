//! Placement: which host a new instance goes to. The scheduler only decides; the host's
//! agent does the work.
use crate::error::ApiError;
use berth_core::protocol::HostFacts;
use berth_core::{FieldError, InstanceSpec};

/// A candidate host: its facts and how much of it is taken.
pub struct Candidate {
    pub facts: HostFacts,
    pub instances: usize,
    pub gpus_used: u32,
}

/// Picks the online host with enough free GPUs and the fewest instances (ties by name).
pub fn place(spec: &InstanceSpec, candidates: &[Candidate]) -> Result<String, ApiError> {
    if candidates.is_empty() {
        return Err(ApiError::Unavailable(
            "no host is online: start an agent (berth agent) or berth up".into(),
        ));
    }
    let free = |c: &Candidate| (c.facts.gpus.len() as u32).saturating_sub(c.gpus_used);
    let best = candidates
        .iter()
        .filter(|c| free(c) >= spec.gpus)
        .filter(|c| !spec.direct || c.facts.port_range.is_some())
        .min_by(|a, b| {
            a.instances
                .cmp(&b.instances)
                .then_with(|| a.facts.name.cmp(&b.facts.name))
        });
    match best {
        Some(c) => Ok(c.facts.name.clone()),
        None if spec.direct && candidates.iter().all(|c| c.facts.port_range.is_none()) => {
            Err(FieldError::new(
                "direct",
                "a direct connection was asked for, but no online host has open ports",
            )
            .into())
        }
        None => {
            let most = candidates.iter().map(free).max().unwrap_or(0);
            Err(FieldError::new(
                "gpus",
                format!("{} GPUs asked for, but no online host has that many free (most free on one host: {most})", spec.gpus),
            )
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::protocol::Gpu;

    fn host(name: &str, gpus: u32, instances: usize, gpus_used: u32) -> Candidate {
        Candidate {
            facts: HostFacts {
                name: name.into(),
                public_ip: "127.0.0.1".into(),
                port_range: None,
                gpus: (0..gpus)
                    .map(|i| Gpu {
                        index: i,
                        name: "g".into(),
                        uuid: format!("u{i}"),
                    })
                    .collect(),
                dns_names: vec![],
                docker_version: "x".into(),
                agent_version: "x".into(),
            },
            instances,
            gpus_used,
        }
    }

    fn spec(gpus: u32) -> InstanceSpec {
        InstanceSpec::from_request(&berth_core::api::CreateInstance {
            image: "x".into(),
            gpus: Some(gpus),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn least_loaded_host_with_enough_gpus_wins() {
        let hosts = [host("a", 0, 1, 0), host("b", 0, 0, 0), host("c", 4, 5, 2)];
        assert_eq!(place(&spec(0), &hosts).unwrap(), "b");
        assert_eq!(place(&spec(2), &hosts).unwrap(), "c");
        let e = place(&spec(3), &hosts).unwrap_err();
        assert!(e.to_string().contains("most free on one host: 2"), "{e}");
        assert!(matches!(
            place(&spec(0), &[]),
            Err(ApiError::Unavailable(_))
        ));
    }
}
