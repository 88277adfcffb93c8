//! The Switchboard runtime: configuration, the supervisor, and the built-in demo.
//!
//! [`Runtime::load`] turns a configuration (files or the compiled-in demo) into a running
//! [`Supervisor`]; [`Supervisor::run`] answers one request for one caller.

mod assemble;
pub mod config;
pub mod demo;
pub mod grants;
mod guard;
pub mod identity;
mod live;
mod routing;
mod supervisor;
mod synthesis;
pub mod user_oauth;

pub use assemble::Runtime;
pub use grants::{Actor, Grants};
pub use guard::RunGuards;
pub use identity::{DevIdentity, Identity};
pub use supervisor::{RunEvent, RunRequest, RunResponse, RunStatus, Step, Supervisor};
pub use switchboard_llm::Usage;
pub use synthesis::{DEFAULT_SYNTHESIS_PROMPT, OutputFormat, Synthesizer};
