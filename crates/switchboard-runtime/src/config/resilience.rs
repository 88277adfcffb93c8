//! `[resilience]` (retries and circuit breakers for every HTTP hop) and the `[llm]` fallbacks and
//! traffic split, with their validation.

use super::Problem;
use super::files::Files;
use super::model::{Config, check_credential};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use switchboard_core::CredentialSpec;
use switchboard_govern::retry::{BreakerPolicy, Resilience, RetryPolicy, UpstreamPolicy};

/// The most attempts a request may be given; more only multiplies an outage's load.
const MAX_ATTEMPTS: u32 = 10;
/// The most fallbacks `[llm]` may list.
const MAX_FALLBACKS: usize = switchboard_llm::MAX_FALLBACKS;

/// `[resilience]`: retries with exponential backoff and full jitter, and a circuit breaker per
/// upstream (connection, or URL origin for the LLM). On by default with the values of
/// [`Default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// Attempts in all, the first included (1-10); 1 turns retries off.
    pub max_attempts: u32,
    /// The backoff ceiling before the first retry, doubling per retry.
    pub base_backoff_ms: u64,
    /// The largest backoff, and the longest `Retry-After` honoured (longer ends the retries).
    pub max_backoff_ms: u64,
    /// Consecutive failures that open an upstream's circuit; 0 for no breaker.
    pub breaker_failures: u32,
    /// How long an open circuit fails fast before one probe is let through.
    pub breaker_cool_down_ms: u64,
    /// `[resilience.connections.NAME]`: a declared connection's own settings, each field
    /// falling back to the ones above (a partner API that must not be hammered, an MCP server
    /// that deserves more patience).
    pub connections: BTreeMap<String, ResilienceOverride>,
}

/// `[resilience.connections.NAME]`: what one connection changes of `[resilience]`; a field left
/// out keeps the global value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResilienceOverride {
    /// Attempts in all, the first included (1-10); 1 turns retries off.
    pub max_attempts: Option<u32>,
    /// The backoff ceiling before the first retry, doubling per retry.
    pub base_backoff_ms: Option<u64>,
    /// The largest backoff, and the longest `Retry-After` honoured.
    pub max_backoff_ms: Option<u64>,
    /// Consecutive failures that open the connection's circuit; 0 for no breaker.
    pub breaker_failures: Option<u32>,
    /// How long its open circuit fails fast before one probe is let through.
    pub breaker_cool_down_ms: Option<u64>,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff_ms: 100,
            max_backoff_ms: 5_000,
            breaker_failures: 5,
            breaker_cool_down_ms: 30_000,
            connections: BTreeMap::new(),
        }
    }
}

impl ResilienceConfig {
    /// The policy the gateway runs: the global one, and each connection's override.
    pub fn build(&self) -> Resilience {
        let global = self.policy();
        let mut resilience = Resilience::new(global.retry, global.breaker);
        for (name, o) in &self.connections {
            resilience = resilience.with_override(name.clone(), self.with(o).policy());
        }
        resilience
    }

    /// These settings with `o`'s fields in place of the global ones.
    pub fn with(&self, o: &ResilienceOverride) -> Self {
        Self {
            max_attempts: o.max_attempts.unwrap_or(self.max_attempts),
            base_backoff_ms: o.base_backoff_ms.unwrap_or(self.base_backoff_ms),
            max_backoff_ms: o.max_backoff_ms.unwrap_or(self.max_backoff_ms),
            breaker_failures: o.breaker_failures.unwrap_or(self.breaker_failures),
            breaker_cool_down_ms: o.breaker_cool_down_ms.unwrap_or(self.breaker_cool_down_ms),
            connections: BTreeMap::new(),
        }
    }

    fn policy(&self) -> UpstreamPolicy {
        let retry = RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            base_backoff: Duration::from_millis(self.base_backoff_ms),
            max_backoff: Duration::from_millis(self.max_backoff_ms),
        };
        let breaker = (self.breaker_failures > 0).then(|| BreakerPolicy {
            failures: self.breaker_failures,
            cool_down: Duration::from_millis(self.breaker_cool_down_ms),
        });
        UpstreamPolicy { retry, breaker }
    }
}

