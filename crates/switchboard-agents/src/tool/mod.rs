//! The `tool` kind: one function, called with arguments read from the question.
//!
//! The `[tool]` table says which function:
//! - a **SQL tool** declares a parameterized statement over a governed SQLite database
//!   (`database`, `sql`, `parameters`, …) — see [`SqlSettings`];
//! - an **HTTP tool** declares one call to a partner API in a `[tool.http]` sub-table (`method`,
//!   `path`, the arguments' JSON `schema`, how to read the answer) and reaches the API only through
//!   the agent's named `connection` — see [`HttpSettings`].
//!
//! Either way, arguments come from the question offline, or from a model's tool call when a model
//! is configured (the routing call's, when the LLM router proposed them, else the tool's own),
//! and are validated before anything runs. [`build`] picks the flavour.

mod http;
mod sql;

pub use http::{Answer, HttpMethod, HttpSettings, HttpToolAgent};
pub use sql::{ParamType, Parameter, SqlSettings, SqlToolAgent, StoreTarget, resolve_store_engine};

use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;
use switchboard_core::{Agent, AgentInput, AgentSpec, Error, ErrorKind, Message, Result, RunContext};
use switchboard_govern::Egress;
use switchboard_llm::{ChatRequest, LlmClient, ToolDef};

/// The `[tool]` table: a SQL tool or an HTTP tool.
#[derive(Debug, Clone)]
pub enum Settings {
    /// `database`, `sql`, `parameters`, … directly in `[tool]`.
    Sql(SqlSettings),
    /// A `[tool.http]` table, and nothing else in `[tool]`.
    Http(HttpSettings),
}

impl Settings {
    /// Reads and validates `spec.settings` (the `[tool]` table). A table with both SQL settings
    /// and `[tool.http]`, or with neither, is refused; other errors name the field.
    pub fn from_spec(spec: &AgentSpec, base_dir: &Path) -> Result<Settings> {
        let Some(table) = spec.settings.as_object() else {
            return Err(Error::config("tool: the [tool] table is missing"));
        };
        if table.contains_key("http") {
            let others: Vec<String> =
                table.keys().filter(|k| *k != "http").map(|k| format!("`{k}`")).collect();
            if !others.is_empty() {
                return Err(Error::config(format!(
                    "tool: a tool is either SQL (`database`, `sql`, …) or HTTP ([tool.http]), not both: \
                     with [tool.http], move or remove {} in [tool]",
                    others.join(", ")
                )));
            }
            return HttpSettings::from_spec(spec).map(Settings::Http);
        }
        if !table.contains_key("sql") && !table.contains_key("database") {
            return Err(Error::config(
                "tool: say what the tool runs: `sql` and `database` for a SQL function, or a \
                 [tool.http] table for an HTTP call",
            ));
        }
        SqlSettings::from_spec(spec, base_dir).map(Settings::Sql)
    }
}

/// Builds the tool `spec` declares, SQL or HTTP. `llm`, when given, proposes arguments by tool
/// call; offline extraction fills what it leaves out.
pub fn build(
    spec: Arc<AgentSpec>,
    egress: Egress,
    base_dir: &Path,
    llm: Option<LlmClient>,
) -> Result<Arc<dyn Agent>> {
    Ok(match Settings::from_spec(&spec, base_dir)? {
        Settings::Sql(_) => Arc::new(SqlToolAgent::new(spec, egress, base_dir, llm)?),
        Settings::Http(settings) => Arc::new(HttpToolAgent::with_settings(spec, egress, settings, llm)?),
    })
}

/// The arguments a model proposes for the function `spec` declares with `schema`: those the
/// routing call already proposed (`input.arguments`), else the ones `llm` proposes when asked,
/// else none, for the question to fill offline. A model that fails is not fatal (extraction
/// still works without it), unless the run was cancelled or timed out.
async fn proposed_arguments(
    spec: &AgentSpec,
    schema: &Arc<Value>,
    llm: Option<&LlmClient>,
    ctx: &RunContext,
    input: &AgentInput,
) -> Result<Option<Map<String, Value>>> {
    if let Some(arguments) = &input.arguments {
        return Ok(Some(arguments.clone()));
    }
    let Some(llm) = llm else { return Ok(None) };
    let request = ChatRequest {
        messages: vec![
            Message::system(format!(
                "Choose the arguments for the function `{}` from the user's message and call it. \
                 Use only values the message states; leave out any it does not give. Never \
                 invent values.",
                spec.name
            )),
            Message::user(input.question.trim()),
        ],
        tools: vec![ToolDef {
            name: spec.name.clone(),
            description: spec.description.clone(),
            parameters: schema.clone(),
        }],
        temperature: Some(0.0),
    };
    match llm.chat(ctx, &request).await {
        Ok(reply) => {
            Ok(reply.tool_calls.into_iter().find(|c| c.name == spec.name).map(|c| match c.arguments {
                Value::Object(map) => map,
                _ => Map::new(),
            }))
        }
        Err(e) if matches!(e.kind, ErrorKind::Cancelled | ErrorKind::Timeout) => Err(e),
        Err(e) => {
            tracing::debug!(agent = %spec.name, error = %e, "model proposed no arguments");
            Ok(None)
        }
    }
}
