//! Which limits apply to a hop: the configured rates turned into the marks one hop must fit.

use super::Mark;
use crate::HopCall;
use serde::Deserialize;
use std::collections::BTreeMap;
use switchboard_core::{HexId, HopKind};

/// A rate: queries per minute, tokens per minute, or both. `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Queries (requests at the endpoint, user and group levels; calls at the agent and
    /// connection levels) per minute.
    pub qpm: Option<u64>,
    /// LLM tokens (prompt and completion) per minute.
    pub tpm: Option<u64>,
}

impl Rate {
    /// Whether it limits anything.
    pub fn is_set(&self) -> bool {
        self.qpm.is_some() || self.tpm.is_some()
    }
}

/// Every configured limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitRules {
    /// Calls per minute per caller and agent (`[limits] requests_per_minute`); 0 is unlimited.
    pub per_caller_agent: u64,
    /// The whole endpoint: every request of every caller.
    pub endpoint: Rate,
    /// Each user (or service principal) by default.
    pub user: Rate,
    /// Overrides for named users and service principals (email or subject), instead of `user`.
    pub users: BTreeMap<String, Rate>,
    /// Each group: all its members' requests together.
    pub groups: BTreeMap<String, Rate>,
    /// Each agent: every caller's calls to it together (e.g. Genie's 5 per minute).
    pub agents: BTreeMap<String, Rate>,
    /// Each connection: every call made through it (a partner API's quota).
    pub connections: BTreeMap<String, Rate>,
}

/// Which side of the call marks are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the call: queries are counted and token budgets checked.
    Before,
    /// After an LLM call: its tokens are charged.
    After(u64),
}

impl LimitRules {
    /// Whether any limit is configured.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The marks `hop` must fit (or, after an LLM call, is charged).
    pub(crate) fn marks(&self, hop: &HopCall, phase: Phase) -> Vec<Mark> {
        let caller = &hop.ctx.caller;
        let request = hop.ctx.request_id.as_str();
        let span = hop.span_id.hex();
        let agent = hop.agent.name.as_str();
        let mut marks = Vec::new();
        let (user_rate, user_label) =
            match self.users.get(caller.email()).or_else(|| self.users.get(caller.subject())) {
                Some(rate) => (*rate, format!("user {} (override)", caller.email())),
                None => (self.user, format!("user {}", caller.email())),
            };
        // The request-level levels, each with its key and how it is named.
        let mut levels: Vec<(Rate, String, String)> = vec![
            (self.endpoint, "endpoint".into(), "the endpoint".into()),
            (user_rate, format!("user:{}", caller.email()), user_label),
        ];
        for group in caller.groups() {
            if let Some(rate) = self.groups.get(group) {
                levels.push((*rate, format!("group:{group}"), format!("group {group}")));
            }
        }
        let agent_rate = self.agents.get(agent).copied().unwrap_or_default();
        match (phase, hop.target.kind) {
            (Phase::Before, HopKind::Agent) => {
                for (rate, key, label) in &levels {
                    if let Some(qpm) = rate.qpm {
                        marks.push(query(format!("q:{key}"), request, qpm, label));
                    }
                }
                if let Some(qpm) = agent_rate.qpm {
                    marks.push(query(format!("q:agent:{agent}"), &span, qpm, &format!("agent `{agent}`")));
                }
                if self.per_caller_agent > 0 {
                    let label = format!("{} to agent `{agent}`", caller.email());
                    let key = format!("q:caller-agent:{}:{agent}", caller.email());
                    marks.push(query(key, &span, self.per_caller_agent, &label));
                }
            }
            (Phase::Before, HopKind::Llm) => {
                levels.push((agent_rate, format!("agent:{agent}"), format!("agent `{agent}`")));
                for (rate, key, label) in &levels {
                    if let Some(tpm) = rate.tpm {
                        marks.push(Mark {
                            key: format!("t:{key}"),
                            member: span.clone(),
                            weight: 0,
                            limit: Some(tpm),
                            label: format!("{tpm} tokens per minute for {label}"),
                        });
                    }
                }
            }
            (Phase::After(tokens), HopKind::Llm) if tokens > 0 => {
                levels.push((agent_rate, format!("agent:{agent}"), format!("agent `{agent}`")));
                for (rate, key, label) in &levels {
                    if rate.tpm.is_some() {
                        marks.push(Mark {
                            key: format!("t:{key}"),
                            member: span.clone(),
                            weight: tokens,
                            limit: None,
                            label: label.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
        // Calls through a connection (not the agent hop around them) count against its quota.
        if phase == Phase::Before
            && hop.target.kind != HopKind::Agent
            && let Some(connection) = &hop.connection
            && let Some(qpm) = self.connections.get(connection.name()).and_then(|r| r.qpm)
        {
            let name = connection.name();
            marks.push(query(format!("q:connection:{name}"), &span, qpm, &format!("connection `{name}`")));
        }
        marks
    }
}

fn query(key: String, member: &str, qpm: u64, label: &str) -> Mark {
    Mark {
        key,
        member: member.to_string(),
        weight: 1,
        limit: Some(qpm),
        label: format!("{qpm} queries per minute for {label}"),
    }
}
