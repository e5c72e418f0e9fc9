//! Host port allocation from the host's open range, or (a host without open ports, behind
//! the proxy) from a loopback-only range the agent's tunnel reaches. A port is taken if one of this agent's
//! containers (running or stopped) maps it, or if it cannot be bound right now (another
//! program holds it). Allocation goes round the range from where it last stopped, so a port
//! just freed is not handed out again at once.
use berth_core::protocol::{PortMapping, PortRange};
use berth_core::PortSpec;
use std::collections::HashSet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error(
        "this host has no open ports and the deployment has no proxy, so {0} cannot be reached"
    )]
    NoOpenPorts(String),
    #[error("no free port left in the host's open range {first}-{last} ({wanted} wanted)")]
    Exhausted {
        first: u16,
        last: u16,
        wanted: usize,
    },
}

pub struct PortAllocator {
    range: Option<PortRange>,
    local_range: PortRange,
    cursor: u16,
}

impl PortAllocator {
    pub fn new(range: Option<PortRange>, local_range: PortRange) -> Self {
        let cursor = range.as_ref().unwrap_or(&local_range).first;
        PortAllocator {
            range,
            local_range,
            cursor,
        }
    }

    /// Picks a host port for each wanted internal port, skipping `used` and any port that
    /// `bindable` says cannot be bound. A host without open ports maps to loopback-only
    /// ports (`local`) when a proxy can reach them (`proxied`).
    pub fn allocate(
        &mut self,
        wanted: &[PortSpec],
        used: &HashSet<u16>,
        bindable: impl Fn(u16) -> bool,
        proxied: bool,
    ) -> Result<Vec<PortMapping>, PortError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let (range, local) = match (&self.range, proxied) {
            (Some(r), _) => (r.clone(), false),
            (None, true) => (self.local_range.clone(), true),
            (None, false) => {
                let list: Vec<String> = wanted.iter().map(|p| p.to_string()).collect();
                return Err(PortError::NoOpenPorts(list.join(", ")));
            }
        };
        let mut out = Vec::with_capacity(wanted.len());
        let mut taken: HashSet<u16> = HashSet::new();
        let mut p = if range.contains(self.cursor) {
            self.cursor
        } else {
            range.first
        };
        let mut tried = 0;
        for w in wanted {
            loop {
                if tried >= range.len() {
                    return Err(PortError::Exhausted {
                        first: range.first,
                        last: range.last,
                        wanted: wanted.len(),
                    });
                }
                let candidate = p;
                p = if p >= range.last { range.first } else { p + 1 };
                tried += 1;
                if !used.contains(&candidate) && !taken.contains(&candidate) && bindable(candidate)
                {
                    taken.insert(candidate);
                    out.push(PortMapping {
                        local,
                        internal: w.port,
                        external: candidate,
                        proto: w.proto,
                    });
                    break;
                }
            }
        }
        self.cursor = p;
        Ok(out)
    }
}

/// True if nothing on this machine holds `port` for TCP or UDP.
pub fn bindable(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        && std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::PortProto;

    fn tcp(port: u16) -> PortSpec {
        PortSpec {
            port,
            proto: PortProto::Tcp,
        }
    }
    const LOCAL: PortRange = PortRange {
        first: 900,
        last: 999,
    };
    fn range(a: u16, b: u16) -> Option<PortRange> {
        Some(PortRange { first: a, last: b })
    }

    #[test]
    fn skips_used_and_unbindable_and_rotates() {
        let mut a = PortAllocator::new(range(100, 105), LOCAL);
        let used = HashSet::from([100]);
        let m = a
            .allocate(&[tcp(22), tcp(80)], &used, |p| p != 101, false)
            .unwrap();
        assert_eq!(
            m.iter().map(|m| m.external).collect::<Vec<_>>(),
            vec![102, 103]
        );
        let m = a
            .allocate(&[tcp(1)], &HashSet::new(), |_| true, false)
            .unwrap();
        assert_eq!(m[0].external, 104);
    }

    #[test]
    fn wraps_and_runs_out() {
        let mut a = PortAllocator::new(range(100, 102), LOCAL);
        let used = HashSet::from([101]);
        assert_eq!(
            a.allocate(&[tcp(1), tcp(2)], &used, |_| true, false)
                .unwrap()
                .len(),
            2
        );
        let used = HashSet::from([100, 101, 102]);
        assert!(matches!(
            a.allocate(&[tcp(1)], &used, |_| true, false),
            Err(PortError::Exhausted { .. })
        ));
    }

    #[test]
    fn no_range_no_ports() {
        let mut a = PortAllocator::new(None, LOCAL);
        assert!(a
            .allocate(&[], &HashSet::new(), |_| true, false)
            .unwrap()
            .is_empty());
        assert!(matches!(
            a.allocate(&[tcp(22)], &HashSet::new(), |_| true, false),
            Err(PortError::NoOpenPorts(_))
        ));
        // Behind a proxy, ports map to the loopback-only range.
        let m = a
            .allocate(&[tcp(22)], &HashSet::new(), |_| true, true)
            .unwrap();
        assert!(m[0].local && LOCAL.contains(m[0].external), "{m:?}");
    }
}
