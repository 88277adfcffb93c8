//! The offline router: per-question latency over twenty agents for a single-intent, a
//! multi-intent and a no-match question; building it for twenty agents; and building it over
//! CLINC150's whole train split (ten domain agents, 15,000 examples).
//!
//! The twenty agents come from the CLINC150 train split bundled in `eval/clinc150` (two intents
//! from each of its ten domains, five utterances each), or from a synthetic set of the same shape
//! if the data is missing.

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_core::{AgentKind, AgentSpec, CredentialSpec, RouteDecision};
use switchboard_router::LexicalRouter;

const EXAMPLES: usize = 5;

fn spec(name: &str, description: String, examples: Vec<String>) -> Arc<AgentSpec> {
    Arc::new(AgentSpec {
        name: name.to_string(),
        kind: AgentKind::Tool,
        description,
        examples,
        credential: CredentialSpec::default(),
        allowed_roles: None,
        timeout_ms: None,
        connection: None,
        settings: serde_json::Value::Null,
        tool_roles: None,
        guardrails: None,
    })
}

/// Twenty agents and three questions: single-intent, multi-intent, no match.
struct Workload {
    source: &'static str,
    agents: Vec<Arc<AgentSpec>>,
    single: String,
    multi: String,
    none: String,
}

fn clinc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../eval/clinc150")
}

/// Ten domain agents over CLINC150's whole train split, as in `tests/clinc.rs`.
fn clinc_domains() -> Option<Vec<Arc<AgentSpec>>> {
    let dir = clinc_dir();
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("data_full.json")).ok()?).ok()?;
    let domains: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&std::fs::read(dir.join("domains.json")).ok()?).ok()?;
    let mut agents = Vec::new();
    for (domain, intents) in &domains {
        let examples: Vec<String> = data["train"]
            .as_array()?
            .iter()
            .filter(|p| p[1].as_str().is_some_and(|i| intents.iter().any(|x| x == i)))
            .filter_map(|p| Some(p[0].as_str()?.to_string()))
            .collect();
        let names: Vec<String> = intents.iter().map(|i| i.replace('_', " ")).collect();
        agents.push(spec(domain, format!("{}: {}", domain.replace('_', " "), names.join(", ")), examples));
    }
    Some(agents)
}

fn clinc() -> Option<Workload> {
    let dir = clinc_dir();
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("data_full.json")).ok()?).ok()?;
    let domains: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&std::fs::read(dir.join("domains.json")).ok()?).ok()?;
    let pairs = |split: &str| -> Vec<(String, String)> {
        data[split]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
            .collect()
    };
    let (train, test) = (pairs("train"), pairs("test"));
    let mut agents = Vec::new();
    for (domain, intents) in &domains {
        for intent in intents.iter().take(2) {
            let examples =
                train.iter().filter(|(_, i)| i == intent).take(EXAMPLES).map(|(t, _)| t.clone()).collect();
            let description = format!("{} ({domain} assistant)", intent.replace('_', " "));
            agents.push(spec(intent, description, examples));
        }
    }
    let first_test = |intent: &str| test.iter().find(|(_, i)| i == intent).map(|(t, _)| t.clone());
    let single = first_test(&agents[0].name)?;
    let multi = format!("{}, and {}", first_test(&agents[3].name)?, first_test(&agents[14].name)?);
    Some(Workload {
        source: "CLINC150",
        agents,
        single,
        multi,
        none: "recite a sonnet about quantum marmalade".into(),
    })
}

fn synthetic() -> Workload {
    let topics = [
        ("payroll", "salary payslip bonus withholding"),
        ("benefits", "health dental vision insurance"),
        ("travel", "flight hotel booking itinerary"),
        ("expenses", "receipt reimbursement mileage claim"),
        ("it_help", "laptop password vpn printer"),
        ("security", "phishing badge incident breach"),
        ("facilities", "desk parking room heating"),
        ("legal", "contract nda clause signature"),
        ("procurement", "vendor purchase order quote"),
        ("sales", "revenue deals pipeline region"),
        ("marketing", "campaign leads newsletter brand"),
        ("support", "ticket outage escalation customer"),
        ("hiring", "candidate interview offer recruiter"),
        ("training", "course certification workshop learning"),
        ("finance", "budget forecast invoice ledger"),
        ("audit", "access log denied request"),
        ("inventory", "stock warehouse shipment sku"),
        ("compliance", "gdpr retention policy regulation"),
        ("engineering", "deploy build release incident"),
        ("analytics", "dashboard metric report trend"),
    ];
    let agents = topics
        .iter()
        .map(|(name, words)| {
            let words: Vec<&str> = words.split(' ').collect();
            let description = format!("{name} assistant: questions about {}.", words.join(", "));
            let examples = (0..EXAMPLES)
                .map(|i| {
                    format!(
                        "what is the status of my {} {}",
                        words[i % words.len()],
                        words[(i + 1) % words.len()]
                    )
                })
                .collect();
            spec(name, description, examples)
        })
        .collect();
    Workload {
        source: "synthetic",
        agents,
        single: "when will my payslip show the bonus".into(),
        multi: "book a hotel for the trip, and reset my vpn password".into(),
        none: "recite a sonnet about quantum marmalade".into(),
    }
}

fn bench(c: &mut Criterion) {
    let w = clinc().unwrap_or_else(synthetic);
    let router = LexicalRouter::new(&w.agents, LexicalRouter::DEFAULT_THRESHOLD);
    let show = |q: &str| match router.decide(q, &[]) {
        Ok(RouteDecision::Agents { calls }) => {
            calls.iter().map(|c| format!("{}({:.2})", c.agent, c.score)).collect::<Vec<_>>().join(" + ")
        }
        Ok(RouteDecision::Clarify { candidates, .. }) => format!("clarify {candidates:?}"),
        Err(e) => format!("error: {e}"),
    };
    eprintln!("agents: {} from {}", w.agents.len(), w.source);
    for q in [&w.single, &w.multi, &w.none] {
        eprintln!("  {q:?} -> {}", show(q));
    }

    let mut group = c.benchmark_group("lexical_router");
    if let Some(domains) = clinc_domains() {
        let examples: usize = domains.iter().map(|a| a.examples.len()).sum();
        eprintln!("build_clinc_train: {} agents, {examples} examples", domains.len());
        group.sample_size(10);
        group.bench_function("build_clinc_train_15000_examples", |b| {
            b.iter(|| LexicalRouter::new(black_box(&domains), LexicalRouter::DEFAULT_THRESHOLD))
        });
        group.sample_size(100);
    }
    group.bench_function("new_20_agents", |b| {
        b.iter(|| LexicalRouter::new(black_box(&w.agents), LexicalRouter::DEFAULT_THRESHOLD))
    });
    for (name, q) in
        [("route_single_intent", &w.single), ("route_multi_intent", &w.multi), ("route_no_match", &w.none)]
    {
        group.bench_function(name, |b| b.iter(|| router.decide(black_box(q), &[])));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
