//! The server's tools as the agent sees them: the allowed ones with their compiled argument
//! schemas, the names of the others (only to refuse them), the allow-listed names the server does
//! not offer (a configuration mistake only the server's answer reveals), and the cache that holds
//! them between `tools/list` calls until the server says the list changed.

use crate::args::ArgsValidator;
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use switchboard_core::Error;

/// A tool the agent may use, as the server lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McpTool {
    /// Its name, as called.
    pub name: String,
    /// A display title, when the server gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its arguments, shared with the model's tool definition.
    pub input_schema: Arc<Value>,
}

/// An allowed tool and its argument checker. A schema that does not compile is kept as the
/// error, so the tool is refused with the reason rather than called unchecked.
pub(crate) struct Entry {
    pub tool: McpTool,
    pub validator: Result<ArgsValidator, Error>,
    /// The server annotates it `readOnlyHint` or `idempotentHint`: calling it twice does what
    /// calling it once does, so a failed call may be retried.
    pub idempotent: bool,
}

/// One `tools/list`, filtered by the agent's allow-list.
pub(crate) struct ToolSet {
    pub allowed: Vec<Entry>,
    /// Listed by the server but outside the allow-list: never shown, only refused by name.
    pub hidden: Vec<String>,
    /// On the allow-list but not listed by the server, in allow-list order: asking for one is
    /// answered with the mistake rather than a bare "no such tool".
    pub unoffered: Vec<String>,
}

impl ToolSet {
    /// Splits `listed` by the allow-list `allow` (`None` allows every listed tool).
    pub fn new(listed: Vec<rmcp::model::Tool>, allow: Option<&[String]>) -> Self {
        let allows = |name: &str| allow.is_none_or(|list| list.iter().any(|t| t == name));
        let unoffered = allow
            .unwrap_or_default()
            .iter()
            .filter(|name| !listed.iter().any(|t| t.name == name.as_str()))
            .cloned()
            .collect();
        let mut allowed = Vec::new();
        let mut hidden = Vec::new();
        for t in listed {
            if !allows(&t.name) {
                hidden.push(t.name.to_string());
                continue;
            }
            let tool = McpTool {
                name: t.name.to_string(),
                title: t.title.clone(),
                description: t.description.as_deref().unwrap_or_default().to_string(),
                input_schema: Arc::new(Value::Object((*t.input_schema).clone())),
            };
            let validator = ArgsValidator::new(&tool.name, &tool.input_schema)
                .map_err(|e| Error::upstream(format!("the MCP server lists {}", e.message)));
            let idempotent = t
                .annotations
                .as_ref()
                .is_some_and(|a| a.read_only_hint == Some(true) || a.idempotent_hint == Some(true));
            allowed.push(Entry { tool, validator, idempotent });
        }
        Self { allowed, hidden, unoffered }
    }

    /// The allowed tool called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.allowed.iter().find(|e| e.tool.name == name)
    }

    /// The allowed tools.
    pub fn tools(&self) -> impl Iterator<Item = &McpTool> {
        self.allowed.iter().map(|e| &e.tool)
    }
}

/// The error for asking for a tool that `agent`'s allow-list names but `server` does not offer:
/// a configuration mistake (a typo, or a tool the server no longer has), so it names the list to
/// fix rather than only saying the tool does not exist.
pub(crate) fn unoffered(agent: &str, server: &str, name: &str) -> Error {
    Error::not_found(format!(
        "the MCP server {server} does not offer the tool `{name}`, although the allow-list of agent \
         `{agent}` (mcp.tools) names it"
    ))
}

/// `names` for a message: "`a`, `b`".
pub(crate) fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The last tool list, dropped when the server announces a change or the session is replaced.
#[derive(Default)]
pub(crate) struct ToolCache {
    /// Bumped by every invalidation, so a list fetched before one is not stored after it.
    epoch: AtomicU64,
    set: RwLock<Option<Arc<ToolSet>>>,
}

impl ToolCache {
    /// The cached list.
    pub fn get(&self) -> Option<Arc<ToolSet>> {
        self.set.read().ok()?.clone()
    }

    /// The current epoch; pass it to [`ToolCache::store`] with a list fetched after reading it.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Keeps `set`, unless the cache was invalidated since `epoch`.
    pub fn store(&self, epoch: u64, set: Arc<ToolSet>) {
        if let Ok(mut slot) = self.set.write()
            && self.epoch.load(Ordering::SeqCst) == epoch
        {
            *slot = Some(set);
        }
    }

    /// Forgets the list.
    pub fn invalidate(&self) {
        if let Ok(mut slot) = self.set.write() {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn tool(name: &str, schema: Value) -> rmcp::model::Tool {
        let Value::Object(schema) = schema else { panic!("object schema") };
        rmcp::model::Tool::new(name.to_string(), format!("the {name} tool"), Arc::new(schema))
    }

    fn listed() -> Vec<rmcp::model::Tool> {
        vec![tool("echo", json!({"type": "object"})), tool("get-env", json!({"type": "object"}))]
    }

    #[test]
    fn the_allow_list_hides_tools() {
        let set = ToolSet::new(listed(), Some(&["echo".to_string()]));
        assert_eq!(set.tools().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["echo"]);
        assert_eq!(set.hidden, ["get-env"]);
        assert!(set.get("get-env").is_none());
        assert!(set.unoffered.is_empty());
    }

    #[test]
    fn allow_listed_names_the_server_does_not_list_are_unoffered() {
        let allow = ["no-such-tool", "echo", "also-missing"].map(String::from);
        let set = ToolSet::new(listed(), Some(&allow));
        assert_eq!(set.tools().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["echo"]);
        assert_eq!(set.unoffered, ["no-such-tool", "also-missing"]);
        let everything = ToolSet::new(listed(), None);
        assert_eq!(everything.tools().count(), 2);
        assert!(everything.unoffered.is_empty() && everything.hidden.is_empty());
    }

    #[test]
    fn a_list_fetched_before_an_invalidation_is_not_kept() {
        let cache = ToolCache::default();
        let set = Arc::new(ToolSet::new(vec![], None));
        let epoch = cache.epoch();
        cache.invalidate();
        cache.store(epoch, set.clone());
        assert!(cache.get().is_none(), "stale list dropped");
        cache.store(cache.epoch(), set);
        assert!(cache.get().is_some());
        cache.invalidate();
        assert!(cache.get().is_none());
    }
}
