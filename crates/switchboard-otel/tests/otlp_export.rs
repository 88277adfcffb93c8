//! `OtlpSink` against a real OTLP/HTTP receiver: `@elastic/mockotlpserver`, run by
//! `tests/otlp/receiver.js` on a free port. Install it with `scripts/otlp-receiver`
//! (`npm ci --prefix tests/otlp`); without it (or without Node.js) these tests fail, by design.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchboard_core::{
    AuditDecision, AuditRecord, HopKind, SpanKind, SpanRecord, SpanStatus, TelemetrySink, TraceContext,
};
use switchboard_otel::{OtlpConfig, OtlpSink};
use switchboard_store::MemorySink;
use switchboard_testkit::Child;

/// A running receiver; killed on drop.
struct Receiver {
    child: Child,
    events: mpsc::Receiver<Value>,
    /// The base URL, e.g. `http://127.0.0.1:41234/`.
    url: String,
}

impl Receiver {
    fn start() -> Self {
        let (tx, events) = mpsc::channel();
        let child = switchboard_testkit::otlp_receiver(move |line| {
            // Keep a copy of what the receiver printed in the test log.
            eprintln!("receiver: {line}");
            match serde_json::from_str::<Value>(&line) {
                Ok(event) if event.get("event").is_some() => tx.send(event).is_ok(),
                _ => true,
            }
        });
        let first = events.recv_timeout(Duration::from_secs(30)).expect("the OTLP receiver did not start");
        assert_eq!(first["event"], "listening", "{first}");
        let url = first["url"].as_str().unwrap().to_string();
        Self { child, events, url }
    }

