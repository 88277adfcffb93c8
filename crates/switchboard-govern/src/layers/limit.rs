use crate::limits::{LimitRules, Mark, MemoryWindows, Phase, Windows};
use crate::{HopCall, HopLayer, Next};
use async_trait::async_trait;
use std::sync::Arc;
use switchboard_core::{Error, HopKind, Result};

/// The rate-limit layer: every hop must fit the sliding one-minute windows its limits name (see
/// [`crate::limits`]); one that does not is refused with a rate-limit error naming the limit and
/// saying when the window has room again. An LLM call's tokens are charged once it answers.
pub struct RateLimit {
    rules: Arc<LimitRules>,
    windows: Arc<dyn Windows>,
}

impl RateLimit {
    /// At most `per_minute` agent calls per caller and agent, counted in this process.
    pub fn per_minute(per_minute: u32) -> Self {
        let rules = LimitRules { per_caller_agent: u64::from(per_minute.max(1)), ..LimitRules::default() };
        Self::new(rules, Arc::new(MemoryWindows::new()))
    }

    /// `rules` counted in `windows` (in memory, or shared through Redis).
    pub fn new(rules: LimitRules, windows: Arc<dyn Windows>) -> Self {
        Self { rules: Arc::new(rules), windows }
    }

    async fn admit(&self, marks: &[Mark]) -> Result<()> {
        match self.windows.acquire(marks).await {
            Ok(()) => Ok(()),
            Err(tripped) => {
                let label = marks.get(tripped.index).map_or("a rate limit", |m| m.label.as_str());
                Err(Error::rate_limited(
                    format!(
                        "rate limit reached: {label}; retry in {:.1} s",
                        tripped.retry_after.as_secs_f64()
                    ),
                    tripped.retry_after,
                ))
            }
        }
    }
}

/// The tokens an LLM call recorded on its span (prompt and completion).
fn tokens_used(hop: &HopCall) -> u64 {
    let Ok(attrs) = hop.attributes.lock() else { return 0 };
    ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"]
        .iter()
        .filter_map(|key| attrs.get(key).and_then(serde_json::Value::as_u64))
        .sum()
}

#[async_trait]
impl HopLayer for RateLimit {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        let marks = self.rules.marks(hop, Phase::Before);
        if !marks.is_empty() {
            self.admit(&marks).await?;
        }
        let result = next.run(hop).await;
        if hop.target.kind == HopKind::Llm {
            let charge = self.rules.marks(hop, Phase::After(tokens_used(hop)));
            // Charging checks nothing, so it cannot trip.
            let _ = self.windows.acquire(&charge).await;
        }
        result
    }
}
