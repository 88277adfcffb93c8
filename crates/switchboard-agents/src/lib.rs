//! Switchboard's sub-agent kinds. Each kind is built with an [`Egress`](switchboard_govern::Egress)
//! — its only way out — and makes every SQL query, retrieval, HTTP or LLM call as a governed hop.

pub mod endpoint;
pub mod genie;
pub mod knowledge;
pub mod sql;
pub mod tool;
