//! Combining several sub-agents' answers into one with the LLM, from `prompts/synthesis.j2`.

use crate::supervisor::Step;
use minijinja::Environment;
use serde_json::json;
use switchboard_core::{Error, Message, Result, RunContext};
use switchboard_llm::{ChatRequest, LlmClient};

/// The built-in synthesis prompt, used when `prompts/synthesis.j2` is absent.
pub const DEFAULT_SYNTHESIS_PROMPT: &str = "You combine answers from specialist agents into one reply to the user's question.\n\
Keep every figure, table and citation exactly as given; do not add facts.\n\
If an agent was denied or failed, say so briefly.\n\n\
Question: {{ question }}\n\n\
{% for s in steps %}## {{ s.agent }} ({{ s.status }})\n{{ s.text }}\n\n{% endfor %}";

/// Renders the synthesis prompt and asks the LLM to combine answers.
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

    /// One combined answer.
    pub async fn combine(&self, ctx: &RunContext, question: &str, steps: &[Step]) -> Result<String> {
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
        let request = ChatRequest {
            messages: vec![Message::system(prompt), Message::user(question)],
            ..Default::default()
        };
        Ok(self.client.chat(ctx, &request).await?.content)
    }
}
