//! Routers: what picks the sub-agent(s) for a request.
//!
//! - [`LexicalRouter`], the offline default: BM25 over each agent's name, description and
//!   examples, with a confidence threshold, multi-intent splitting and follow-up handling.
//! - [`LlmRouter`]: an OpenAI-compatible model choosing among one tool per sub-agent.
//!
//! Routers only propose. Whether the caller may reach a proposed agent is decided by policy in
//! the hop pipeline, never here, so nothing a model or a question says can grant access.

mod lexical;
mod llm;
mod text;

pub use lexical::LexicalRouter;
pub use llm::LlmRouter;
