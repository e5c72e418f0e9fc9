//! Domain types shared by every berth component: launch modes, instance specs and their
//! validation, the Docker-options string parser, instance states, the REST API's bodies and
//! the agent ↔ server wire protocol. Pure data and pure functions: no I/O here.
#![forbid(unsafe_code)]

pub mod api;
pub mod docker_options;
pub mod image_ref;
pub mod mode;
pub mod protocol;
pub mod secret;
pub mod spec;
pub mod ssh_key;
pub mod state;
pub mod template;
pub mod visible;

pub use mode::LaunchMode;
pub use secret::Secret;
pub use spec::{FieldError, InstanceSpec, PortProto, PortSpec};
pub use state::InstanceState;
