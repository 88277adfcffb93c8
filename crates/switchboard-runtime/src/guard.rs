//! Where guardrails apply in a run: endpoint-wide on the caller's question and on the final
//! answer, and each agent's own on what it is sent and what it answers.
//!
//! The checks themselves are [`switchboard_govern::guardrails`]; this module only decides which
//! guardrails see which text, and records each verdict that is not a pass on the span.

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_core::{AgentSpec, Error, ErrorKind, GuardrailConfig, Result};
use switchboard_govern::guardrails::{Direction, Guardrails, Verdict};

/// The guardrails of one supervisor.
#[derive(Debug, Clone, Default)]
pub struct RunGuards {
    endpoint: Option<Guardrails>,
    agents: HashMap<String, Guardrails>,
}

impl RunGuards {
    /// Compiles the endpoint's guardrails and every agent's own. Configuration is validated
    /// before this runs, so an error here names the agent for a hand-built spec.
    pub fn new(endpoint: &GuardrailConfig, agents: &[Arc<AgentSpec>]) -> Result<Self> {
        let compile = |config: &GuardrailConfig, owner: &str| {
            Guardrails::new(config).map_err(|e| Error::config(format!("{owner}: {e}")))
        };
        let endpoint = if endpoint.is_active() { Some(compile(endpoint, "[guardrails]")?) } else { None };
        let mut compiled = HashMap::new();
        for spec in agents {
            if let Some(config) = spec.guardrails.as_ref().filter(|c| c.is_active()) {
                compiled.insert(spec.name.clone(), compile(config, &format!("agent `{}`", spec.name))?);
            }
        }
        Ok(Self { endpoint, agents: compiled })
    }

    /// The endpoint's check of the caller's question.
    pub fn question(&self, text: &str) -> Verdict {
        check(self.endpoint.as_ref(), Direction::Input, text)
    }

    /// Whether the endpoint checks answers: then an answer can only reach the caller once it is
    /// whole and checked, so it cannot stream as the model writes it.
    pub fn checks_answers(&self) -> bool {
        self.endpoint.as_ref().is_some_and(|g| g.checks(Direction::Output))
    }

    /// Whether `agent`'s own guardrails check its answers: then its answer is checked whole
    /// before it goes anywhere, so it cannot stream as its model writes it.
    pub fn checks_agent_answers(&self, agent: &str) -> bool {
        self.agents.get(agent).is_some_and(|g| g.checks(Direction::Output))
    }

    /// The endpoint's check of the answer about to reach the caller.
    pub fn answer(&self, text: &str) -> Verdict {
        check(self.endpoint.as_ref(), Direction::Output, text)
    }

    /// `agent`'s own check of what it is sent (`Input`) or answered (`Output`).
    pub fn agent(&self, agent: &str, direction: Direction, text: &str) -> Verdict {
        check(self.agents.get(agent), direction, text)
    }
}

fn check(guardrails: Option<&Guardrails>, direction: Direction, text: &str) -> Verdict {
    match guardrails {
        Some(g) if g.checks(direction) => g.check(direction, text),
        _ => Verdict::Pass,
    }
}

/// Applies `verdict` to `text`: a masked text replaces it, a block becomes the error (400 for
/// input, for the caller to change; the refusal message for output). Records the verdict on
/// `attributes` under `switchboard.guardrail.<direction>` unless it is a pass.
pub fn apply(
    verdict: Verdict,
    direction: Direction,
    text: &mut String,
    attributes: &mut Map<String, Value>,
) -> Result<()> {
    if verdict == Verdict::Pass {
        return Ok(());
    }
    let key = direction.attribute().to_string();
    match verdict {
        Verdict::Pass => Ok(()),
        Verdict::Masked { text: masked, kinds } => {
            let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            attributes.insert(key, json!({"verdict": "masked", "found": kinds}));
            *text = masked;
            Ok(())
        }
        blocked @ Verdict::Blocked { .. } => {
            let message = blocked.message(direction).unwrap_or_default();
            if let Verdict::Blocked { category, found } = &blocked {
                attributes.insert(key, json!({"verdict": "blocked", "category": category, "found": found}));
            }
            Err(Error::new(ErrorKind::Blocked, message))
        }
    }
}
