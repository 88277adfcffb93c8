//! Switchboard: a governed multi-agent supervisor runtime.
//!
//! Embed it by loading a configuration into a [`Runtime`] and calling [`Supervisor::run`] with a
//! [`RunContext`] built for your caller:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use switchboard::{RunRequest, Runtime, demo};
//! let data = demo::data_dir();
//! demo::prepare(&data)?;
//! let runtime = Runtime::load(&demo::source(&data)).await?;
//! let caller = runtime.dev_caller("alice@example.com").await?;
//! let ctx = runtime.context(caller);
//! let answer = runtime.supervisor.run(&ctx, RunRequest { question: "total revenue by region".into(), ..Default::default() }).await;
//! println!("{}", answer.answer);
//! # Ok(()) }
//! ```
//!
//! Agent files may declare function tools (`[tool.function]`) naming Rust functions the program
//! registers: load with [`Runtime::load_with_functions`] and a [`Functions`] registry.
//!
//! Every outbound call a sub-agent makes goes through the hop pipeline in [`govern`]; the
//! authorization step is [`govern::layers::Authorize`].

pub use switchboard_agents as agents;
pub use switchboard_agents::tool::{Function, FunctionCall, Functions};
pub use switchboard_auth as auth;
pub use switchboard_core as core;
pub use switchboard_core::{Agent, AgentSpec, Caller, Error, RunContext};
pub use switchboard_eval as eval;
pub use switchboard_govern as govern;
pub use switchboard_llm as llm;
pub use switchboard_router as router;
pub use switchboard_runtime::{
    RunGuards, RunRequest, RunResponse, RunStatus, Runtime, Supervisor, config, demo,
};
pub use switchboard_server as server;
pub use switchboard_store as store;
