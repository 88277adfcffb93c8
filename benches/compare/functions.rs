//! The comparison scenario's two tools as functions (`benches/compare/agents-functions`), which
//! answer as the HTTP tools' templates in `benches/compare/agents` do: Rust functions in process,
//! as the Python peers' tools are functions in theirs. Shared by `compare_embedded` and the
//! supervisor bench.

use serde_json::json;
use switchboard::core::AgentOutput;
use switchboard::{Function, FunctionCall, Functions};

/// `run_sql` and `search_docs`, each taking the `query` its HTTP tool takes.
pub fn scenario_functions() -> Result<Functions, switchboard::Error> {
    let schema = |about: &str| {
        json!({"type": "object", "required": ["query"], "properties": {
            "query": {"type": "string", "description": about}}})
    };
    let query = |call: &FunctionCall| call.arguments["query"].as_str().unwrap_or_default().to_string();
    let mut functions = Functions::new();
    functions
        .register(Function::new(
            "run_sql",
            schema("the read-only SQL query or analytics question"),
            move |call| {
                let text = format!("Ran `{}`: EMEA leads with 42.", query(&call));
                async move { Ok(AgentOutput { text, ..Default::default() }) }
            },
        )?)?
        .register(Function::new(
            "search_docs",
            schema("what to search the knowledge base for"),
            move |call| {
                let text = format!("Found for `{}`: hotel upgrades need manager approval.", query(&call));
                async move { Ok(AgentOutput { text, ..Default::default() }) }
            },
        )?)?;
    Ok(functions)
}
