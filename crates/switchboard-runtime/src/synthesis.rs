//! The supervisor's own LLM calls: combining several sub-agents' answers into one (from
//! `prompts/synthesis.j2`), and formatting a run's answer as JSON for a caller's schema
//! (structured output), validated before it is returned.

use crate::supervisor::Step;
use minijinja::Environment;
use serde_json::{Value, json};
use switchboard_core::{Error, Message, OnDelta, Result, RunContext};
use switchboard_llm::{ChatRequest, LlmClient, UsageLedger};

/// The built-in synthesis prompt, used when `prompts/synthesis.j2` is absent.
pub const DEFAULT_SYNTHESIS_PROMPT: &str = "You combine answers from specialist agents into one reply to the user's question.\n\
Keep every figure, table and citation exactly as given; do not add facts.\n\
If an agent was denied or failed, say so briefly.\n\n\
Question: {{ question }}\n\n\
{% for s in steps %}## {{ s.agent }} ({{ s.status }})\n{{ s.text }}\n\n{% endfor %}";

/// The formatting step's instructions: the model restates the answer, it does not add to it.
const FORMAT_PROMPT: &str = "Format the answer below as one JSON value that conforms to the JSON schema \
you are given. Use only facts stated in the answer; where the answer lacks a value the schema requires, \
use an empty string, 0, false or an empty list. Reply with the JSON only.";

/// How many times the formatting step may ask again after an answer that breaks the schema.
const FORMAT_RETRIES: usize = 1;

/// Structured output a caller asked for: OpenAI's `response_format` (chat completions) or
/// `text.format` (Responses) of type `json_schema` or `json_object`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputFormat {
    /// The schema's name (`json_schema.name`); `json_object` for a plain JSON object.
    pub name: String,
    /// The JSON schema; `None` asks for any JSON object.
    pub schema: Option<Value>,
    /// Whether the caller asked for strict schema adherence (passed on to the LLM).
    pub strict: bool,
}

impl OutputFormat {
    /// A JSON schema format. Fails, naming the problem, when `schema` is not a valid JSON
    /// schema, so a bad schema is refused before anything runs.
    pub fn json_schema(name: impl Into<String>, schema: Value, strict: bool) -> Result<Self> {
        jsonschema::validator_for(&schema)
            .map_err(|e| Error::invalid(format!("the JSON schema is not valid: {e}")))?;
        Ok(Self { name: name.into(), schema: Some(schema), strict })
    }

    /// Any JSON object.
    pub fn json_object() -> Self {
        Self { name: "json_object".into(), schema: None, strict: false }
    }

    /// The `response_format` sent to the LLM.
    fn wire(&self) -> Value {
        match &self.schema {
            Some(schema) => json!({"type": "json_schema", "json_schema": {
                "name": self.name, "schema": schema, "strict": self.strict,
            }}),
            None => json!({"type": "json_object"}),
        }
    }

    /// Parses and checks the model's reply: the JSON text it is, or why it does not conform.
    fn check(&self, reply: &str) -> std::result::Result<String, String> {
        let text = strip_fences(reply);
        let value: Value = serde_json::from_str(text).map_err(|e| format!("the reply is not JSON ({e})"))?;
        match &self.schema {
            None if value.is_object() => {}
            None => return Err("the reply is not a JSON object".into()),
            Some(schema) => {
                let validator = jsonschema::validator_for(schema)
                    .map_err(|e| format!("the JSON schema is not valid: {e}"))?;
                let problems: Vec<String> = validator
                    .iter_errors(&value)
                    .take(3)
                    .map(|e| {
                        let at = e.instance_path().to_string();
                        format!("{}: {e}", if at.is_empty() { "(root)" } else { at.as_str() })
                    })
                    .collect();
                if !problems.is_empty() {
                    return Err(problems.join("; "));
                }
            }
        }
        Ok(text.to_string())
    }
}

/// The reply without a Markdown code fence around it, which models add despite being told not to.
fn strip_fences(reply: &str) -> &str {
    let t = reply.trim();
    match t.strip_prefix("```") {
        Some(rest) => {
            let body = rest.split_once('\n').map_or(rest, |(_, b)| b);
            body.trim_end().strip_suffix("```").unwrap_or(body).trim()
        }
        None => t,
    }
}

/// Renders the synthesis prompt and asks the LLM to combine answers; formats answers for
/// structured output.
pub struct Synthesizer {
    client: LlmClient,
    env: Environment<'static>,
}

