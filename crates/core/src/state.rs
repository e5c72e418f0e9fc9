//! Instance states as users see them (DESIGN.md §1): created → loading → connecting →
//! running; stopped, exited (with exit code), failed (with the reason), offline.
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Accepted and placed on a host; the agent has not reported on it yet.
    Created,
    /// Pulling the image or creating the container.
    Loading,
    /// Started; the mode's services do not answer yet.
    Connecting,
    /// Started, and the mode's services answer.
    Running,
    /// Stopped by its user.
    Stopped,
    /// The main process ended by itself (see the exit code).
    Exited,
    /// Could not be brought up (see the reason).
    Failed,
    /// Its host's agent is not connected.
    Offline,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Created => "created",
            InstanceState::Loading => "loading",
            InstanceState::Connecting => "connecting",
            InstanceState::Running => "running",
            InstanceState::Stopped => "stopped",
            InstanceState::Exited => "exited",
            InstanceState::Failed => "failed",
            InstanceState::Offline => "offline",
        }
    }

    /// States that will not change without a user's action.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            InstanceState::Running
                | InstanceState::Stopped
                | InstanceState::Exited
                | InstanceState::Failed
        )
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
