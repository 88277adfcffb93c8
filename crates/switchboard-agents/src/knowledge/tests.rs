//! End-to-end tests of the knowledge kind over real tantivy indexes in temporary folders.

use super::*;
use serde_json::{Value, json};
use std::fs;
use std::time::Duration;
use switchboard_core::{AgentKind, AuditDecision, AuthMethod, Caller, CredentialSpec, SpanKind, SpanStatus};
use switchboard_govern::Gateway;
use switchboard_govern::layers::StandardCredentials;
use switchboard_store::memory::MemorySink;
use switchboard_testkit::llm::{Script, ScriptedLlm};
use tempfile::TempDir;

fn spec(name: &str, settings: Value) -> Arc<AgentSpec> {
    Arc::new(AgentSpec {
        name: name.into(),
        kind: AgentKind::Knowledge,
        description: "Company policies: travel, expenses.".into(),
        examples: Vec::new(),
        credential: CredentialSpec::default(),
        allowed_roles: None,
        timeout_ms: None,
        connection: None,
        settings,
        tool_roles: None,
        guardrails: None,
    })
}

fn gateway() -> (Arc<MemorySink>, Arc<Gateway>) {
    let sink = Arc::new(MemorySink::new());
    let gateway = Arc::new(
        Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp"))).build(),
    );
    (sink, gateway)
}

fn ctx() -> RunContext {
    RunContext::new(
        Caller::new("alice", "alice@example.com", vec!["west_sales".into()], AuthMethod::Development),
        Duration::from_secs(10),
    )
}

fn ask(q: &str) -> AgentInput {
    AgentInput::new(q)
}

const TRAVEL: &str = "# Travel Policy\n\nBook trips in the portal.\n\n\
## Class of Service\n\nEconomy class is standard for flights.\n\n\
## Hotels and Lodging\n\nHotel stays are reimbursed up to $250 per night in most cities and \
$350 per night in high-cost cities. Upgrades are personal expenses.\n\n\
## Per Diem\n\nThe meal per diem is $75 per day.\n";

/// A folder with one document of each supported format.
fn corpus() -> TempDir {
    let dir = TempDir::new().unwrap();
    fs::write(dir.path().join("travel.md"), TRAVEL).unwrap();
    fs::write(
        dir.path().join("security-notes.txt"),
        "Passwords must be at least 14 characters.\n\nMulti-factor authentication is required \
         for email and VPN.",
    )
    .unwrap();
    fs::write(
        dir.path().join("pto.json"),
        json!({"id": "doc_pto_001", "title": "Paid Time Off",
               "content": "## Vacation\n\nEmployees earn 20 vacation days per year.\n\n## Sick Leave\n\nTen sick days per year."})
        .to_string(),
    )
    .unwrap();
    fs::write(
        dir.path().join("batch.json"),
        json!([
            {"id": "doc_gifts", "title": "Gifts", "text": "Gifts above $100 must be declined."},
            {"title": "Retention", "content": "Email is kept for 3 years."}
        ])
        .to_string(),
    )
    .unwrap();
    fs::write(dir.path().join("ignored.csv"), "hotel,limit\n").unwrap();
    dir
}

fn agent(name: &str, docs: &Path, base: &Path, llm: Option<LlmClient>) -> KnowledgeAgent {
    let (_, gw) = gateway();
    let spec = spec(name, json!({"path": docs, "top_k": 3}));
    KnowledgeAgent::new(spec.clone(), gw.egress(spec), base, llm).unwrap()
}

