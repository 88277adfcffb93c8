//! What the offline router learns about each agent beyond its description and examples: the
//! titles and headings of a knowledge agent's documents, and the vocabulary of a genie space's
//! semantic layer (entity names, measures, dimensions and their synonyms and values). Gathered
//! once at assembly, so "opportunities" reaches the sales space and a question about a document
//! the policies agent holds reaches it, though neither description uses those words.

use std::path::Path;
use std::sync::Arc;
use switchboard_agents::{genie, knowledge};
use switchboard_core::{AgentKind, AgentSpec, Result};

/// `(agent name, topics)` for every agent that has any. Blocking file I/O, for start-up.
pub(crate) fn topics(agents: &[Arc<AgentSpec>], base_dir: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for spec in agents {
        let topics = match spec.kind {
            AgentKind::Knowledge => knowledge::topics(&knowledge::Settings::from_spec(spec, base_dir)?)?,
            // A Databricks Genie space keeps its semantics at Databricks: nothing to learn here.
            AgentKind::Genie if genie::engine(spec)? == genie::Engine::Databricks => Vec::new(),
            // A space on another engine (a Databricks Genie space) has no local semantic layer
            // to learn from; its settings are validated with the rest of the configuration.
            AgentKind::Genie => {
                genie::Settings::from_spec(spec, base_dir).map(|s| genie_topics(&s)).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        if !topics.is_empty() {
            out.push((spec.name.clone(), topics));
        }
    }
    Ok(out)
}

/// The words a genie space's semantic layer answers to. Each is its own short text, so the
/// router learns "territory" and "profitability" as sales words without inventing sentences.
fn genie_topics(settings: &genie::Settings) -> Vec<String> {
    let mut out: Vec<String> = settings.views.clone();
    if let Some(entity) = &settings.entity {
        out.extend(entity.names.iter().cloned());
    }
    for m in &settings.measures {
        out.push(m.name.replace('_', " "));
        out.extend(m.synonyms.iter().cloned());
    }
    for d in &settings.dimensions {
        out.push(d.name.replace('_', " "));
        out.extend(d.synonyms.iter().cloned());
        out.extend(d.values.iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knowledge_titles_and_headings_and_genie_vocabulary_become_topics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docs = dir.path().join("docs");
        std::fs::create_dir_all(&docs).expect("docs");
        std::fs::write(
            docs.join("a.md"),
            "# Lodging Rules\n\n## Nightly Caps\ntext\n```\n# not a heading\n```\n",
        )
        .expect("a.md");
        std::fs::write(docs.join("b.md"), "# Other\n## nightly caps\n").expect("b.md");
        let mut spec = AgentSpec::new("handbook", AgentKind::Knowledge, "Docs.");
        spec.settings = serde_json::json!({"path": "docs"});
        let got = topics(&[Arc::new(spec)], dir.path()).expect("topics");
        assert_eq!(
            got,
            vec![(
                "handbook".to_string(),
                vec!["Lodging Rules".into(), "Nightly Caps".into(), "Other".into()]
            )]
        );

        let settings: genie::Settings = serde_json::from_value(serde_json::json!({
            "database": "x.db",
            "views": ["deals"],
            "entity": {"view": "deals", "names": ["opportunities"], "key_columns": ["id"], "columns": ["id"], "default_measure": "revenue"},
            "measures": [{"name": "avg_margin", "sql": "AVG(m)", "synonyms": ["profitability"]}],
            "dimensions": [{"name": "region", "synonyms": ["territory"], "values": ["West"]}]
        }))
        .expect("settings");
        assert_eq!(
            genie_topics(&settings),
            ["deals", "opportunities", "avg margin", "profitability", "region", "territory", "West"]
        );
    }

    /// A knowledge agent over the tau2 banking documents (`eval/tau2-banking`, MIT) whose
    /// description names none of their subjects: only its documents' titles and headings can
    /// bring banking questions to it.
    #[test]
    fn a_knowledge_agents_documents_bring_questions_about_them_to_it() {
        use switchboard_core::RouteDecision;
        use switchboard_router::LexicalRouter;
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let agent = |name: &str,
                     kind: AgentKind,
                     description: &str,
                     examples: &[&str],
                     settings: serde_json::Value| {
            let mut spec = AgentSpec::new(name, kind, description);
            spec.examples = examples.iter().map(|e| e.to_string()).collect();
            spec.settings = settings;
            Arc::new(spec)
        };
        let agents = vec![
            agent(
                "kb",
                AgentKind::Knowledge,
                "The support team's internal knowledge base.",
                &[],
                serde_json::json!({"path": "eval/tau2-banking/documents"}),
            ),
            agent(
                "sales",
                AgentKind::Tool,
                "Sales analytics over deals: revenue by region and rep.",
                &["total revenue by region", "top 5 deals by amount"],
                serde_json::Value::Null,
            ),
            agent(
                "policies",
                AgentKind::Tool,
                "Company policy handbook: travel, expenses, PTO.",
                &["what is the hotel limit?", "how many vacation days do I get?"],
                serde_json::Value::Null,
            ),
            agent(
                "tickets",
                AgentKind::Mcp,
                "Support tickets: list and open tickets.",
                &["show my open tickets"],
                serde_json::Value::Null,
            ),
        ];
        let topics = topics(&agents, &base).expect("topics");
        assert_eq!(topics.len(), 1, "only the knowledge agent has topics here");
        assert!(topics[0].1.len() > 500, "{} titles and headings", topics[0].1.len());
        let plain = LexicalRouter::new(&agents, LexicalRouter::DEFAULT_THRESHOLD);
        let informed = LexicalRouter::with_topics(&agents, &topics, LexicalRouter::DEFAULT_THRESHOLD);
        let to = |router: &LexicalRouter, q: &str| match router.decide(q, &[]).expect("routes") {
            RouteDecision::Agents { calls } => {
                calls.iter().map(|c| c.agent.clone()).collect::<Vec<_>>().join("+")
            }
            RouteDecision::Clarify { .. } => "clarify".to_string(),
        };
        for q in [
            "how is interest calculated on a Platinum account?",
            "can I send an international payment with SWIFT?",
            "what perks come with the Diamond Elite card?",
            "my payment didn't go through, what now?",
            "how do I downgrade to a card without an annual fee?",
        ] {
            assert_ne!(to(&plain, q), "kb", "{q}: the description alone says nothing about it");
            assert_eq!(to(&informed, q), "kb", "{q}");
        }
    }
}
