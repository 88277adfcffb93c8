//! Choosing the answer a request gets, and counting its tokens.

use super::request::View;
use super::script::{Reply, Rule, Script, When, example_for};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use tiktoken_rs::CoreBPE;

/// What the model says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// Message text.
    Text(String),
    /// Function calls, each a name and its arguments as JSON text.
    ToolCalls(Vec<(String, String)>),
    /// An error status and message instead of an answer.
    Error { status: u16, message: String },
}

impl Answer {
    /// The text the completion's tokens are counted over.
    pub(crate) fn completion_text(&self) -> String {
        match self {
            Answer::Text(t) => t.clone(),
            Answer::ToolCalls(calls) => {
                calls.iter().map(|(name, arguments)| format!("{name}{arguments}")).collect()
            }
            Answer::Error { .. } => String::new(),
        }
    }
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tokens {
    pub prompt: u64,
    pub completion: u64,
}

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref()
}

/// How many distinct texts [`count`] remembers before it starts over.
const COUNTS_REMEMBERED: usize = 4096;

/// `cl100k_base` tokens in `text`, as the project's own client counts them.
///
/// Remembered per text: a benchmark sends the same prompts thousands of times, and encoding a
/// routing prompt of a few kB took 40% of this server's CPU, which it shares with the runtime
/// under test on the same cores.
pub(crate) fn count(text: &str) -> u64 {
    static COUNTS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let counts = COUNTS.get_or_init(Mutex::default);
    let remembered = counts.lock().unwrap_or_else(PoisonError::into_inner).get(text).copied();
    if let Some(n) = remembered {
        return n;
    }
    let n = match bpe() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => (text.len() as u64).div_ceil(4),
    };
    let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
    if counts.len() >= COUNTS_REMEMBERED {
        counts.clear();
    }
    counts.insert(text.to_string(), n);
    n
}

/// `text` split into its tokens' texts (they concatenate back to it), for streaming token by
/// token. Falls back to words should a token not be valid UTF-8 on its own.
pub(crate) fn token_pieces(text: &str) -> Vec<String> {
    let pieces = bpe().and_then(|bpe| bpe.split_by_token_ordinary(text).ok());
    match pieces {
        Some(p) if p.concat() == text => p,
        _ => text.split_inclusive(char::is_whitespace).map(str::to_string).collect(),
    }
}

impl When {
    fn holds(&self, v: &View<'_>) -> bool {
        self.last_user.as_ref().is_none_or(|r| r.is_match(&v.last_user))
            && self.system.as_ref().is_none_or(|r| r.is_match(&v.system))
            && self.tools.is_none_or(|t| t != v.tools.is_empty())
            && self.tool.as_ref().is_none_or(|r| v.tools.iter().any(|t| r.is_match(t.name)))
            && self.response_format.is_none_or(|f| f == v.schema.is_some())
            && self.api.as_deref().is_none_or(|a| a == v.api.name())
            && self.last_role.as_deref().is_none_or(|r| r == v.last_role)
            && self.answers_tool.as_ref().is_none_or(|r| v.answered_tool.is_some_and(|t| r.is_match(t)))
    }
}

/// Replaces `{{last_user}}` in every string inside `value`.
fn substitute(value: &Value, last_user: &str) -> Value {
    match value {
        Value::String(s) if s.contains("{{last_user}}") => json!(s.replace("{{last_user}}", last_user)),
        Value::Array(items) => Value::Array(items.iter().map(|i| substitute(i, last_user)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), substitute(v, last_user))).collect())
        }
        other => other.clone(),
    }
}

impl Script {
    /// The answer to `view`: the first matching rule's reply, else the default.
    pub(crate) fn answer(&self, view: &View<'_>) -> Answer {
        let reply = self
            .rules
            .iter()
            .find(|Rule { when, .. }| when.holds(view))
            .map_or(&self.default, |rule| &rule.reply);
        match reply {
            Reply::Text(t) => Answer::Text(t.replace("{{last_user}}", &view.last_user)),
            Reply::Json(v) => Answer::Text(substitute(v, &view.last_user).to_string()),
            Reply::FromSchema => {
                let schema = view.schema.filter(|s| !s.is_null());
                let value = match schema {
                    Some(schema) => example_for(schema, &view.last_user),
                    None => json!({"answer": view.last_user}),
                };
                Answer::Text(value.to_string())
            }
            Reply::ToolCall { tool, arguments } => match view.tools.iter().find(|t| tool.is_match(t.name)) {
                Some(t) => {
                    let arguments = match (arguments, t.parameters) {
                        (Some(a), _) => substitute(a, &view.last_user),
                        (None, Some(schema)) => example_for(schema, &view.last_user),
                        (None, None) => json!({}),
                    };
                    Answer::ToolCalls(vec![(t.name.to_string(), arguments.to_string())])
                }
                // Asked for a tool that was not offered: say so rather than invent a call.
                None => Answer::Text(format!("no offered tool matches `{}`", tool.as_str())),
            },
            Reply::ToolCalls(calls) => Answer::ToolCalls(
                calls.iter().map(|(n, a)| (n.clone(), substitute(a, &view.last_user).to_string())).collect(),
            ),
            Reply::Error { status, message } => Answer::Error { status: *status, message: message.clone() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::request::Api;

    #[test]
    fn rules_pick_replies_in_order_and_fill_tool_arguments() {
        let script = Script::from_toml(
            r#"
            [[rules]]
            when = { last_user = "(?i)revenue", tool = "sales" }
            reply = { tool_call = { tool = "sales" } }
            [[rules]]
            when = { system = "pirate" }
            reply = { text = "Arr: {{last_user}}" }
            [default]
            json = { said = "{{last_user}}" }
            "#,
        )
        .unwrap();
        let params = json!({"type": "object", "properties": {"question": {"type": "string"}}});
        let body = json!({"messages": [{"role": "user", "content": "Revenue by region"}],
            "tools": [{"type": "function", "function": {"name": "sales", "parameters": params}}]});
        assert_eq!(
            script.answer(&View::read(Api::Chat, &body)),
            Answer::ToolCalls(vec![("sales".into(), r#"{"question":"Revenue by region"}"#.into())])
        );
        let body = json!({"instructions": "talk like a pirate", "input": "hi"});
        assert_eq!(script.answer(&View::read(Api::Responses, &body)), Answer::Text("Arr: hi".into()));
        let body = json!({"input": "hi"});
        assert_eq!(
            script.answer(&View::read(Api::Responses, &body)),
            Answer::Text(r#"{"said":"hi"}"#.into())
        );
    }

    #[test]
    fn tokens_are_counted_and_split_losslessly() {
        assert_eq!(count("hello world"), 2);
        let text = "Hotels are capped at $250 per night — ünïcode too.";
        assert_eq!(token_pieces(text).concat(), text);
        assert!(token_pieces(text).len() > 5);
    }
}
