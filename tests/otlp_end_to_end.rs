//! One real request, exported over OTLP to a real receiver: the `switchboard` binary runs
//! `chat --json` with the standard `OTEL_*` variables pointing at `@elastic/mockotlpserver`
//! (run by `tests/otlp/receiver.js` on a free port), and the receiver must get exactly that
//! request's spans, with their parent links, MLflow span types, OpenTelemetry GenAI attributes
//! and the caller's identity, but never the caller's token. Install the receiver with
//! `scripts/otlp-receiver`; without it (or without Node.js) this test fails, by design.
//!
//! The same request is also exported to a real MLflow tracking server (`mlflow server`, from the
//! venv `scripts/python-env` makes), and read back with MLflow's client: the trace must show the
//! caller as its user, the thread as its session, and each span's inputs and outputs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchboard_testkit::Child;

const QUESTION: &str = "Total revenue by region, and who must approve a 25% discount on a 40000 deal?";
const CALLER: &str = "carol@example.com";
const THREAD: &str = "e2e-thread-1";

const SERVICE: &str = "switchboard-e2e";

/// A running receiver; killed on drop. Every line it prints is kept, to be searched for secrets.
struct Receiver {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The base URL, e.g. `http://127.0.0.1:41234/`.
    url: String,
    /// Every line read so far, verbatim.
    printed: Vec<String>,
}

impl Receiver {
    fn start() -> Self {
        let (tx, lines) = mpsc::channel();
        let child = switchboard_testkit::otlp_receiver(move |line| tx.send(line).is_ok());
        let mut receiver = Self { child, lines, url: String::new(), printed: Vec::new() };
        let first = receiver
            .next_event(Duration::from_secs(30))
            .expect("the OTLP receiver did not start (no `listening` line within 30 s)");
        assert_eq!(first["event"], "listening", "{first}");
        receiver.url = first["url"].as_str().unwrap().to_string();
        receiver
    }