/// Checks one set of settings (the global `[resilience]`, or a connection's with the global
/// values filled in), naming fields under `prefix`.
fn check_policy(prefix: &str, r: &ResilienceConfig, problem: &mut impl FnMut(String, String)) {
    if !(1..=MAX_ATTEMPTS).contains(&r.max_attempts) {
        problem(
            format!("{prefix}.max_attempts"),
            format!("must be 1-{MAX_ATTEMPTS} (1 turns retries off), not {}", r.max_attempts),
        );
    }
    if r.max_attempts > 1 && r.base_backoff_ms == 0 {
        problem(format!("{prefix}.base_backoff_ms"), "must be greater than 0 when retries are on".into());
    }
    if r.max_backoff_ms < r.base_backoff_ms {
        problem(
            format!("{prefix}.max_backoff_ms"),
            format!("must be at least base_backoff_ms ({})", r.base_backoff_ms),
        );
    }
    if r.breaker_failures > 0 && r.breaker_cool_down_ms == 0 {
        problem(
            format!("{prefix}.breaker_cool_down_ms"),
            "must be greater than 0 when the breaker is on (breaker_failures > 0)".into(),
        );
    }
}

/// One `[llm] fallbacks` entry: an alternate model or endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmFallback {
    /// Server root including `/v1`; defaults to `[llm] base_url`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Model name.
    pub model: String,
    /// How calls to it authenticate; defaults to `[llm.credential]`.
    #[serde(default)]
    pub credential: Option<CredentialSpec>,
}

/// One `[llm] split` entry: a model on the primary server and its share of requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSplit {
    /// Model name.
    pub model: String,
    /// Relative weight (e.g. 80 and 20).
    pub weight: u32,
}

pub(super) fn check_resilience(config: &Config, files: &Files, problems: &mut Vec<Problem>) {
    let file = files.main.label.as_str();
    let mut problem =
        |field: String, message: String| problems.push(Problem { file: file.into(), field, message });
    check_policy("resilience", &config.resilience, &mut problem);
    for (name, o) in &config.resilience.connections {
        let prefix = format!("resilience.connections.{name}");
        if !config.connections.iter().any(|c| &c.name == name) {
            problem(
                prefix.clone(),
                format!("names connection `{name}`, which is not declared in [[connections]]"),
            );
        }
        check_policy(&prefix, &config.resilience.with(o), &mut problem);
    }
    let Some(llm) = &config.llm else { return };
    if llm.fallbacks.len() > MAX_FALLBACKS {
        problem(
            "llm.fallbacks".into(),
            format!("at most {MAX_FALLBACKS} fallbacks, not {}", llm.fallbacks.len()),
        );
    }
    for (i, f) in llm.fallbacks.iter().enumerate() {
        if let Some(url) = &f.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problem(format!("llm.fallbacks[{i}].base_url"), "must be an http:// or https:// URL".into());
        }
        if f.model.trim().is_empty() {
            problem(format!("llm.fallbacks[{i}].model"), "must name a model".into());
        }
    }
    let mut seen = HashSet::new();
    for (i, s) in llm.split.iter().enumerate() {
        if s.model.trim().is_empty() {
            problem(format!("llm.split[{i}].model"), "must name a model".into());
        } else if !seen.insert(s.model.as_str()) {
            problem(format!("llm.split[{i}].model"), format!("`{}` is listed twice", s.model));
        }
        if s.weight == 0 {
            problem(
                format!("llm.split[{i}].weight"),
                "must be greater than 0; remove the entry instead".into(),
            );
        }
    }
    for (i, f) in llm.fallbacks.iter().enumerate() {
        if let Some(credential) = &f.credential {
            check_credential(file, &format!("llm.fallbacks[{i}].credential"), credential, problems);
        }
    }
}
