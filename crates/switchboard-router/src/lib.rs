//! Routers: what picks the sub-agent(s) for a request.
//!
//! - [`LexicalRouter`], the offline default: a linear classifier over word and character n-grams,
//!   trained at start-up on each agent's name, description, examples and topics, with a
//!   confidence threshold tuned on held-out data, multi-intent splitting and follow-up handling.
//! - [`LlmRouter`]: an OpenAI-compatible model choosing among one tool per sub-agent.
//!
//! Routers only propose. Whether the caller may reach a proposed agent is decided by policy in
//! the hop pipeline, never here, so nothing a model or a question says can grant access.

mod features;
mod lexical;
mod linear;
mod llm;
mod text;

pub use lexical::{LexicalRouter, Narrowed};
pub use llm::LlmRouter;