#[tokio::test]
async fn indexes_markdown_text_and_json_and_cites_the_right_passage() {
    let docs = corpus();
    let base = TempDir::new().unwrap();
    let a = agent("kb", docs.path(), base.path(), None);
    let info = a.index_info();
    assert!(info.rebuilt);
    assert_eq!(info.documents, 5, "csv ignored; the JSON array holds two documents");
    assert_eq!(info.dir, base.path().join(".index").join("kb"));

    let cases = [
        ("What is the hotel limit in the travel policy?", "travel", "Travel Policy"),
        ("how long must passwords be", "security-notes", "security-notes"),
        ("How many vacation days do I get?", "doc_pto_001", "Paid Time Off"),
        ("gift declined", "doc_gifts", "Gifts"),
        ("how long is email kept", "batch#2", "Retention"),
    ];
    for (q, id, title) in cases {
        let out = a.invoke(&ctx(), &ask(q)).await.unwrap();
        let top = &out.citations[0];
        assert_eq!((top.id.as_str(), top.title.as_str()), (id, title), "{q}");
    }

    let out = a.invoke(&ctx(), &ask("What is the hotel limit in the travel policy?")).await.unwrap();
    assert_eq!(
        out.citations[0].snippet,
        "Hotel stays are reimbursed up to $250 per night in most cities and $350 per night in \
         high-cost cities. Upgrades are personal expenses.",
        "the cited passage is the lodging section, not the whole document"
    );
    assert!(
        out.text.starts_with(
            "Hotel stays are reimbursed up to $250 per night in most cities and $350 per night \
             in high-cost cities. [1]"
        ),
        "{}",
        out.text
    );
    assert!(out.text.contains("Sources:\n[1] Travel Policy › Hotels and Lodging (travel)"), "{}", out.text);
    assert!(out.citations.len() <= 3);
    assert!(out.citations.iter().all(|c| c.snippet.chars().count() <= 310));
}

#[test]
fn unchanged_folder_reuses_the_index_and_changes_rebuild_it() {
    let docs = corpus();
    let base = TempDir::new().unwrap();
    let manifest = base.path().join(".index/kb").join(index::MANIFEST_FILE);
    assert!(agent("kb", docs.path(), base.path(), None).index_info().rebuilt);
    let built_at = fs::metadata(&manifest).unwrap().modified().unwrap();

    let again = agent("kb", docs.path(), base.path(), None);
    assert!(!again.index_info().rebuilt);
    assert_eq!(again.index_info().documents, 5);
    assert_eq!(
        fs::metadata(&manifest).unwrap().modified().unwrap(),
        built_at,
        "reusing must not rewrite the index"
    );

    // Edit: new content is searchable after the rebuild.
    fs::write(docs.path().join("travel.md"), format!("{TRAVEL}\n## Trains\n\nRail passes are reimbursed.\n"))
        .unwrap();
    let edited = agent("kb", docs.path(), base.path(), None);
    assert!(edited.index_info().rebuilt);
    let hits = edited.index.search("rail passes", 3).unwrap().hits;
    assert_eq!(hits[0].passage.section, "Trains");

    // Removal drops the document.
    fs::remove_file(docs.path().join("pto.json")).unwrap();
    let removed = agent("kb", docs.path(), base.path(), None);
    assert!(removed.index_info().rebuilt);
    assert_eq!(removed.index_info().documents, 4);
    let hits = removed.index.search("vacation days", 3).unwrap().hits;
    assert!(hits.iter().all(|h| h.passage.doc_id != "doc_pto_001"));

    // A different passage size is a different index.
    let (_, gw) = gateway();
    let s = spec("kb", json!({"path": docs.path(), "passage_words": 60}));
    let resized = KnowledgeAgent::new(s.clone(), gw.egress(s), base.path(), None).unwrap();
    assert!(resized.index_info().rebuilt);
    assert!(agent("kb", docs.path(), base.path(), None).index_info().rebuilt, "and back again");
}

#[test]
fn an_index_inside_the_documents_folder_does_not_change_its_fingerprint() {
    let docs = corpus();
    assert!(agent("kb", Path::new("."), docs.path(), None).index_info().rebuilt);
    assert!(docs.path().join(".index/kb").is_dir());
    assert!(!agent("kb", Path::new("."), docs.path(), None).index_info().rebuilt);
}

