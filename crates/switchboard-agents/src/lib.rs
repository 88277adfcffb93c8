//! Switchboard's sub-agent kinds. Each kind is built with an [`Egress`](switchboard_govern::Egress)
//! — its only way out — and makes every SQL query, retrieval, HTTP or LLM call as a governed hop.

pub mod args;
pub mod endpoint;
pub mod genie;
pub mod knowledge;
pub mod mcp;
mod remote_stream;
pub mod sql;
pub mod tool;

use serde::de::DeserializeOwned;
use switchboard_core::{AgentSpec, Error, Result};

/// Reads an agent's kind table (`[genie]`, `[tool]`, …) into `T`. Errors name the table and the
/// field, e.g. `genie: missing field `views``, the form every kind's settings errors take.
pub fn kind_settings<T: DeserializeOwned>(spec: &AgentSpec) -> Result<T> {
    let table = spec.kind.as_str();
    if spec.settings.is_null() {
        return Err(Error::config(format!("{table}: the [{table}] table is missing")));
    }
    serde_json::from_value(spec.settings.clone()).map_err(|e| Error::config(format!("{table}: {e}")))
}