impl Synthesizer {
    /// `template` is the text of `prompts/synthesis.j2` (or the default).
    pub fn new(client: LlmClient, template: String) -> Result<Self> {
        let mut env = Environment::new();
        env.add_template_owned("synthesis", template)
            .map_err(|e| Error::config(format!("prompts/synthesis.j2 does not parse: {e}")))?;
        Ok(Self { client, env })
    }

    /// Where the LLM client sums usage per request.
    pub fn usage_ledger(&self) -> &UsageLedger {
        self.client.usage_ledger()
    }

    /// One combined answer. `instructions` (the caller's system messages or Responses
    /// `instructions`) follow the synthesis prompt: they shape the reply's style, while the prompt
    /// keeps the facts to what the agents said. With `on_delta`, the model's reply is streamed:
    /// each piece goes to `on_delta` as the model writes it, and the returned text is the pieces
    /// concatenated.
    pub async fn combine(
        &self,
        ctx: &RunContext,
        question: &str,
        instructions: Option<&str>,
        steps: &[Step],
        on_delta: Option<&OnDelta<'_>>,
    ) -> Result<String> {
        let steps: Vec<_> = steps
            .iter()
            .map(|s| {
                let text =
                    s.output.as_ref().map(|o| o.text.clone()).or_else(|| s.error.clone()).unwrap_or_default();
                json!({"agent": s.agent, "status": s.status, "text": text})
            })
            .collect();
        let prompt = self
            .env
            .get_template("synthesis")
            .and_then(|t| t.render(minijinja::value::Serde(json!({"question": question, "steps": steps}))))
            .map_err(|e| Error::config(format!("prompts/synthesis.j2 failed to render: {e}")))?;
        let mut messages = vec![Message::system(prompt)];
        messages.extend(caller_instructions(instructions));
        messages.push(Message::user(question));
        let request = ChatRequest { messages, ..Default::default() };
        let reply = match on_delta {
            Some(on_delta) => self.client.chat_stream(ctx, request, on_delta).await?,
            None => self.client.chat(ctx, &request).await?,
        };
        Ok(reply.content)
    }

    /// The run's `answer` as JSON text conforming to `format`, asking again (once) with the
    /// validation errors when the model's reply does not conform. A reply that still does not
    /// conform is an upstream error naming the schema and what was wrong.
    pub async fn format(
        &self,
        ctx: &RunContext,
        question: &str,
        instructions: Option<&str>,
        answer: &str,
        format: &OutputFormat,
    ) -> Result<String> {
        let mut messages = vec![Message::system(FORMAT_PROMPT)];
        messages.extend(caller_instructions(instructions));
        messages.push(Message::user(format!("Question: {question}\n\nAnswer:\n{answer}")));
        let mut request = ChatRequest { messages, ..Default::default() };
        let wire = format.wire();
        let mut problem = String::new();
        for _ in 0..=FORMAT_RETRIES {
            let reply = self.client.chat_formatted(ctx, &request, &wire).await?.content;
            match format.check(&reply) {
                Ok(json) => return Ok(json),
                Err(why) => {
                    request.messages.push(Message::assistant(reply, None));
                    request.messages.push(Message::user(format!(
                        "That reply does not conform to the schema: {why}. Reply again with conforming JSON only."
                    )));
                    problem = why;
                }
            }
        }
        Err(Error::upstream(format!(
            "the LLM's structured output does not conform to the schema `{}`: {problem}",
            format.name
        )))
    }
}

/// The caller's instructions as a system message, marked as theirs.
fn caller_instructions(instructions: Option<&str>) -> Option<Message> {
    instructions
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|i| Message::system(format!("The caller's instructions:\n{i}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_checked_against_the_schema() {
        let schema = json!({"type": "object", "properties": {"total": {"type": "number"}},
                            "required": ["total"], "additionalProperties": false});
        let f = OutputFormat::json_schema("Revenue", schema, true).unwrap();
        assert_eq!(f.check("```json\n{\"total\": 3}\n```").unwrap(), "{\"total\": 3}");
        let why = f.check(r#"{"total": "lots"}"#).unwrap_err();
        assert!(why.contains("/total") && why.contains("number"), "{why}");
        assert!(f.check(r#"{"sum": 1}"#).unwrap_err().contains("total"));
        assert!(f.check("revenue was 3").unwrap_err().contains("not JSON"));
        assert!(OutputFormat::json_object().check("[1]").unwrap_err().contains("object"));
        let bad = OutputFormat::json_schema("x", json!({"type": "nonsense"}), false).unwrap_err();
        assert!(bad.message.contains("not valid"), "{}", bad.message);
    }
}