#[tokio::test]
async fn punctuation_heavy_queries_never_fail() {
    let docs = corpus();
    let base = TempDir::new().unwrap();
    let a = agent("kb", docs.path(), base.path(), None);
    for q in [
        "hotel: \"limit\" (travel) AND OR NOT -- [[*]] ^~ \\ 'x'",
        "title:hotel^20 +limit -travel~2 \"unclosed",
        "HOTEL!!! limit??? $$$ 250/night; {travel} <policy>",
        "hôtel lîmit",
    ] {
        let out = a.invoke(&ctx(), &ask(q)).await.unwrap();
        assert_eq!(out.citations[0].id, "travel", "{q}");
    }
    for q in ["???!!! ... ()", "the is of a what"] {
        let out = a.invoke(&ctx(), &ask(q)).await.unwrap();
        assert!(out.citations.is_empty(), "{q}");
        assert!(out.text.starts_with("I found nothing in kb's documents"), "{q}");
    }
    let err = a.invoke(&ctx(), &ask("   ")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
}

#[tokio::test]
async fn no_results_is_a_plain_answer_without_citations() {
    let docs = corpus();
    let base = TempDir::new().unwrap();
    let a = agent("policies", docs.path(), base.path(), None);
    let out = a.invoke(&ctx(), &ask("quantum chromodynamics lattice")).await.unwrap();
    assert_eq!(out.text, "I found nothing in policies's documents about \"quantum chromodynamics lattice\".");
    assert!(out.citations.is_empty());
}

#[test]
fn bad_settings_are_config_errors_naming_the_field() {
    let base = TempDir::new().unwrap();
    fs::write(base.path().join("file.md"), "# x").unwrap();
    let err = |settings: Value| {
        let e = Settings::from_spec(&spec("kb", settings), base.path()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config);
        e.message
    };
    let m = err(json!({"path": "./x"}));
    assert!(m.starts_with("knowledge.path: folder ./x does not exist (resolved to "), "{m}");
    assert!(err(json!({"path": "file.md"})).contains("is not a folder"));
    assert!(err(json!({"path": ""})).starts_with("knowledge.path:"));
    assert!(err(json!({"path": ".", "tpo_k": 3})).contains("unknown field `tpo_k`"));
    assert!(err(json!({"top_k": 3})).contains("missing field `path`"));
    assert!(err(json!({"path": ".", "top_k": 0})).starts_with("knowledge.top_k:"));
    assert!(err(json!({"path": ".", "top_k": "3"})).contains("invalid type"));
    assert!(err(json!({"path": ".", "passage_words": 5})).starts_with("knowledge.passage_words:"));
    assert!(err(Value::Null).contains("[knowledge]"));

    let ok = Settings::from_spec(&spec("kb", json!({"path": "."})), base.path()).unwrap();
    assert_eq!((ok.path, ok.top_k), (base.path().join("."), 3));

    let (_, gw) = gateway();
    let s = spec("../escape", json!({"path": "."}));
    let e = KnowledgeAgent::new(s.clone(), gw.egress(s), base.path(), None).err().unwrap();
    assert!(e.message.starts_with("name:"), "{}", e.message);
}

#[test]
fn a_malformed_json_document_is_reported_with_its_file() {
    let docs = corpus();
    fs::write(docs.path().join("broken.json"), "{\"id\": ").unwrap();
    let base = TempDir::new().unwrap();
    let (_, gw) = gateway();
    let s = spec("kb", json!({"path": docs.path()}));
    let e = KnowledgeAgent::new(s.clone(), gw.egress(s), base.path(), None).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.contains("broken.json") && e.message.contains("not valid JSON"));
}

