//! What the rules look at in a request, read once from either API's body.

use serde_json::Value;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/responses`.
    Responses,
}

impl Api {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Responses => "responses",
        }
    }
}

/// An offered function tool.
pub(crate) struct Tool<'a> {
    pub name: &'a str,
    pub parameters: Option<&'a Value>,
}

/// The parts of a request the script matches on.
pub(crate) struct View<'a> {
    pub api: Api,
    pub model: Option<&'a str>,
    pub stream: bool,
    pub include_usage: bool,
    /// The last user message's text.
    pub last_user: String,
    /// System and developer messages (and Responses `instructions`), joined by newlines.
    pub system: String,
    /// The role of the last message or input item.
    pub last_role: &'a str,
    /// When the last message is a tool result: the name of the tool call it answers.
    pub answered_tool: Option<&'a str>,
    pub tools: Vec<Tool<'a>>,
    /// The requested JSON schema, or `{}` for a plain JSON object; `None` for text.
    pub schema: Option<&'a Value>,
    /// Every message's text and every tool definition, for counting prompt tokens.
    pub prompt_text: String,
}

static EMPTY_SCHEMA: Value = Value::Null;

/// The text of message content: a string, or its text parts joined.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> =
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
            texts.join("\n")
        }
        _ => String::new(),
    }
}

/// Adds the tool calls `item` makes to `calls` as (id, name): a chat assistant message's
/// `tool_calls`, or a Responses `function_call` item.
fn note_calls<'a>(item: &'a Value, calls: &mut Vec<(&'a str, &'a str)>) {
    if let Some(Value::Array(tool_calls)) = item.get("tool_calls") {
        for call in tool_calls {
            let id = call.get("id").and_then(Value::as_str);
            let name = call.pointer("/function/name").and_then(Value::as_str);
            if let (Some(id), Some(name)) = (id, name) {
                calls.push((id, name));
            }
        }
    }
    if item.get("type").and_then(Value::as_str) == Some("function_call") {
        let id = item.get("call_id").and_then(Value::as_str);
        if let (Some(id), Some(name)) = (id, item.get("name").and_then(Value::as_str)) {
            calls.push((id, name));
        }
    }
}

impl<'a> View<'a> {
    /// Reads `body` as `api` sends it; fields of the wrong type count as absent.
    pub(crate) fn read(api: Api, body: &'a Value) -> Self {
        let mut view = View {
            api,
            model: body.get("model").and_then(Value::as_str),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: body
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            last_user: String::new(),
            system: String::new(),
            last_role: "user",
            answered_tool: None,
            tools: Vec::new(),
            schema: None,
            prompt_text: String::new(),
        };
        let (messages, format) = match api {
            Api::Chat => (body.get("messages"), body.get("response_format")),
            Api::Responses => {
                if let Some(i) = body.get("instructions").and_then(Value::as_str) {
                    view.push_system(i);
                }
                (body.get("input"), body.pointer("/text/format"))
            }
        };
        match messages {
            Some(Value::String(s)) => {
                view.last_user = s.clone();
                view.prompt_text.push_str(s);
            }
            Some(Value::Array(items)) => {
                // Tool call ids to names, so a tool result can be traced to the call it answers.
                let mut calls: Vec<(&str, &str)> = Vec::new();
                for item in items {
                    note_calls(item, &mut calls);
                    let role = item.get("role").and_then(Value::as_str).unwrap_or_else(|| {
                        // Responses items without a role: tool calls and their outputs.
                        match item.get("type").and_then(Value::as_str) {
                            Some("function_call_output") => "tool",
                            Some(_) => "assistant",
                            None => "user",
                        }
                    });
                    view.last_role = role;
                    view.answered_tool = if role == "tool" {
                        let id =
                            item.get("tool_call_id").or_else(|| item.get("call_id")).and_then(Value::as_str);
                        id.and_then(|id| calls.iter().rev().find(|(c, _)| *c == id).map(|(_, name)| *name))
                    } else {
                        None
                    };
                    let mut text = text_of(item.get("content"));
                    if let Some(output) = item.get("output").and_then(Value::as_str) {
                        text.push_str(output);
                    }
                    match role {
                        "system" | "developer" => view.push_system(&text),
                        "user" => view.last_user.clone_from(&text),
                        _ => {}
                    }
                    view.prompt_text.push_str(&text);
                    view.prompt_text.push('\n');
                }
            }
            _ => {}
        }
        if let Some(Value::Array(tools)) = body.get("tools") {
            for tool in tools {
                // Chat nests the function; Responses flattens it.
                let function = tool.get("function").unwrap_or(tool);
                if let Some(name) = function.get("name").and_then(Value::as_str) {
                    view.tools.push(Tool { name, parameters: function.get("parameters") });
                    view.prompt_text.push_str(&function.to_string());
                }
            }
        }
        view.schema = match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
            Some("json_schema") => {
                let f = format.unwrap_or(&EMPTY_SCHEMA);
                // Chat: {json_schema: {schema}}; Responses: {schema}.
                f.pointer("/json_schema/schema").or_else(|| f.get("schema")).or(Some(&EMPTY_SCHEMA))
            }
            Some("json_object") => Some(&EMPTY_SCHEMA),
            _ => None,
        };
        view
    }

    fn push_system(&mut self, text: &str) {
        if !self.system.is_empty() {
            self.system.push('\n');
        }
        self.system.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_apis_are_read_alike() {
        let chat = json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "revenue"}]},
            ],
            "tools": [{"type": "function", "function": {"name": "sales", "parameters": {"type": "object"}}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        });
        let v = View::read(Api::Chat, &chat);
        assert_eq!((v.model, v.stream, v.include_usage), (Some("m"), true, true));
        assert_eq!((v.last_user.as_str(), v.system.as_str(), v.last_role), ("revenue", "be brief", "user"));
        assert_eq!(v.tools.iter().map(|t| t.name).collect::<Vec<_>>(), ["sales"]);
        assert_eq!(v.schema, Some(&json!({"type": "object"})));

        let responses = json!({
            "instructions": "be brief", "input": "revenue",
            "tools": [{"type": "function", "name": "sales", "parameters": {}}],
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
        });
        let v = View::read(Api::Responses, &responses);
        assert_eq!((v.last_user.as_str(), v.system.as_str()), ("revenue", "be brief"));
        assert_eq!(v.tools.iter().map(|t| t.name).collect::<Vec<_>>(), ["sales"]);
        assert_eq!(v.schema, Some(&json!({"type": "object"})));
    }
}
