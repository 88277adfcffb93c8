//! The LLM judge: grades a free-text answer against a case's rubric (`expect.answer.judge`) when
//! `[eval.judge]` names a model. Its calls are governed hops like any other (span, audit row,
//! credential), made as the case's caller, and its tokens are kept apart from the run's.

use crate::result::Verdict;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{AgentKind, AgentSpec, Error, Message, Result, RunContext};
use switchboard_govern::{Gateway, reqwest};
use switchboard_llm::{ChatRequest, LlmClient};
use switchboard_runtime::Runtime;

const SYSTEM: &str = "You grade an assistant's answer against a rubric. Judge only whether the answer \
satisfies the rubric. Reply with one JSON object and nothing else: {\"pass\": true or false, \"reason\": \"one short sentence\"}.";

/// A model that grades answers.
pub struct Judge {
    client: LlmClient,
}

impl Judge {
    /// The judge `[eval.judge]` configures, or `None` when it names no model. Its endpoint and
    /// credential default to `[llm]`'s.
    pub fn from_runtime(runtime: &Runtime) -> Result<Option<Self>> {
        let cfg = &runtime.config.config;
        let Some(judge) = &cfg.eval.judge else { return Ok(None) };
        let base_url = judge
            .base_url
            .clone()
            .or_else(|| cfg.llm.as_ref().map(|l| l.base_url.clone()))
            .ok_or_else(|| Error::config("eval.judge.base_url: give one, or configure [llm]"))?;
        let credential = judge
            .credential
            .clone()
            .or_else(|| cfg.llm.as_ref().map(|l| l.credential.clone()))
            .unwrap_or_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        let gateway = Arc::new(
            Gateway::builder(runtime.store.clone(), runtime.identity.credentials()).http_client(http).build(),
        );
        let spec = AgentSpec {
            credential,
            ..AgentSpec::new("eval_judge", AgentKind::Endpoint, "Grades answers for switchboard eval.")
        };
        Ok(Some(Self {
            client: LlmClient::new(gateway.egress(Arc::new(spec)), &base_url, judge.model.clone()),
        }))
    }

    /// Grades `answer` to `question` against `rubric`. A judge that fails or answers nonsense
    /// fails the check with the reason, rather than the run.
    pub async fn grade(&self, ctx: &RunContext, question: &str, answer: &str, rubric: &str) -> Verdict {
        let request = ChatRequest {
            messages: vec![
                Message::system(SYSTEM),
                Message::user(format!("Question:\n{question}\n\nAnswer:\n{answer}\n\nRubric:\n{rubric}")),
            ],
            tools: Vec::new(),
            temperature: Some(0.0),
        };
        match self.client.chat(ctx, &request).await {
            Ok(response) => {
                let tokens = response.usage.prompt_tokens + response.usage.completion_tokens;
                let (pass, reason) = parse_verdict(&response.content);
                Verdict { pass, reason, tokens }
            }
            Err(e) => Verdict { pass: false, reason: format!("the judge failed: {}", e.message), tokens: 0 },
        }
    }
}

/// Reads `{"pass": …, "reason": …}` out of the judge's reply, tolerating prose or a code fence
/// around it; a bare PASS or FAIL is accepted too.
pub fn parse_verdict(text: &str) -> (bool, String) {
    if let (Some(start), Some(end)) = (text.find('{'), text.rfind('}'))
        && start < end
        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text[start..=end])
        && let Some(pass) = map.get("pass").and_then(Value::as_bool)
    {
        let reason = map.get("reason").and_then(Value::as_str).unwrap_or_default().to_string();
        return (pass, reason);
    }
    let upper = text.to_uppercase();
    match (upper.contains("PASS"), upper.contains("FAIL")) {
        (true, false) => (true, text.trim().to_string()),
        _ => (
            false,
            format!(
                "the judge's reply is not a verdict: {}",
                text.trim().chars().take(200).collect::<String>()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_from_json_or_words() {
        assert_eq!(
            parse_verdict("```json\n{\"pass\": true, \"reason\": \"cites the cap\"}\n```"),
            (true, "cites the cap".into())
        );
        assert!(!parse_verdict("{\"pass\": false}").0);
        assert!(parse_verdict("PASS").0);
        assert!(!parse_verdict("I think it is fine").0);
    }
}