#[tokio::test]
async fn retrieval_is_a_governed_hop_with_span_and_audit_row() {
    let docs = corpus();
    let base = TempDir::new().unwrap();
    let (sink, gw) = gateway();
    let s = spec("policies", json!({"path": docs.path()}));
    let a = KnowledgeAgent::new(s.clone(), gw.egress(s), base.path(), None).unwrap();
    let c = ctx();
    let out = a.invoke(&c, &ask("hotel limit and per diem")).await.unwrap();
    assert!(out.citations.len() >= 2);

    let spans = sink.spans();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "retrieve policies");
    assert_eq!(span.kind, SpanKind::Retriever);
    assert_eq!(span.status, SpanStatus::Ok);
    assert_eq!(span.request_id, c.request_id.as_str());
    assert_eq!(span.attributes["switchboard.retrieval.hits"], json!(out.citations.len()));
    assert_eq!(span.attributes["switchboard.caller.email"], json!("alice@example.com"));
    let audit = sink.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].hop, HopKind::Retrieval);
    assert_eq!(audit[0].decision, AuditDecision::Allowed);
    assert_eq!(audit[0].principal, "switchboard-sp");
    assert_eq!(audit[0].agent, "policies");
    assert_eq!(audit[0].span_id, span.span_id);
}

#[tokio::test]
async fn a_denied_caller_never_reaches_the_index() {
    let docs = corpus();
    let base = TempDir::new().unwrap();
    let (sink, gw) = gateway();
    let mut restricted = (*spec("policies", json!({"path": docs.path()}))).clone();
    restricted.allowed_roles = Some(vec!["admin".into()]);
    let s = Arc::new(restricted);
    let a = KnowledgeAgent::new(s.clone(), gw.egress(s), base.path(), None).unwrap();
    let err = a.invoke(&ctx(), &ask("hotel limit")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Denied);
    let audit = sink.audit();
    assert_eq!(audit[0].decision, AuditDecision::AccessDenied);
    assert!(!sink.spans()[0].attributes.contains_key("switchboard.retrieval.hits"), "the search did not run");
}

fn demo_docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/policies")
}

#[tokio::test]
async fn demo_policies_answer_their_example_questions() {
    let base = TempDir::new().unwrap();
    let a = agent("policies", &demo_docs(), base.path(), None);
    assert!(a.index_info().documents >= 8);

    let out = a.invoke(&ctx(), &ask("What is the hotel limit in the travel policy?")).await.unwrap();
    assert_eq!(out.citations[0].id, "travel");
    assert_eq!(out.citations[0].title, "Travel Policy");
    let first = out.text.lines().next().unwrap();
    assert!(first.contains("$250 per night") && first.contains("$350 per night"), "{}", out.text);
    assert!(out.text.contains("[1] Travel Policy › Hotels and Lodging (travel)"));

    for (q, id) in [
        ("How do I file an expense report?", "expenses"),
        ("What is the meal per diem when traveling?", "travel"),
        ("Can I fly business class on a long flight?", "travel"),
        ("Who must approve a 25% discount?", "discounts"),
        ("How many vacation days do I get per year?", "pto"),
        ("Can I accept a gift from a supplier?", "gifts"),
        ("How long do we keep financial records?", "data-retention"),
        ("Do I need three quotes for a software purchase?", "procurement"),
        ("What is the home office stipend for remote work?", "remote-work"),
        ("Is MFA required for VPN?", "security"),
        ("What should I do if I lose my laptop?", "security"),
        ("What is the limit for client dinners?", "gifts"),
    ] {
        let out = a.invoke(&ctx(), &ask(q)).await.unwrap();
        assert_eq!(out.citations[0].id, id, "{q}\n{}", out.text);
    }

    // Answers drawn from lists quote the list's lead-in with the items that answer.
    for (q, expected) in [
        (
            "How long do we keep financial records?",
            "Financial records, invoices, tax records and expense reports: 7 years",
        ),
        ("How long are emails kept?", "records are kept for these periods: Email: 3 years"),
        ("Who must approve a 25% discount?", "Over 20% and up to 30%: the VP of Sales must approve."),
    ] {
        let out = a.invoke(&ctx(), &ask(q)).await.unwrap();
        let first = out.text.lines().next().unwrap();
        assert!(first.contains(expected), "{q}\n{}", out.text);
    }
}

