//! Routing on CLINC150 (CC BY 3.0, bundled in `eval/clinc150`) as ten domain agents: each agent's
//! examples are the TRAIN split's utterances of its domain's fifteen intents, its description the
//! domain and intent names. Scored on the TEST split: in-scope questions must reach their
//! domain's agent, out-of-scope ones (`oos_test`) must get a clarification.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_core::{AgentKind, AgentSpec, RouteDecision};
use switchboard_router::LexicalRouter;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../eval/clinc150")
}

/// `[utterance, intent]` pairs of one split.
fn split(data: &serde_json::Value, name: &str) -> Vec<(String, String)> {
    data[name]
        .as_array()
        .expect("split is an array")
        .iter()
        .map(|item| {
            (item[0].as_str().expect("utterance").to_string(), item[1].as_str().expect("intent").to_string())
        })
        .collect()
}

struct Clinc {
    data: serde_json::Value,
    /// Intent → domain.
    domain_of: HashMap<String, String>,
    agents: Vec<Arc<AgentSpec>>,
}

fn clinc() -> Clinc {
    let dir = data_dir();
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("data_full.json")).expect("data_full.json"))
            .expect("JSON");
    let domains: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&std::fs::read(dir.join("domains.json")).expect("domains.json"))
            .expect("JSON");
    let domain_of: HashMap<String, String> =
        domains.iter().flat_map(|(d, intents)| intents.iter().map(move |i| (i.clone(), d.clone()))).collect();
    let mut train: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (text, intent) in split(&data, "train") {
        train.entry(domain_of[&intent].as_str()).or_default().push(text);
    }
    let agents = domains
        .iter()
        .map(|(domain, intents)| {
            let names: Vec<String> = intents.iter().map(|i| i.replace('_', " ")).collect();
            let description = format!("{}: {}", domain.replace('_', " "), names.join(", "));
            let examples: Vec<&str> = train[domain.as_str()].iter().map(String::as_str).collect();
            common::spec(domain, AgentKind::Tool, &description, &examples)
        })
        .collect();
    Clinc { data, domain_of, agents }
}

/// In-scope accuracy and out-of-scope recall of `router` on a split pair.
fn score(router: &LexicalRouter, c: &Clinc, in_scope: &str, out_of_scope: &str) -> (f64, f64) {
    let test = split(&c.data, in_scope);
    let right = test
        .iter()
        .filter(|(text, intent)| match router.decide(text, &[]).expect("routes") {
            RouteDecision::Agents { calls } => calls.len() == 1 && calls[0].agent == c.domain_of[intent],
            RouteDecision::Clarify { .. } => false,
        })
        .count();
    let oos = split(&c.data, out_of_scope);
    let asked = oos
        .iter()
        .filter(|(text, _)| {
            matches!(router.decide(text, &[]).expect("routes"), RouteDecision::Clarify { .. })
        })
        .count();
    (right as f64 / test.len() as f64, asked as f64 / oos.len() as f64)
}

#[test]
fn clinc150_ten_domains_at_the_default_threshold() {
    let c = clinc();
    assert_eq!(c.agents.len(), 10);
    let router = LexicalRouter::new(&c.agents, LexicalRouter::DEFAULT_THRESHOLD);
    // `CLINC_SWEEP=1` prints the trade-off around the default, on validation and test.
    if std::env::var_os("CLINC_SWEEP").is_some() {
        for t in [0.12, 0.14, 0.16, 0.17, 0.18, 0.19, 0.2, 0.25, 0.3] {
            let r = LexicalRouter::new(&c.agents, t);
            let (v_in, v_oos) = score(&r, &c, "val", "oos_val");
            let (t_in, t_oos) = score(&r, &c, "test", "oos_test");
            println!("threshold {t:.2}: val {v_in:.3}/{v_oos:.3} test {t_in:.3}/{t_oos:.3}");
        }
    }
    let (in_scope, oos) = score(&router, &c, "test", "oos_test");
    println!(
        "CLINC150, ten domain agents, threshold {}: in-scope {:.1}% of 4,500, out-of-scope recall {:.1}% of 1,000",
        LexicalRouter::DEFAULT_THRESHOLD,
        in_scope * 100.0,
        oos * 100.0
    );
    assert!(in_scope >= 0.95, "in-scope accuracy {in_scope:.3}");
    assert!(oos >= 0.75, "out-of-scope recall {oos:.3}");
}

/// What the LLM router's shortlist costs: of the in-scope test questions it narrows (five of the
/// ten agents offered), the share whose right agent is still on offer. The others are offered
/// every agent, so they lose nothing.
#[test]
fn clinc150_a_shortlist_of_five_keeps_the_right_agent() {
    let c = clinc();
    let router = LexicalRouter::new(&c.agents, LexicalRouter::DEFAULT_THRESHOLD);
    let test = split(&c.data, "test");
    let (mut narrowed, mut kept) = (0usize, 0usize);
    for (text, intent) in &test {
        if let Some(names) = router.shortlist(text, &[], 5) {
            assert!(names.len() >= 5 && names.len() < c.agents.len(), "{text}: {names:?}");
            narrowed += 1;
            kept += usize::from(names.contains(&c.domain_of[intent]));
        }
    }
    let recall = kept as f64 / narrowed as f64;
    println!(
        "CLINC150, shortlist of 5 of 10 agents: {narrowed} of {} in-scope questions narrowed, the right agent kept for {:.2}%",
        test.len(),
        recall * 100.0
    );
    assert!(narrowed as f64 >= 0.9 * test.len() as f64, "narrowed only {narrowed}");
    assert!(recall >= 0.99, "the right agent kept for {recall:.4}");
}
