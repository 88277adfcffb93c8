//! Which tool answers the question, and with what arguments.
//!
//! With a model, the model picks among the allowed tools (they are offered as functions with the
//! tools' own input schemas) and fills the arguments. Without one — or when the model calls no
//! tool — the question is matched word by word against the tools' names, titles and
//! descriptions, and the arguments are read from the question as far as each schema allows
//! ([`crate::args::fill`]); a required argument the question does not give is reported, never
//! guessed. Either way, only allowed tools are candidates; a question that names a tool outside
//! the allow-list is refused, and one that names an allow-listed tool the server does not offer
//! is told so.

use super::tools::{self, McpTool, ToolSet};
use crate::genie::semantic::words;
use serde_json::{Map, Value};
use switchboard_core::{Error, ErrorKind, Message, Result, RunContext};
use switchboard_llm::{ChatRequest, LlmClient, ToolDef};

/// A tool and its (not yet validated) arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Choice {
    /// The tool.
    pub tool: String,
    /// The arguments.
    pub arguments: Map<String, Value>,
    /// How it was chosen: `model` or `lexical`.
    pub by: &'static str,
}

/// Words too common to say anything about a tool.
const STOP: &[&str] = &[
    "a", "an", "and", "are", "can", "could", "do", "doe", "for", "from", "give", "i", "in", "is", "it", "me",
    "my", "of", "on", "or", "please", "tell", "that", "the", "this", "to", "tool", "use", "using", "what",
    "which", "with", "would", "you", "call", "run", "how", "much", "many",
];

fn content_words(text: &str) -> Vec<String> {
    let mut w: Vec<String> = words(text)
        .into_iter()
        .filter(|w| !STOP.contains(&w.as_str()) && !w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    w.sort();
    w.dedup();
    w
}

/// How well `question_words` match `tool`: a word of the name counts 3, of the title 2, of the
/// description 1.
fn score(question_words: &[String], tool: &McpTool) -> u32 {
    let hits = |text: &str, weight: u32| {
        let field = content_words(text);
        question_words.iter().filter(|w| field.contains(w)).count() as u32 * weight
    };
    hits(&tool.name, 3) + hits(tool.title.as_deref().unwrap_or(""), 2) + hits(&tool.description, 1)
}

/// The question's words that name a tool outright (`get-env`, `get_env`).
fn names_tool(question: &str, name: &str) -> bool {
    let q = question.to_lowercase();
    let name = name.to_lowercase();
    q.split(|c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | ',' | '?' | '!' | '(' | ')'))
        .map(|w| w.trim_end_matches(['.', ':', ';']))
        .any(|w| w == name || w.replace('_', "-") == name.replace('_', "-"))
}

/// Refuses a question that asks for a tool the allow-list hides, by name, before anything else
/// looks at it. A question that also names an allowed tool is not refused.
pub(crate) fn refuse_hidden(agent: &str, tools: &ToolSet, question: &str) -> Result<()> {
    if tools.tools().any(|t| names_tool(question, &t.name)) {
        return Ok(());
    }
    match tools.hidden.iter().find(|h| names_tool(question, h)) {
        Some(hidden) => Err(Error::denied(format!("agent `{agent}` may not use the MCP tool `{hidden}`"))),
        None => Ok(()),
    }
}

/// Answers a question that asks by name for a tool the allow-list names but the server does not
/// offer with that mistake: it would otherwise fall through to a lexical match among the offered
/// tools and fail, or worse succeed, on some other tool. A question that also names an offered,
/// allowed tool is not refused.
pub(crate) fn refuse_unoffered(agent: &str, server: &str, tools: &ToolSet, question: &str) -> Result<()> {
    if tools.tools().any(|t| names_tool(question, &t.name)) {
        return Ok(());
    }
    match tools.unoffered.iter().find(|u| names_tool(question, u)) {
        Some(name) => Err(tools::unoffered(agent, server, name)),
        None => Ok(()),
    }
}

