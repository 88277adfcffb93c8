//! The `tool` kind: one function, called with arguments read from the question.
//!
//! The `[tool]` table says which function:
//! - a **SQL tool** declares a parameterized statement over a governed SQLite database
//!   (`database`, `sql`, `parameters`, …) — see [`SqlSettings`];
//! - an **HTTP tool** declares one call to a partner API in a `[tool.http]` sub-table (`method`,
//!   `path`, the arguments' JSON `schema`, how to read the answer) and reaches the API only through
//!   the agent's named `connection` — see [`HttpSettings`];
//! - a **function tool** names, in a `[tool.function]` sub-table, a Rust function the program
//!   embedding Switchboard registered with its argument schema — see [`Function`].
//!
//! Either way, arguments come from the question offline, or from a model's tool call when a model
//! is configured (the routing call's, when the LLM router proposed them, else the tool's own),
//! and are validated before anything runs. [`build_with`] picks the flavour.

mod function;
mod http;
mod sql;

pub use function::{Function, FunctionCall, FunctionSettings, FunctionToolAgent, Functions};
pub use http::{Answer, HttpMethod, HttpSettings, HttpToolAgent};
pub use sql::{ParamType, Parameter, SqlSettings, SqlToolAgent, StoreTarget, resolve_store_engine};

use crate::args::{self, ArgsValidator};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;
use switchboard_core::{Agent, AgentInput, AgentSpec, Error, ErrorKind, Message, Result, RunContext};
use switchboard_govern::Egress;
use switchboard_llm::{ChatRequest, LlmClient, ToolDef};

/// The `[tool]` table: a SQL tool, an HTTP tool or a function tool.
#[derive(Debug, Clone)]
pub enum Settings {
    /// `database`, `sql`, `parameters`, … directly in `[tool]`.
    Sql(SqlSettings),
    /// A `[tool.http]` table, and nothing else in `[tool]`.
    Http(HttpSettings),
    /// A `[tool.function]` table, and nothing else in `[tool]`.
    Function(FunctionSettings),
}

impl Settings {
    /// Reads and validates `spec.settings` (the `[tool]` table). A table mixing the flavours, or
    /// with none, is refused; other errors name the field.
    pub fn from_spec(spec: &AgentSpec, base_dir: &Path) -> Result<Settings> {
        let Some(table) = spec.settings.as_object() else {
            return Err(Error::config("tool: the [tool] table is missing"));
        };
        for sub in ["http", "function"] {
            if !table.contains_key(sub) {
                continue;
            }
            let others: Vec<String> = table.keys().filter(|k| *k != sub).map(|k| format!("`{k}`")).collect();
            if !others.is_empty() {
                return Err(Error::config(format!(
                    "tool: a tool is one of SQL (`database`, `sql`, …), HTTP ([tool.http]) or a \
                     function ([tool.function]): with [tool.{sub}], move or remove {} in [tool]",
                    others.join(", ")
                )));
            }
            return match sub {
                "http" => HttpSettings::from_spec(spec).map(Settings::Http),
                _ => FunctionSettings::from_spec(spec).map(Settings::Function),
            };
        }
        if !table.contains_key("sql") && !table.contains_key("database") {
            return Err(Error::config(
                "tool: say what the tool runs: `sql` and `database` for a SQL function, a \
                 [tool.http] table for an HTTP call, or a [tool.function] table for a registered \
                 function",
            ));
        }
        SqlSettings::from_spec(spec, base_dir).map(Settings::Sql)
    }
}

/// Builds the SQL or HTTP tool `spec` declares: [`build_with`] with no registered functions.
pub fn build(
    spec: Arc<AgentSpec>,
    egress: Egress,
    base_dir: &Path,
    llm: Option<LlmClient>,
) -> Result<Arc<dyn Agent>> {
    build_with(spec, egress, base_dir, llm, &Functions::default())
}

/// Builds the tool `spec` declares, SQL, HTTP or a function from `functions`. `llm`, when given,
/// proposes arguments by tool call; offline extraction fills what it leaves out.
pub fn build_with(
    spec: Arc<AgentSpec>,
    egress: Egress,
    base_dir: &Path,
    llm: Option<LlmClient>,
    functions: &Functions,
) -> Result<Arc<dyn Agent>> {
    Ok(match Settings::from_spec(&spec, base_dir)? {
        Settings::Sql(_) => Arc::new(SqlToolAgent::new(spec, egress, base_dir, llm)?),
        Settings::Http(settings) => Arc::new(HttpToolAgent::with_settings(spec, egress, settings, llm)?),
        Settings::Function(settings) => {
            Arc::new(FunctionToolAgent::new(spec, egress, &settings, functions, llm)?)
        }
    })
}

/// The arguments a call runs with: the model's proposal, completed by what the question gives and
/// by defaults, and validated, so that nothing runs with arguments the schema refuses.
fn settled_arguments(
    validator: &ArgsValidator,
    proposed: Option<Map<String, Value>>,
    question: &str,
) -> Result<Map<String, Value>> {
    let (name, schema) = (validator.tool_name(), validator.schema());
    let mut args: Map<String, Value> =
        proposed.unwrap_or_default().into_iter().filter(|(_, v)| !v.is_null()).collect();
    // The question only fills what the model left out; when it left out nothing (the usual
    // case), reading the question again could not change a thing.
    let properties = schema.get("properties").and_then(Value::as_object);
    if properties.is_some_and(|p| p.keys().any(|k| !args.contains_key(k))) {
        for (k, v) in args::extract(name, schema, question) {
            args.entry(k).or_insert(v);
        }
    }
    args::complete(name, schema, &mut args)?;
    validator.validate(&args)?;
    Ok(args)
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
