//! Routing accuracy on CLINC150 (CC BY 3.0), when the shared data set is present beside the repo.
//! Agents are built from the TRAIN split only; accuracy is measured on the TEST split.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_core::{AgentKind, AgentSpec, RouteDecision};
use switchboard_router::LexicalRouter;

fn data_path() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/clinc150/data_full.json");
    path.exists().then_some(path)
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

#[test]
fn clinc150_routing_accuracy_over_twenty_intents() {
    let Some(path) = data_path() else {
        eprintln!("CLINC150 not found beside the repository; skipping");
        return;
    };
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("readable")).expect("valid JSON");
    let domains: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&std::fs::read(path.with_file_name("domains.json")).expect("domains.json"))
            .expect("valid domains.json");
    // Two intents from each of the ten domains: twenty agents, the supervisor maximum.
    let intents: Vec<String> = domains.values().flat_map(|list| list.iter().take(2).cloned()).collect();
    assert_eq!(intents.len(), 20);

    let mut train: HashMap<&str, Vec<String>> = HashMap::new();
    for (text, intent) in split(&data, "train") {
        if let Some(name) = intents.iter().find(|i| **i == intent) {
            train.entry(name.as_str()).or_default().push(text);
        }
    }
    let agents: Vec<Arc<AgentSpec>> = intents
        .iter()
        .map(|intent| {
            let examples: Vec<&str> = train[intent.as_str()].iter().map(String::as_str).collect();
            common::spec(intent, AgentKind::Tool, &intent.replace('_', " "), &examples)
        })
        .collect();
    let router = LexicalRouter::new(&agents, LexicalRouter::DEFAULT_THRESHOLD);

    let test: Vec<(String, String)> =
        split(&data, "test").into_iter().filter(|(_, intent)| intents.contains(intent)).collect();
    let (mut top1, mut routed, mut routed_right, mut clarified) = (0, 0, 0, 0);
    for (text, intent) in &test {
        if router.scores(text)[0].0 == *intent {
            top1 += 1;
        }
        match router.decide(text, &[]).expect("routes") {
            RouteDecision::Agents { calls } => {
                routed += 1;
                if calls.len() == 1 && calls[0].agent == *intent {
                    routed_right += 1;
                }
            }
            RouteDecision::Clarify { .. } => clarified += 1,
        }
    }
    let n = test.len() as f64;
    let accuracy = top1 as f64 / n;
    let precision = routed_right as f64 / routed.max(1) as f64;
    println!(
        "CLINC150, 20 intents, {} test utterances: top-1 accuracy {accuracy:.3}; \
         routed {routed} with precision {precision:.3}; clarified {clarified} ({:.3})",
        test.len(),
        clarified as f64 / n,
    );
    assert_eq!(test.len(), 600);
    assert!(accuracy > 0.9, "top-1 accuracy {accuracy:.3}");
    assert!(precision > 0.95, "precision of confident routes {precision:.3}");
    assert!((clarified as f64 / n) < 0.25, "clarified too often");

    // Questions none of the twenty agents handles (CLINC's out-of-scope test set): the router
    // should mostly ask rather than guess.
    let oos = split(&data, "oos_test");
    let asked = oos
        .iter()
        .filter(|(text, _)| {
            matches!(router.decide(text, &[]).expect("routes"), RouteDecision::Clarify { .. })
        })
        .count();
    let asked_rate = asked as f64 / oos.len() as f64;
    println!("out-of-scope: clarified {asked} of {} ({asked_rate:.3})", oos.len());
    assert!(asked_rate > 0.85, "out-of-scope clarification rate {asked_rate:.3}");
}