    /// The next HTTP request the receiver saw.
    fn next_request(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.events.recv_timeout(left).expect("the receiver saw no request");
            if event["event"] == "request" {
                return event;
            }
        }
    }

    /// Collects requests and spans until `want` spans arrived (or 20 s passed).
    fn collect(&self, want: usize) -> Received {
        let mut received = Received::default();
        let deadline = Instant::now() + Duration::from_secs(20);
        while received.spans.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(event) = self.events.recv_timeout(left) else {
                panic!("the receiver got {} of {want} spans", received.spans.len());
            };
            match event["event"].as_str() {
                Some("request") => received.requests.push(event),
                Some("trace") => {
                    for rs in event["trace"]["resourceSpans"].as_array().unwrap() {
                        for ss in rs["scopeSpans"].as_array().unwrap() {
                            for span in ss["spans"].as_array().unwrap() {
                                received.spans.push(span.clone());
                                received.resources.push(rs["resource"].clone());
                                received.scopes.push(ss["scope"].clone());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        received
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.child.kill();
    }
}

#[derive(Default)]
struct Received {
    requests: Vec<Value>,
    /// Normalised by mockotlpserver: hex ids, attribute maps, enum names.
    spans: Vec<Value>,
    /// The resource and scope of each span, index for index.
    resources: Vec<Value>,
    scopes: Vec<Value>,
}

impl Received {
    fn by_name(&self, name: &str) -> &Value {
        self.spans.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no span named {name}"))
    }
}

fn vars(pairs: &[(&str, &str)]) -> OtlpConfig {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    OtlpConfig::from_vars(|name| map.get(name).cloned()).unwrap().expect("export enabled")
}

fn hop_span(
    trace: &TraceContext,
    id: &str,
    parent: Option<&str>,
    name: &str,
    kind: SpanKind,
    hop: Option<&str>,
) -> SpanRecord {
    let mut attributes = serde_json::Map::new();
    attributes.insert("gen_ai.operation.name".into(), json!(name.split(' ').next()));
    attributes.insert("mlflow.spanType".into(), json!(kind.as_str()));
    attributes.insert("switchboard.caller.email".into(), json!("alice@example.com"));
    attributes.insert("switchboard.caller.role".into(), json!("west_sales"));
    attributes.insert("switchboard.hops".into(), json!(3));
    attributes.insert("switchboard.cached".into(), json!(false));
    attributes.insert("switchboard.scopes".into(), json!(["sql", "files"]));
    if let Some(hop) = hop {
        attributes.insert("switchboard.hop.kind".into(), json!(hop));
    }
    SpanRecord {
        request_id: "req-otlp-1".into(),
        trace_id: trace.trace_id.to_string(),
        span_id: id.into(),
        parent_id: parent.map(Into::into),
        name: name.into(),
        kind,
        agent: Some("sales".into()),
        start_unix_nano: 1_700_000_000_000_000_000,
        end_unix_nano: 1_700_000_000_250_000_000,
        status: SpanStatus::Ok,
        status_message: None,
        attributes,
    }
}

/// Root AGENT span -> two children -> one grandchild, recorded in finishing order.
fn one_request() -> (TraceContext, Vec<SpanRecord>, [String; 4]) {
    let trace = TraceContext::new_root();
    let ids = [(); 4].map(|()| TraceContext::new_span_id().to_string());
    let [root, sales, chat, sql] = ids.each_ref().map(String::as_str);
    let mut failed_chat = hop_span(&trace, chat, Some(root), "chat gpt-4o", SpanKind::Llm, Some("llm"));
    failed_chat.status = SpanStatus::Error;
    failed_chat.status_message = Some("upstream: model overloaded".into());
    let spans = vec![
        hop_span(&trace, sql, Some(sales), "execute_tool main.sales.deals", SpanKind::Tool, Some("sql")),
        hop_span(&trace, sales, Some(root), "invoke_agent sales", SpanKind::Agent, Some("agent")),
        failed_chat,
        hop_span(&trace, root, None, "invoke_agent supervisor", SpanKind::Agent, None),
    ];
    (trace, spans, ids)
}

fn audit_row() -> AuditRecord {
    AuditRecord {
        request_id: "req-otlp-1".into(),
        span_id: "x".into(),
        ts_unix_ms: 1,
        caller_email: "alice@example.com".into(),
        caller_roles: "west_sales".into(),
        acting_for: None,
        principal: "alice@example.com".into(),
        credential_mode: "obo".into(),
        agent: "sales".into(),
        hop: HopKind::Sql,
        target: "main.sales.deals".into(),
        decision: AuditDecision::Allowed,
        reason: None,
        duration_ms: 3,
        error_code: None,
    }
}

#[tokio::test]
async fn a_request_tree_reaches_a_real_otlp_receiver_over_protobuf() {
    let receiver = Receiver::start();
    let inner = Arc::new(MemorySink::new());
    let config = vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20test-key,x-mlflow-experiment-id=42"),
        ("OTEL_SERVICE_NAME", "switchboard-test"),
    ]);
    let sink = OtlpSink::new(inner.clone(), config).unwrap();
    let (trace, spans, [root, sales, chat, sql]) = one_request();
    for span in &spans {
        sink.span(span.clone());
    }
    sink.audit(audit_row());
    sink.shutdown().await;

    // The inner sink (the store) got everything, unchanged.
    assert_eq!(inner.spans(), spans);
    assert_eq!(inner.audit(), vec![audit_row()]);
    assert_eq!((sink.exported(), sink.failed(), sink.dropped()), (4, 0, 0));

    let got = receiver.collect(4);
    assert_eq!(got.spans.len(), 4);
    let request = &got.requests[0];
    assert_eq!(request["path"], "/v1/traces");
    assert_eq!(request["headers"]["content-type"], "application/x-protobuf");
    assert_eq!(request["headers"]["authorization"], "Bearer test-key", "URL-decoded header");
    assert_eq!(request["headers"]["x-mlflow-experiment-id"], "42");
    for resource in &got.resources {
        assert_eq!(resource["attributes"]["service.name"], "switchboard-test");
    }
    assert_eq!(got.scopes[0]["name"], "switchboard");

    let trace_id = trace.trace_id.to_string();
    let expect = [
        ("invoke_agent supervisor", &root, None, "SPAN_KIND_INTERNAL", "AGENT"),
        ("invoke_agent sales", &sales, Some(&root), "SPAN_KIND_INTERNAL", "AGENT"),
        ("chat gpt-4o", &chat, Some(&root), "SPAN_KIND_CLIENT", "LLM"),
        ("execute_tool main.sales.deals", &sql, Some(&sales), "SPAN_KIND_CLIENT", "TOOL"),
    ];
    for (name, id, parent, kind, span_type) in expect {
        let span = got.by_name(name);
        assert_eq!(span["traceId"], trace_id.as_str(), "{name}");
        assert_eq!(span["spanId"], id.as_str(), "{name}");
        match parent {
            Some(parent) => assert_eq!(span["parentSpanId"], parent.as_str(), "{name}"),
            // An absent parent is sent as empty bytes (or not at all).
            None => assert!(span["parentSpanId"].as_str().is_none_or(str::is_empty), "{name}: {span}"),
        }
        assert_eq!(span["kind"], kind, "{name}");
        assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(span["endTimeUnixNano"], "1700000000250000000");
        let attrs = &span["attributes"];
        assert_eq!(attrs["switchboard.caller.email"], "alice@example.com", "{name}");
        assert_eq!(attrs["switchboard.caller.role"], "west_sales", "{name}");
        assert_eq!(attrs["mlflow.spanType"], span_type, "{name}");
        assert_eq!(attrs["openinference.span.kind"], span_type, "{name}: a kind Phoenix knows");
        assert_eq!(attrs["switchboard.request_id"], "req-otlp-1", "{name}");
        assert_eq!(attrs["switchboard.hops"], 3, "ints stay ints");
        assert_eq!(attrs["switchboard.cached"], false, "bools stay bools");
        assert_eq!(attrs["switchboard.scopes"], r#"["sql","files"]"#, "arrays become JSON text");
    }
    let chat_span = got.by_name("chat gpt-4o");
    assert_eq!(chat_span["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(chat_span["status"]["message"], "upstream: model overloaded");
    assert_eq!(got.by_name("invoke_agent sales")["status"]["code"], "STATUS_CODE_OK");
}

#[tokio::test]
async fn http_json_to_a_full_traces_endpoint_works_too() {
    let receiver = Receiver::start();
    let inner = Arc::new(MemorySink::new());
    let endpoint = format!("{}v1/traces", receiver.url);
    let config = vars(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ]);
    let sink = OtlpSink::new(inner, config).unwrap();
    let (_, spans, [root, sales, ..]) = one_request();
    for span in spans {
        sink.span(span);
    }
    sink.flush().await;
    assert_eq!(sink.exported(), 4);

    let got = receiver.collect(4);
    assert_eq!(got.requests[0]["headers"]["content-type"], "application/json");
    assert_eq!(got.resources[0]["attributes"]["service.name"], "switchboard");
    assert_eq!(got.by_name("invoke_agent sales")["parentSpanId"], root.as_str());
    assert_eq!(got.by_name("execute_tool main.sales.deals")["parentSpanId"], sales.as_str());
}

#[tokio::test]
async fn gzip_compression_is_applied_when_configured() {
    // mockotlpserver does not inflate bodies, so only the request itself is checked here.
    let receiver = Receiver::start();
    let config =
        vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url), ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]);
    let sink = OtlpSink::new(Arc::new(MemorySink::new()), config).unwrap();
    sink.span(one_request().1.remove(0));
    sink.flush().await;
    let request = receiver.next_request();
    assert_eq!(request["headers"]["content-encoding"], "gzip");
    assert_eq!(request["headers"]["content-type"], "application/x-protobuf");
}

#[tokio::test]
async fn a_stalled_backend_never_blocks_recording_and_never_costs_store_rows() {
    // Accepts connections (the kernel backlog does) but never answers.
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = OtlpConfig::new(format!("http://{}/v1/traces", black_hole.local_addr().unwrap()));
    config.queue_capacity = 4;
    config.max_batch = 1;
    config.timeout = Duration::from_secs(1);
    let inner = Arc::new(MemorySink::new());
    let sink = OtlpSink::new(inner.clone(), config).unwrap();

    let (_, spans, _) = one_request();
    let started = Instant::now();
    for i in 0..100 {
        sink.span(spans[i % 4].clone());
        sink.audit(audit_row());
    }
    assert!(started.elapsed() < Duration::from_millis(500), "recording blocked: {:?}", started.elapsed());
    assert_eq!(inner.spans().len(), 100, "every span reached the store");
    assert_eq!(inner.audit().len(), 100);
    // At most the queue plus the one batch in flight can be waiting for export.
    assert!(sink.dropped() >= 95, "dropped {}", sink.dropped());

    // Dropping waits for the final export at most the timeout plus a second.
    let dropping = Instant::now();
    drop(sink);
    assert!(dropping.elapsed() < Duration::from_secs(4), "drop took {:?}", dropping.elapsed());
}

#[tokio::test]
async fn failed_exports_are_counted_and_shutdown_is_final() {
    let closed_port = switchboard_testkit::free_port();
    let mut config = OtlpConfig::new(format!("http://127.0.0.1:{closed_port}/v1/traces"));
    config.timeout = Duration::from_secs(2);
    let inner = Arc::new(MemorySink::new());
    let sink = OtlpSink::new(inner.clone(), config).unwrap();
    let (_, spans, _) = one_request();
    for span in &spans {
        sink.span(span.clone());
    }
    let mut bad = spans[0].clone();
    bad.span_id = "not-hex".into();
    sink.span(bad);
    sink.flush().await;
    assert_eq!((sink.exported(), sink.failed(), sink.dropped()), (0, 4, 1));

    sink.shutdown().await;
    sink.shutdown().await; // idempotent
    sink.span(spans[0].clone());
    assert_eq!(sink.dropped(), 2, "spans after shutdown are not exported");
    assert_eq!(inner.spans().len(), 6, "but still recorded");
}

#[test]
fn grpc_is_refused_with_a_clear_error() {
    let map: HashMap<&str, &str> =
        [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")].into();
    let e = OtlpConfig::from_vars(|name| map.get(name).map(|v| v.to_string())).unwrap_err();
    assert!(e.message.contains("grpc is not supported"), "{}", e.message);
}