/// The best lexical match for `question` whose arguments the question can fill, so "what are my
/// open tickets?" goes to `list_tickets` (its `status` can be `open`) rather than to
/// `open_ticket`, which would need a title the question does not give. When no matching tool
/// can be filled, the best match's missing argument is reported.
pub(crate) fn lexical(agent: &str, tools: &ToolSet, question: &str) -> Result<Choice> {
    let q = content_words(question);
    let mut ranked: Vec<(u32, &McpTool)> =
        tools.tools().map(|t| (score(&q, t), t)).filter(|(s, _)| *s > 0).collect();
    // Highest score first; on a tie, the tool named outright, then the shorter name.
    ranked.sort_by(|(a, x), (b, y)| {
        b.cmp(a)
            .then(names_tool(question, &y.name).cmp(&names_tool(question, &x.name)))
            .then(x.name.len().cmp(&y.name.len()))
    });
    let mut first_error = None;
    for (_, tool) in &ranked {
        match crate::args::fill(&tool.name, &tool.input_schema, question) {
            Ok(arguments) => return Ok(Choice { tool: tool.name.clone(), arguments, by: "lexical" }),
            Err(e) if e.kind == ErrorKind::InvalidInput => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(first_error.unwrap_or_else(|| {
        let names: Vec<&str> = tools.tools().map(|t| t.name.as_str()).collect();
        Error::invalid(format!(
            "no tool of `{agent}` matches the question; its tools are {}",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        ))
    }))
}

/// The model's pick among the allowed tools, or `None` when it called none.
pub(crate) async fn by_model(
    llm: &LlmClient,
    ctx: &RunContext,
    tools: &ToolSet,
    question: &str,
) -> Result<Option<Choice>> {
    let defs: Vec<ToolDef> = tools
        .tools()
        .map(|t| ToolDef {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t.input_schema.clone(),
        })
        .collect();
    if defs.is_empty() {
        return Ok(None);
    }
    let request = ChatRequest {
        messages: vec![
            Message::system(
                "Call the one function that answers the user's message, with arguments taken from \
                 the message. Use only values the message states; leave out any it does not give. \
                 Never invent values.",
            ),
            Message::user(question),
        ],
        tools: defs,
        temperature: Some(0.0),
    };
    let reply = llm.chat(ctx, &request).await?;
    let Some(call) = reply.tool_calls.into_iter().next() else {
        return Ok(None);
    };
    let Some(tool) = tools.get(&call.name).map(|e| &e.tool) else {
        // Only allowed tools were offered; a model naming another is refused, not obeyed.
        return Err(Error::denied(format!(
            "the model asked for the MCP tool `{}`, which is not allowed",
            call.name
        )));
    };
    let mut arguments = match call.arguments {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    // What the model left out may still be in the question.
    for (k, v) in crate::args::extract(&tool.name, &tool.input_schema, question) {
        arguments.entry(k).or_insert(v);
    }
    Ok(Some(Choice { tool: tool.name.clone(), arguments, by: "model" }))
}

/// The model's choice when there is a model and it makes one, the lexical match otherwise.
/// `server` names the server in errors.
pub(crate) async fn choose(
    agent: &str,
    server: &str,
    llm: Option<&LlmClient>,
    ctx: &RunContext,
    tools: &ToolSet,
    question: &str,
) -> Result<Choice> {
    refuse_hidden(agent, tools, question)?;
    refuse_unoffered(agent, server, tools, question)?;
    if let Some(llm) = llm {
        match by_model(llm, ctx, tools, question).await {
            Ok(Some(choice)) => return Ok(choice),
            Ok(None) => {}
            Err(e) if matches!(e.kind, ErrorKind::Cancelled | ErrorKind::Timeout | ErrorKind::Denied) => {
                return Err(e);
            }
            // The lexical match still works without the model.
            Err(e) => tracing::warn!(agent, "tool choice by model failed, matching lexically: {}", e.message),
        }
    }
    lexical(agent, tools, question)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn set(allowed: &[&str]) -> ToolSet {
        let tool = |name: &str, desc: &str, schema: Value| {
            let Value::Object(schema) = schema else { panic!() };
            rmcp::model::Tool::new(name.to_string(), desc.to_string(), Arc::new(schema))
        };
        let listed = vec![
            tool(
                "echo",
                "Echoes back the input string",
                json!({"type": "object", "properties": {"message": {"type": "string", "description": "Message to echo"}}, "required": ["message"]}),
            ),
            tool(
                "get-sum",
                "Returns the sum of two numbers",
                json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
            ),
            tool("get-env", "Returns all environment variables", json!({"type": "object", "properties": {}})),
            tool(
                "get-tiny-image",
                "Returns a tiny MCP logo image",
                json!({"type": "object", "properties": {}}),
            ),
        ];
        let allowed: Vec<String> = allowed.iter().map(|n| n.to_string()).collect();
        ToolSet::new(listed, Some(&allowed))
    }

    #[test]
    fn lexical_choice_fills_arguments_from_the_question() {
        let tools = set(&["echo", "get-sum", "get-tiny-image"]);
        let c = lexical("everything", &tools, "echo hello world").expect("echo");
        assert_eq!((c.tool.as_str(), c.arguments["message"].as_str()), ("echo", Some("hello world")));
        let c = lexical("everything", &tools, "what is the sum of 2 and 40").expect("sum");
        assert_eq!(c.tool, "get-sum");
        assert_eq!((c.arguments["a"].as_f64(), c.arguments["b"].as_f64()), (Some(2.0), Some(40.0)));
        let c = lexical("everything", &tools, "show me the tiny image").expect("image");
        assert_eq!(c.tool, "get-tiny-image");
    }

    #[test]
    fn a_missing_argument_is_named_not_guessed() {
        let tools = set(&["get-sum"]);
        let e = lexical("everything", &tools, "what is the sum of 2").expect_err("b missing");
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.contains("`get-sum`") && e.message.contains("`b`"), "{}", e.message);
    }

    #[test]
    fn no_match_lists_the_tools() {
        let e = lexical("everything", &set(&["echo", "get-sum"]), "weather in Paris").expect_err("nothing");
        assert!(e.message.contains("echo, get-sum"), "{}", e.message);
    }

    #[test]
    fn hidden_tools_are_refused_by_name_and_never_matched() {
        let tools = set(&["echo", "get-sum"]);
        let e = refuse_hidden("everything", &tools, "please run get-env").expect_err("hidden");
        assert_eq!(e.kind, ErrorKind::Denied);
        assert!(e.message.contains("`get-env`"), "{}", e.message);
        assert!(refuse_hidden("everything", &tools, "echo get-env").is_ok(), "names an allowed tool");
        let e = lexical("everything", &tools, "environment variables").expect_err("get-env is invisible");
        assert!(!e.message.contains("get-env"), "{}", e.message);
    }

    #[test]
    fn an_allow_listed_tool_the_server_does_not_offer_is_named_as_the_mistake() {
        let tools = set(&["echo", "no-such-tool"]);
        let e =
            refuse_unoffered("everything", "`everything` (127.0.0.1:1)", &tools, "run no-such-tool please")
                .expect_err("not offered");
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.message.contains("`no-such-tool`") && e.message.contains("mcp.tools"),
            "says what to fix: {}",
            e.message
        );
        assert!(refuse_unoffered("everything", "s", &tools, "echo no-such-tool").is_ok(), "names echo");
        assert!(refuse_unoffered("everything", "s", &tools, "echo hello").is_ok());
    }
}
