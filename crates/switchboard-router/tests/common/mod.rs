//! The demo's five agents as first shipped: a fixed copy, so these tests do not move when the
//! descriptions in `agents/*.toml` are improved (the demo's own eval set covers those).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use switchboard_core::{AgentKind, AgentSpec, CredentialMode, CredentialSpec};

/// An agent spec with routing fields set and everything else defaulted.
pub fn spec(name: &str, kind: AgentKind, description: &str, examples: &[&str]) -> Arc<AgentSpec> {
    Arc::new(AgentSpec {
        examples: examples.iter().map(|e| e.to_string()).collect(),
        credential: CredentialSpec { mode: CredentialMode::Automatic, ..CredentialSpec::default() },
        ..AgentSpec::new(name, kind, description)
    })
}

/// sales, policies, deal_desk, audit and tickets, as in the demo.
pub fn demo_agents() -> Vec<Arc<AgentSpec>> {
    vec![
        spec(
            "sales",
            AgentKind::Genie,
            "Sales analytics over the deals pipeline: revenue, bookings, deal counts, amounts and \
             margins by region, rep, account, stage and close date.",
            &[
                "total revenue by region",
                "top 5 deals by amount",
                "show the margin on the top 5 deals",
                "how many deals are in negotiation",
                "revenue by rep",
            ],
        ),
        spec(
            "policies",
            AgentKind::Knowledge,
            "Company policy handbook: travel, hotel and per diem limits, expenses, discounts, \
             security, remote work, procurement, gifts, data retention and PTO. Answers with \
             citations.",
            &[
                "What is the hotel limit in the travel policy?",
                "How do I file an expense report?",
                "what is the per diem",
            ],
        ),
        spec(
            "deal_desk",
            AgentKind::Tool,
            "Deal desk approval rules: who must approve a discount of a given percent on a deal \
             of a given amount.",
            &["who must approve a 25% discount on a 40000 deal?", "approval needed for 15% off a 120k deal"],
        ),
        spec(
            "audit",
            AgentKind::Tool,
            "Audit log: who did what, recent access by user, denied requests and agent calls.",
            &["who accessed the sales agent today?", "show recent denied requests"],
        ),
        spec(
            "tickets",
            AgentKind::Mcp,
            "The caller's own support tickets: open, list and update support tickets.",
            &["show my open tickets", "open a ticket about my laptop"],
        ),
    ]
}