    /// The next event line, or `None` once `wait` passed without one.
    fn next_event(&mut self, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            eprintln!("receiver: {line}");
            self.printed.push(line.clone());
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event.get("event").is_some()
            {
                return Some(event);
            }
        }
    }

    /// Collects requests and spans until `want` spans arrived (or 10 s passed), then keeps
    /// listening for a quiet second so that any span beyond `want` is caught too.
    fn collect(&mut self, want: usize) -> Received {
        let mut received = Received::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.spans.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = self.next_event(left) else {
                panic!(
                    "the receiver got {} of the {want} spans the request recorded, and the CLI has \
                     exited: either OTLP export was not enabled from OTEL_EXPORTER_OTLP_ENDPOINT \
                     or the exporter was not drained before exit (Runtime::shutdown, called by \
                     crates/switchboard/src/cli/chat.rs)",
                    received.spans.len()
                );
            };
            received.add(event);
        }
        while let Some(event) = self.next_event(Duration::from_secs(1)) {
            received.add(event);
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
    fn add(&mut self, event: Value) {
        match event["event"].as_str() {
            Some("request") => self.requests.push(event),
            Some("trace") => {
                for rs in event["trace"]["resourceSpans"].as_array().unwrap() {
                    for ss in rs["scopeSpans"].as_array().unwrap() {
                        for span in ss["spans"].as_array().unwrap() {
                            self.spans.push(span.clone());
                            self.resources.push(rs["resource"].clone());
                            self.scopes.push(ss["scope"].clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn by_name(&self, name: &str) -> &Value {
        let mut found = self.spans.iter().filter(|s| s["name"] == name);
        let span = found.next().unwrap_or_else(|| panic!("the receiver got no span named `{name}`"));
        assert!(found.next().is_none(), "the receiver got several spans named `{name}`");
        span
    }

    fn by_id(&self, id: &str) -> Option<&Value> {
        self.spans.iter().find(|s| s["spanId"] == id)
    }
}

/// A span's parent id, with "absent" and "empty bytes" both meaning no parent.
fn parent(span: &Value) -> Option<&str> {
    span["parentSpanId"].as_str().filter(|p| !p.is_empty())
}

/// Runs the real binary with `args`, `SWITCHBOARD_HOME=home` and `env`, and only those `OTEL_*`
/// variables; fails after 120 s rather than hanging. Returns (exit code, stdout, stderr).
fn switchboard(home: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(args).env("SWITCHBOARD_HOME", home).env_remove("SWITCHBOARD_USER");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("the switchboard binary runs");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`switchboard {}` did not finish within 120 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code().unwrap_or(-1), stdout.join().unwrap(), stderr.join().unwrap())
}

/// Every JWT-shaped string in `text`: three base64url segments whose first decodes to a JOSE
/// header (a JSON object with `"alg"`).
fn jwts_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .filter(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 3
                && parts.iter().all(|p| !p.is_empty())
                && URL_SAFE_NO_PAD
                    .decode(parts[0])
                    .ok()
                    .and_then(|header| serde_json::from_slice::<Value>(&header).ok())
                    .is_some_and(|header| header.get("alg").is_some())
        })
        .map(String::from)
        .collect()
}

#[test]
fn one_chat_request_reaches_a_real_otlp_receiver_as_one_well_formed_trace() {
    let mut receiver = Receiver::start();
    let home = tempfile::tempdir().expect("tempdir");
    let url = receiver.url.clone();
    let (code, stdout, stderr) = switchboard(
        home.path(),
        &["chat", "--json", "--as", CALLER, "--thread", THREAD, QUESTION],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &url),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", SERVICE),
        ],
    );
    let out: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("chat --json printed no JSON ({e}): {stdout}\nstderr: {stderr}"));
    assert_eq!(code, 0, "exit code; stderr: {stderr}");
    assert_eq!(out["status"], "ok", "{out}");
    assert_eq!(out["agents"], serde_json::json!(["sales", "deal_desk"]), "both parts were routed");
    assert_eq!(out["caller"]["email"], CALLER);
    assert_eq!(out["caller"]["role"], "managers");
    let trace_id = out["trace_id"].as_str().expect("chat --json prints the trace id");
    let recorded = out["spans"].as_array().expect("chat --json prints the spans");

    // The process has exited, so whatever it exported has arrived by now.
    let got = receiver.collect(recorded.len());

    // Exactly the spans the request recorded: same ids, names and parent links, one trace.
    assert_eq!(got.spans.len(), recorded.len(), "span count (received vs --json)");
    let recorded_ids: HashSet<&str> = recorded.iter().map(|s| s["span_id"].as_str().unwrap()).collect();
    let received_ids: HashSet<&str> = got.spans.iter().map(|s| s["spanId"].as_str().unwrap()).collect();
    assert_eq!(received_ids, recorded_ids, "span ids (received vs --json)");
    for span in recorded {
        let id = span["span_id"].as_str().unwrap();
        let sent = got.by_id(id).unwrap();
        assert_eq!(sent["name"], span["name"], "span {id}");
        assert_eq!(parent(sent), span["parent_id"].as_str(), "parent of {}", span["name"]);
        assert_eq!(sent["traceId"], trace_id, "trace id of {}", span["name"]);
        assert_eq!(sent["attributes"]["mlflow.spanType"], span["kind"], "{}", span["name"]);
        assert_eq!(sent["status"]["code"], "STATUS_CODE_OK", "{}", span["name"]);
    }

    // The tree: one root, every other span's parent was received too.
    let root = got.by_name("invoke_agent switchboard");
    let root_id = root["spanId"].as_str().unwrap();
    assert_eq!(parent(root), None, "the root has no parent: {root}");
    for span in &got.spans {
        if let Some(p) = parent(span) {
            assert!(got.by_id(p).is_some(), "the parent of {} was not exported: {span}", span["name"]);
        } else {
            assert_eq!(span["spanId"], root_id, "a second root: {span}");
        }
    }
    let id_of = |name: &str| got.by_name(name)["spanId"].as_str().unwrap().to_string();
    let (sales, deal_desk) = (id_of("invoke_agent sales"), id_of("invoke_agent deal_desk"));
    for child in ["route", "invoke_agent sales", "invoke_agent deal_desk"] {
        assert_eq!(parent(got.by_name(child)), Some(root_id), "`{child}` is a child of the root");
    }
    assert_eq!(parent(got.by_name("execute_tool deals")), Some(sales.as_str()));
    let ancestors = |span: &Value| {
        let mut chain = Vec::new();
        let mut at = parent(span);
        while let Some(id) = at {
            chain.push(id.to_string());
            at = got.by_id(id).and_then(parent);
        }
        chain
    };
    let deal_desk_work: Vec<&Value> = got
        .spans
        .iter()
        .filter(|s| s["attributes"]["gen_ai.agent.name"] == "deal_desk" && s["spanId"] != deal_desk.as_str())
        .collect();
    assert!(!deal_desk_work.is_empty(), "deal_desk's tool and SQL spans were exported");
    assert!(
        deal_desk_work.iter().any(|s| s["attributes"]["switchboard.hop.kind"] == "sql"),
        "deal_desk ran SQL"
    );
    for span in &deal_desk_work {
        assert_eq!(span["attributes"]["gen_ai.operation.name"], "execute_tool", "{span}");
        assert!(ancestors(span).contains(&deal_desk), "{} nests under invoke_agent deal_desk", span["name"]);
    }

    // MLflow span types and OpenTelemetry GenAI attributes, the caller on every span.
    for span in &got.spans {
        let name = span["name"].as_str().unwrap();
        let attrs = &span["attributes"];
        let (span_type, operation) = match name.split(' ').next().unwrap() {
            "invoke_agent" => ("AGENT", Some("invoke_agent")),
            "execute_tool" => ("TOOL", Some("execute_tool")),
            "route" => ("CHAIN", None),
            other => panic!("unexpected span `{name}` (operation `{other}`)"),
        };
        assert_eq!(attrs["mlflow.spanType"], span_type, "{name}");
        assert_eq!(attrs["openinference.span.kind"], span_type, "{name}: a kind Phoenix knows");
        if let Some(operation) = operation {
            assert_eq!(attrs["gen_ai.operation.name"], operation, "{name}");
            let target = &name[operation.len() + 1..];
            let key = if operation == "invoke_agent" { "gen_ai.agent.name" } else { "gen_ai.tool.name" };
            assert_eq!(attrs[key], target, "{name}");
        }
        let agent = attrs["gen_ai.agent.name"].as_str().unwrap_or_else(|| panic!("{name}: no agent"));
        assert!(["switchboard", "sales", "deal_desk"].contains(&agent), "{name}: agent {agent}");
        assert_eq!(attrs["switchboard.caller.email"], CALLER, "{name}");
        assert_eq!(attrs["switchboard.caller.role"], "managers", "{name}");
    }
    assert_eq!(got.by_name("execute_tool deals")["attributes"]["gen_ai.agent.name"], "sales");

    // Inputs and outputs for MLflow (JSON text) and Phoenix, the user and session on the root.
    let json_attr = |span: &Value, key: &str| -> Value {
        let text = span["attributes"][key].as_str().unwrap_or_else(|| panic!("{} lacks {key}", span["name"]));
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{key} of {} is not JSON: {e}", span["name"]))
    };
    let root_attrs = &root["attributes"];
    for (key, want) in [
        ("mlflow.trace.user", CALLER),
        ("user.id", CALLER),
        ("mlflow.trace.session", THREAD),
        ("session.id", THREAD),
    ] {
        assert_eq!(root_attrs[key], want, "root {key}");
    }
    assert_eq!(json_attr(root, "mlflow.spanInputs")["question"], QUESTION);
    assert_eq!(json_attr(root, "mlflow.spanOutputs")["answer"], out["answer"]);
    assert_eq!(json_attr(root, "gen_ai.input.messages")[0]["parts"][0]["content"], QUESTION);
    assert_eq!(root_attrs["input.value"], root_attrs["mlflow.spanInputs"], "Phoenix's input");
    assert_eq!(json_attr(got.by_name("route"), "mlflow.spanInputs")["question"], QUESTION);
    for agent in ["invoke_agent sales", "invoke_agent deal_desk"] {
        let span = got.by_name(agent);
        assert!(json_attr(span, "mlflow.spanInputs")["question"].as_str().is_some_and(|q| !q.is_empty()));
        assert!(json_attr(span, "mlflow.spanOutputs")["answer"].as_str().is_some_and(|a| !a.is_empty()));
        assert_eq!(json_attr(span, "gen_ai.output.messages")[0]["role"], "assistant", "{agent}");
        assert!(span["attributes"]["output.value"].is_string(), "{agent}: Phoenix's output");
    }

    // The resource names the service; the requests are plain OTLP/HTTP protobuf.
    for (resource, scope) in got.resources.iter().zip(&got.scopes) {
        assert_eq!(resource["attributes"]["service.name"], SERVICE, "{resource}");
        assert_eq!(scope["name"], "switchboard", "{scope}");
    }
    assert!(!got.requests.is_empty());
    for request in &got.requests {
        assert_eq!(request["path"], "/v1/traces", "{request}");
        assert_eq!(request["headers"]["content-type"], "application/x-protobuf", "{request}");
    }

    // Never the token. First prove the detector finds a real carol token from this home.
    let (code, token, stderr) = switchboard(home.path(), &["token", "--as", CALLER], &[]);
    assert_eq!(code, 0, "switchboard token: {stderr}");
    assert_eq!(jwts_in(&format!("{{\"v\":\"Bearer {}\"}}", token.trim())), vec![token.trim()]);
    let printed = receiver.printed.join("\n");
    assert!(!printed.is_empty());
    assert_eq!(jwts_in(&printed), Vec::<String>::new(), "a JWT reached the OTLP receiver");
    let mut keys: HashMap<String, String> = HashMap::new();
    for (i, span) in got.spans.iter().enumerate() {
        let name = span["name"].as_str().unwrap_or_default().to_string();
        let resource = got.resources[i]["attributes"].as_object().into_iter().flatten();
        for (key, _) in span["attributes"].as_object().unwrap().iter().chain(resource) {
            keys.insert(key.to_lowercase(), name.clone());
        }
    }
    for (key, span) in &keys {
        assert!(
            !key.contains("token") && !key.contains("authorization"),
            "attribute `{key}` on `{span}` looks like a credential"
        );
    }
    for request in &got.requests {
        assert!(request["headers"].get("authorization").is_none(), "{request}");
    }
}

/// Reads one trace back from an MLflow tracking server with MLflow's own client, as JSON: the
/// trace's metadata and, per span, its name, type, inputs and outputs.
const READ_MLFLOW_TRACE: &str = r#"
import json, sys, time, mlflow
client = mlflow.MlflowClient(sys.argv[1])
for _ in range(50):
    try:
        trace = client.get_trace(sys.argv[2])
        break
    except Exception as e:
        error = e
        time.sleep(0.2)
else:
    sys.exit(f"MLflow has no trace {sys.argv[2]}: {error}")
print(json.dumps({
    "metadata": trace.info.trace_metadata,
    "spans": [
        {"name": s.name, "type": s.span_type, "inputs": s.inputs, "outputs": s.outputs}
        for s in trace.data.spans
    ],
}))
"#;

#[tokio::test]
async fn mlflow_as_the_otlp_receiver_shows_inputs_outputs_user_and_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mlflow, url) = switchboard_testkit::mlflow_server(dir.path()).await;
    let created: Value = reqwest::Client::new()
        .post(format!("{url}/api/2.0/mlflow/experiments/create"))
        .json(&serde_json::json!({"name": "switchboard-e2e"}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("MLflow creates an experiment")
        .json()
        .await
        .expect("a JSON answer");
    let experiment = created["experiment_id"].as_str().expect("an experiment id");

    let home = tempfile::tempdir().expect("tempdir");
    let (code, stdout, stderr) = switchboard(
        home.path(),
        &["chat", "--json", "--as", CALLER, "--thread", THREAD, QUESTION],
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &format!("{url}/v1/traces")),
            ("OTEL_EXPORTER_OTLP_HEADERS", &format!("x-mlflow-experiment-id={experiment}")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
    );
    assert_eq!(code, 0, "exit code; stderr: {stderr}");
    let out: Value = serde_json::from_str(&stdout).expect("chat --json prints JSON");
    let trace_id = out["trace_id"].as_str().expect("chat --json prints the trace id");

    // MLflow names an OTLP trace `tr-` and its W3C id.
    let read = std::process::Command::new(switchboard_testkit::python())
        .args(["-c", READ_MLFLOW_TRACE, &url, &format!("tr-{trace_id}")])
        .output()
        .expect("the MLflow client runs");
    assert!(
        read.status.success(),
        "reading the trace back failed: {}\nMLflow's log:\n{}",
        String::from_utf8_lossy(&read.stderr),
        mlflow.log()
    );
    let trace: Value = serde_json::from_slice(&read.stdout).expect("the reader prints JSON");
    assert_eq!(trace["metadata"]["mlflow.trace.user"], CALLER, "{trace}");
    assert_eq!(trace["metadata"]["mlflow.trace.session"], THREAD, "{trace}");

    let spans = trace["spans"].as_array().expect("spans");
    let recorded = out["spans"].as_array().expect("chat --json prints the spans");
    assert_eq!(spans.len(), recorded.len(), "MLflow holds every span the request recorded: {trace}");
    let root = spans.iter().find(|s| s["name"] == "invoke_agent switchboard").expect("the root span");
    assert_eq!(root["type"], "AGENT");
    assert_eq!(root["inputs"]["question"], QUESTION, "{root}");
    assert_eq!(root["outputs"]["answer"], out["answer"], "{root}");
    // Each sub-agent's span shows the part of the question it got and what it answered.
    for agent in ["sales", "deal_desk"] {
        let span = spans
            .iter()
            .find(|s| s["name"] == format!("invoke_agent {agent}"))
            .unwrap_or_else(|| panic!("no span for {agent}: {trace}"));
        assert!(span["inputs"]["question"].as_str().is_some_and(|q| !q.is_empty()), "{span}");
        assert!(span["outputs"]["answer"].as_str().is_some_and(|a| !a.is_empty()), "{span}");
    }
    let route = spans.iter().find(|s| s["name"] == "route").expect("the route span");
    let routed: Vec<&str> = route["outputs"]["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["agent"].as_str())
        .collect();
    assert_eq!(routed, ["sales", "deal_desk"], "{route}");
    // The caller's token reached MLflow nowhere.
    assert!(jwts_in(&trace.to_string()).is_empty(), "a token reached MLflow: {trace}");
}