/// The scripted model (`switchboard_testkit::llm`) answering `reply`, or failing with 500 when
/// `reply` is `None`; it records the request bodies it saw.
async fn fake_llm(reply: Option<&'static str>) -> ScriptedLlm {
    let script = match reply {
        Some(text) => Script::answering(&json!({"role": "assistant", "content": text})),
        None => Script::failing(500, "boom"),
    };
    ScriptedLlm::start(script).await
}

#[tokio::test]
async fn with_an_llm_the_answer_is_synthesized_from_the_numbered_passages() {
    let fake = fake_llm(Some("Hotels are capped at $250 per night [1].")).await;
    let docs = corpus();
    let base = TempDir::new().unwrap();
    let (sink, gw) = gateway();
    let s = spec("policies", json!({"path": docs.path(), "top_k": 2}));
    let llm = LlmClient::new(gw.egress(s.clone()), fake.base_url(), "fake-model");
    let a = KnowledgeAgent::new(s.clone(), gw.egress(s), base.path(), Some(llm)).unwrap();
    let input = AgentInput {
        history: vec![
            Message::user("What is the per diem?"),
            Message::assistant("$75 per day [1].", Some("policies".into())),
        ],
        ..AgentInput::new("What is the hotel limit per night?")
    };
    let out = a.invoke(&ctx(), &input).await.unwrap();

    assert!(
        out.text
            .starts_with("Hotels are capped at $250 per night [1].\n\nSources:\n[1] Travel Policy › Hotels and Lodging (travel)"),
        "{}",
        out.text
    );
    assert_eq!(out.citations.len(), 2);
    assert_eq!(out.citations[0].id, "travel");
    // The passages' texts are set aside while the model writes and read back for the snippets.
    assert!(out.citations[0].snippet.contains("$250 per night"), "{:?}", out.citations[0]);

    let body = fake.requests().last().cloned().expect("the LLM was called");
    assert_eq!(body["model"], "fake-model");
    assert_eq!(body["temperature"], json!(0.0));
    let messages = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert!(messages[0]["content"].as_str().unwrap().contains("[1]"));
    let prompt = messages[3]["content"].as_str().unwrap();
    assert!(
        prompt.contains(
            "[1] Travel Policy › Hotels and Lodging (travel)\nHotel stays are reimbursed up to $250 per night"
        ),
        "{prompt}"
    );
    assert!(prompt.contains("\n[2] "), "{prompt}");
    assert!(prompt.ends_with("Question: What is the hotel limit per night?"));

    let names: Vec<String> = sink.spans().iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, ["retrieve policies", "chat fake-model"]);
}

#[tokio::test]
async fn a_failing_llm_degrades_to_the_extractive_answer() {
    let fake = fake_llm(None).await;
    let docs = corpus();
    let base = TempDir::new().unwrap();
    let (sink, gw) = gateway();
    let s = spec("policies", json!({"path": docs.path()}));
    let llm = LlmClient::new(gw.egress(s.clone()), fake.base_url(), "fake-model");
    let a = KnowledgeAgent::new(s.clone(), gw.egress(s), base.path(), Some(llm)).unwrap();
    let out = a.invoke(&ctx(), &ask("hotel limit")).await.unwrap();
    assert!(!fake.requests().is_empty());
    assert!(out.text.starts_with("Hotel stays are reimbursed up to $250"), "{}", out.text);
    assert_eq!(out.citations[0].id, "travel");
    let audit = sink.audit();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[1].hop, HopKind::Llm);
    assert_eq!(audit[1].decision, AuditDecision::Error);
}
