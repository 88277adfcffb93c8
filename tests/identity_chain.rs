//! The caller's identity through every hop, over real sockets:
//! caller → `switchboard serve` → a sub-agent endpoint → a tool server.
//!
//! Each server records the credential it was called with. One supervisor mixes the three
//! credential modes (obo, automatic via OAuth2 client credentials, manual), and the test also
//! covers edge rejections, a forged proxy header, scope denial, single-flight token refresh and
//! a scan for leaked secrets in everything Switchboard writes or answers.
//!
//! Governed connections add hops of their own, scanned the same way: an MCP hop to the demo's
//! tickets server (`auth = "caller"`), an HTTP tool whose connection holds a bearer secret, an
//! endpoint agent whose connection runs its own OAuth2 client-credentials flow, a hop refused for
//! want of a USE CONNECTION grant, and one refused by the connection's egress rules.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{any, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_testkit::Serve;

const RELAY_SECRET: &str = "manual-relay-secret-PLANTED-7c1f";
const CLIENT_SECRET: &str = "sp-client-secret-PLANTED-42aa";
const SP_TOKEN_MARK: &str = "sp-access-PLANTED";
/// The `partner_bearer` connection's static bearer secret.
const CONN_SECRET: &str = "conn-bearer-secret-PLANTED-b3e9";
/// The `partner_m2m` connection's own OAuth2 client, distinct from the service principal's.
const CONN_CLIENT_ID: &str = "partner-m2m-client";
const CONN_CLIENT_SECRET: &str = "conn-client-secret-PLANTED-5d07";
/// Tokens the token endpoint issues to the `partner_m2m` connection.
const CONN_TOKEN_MARK: &str = "conn-access-PLANTED";

/// What a recording server saw: which path, the bearer it was given, the request id.
#[derive(Clone, Debug)]
struct Seen {
    mode: String,
    bearer: String,
    request_id: String,
    traceparent: String,
}

#[derive(Clone, Default)]
struct Recorder {
    relay: Arc<Mutex<Vec<Seen>>>,
    tool: Arc<Mutex<Vec<Seen>>>,
    tool_url: Arc<Mutex<String>>,
    token_requests: Arc<AtomicUsize>,
    /// What the partner API behind the `partner_*` connections saw.
    partner: Arc<Mutex<Vec<Seen>>>,
    /// Client-credentials requests from the `partner_m2m` connection: the client secret each
    /// sent, and whether it asked for the client-credentials grant.
    conn_token_requests: Arc<Mutex<Vec<(String, bool)>>>,
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string()
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// The identity a bearer names: a JWT's email (or subject), else the opaque value itself.
fn identity_of(bearer: &str) -> String {
    let parts: Vec<&str> = bearer.split('.').collect();
    if parts.len() == 3
        && let Ok(payload) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1])
        && let Ok(claims) = serde_json::from_slice::<Value>(&payload)
    {
        return claims["email"].as_str().or(claims["sub"].as_str()).unwrap_or("").to_string();
    }
    bearer.to_string()
}

/// The sub-agent endpoint: records its caller, then calls the tool server with the same bearer.
async fn relay(
    State(rec): State<Recorder>,
    Path(mode): Path<String>,
    headers: HeaderMap,
    Json(_body): Json<Value>,
) -> Json<Value> {
    let token = bearer(&headers);
    rec.relay.lock().expect("lock").push(Seen {
        mode: mode.clone(),
        bearer: token.clone(),
        request_id: header(&headers, "x-request-id"),
        traceparent: header(&headers, "traceparent"),
    });
    let tool_url = rec.tool_url.lock().expect("lock").clone();
    let tool: Value = reqwest::Client::new()
        .post(format!("{tool_url}/tool/{mode}"))
        .bearer_auth(&token)
        .header("x-request-id", header(&headers, "x-request-id"))
        .json(&json!({}))
        .send()
        .await
        .expect("the tool server answers")
        .json()
        .await
        .expect("tool JSON");
    Json(json!({"choices": [{"index": 0, "message": {"role": "assistant",
        "content": format!("relay {mode} done; tool says {}", tool["result"].as_str().unwrap_or(""))}}]}))
}

async fn tool(State(rec): State<Recorder>, Path(mode): Path<String>, headers: HeaderMap) -> Json<Value> {
    rec.tool.lock().expect("lock").push(Seen {
        mode: mode.clone(),
        bearer: bearer(&headers),
        request_id: header(&headers, "x-request-id"),
        traceparent: header(&headers, "traceparent"),
    });
    Json(json!({"result": format!("{mode} fruit ok")}))
}

/// The partner API behind the `partner_*` connections: records the bearer it was sent. Answers
/// both an HTTP tool (`result`) and an endpoint agent (a chat completion).
async fn partner(State(rec): State<Recorder>, Path(mode): Path<String>, headers: HeaderMap) -> Json<Value> {
    rec.partner.lock().expect("lock").push(Seen {
        mode: mode.clone(),
        bearer: bearer(&headers),
        request_id: header(&headers, "x-request-id"),
        traceparent: header(&headers, "traceparent"),
    });
    let result = format!("partner {mode} ok");
    Json(json!({"result": result,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result}}]}))
}

/// The client id and secret of an HTTP Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> (String, String) {
    let encoded = header(headers, "authorization").strip_prefix("Basic ").unwrap_or("").to_string();
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default();
    let text = String::from_utf8_lossy(&decoded);
    let (id, secret) = text.split_once(':').unwrap_or((&text, ""));
    (id.to_string(), secret.to_string())
}

/// An OAuth2 token endpoint. For the runtime's service principal it counts requests; the first
/// token lives two seconds, so the test can let it expire; later ones an hour. The `partner_m2m`
/// connection's own client (told apart by its client id) is counted separately and gets tokens
/// of its own, so the service principal's single-refresh count stays exact.
async fn token_endpoint(State(rec): State<Recorder>, headers: HeaderMap, body: String) -> Json<Value> {
    let (client_id, client_secret) = basic_credentials(&headers);
    if client_id == CONN_CLIENT_ID {
        let mut seen = rec.conn_token_requests.lock().expect("lock");
        seen.push((client_secret, body.contains("grant_type=client_credentials")));
        let n = seen.len();
        return Json(
            json!({"access_token": format!("{CONN_TOKEN_MARK}-{n}"), "token_type": "Bearer", "expires_in": 3600}),
        );
    }
    let n = rec.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(body.contains("grant_type=client_credentials"), "client credentials grant: {body}");
    let ttl = if n == 1 { 2 } else { 3600 };
    Json(json!({"access_token": format!("{SP_TOKEN_MARK}-{n}"), "token_type": "Bearer", "expires_in": ttl}))
}

async fn start_peers(rec: Recorder) -> String {
    let app = Router::new()
        .route("/relay/{mode}/v1/chat/completions", post(relay))
        .route("/tool/{mode}", post(tool))
        .route("/oidc/v1/token", post(token_endpoint))
        .route("/partner/{mode}", any(partner))
        .route("/partner/{mode}/v1/chat/completions", post(partner))
        .with_state(rec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    *rec.tool_url.lock().expect("lock") = url.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn agent(name: &str, fruit: &str, mode: &str, extra: &str, peers: &str) -> String {
    format!(
        "name = \"{name}\"\nkind = \"endpoint\"\n\
         description = \"The {fruit} relay answers questions about {fruit}.\"\n\
         examples = [\"tell me about {fruit}\", \"{fruit}\"]\n\
         [credential]\nmode = \"{mode}\"\n{extra}\n\
         [endpoint]\nurl = \"{peers}/relay/{mode}/v1/chat/completions\"\n"
    )
}

/// An HTTP tool through `connection`, answering with the partner's `result`.
fn http_tool(name: &str, fruit: &str, connection: &str, path: &str) -> String {
    format!(
        "name = \"{name}\"\nkind = \"tool\"\nconnection = \"{connection}\"\n\
         description = \"The {fruit} partner API answers questions about {fruit}.\"\n\
         examples = [\"tell me about {fruit}\", \"{fruit}\"]\n\
         [credential]\nmode = \"obo\"\n\
         [tool.http]\nmethod = \"GET\"\npath = \"{path}\"\nanswer_pointer = \"/result\"\n"
    )
}

/// Governed connections: the demo's tickets server (the caller's own token), and two to the
/// partner API on the peers server, one with a static bearer secret and one with its own OAuth2
/// client. Only west_sales holds USE CONNECTION on any of them.
fn connections(peers: &str) -> String {
    format!(
        "[[connections]]\nname = \"tickets_mcp\"\nbase_url = \"http://127.0.0.1:9/mcp\"\n\
         auth = \"caller\"\nallow_insecure_loopback = true\ngrants = [\"west_sales\"]\n\
         [[connections]]\nname = \"partner_bearer\"\nbase_url = \"{peers}/partner\"\n\
         auth = \"bearer\"\nsecret = \"env:SB_TEST_CONN_SECRET\"\n\
         allow_insecure_loopback = true\ngrants = [\"west_sales\"]\n\
         [[connections]]\nname = \"partner_m2m\"\nbase_url = \"{peers}/partner\"\n\
         auth = \"oauth_m2m\"\ntoken_url = \"{peers}/oidc/v1/token\"\n\
         client_id = \"{CONN_CLIENT_ID}\"\nclient_secret = \"env:SB_TEST_CONN_CLIENT_SECRET\"\n\
         scopes = [\"partner.read\"]\nallow_insecure_loopback = true\ngrants = [\"west_sales\"]\n\
         [demo]\ntickets_connection = \"tickets_mcp\"\n"
    )
}

fn write_config(dir: &std::path::Path, peers: &str) {
    std::fs::create_dir_all(dir.join("agents")).expect("agents dir");
    std::fs::write(
        dir.join("switchboard.toml"),
        format!(
            "data_dir = \".\"\n\
             [router]\nthreshold = 0.3\n\
             {connections}\
             [identity]\nservice_principal = \"switchboard-sp\"\n\
             dev_scopes = [\"sql\", \"serving\", \"mcp.tickets\"]\n\
             [[identity.dev_users]]\nemail = \"alice@example.com\"\nroles = [\"west_sales\"]\n\
             [[identity.dev_users]]\nemail = \"bob@example.com\"\nroles = [\"east_sales\"]\n\
             [[identity.dev_users]]\nemail = \"frank@example.com\"\nroles = [\"admin\"]\n\
             [identity.client_credentials]\ntoken_endpoint = \"{peers}/oidc/v1/token\"\n\
             client_id = \"switchboard-sp\"\nclient_secret = \"env:SB_TEST_SP_SECRET\"\n",
            connections = connections(peers),
        ),
    )
    .expect("main config");
    // The peers server on another name for the same address: reachable, but not an allowed host.
    let elsewhere = peers.replace("127.0.0.1", "localhost");
    let agents = [
        ("relay_obo.toml", agent("relay_obo", "apples", "obo", "scopes = [\"serving\"]", peers)),
        ("relay_auto.toml", agent("relay_auto", "bananas", "automatic", "", peers)),
        (
            "relay_manual.toml",
            agent("relay_manual", "cherries", "manual", "secret = \"env:SB_TEST_RELAY_SECRET\"", peers),
        ),
        ("relay_scoped.toml", agent("relay_scoped", "durians", "obo", "scopes = [\"admin.write\"]", peers)),
        // The demo's tickets agent, as shipped.
        (
            "tickets.toml",
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../agents/tickets.toml"))
                .expect("agents/tickets.toml"),
        ),
        ("kiwi_tool.toml", http_tool("kiwi_tool", "kiwis", "partner_bearer", "/bearer")),
        (
            "mango_relay.toml",
            // An endpoint agent whose URL is a path on the connection's base URL.
            "name = \"mango_relay\"\nkind = \"endpoint\"\nconnection = \"partner_m2m\"\n\
             description = \"The mango relay answers questions about mangoes.\"\n\
             examples = [\"tell me about mangoes\", \"mangoes\"]\n\
             [credential]\nmode = \"obo\"\n\
             [endpoint]\nurl = \"/m2m/v1/chat/completions\"\n"
                .to_string(),
        ),
        (
            "lemon_tool.toml",
            http_tool("lemon_tool", "lemons", "partner_bearer", &format!("{elsewhere}/partner/egress")),
        ),
    ];
    for (file, text) in agents {
        std::fs::write(dir.join("agents").join(file), text).expect("agent file");
    }
}

/// Every response body the test received, for the leak scan.
#[derive(Default)]
struct Bodies(Mutex<Vec<String>>);

impl Bodies {
    async fn ask(
        &self,
        url: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        question: &str,
    ) -> (u16, HeaderMap, Value) {
        let mut rb = reqwest::Client::new()
            .post(format!("{url}/v1/chat/completions"))
            .json(&json!({"model": "switchboard", "messages": [{"role": "user", "content": question}]}));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        let response = rb.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        self.0.lock().expect("lock").push(text.clone());
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn cli(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .args(["--config", config.to_str().expect("utf-8")])
        .env("SB_TEST_RELAY_SECRET", RELAY_SECRET)
        .env("SB_TEST_SP_SECRET", CLIENT_SECRET)
        .env("SB_TEST_CONN_SECRET", CONN_SECRET)
        .env("SB_TEST_CONN_CLIENT_SECRET", CONN_CLIENT_SECRET)
        .output()
        .expect("cli runs");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn answer(body: &Value) -> &str {
    body["choices"][0]["message"]["content"].as_str().unwrap_or("")
}

/// Signs `claims` with the development identity provider's own key (read from its data dir), so
/// only the claims are wrong.
fn sign_with_dev_key(dir: &std::path::Path, kid: &str, claims: &Value) -> String {
    let der = std::fs::read(dir.join(switchboard::auth::DEV_IDP_KEY_FILE)).expect("dev key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ec_der(&der)).expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identity_survives_every_hop_in_every_mode() {
    let rec = Recorder::default();
    let peers = start_peers(rec.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &peers);
    let config = dir.path().join("switchboard.toml");
    let mut server = Serve::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_switchboard")),
        Some(&config),
        &[
            ("SB_TEST_RELAY_SECRET", RELAY_SECRET),
            ("SB_TEST_SP_SECRET", CLIENT_SECRET),
            ("SB_TEST_CONN_SECRET", CONN_SECRET),
            ("SB_TEST_CONN_CLIENT_SECRET", CONN_CLIENT_SECRET),
            ("RUST_LOG", "debug"),
            ("SWITCHBOARD_LOG_FORMAT", "json"),
        ],
    )
    .await;
    let url = server.url().to_string();
    let bodies = Bodies::default();
    let alice = cli(&config, &["token", "--as", "alice@example.com"]);

    // obo: the deepest hop sees the human. The caller's W3C trace comes in and goes out again.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let (status, headers, body) =
        bodies.ask(&url, Some(&alice), &[("traceparent", incoming.as_str())], "tell me about apples").await;
    assert_eq!(status, 200, "{body}");
    assert!(answer(&body).contains("relay obo done; tool says obo fruit ok"), "{body}");
    let request_id = header(&headers, "x-request-id");
    let last_tool = rec.tool.lock().expect("lock").last().cloned().expect("the tool was called");
    assert_eq!(
        (last_tool.mode.as_str(), identity_of(&last_tool.bearer).as_str()),
        ("obo", "alice@example.com")
    );
    assert_eq!(last_tool.request_id, request_id, "the request id travels to the deepest hop");
    let relayed = rec.relay.lock().expect("lock").last().cloned().expect("the relay was called");
    let parts: Vec<&str> = relayed.traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "a W3C traceparent reaches the sub-agent: {:?}", relayed.traceparent);
    assert_eq!(parts[1], trace_id, "the caller's trace continues through the hop");
    assert_ne!(parts[2], "00f067aa0ba902b7", "with the hop's own span as the parent");

    // automatic: the service principal's token from the client-credentials endpoint.
    let (status, _, body) = bodies.ask(&url, Some(&alice), &[], "bananas").await;
    assert_eq!(status, 200, "{body}");
    let last_tool = rec.tool.lock().expect("lock").last().cloned().expect("tool");
    assert_eq!(last_tool.mode, "automatic");
    assert_eq!(last_tool.bearer, format!("{SP_TOKEN_MARK}-1"), "the tool sees the service principal");
    let first_fetch = Instant::now();
    assert_eq!(rec.token_requests.load(Ordering::SeqCst), 1);

    // manual: the named secret.
    let (status, _, body) = bodies.ask(&url, Some(&alice), &[], "tell me about cherries").await;
    assert_eq!(status, 200, "{body}");
    let last_tool = rec.tool.lock().expect("lock").last().cloned().expect("tool");
    assert_eq!((last_tool.mode.as_str(), last_tool.bearer.as_str()), ("manual", RELAY_SECRET));

    // One supervisor, one request, all three modes.
    let before = rec.tool.lock().expect("lock").len();
    let (status, headers, body) =
        bodies.ask(&url, Some(&alice), &[], "tell me about apples, and bananas, and cherries").await;
    assert_eq!(status, 200, "{body}");
    let mixed_id = header(&headers, "x-request-id");
    let seen: Vec<Seen> = rec.tool.lock().expect("lock")[before..].to_vec();
    let mut by_mode: Vec<(String, String)> =
        seen.iter().map(|s| (s.mode.clone(), identity_of(&s.bearer))).collect();
    by_mode.sort();
    assert_eq!(
        by_mode,
        vec![
            ("automatic".to_string(), format!("{SP_TOKEN_MARK}-1")),
            ("manual".to_string(), RELAY_SECRET.to_string()),
            ("obo".to_string(), "alice@example.com".to_string()),
        ]
    );
    assert!(seen.iter().all(|s| s.request_id == mixed_id), "all three under one request id");
    for part in ["relay obo done", "relay automatic done", "relay manual done"] {
        assert!(answer(&body).contains(part), "{part} in {body}");
    }

    // 100 concurrent requests with the cached service-principal token expired: one refresh.
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(first_fetch.elapsed())).await;
    let burst: Vec<_> = (0..100)
        .map(|_| {
            let (url, alice) = (url.clone(), alice.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(alice)
                    .json(&json!({"model": "switchboard", "messages": [{"role": "user", "content": "bananas"}]}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    for task in burst {
        assert_eq!(task.await.expect("task").expect("response"), 200);
    }
    assert_eq!(rec.token_requests.load(Ordering::SeqCst), 2, "exactly one refresh for the whole burst");

    // Edge rejections: 401 with a WWW-Authenticate challenge, and the server keeps serving.
    let jwks: Value =
        reqwest::get(format!("{url}/.well-known/jwks.json")).await.expect("jwks").json().await.expect("json");
    let kid = jwks["keys"][0]["kid"].as_str().expect("kid").to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let claims = |aud: &str, exp: u64| {
        json!({"iss": "urn:switchboard:dev", "sub": "alice@example.com", "email": "alice@example.com",
               "groups": ["west_sales"], "scope": "sql serving", "aud": aud, "iat": exp - 600, "nbf": exp - 600, "exp": exp})
    };
    let expired = sign_with_dev_key(dir.path(), &kid, &claims("switchboard", now - 3600));
    let wrong_audience = sign_with_dev_key(dir.path(), &kid, &claims("someone-else", now + 600));
    // Change one character in the middle of the signature: every such character carries six full
    // bits, so the result still decodes and only the signature check can reject it.
    let mut tampered = alice.clone().into_bytes();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ASCII token");
    for (label, token, reason) in [
        ("no token", None, ""),
        ("expired", Some(expired.as_str()), "token expired"),
        ("wrongly signed", Some(tampered.as_str()), "invalid token signature"),
        ("wrong audience", Some(wrong_audience.as_str()), "audience"),
    ] {
        let (status, headers, body) = bodies.ask(&url, token, &[], "tell me about apples").await;
        assert_eq!(status, 401, "{label}: {body}");
        let challenge = header(&headers, "www-authenticate");
        assert!(challenge.starts_with("Bearer"), "{label}: challenge {challenge:?}");
        assert!(body["error"]["message"].as_str().unwrap_or("").contains(reason), "{label}: {body}");
    }

    // A forged X-Forwarded-Email from an untrusted peer is not honoured.
    let forged = [
        ("x-forwarded-email", "frank@example.com"),
        ("x-forwarded-access-token", "forged-PLANTED-proxy-token"),
    ];
    let (status, _, body) = bodies.ask(&url, None, &forged, "tell me about apples").await;
    assert_eq!(status, 401, "forged proxy headers alone do not authenticate: {body}");
    let (status, headers, body) = bodies.ask(&url, Some(&alice), &forged, "tell me about apples").await;
    assert_eq!(status, 200, "{body}");
    let forged_id = header(&headers, "x-request-id");

    // An obo hop to an agent whose declared scope the caller lacks: 403 and access_denied.
    let (status, headers, body) = bodies.ask(&url, Some(&alice), &[], "tell me about durians").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or("").contains("required scopes: admin.write"),
        "{body}"
    );
    let scoped_id = header(&headers, "x-request-id");

    // An MCP hop over a connection with auth = "caller": the demo's tickets server, started in
    // process, verifies alice's own token and shows her only her tickets.
    let (status, headers, body) = bodies.ask(&url, Some(&alice), &[], "what are my open tickets?").await;
    assert_eq!(status, 200, "{body}");
    for title in
        ["CRM export of the West pipeline fails", "Expense report for the Denver client dinner is stuck"]
    {
        assert!(answer(&body).contains(title), "alice's open ticket {title:?} in {body}");
    }
    assert!(!answer(&body).contains("Boston office badge reader"), "only her own tickets: {body}");
    let mcp_id = header(&headers, "x-request-id");

    // An HTTP tool hop over a connection with auth = "bearer": the partner sees the connection's
    // secret, not alice's token.
    let (status, headers, body) = bodies.ask(&url, Some(&alice), &[], "tell me about kiwis").await;
    assert_eq!(status, 200, "{body}");
    assert!(answer(&body).contains("partner bearer ok"), "{body}");
    let bearer_id = header(&headers, "x-request-id");
    let seen = rec.partner.lock().expect("lock").last().cloned().expect("the partner was called");
    assert_eq!(
        (seen.mode.as_str(), seen.bearer.as_str()),
        ("bearer", CONN_SECRET),
        "the connection's secret"
    );
    assert_eq!(seen.request_id, bearer_id, "the request id travels through the connection");

    // An endpoint hop over a connection with auth = "oauth_m2m": the connection's own client
    // credentials buy the token the partner sees; the service principal's token is not used.
    for _ in 0..2 {
        let (status, _, body) = bodies.ask(&url, Some(&alice), &[], "tell me about mangoes").await;
        assert_eq!(status, 200, "{body}");
        assert!(answer(&body).contains("partner m2m ok"), "{body}");
    }
    let (status, headers, body) = bodies.ask(&url, Some(&alice), &[], "tell me about mangoes").await;
    assert_eq!(status, 200, "{body}");
    let m2m_id = header(&headers, "x-request-id");
    let seen = rec.partner.lock().expect("lock").last().cloned().expect("the partner was called");
    assert_eq!(
        (seen.mode.as_str(), seen.bearer.as_str()),
        ("m2m", format!("{CONN_TOKEN_MARK}-1").as_str()),
        "the token of the connection's own client-credentials flow"
    );
    assert_eq!(seen.request_id, m2m_id);
    assert_eq!(
        *rec.conn_token_requests.lock().expect("lock"),
        vec![(CONN_CLIENT_SECRET.to_string(), true)],
        "one client-credentials request with the connection's client secret, then the cached token"
    );
    assert_eq!(rec.token_requests.load(Ordering::SeqCst), 2, "the service principal's count is untouched");

    // A hop refused for want of a USE CONNECTION grant: bob (east_sales) holds none on
    // `partner_bearer`, and nothing reaches the partner.
    let bob = cli(&config, &["token", "--as", "bob@example.com"]);
    let partner_calls = rec.partner.lock().expect("lock").len();
    let (status, headers, body) = bodies.ask(&url, Some(&bob), &[], "tell me about kiwis").await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("USE CONNECTION") && message.contains("`partner_bearer`"), "{body}");
    let ungranted_id = header(&headers, "x-request-id");

    // A hop refused by the connection's egress rules: the tool's absolute URL names a host the
    // connection does not allow (the very peers server, by another name), so nothing is sent.
    let (status, headers, body) = bodies.ask(&url, Some(&alice), &[], "tell me about lemons").await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("`partner_bearer`") && message.contains("`localhost`"), "{body}");
    let egress_id = header(&headers, "x-request-id");
    assert_eq!(rec.partner.lock().expect("lock").len(), partner_calls, "neither refusal reached the partner");

    server.stop();

    let audit: Value =
        serde_json::from_str(&cli(&config, &["audit", "--json", "--limit", "1000"])).expect("audit json");
    let rows = audit.as_array().expect("rows");
    let of = |id: &str| rows.iter().filter(|r| r["request_id"] == id).cloned().collect::<Vec<_>>();
    assert!(
        of(&forged_id).iter().all(|r| r["caller_email"] == "alice@example.com"),
        "the forged email is ignored"
    );
    let scoped = of(&scoped_id);
    assert_eq!(scoped.len(), 1, "{scoped:?}");
    assert_eq!(scoped[0]["decision"], "access_denied");
    assert_eq!(scoped[0]["reason"], "required scopes: admin.write");
    assert!(
        of(&mixed_id)
            .iter()
            .any(|r| r["principal"] == "switchboard-sp" && r["credential_mode"] == "automatic")
    );
    for (id, agent) in [(&mcp_id, "tickets"), (&bearer_id, "kiwi_tool"), (&m2m_id, "mango_relay")] {
        assert!(
            of(id).iter().any(|r| r["agent"] == agent && r["decision"] == "allowed"),
            "{agent}: {:?}",
            of(id)
        );
    }
    let ungranted = of(&ungranted_id);
    assert!(
        ungranted.iter().any(|r| r["decision"] == "access_denied"
            && r["caller_email"] == "bob@example.com"
            && r["reason"].as_str().unwrap_or("").contains("`partner_bearer`")),
        "{ungranted:?}"
    );
    let egress = of(&egress_id);
    assert!(
        egress.iter().any(|r| r["decision"] != "allowed"
            && r["reason"].as_str().unwrap_or("").contains("`localhost`")),
        "{egress:?}"
    );

    // Secrets never leak: not in logs, spans, audit rows or any response body.
    let mut haystack = std::fs::read_to_string(server.log_path()).expect("server log");
    haystack.push_str(&serde_json::to_string(&audit).expect("audit"));
    for id in [
        &request_id,
        &mixed_id,
        &forged_id,
        &scoped_id,
        &mcp_id,
        &bearer_id,
        &m2m_id,
        &ungranted_id,
        &egress_id,
    ] {
        haystack.push_str(&cli(&config, &["trace", "--json", id]));
    }
    haystack.push_str(&bodies.0.lock().expect("lock").join("\n"));
    assert!(haystack.contains("alice@example.com"), "the scan covers real output");
    for part in ["tickets_mcp", "partner_bearer", "partner_m2m"] {
        assert!(haystack.contains(part), "the scan covers the connection hops: {part}");
    }
    // The connection's client id and secret as an HTTP Basic header would carry them.
    let conn_basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CONN_CLIENT_ID}:{CONN_CLIENT_SECRET}"));
    let planted = [
        alice.as_str(),
        expired.as_str(),
        wrong_audience.as_str(),
        tampered.as_str(),
        RELAY_SECRET,
        CLIENT_SECRET,
        SP_TOKEN_MARK,
        "forged-PLANTED-proxy-token",
        bob.as_str(),
        CONN_SECRET,
        CONN_CLIENT_SECRET,
        conn_basic.as_str(),
        CONN_TOKEN_MARK,
    ];
    // And every credential a peer was actually sent, whatever minted it.
    let sent: std::collections::BTreeSet<String> = [&rec.relay, &rec.tool, &rec.partner]
        .into_iter()
        .flat_map(|log| log.lock().expect("lock").iter().map(|s| s.bearer.clone()).collect::<Vec<_>>())
        .filter(|b| !b.is_empty())
        .collect();
    assert!(sent.contains(CONN_SECRET), "the partner's credentials are among those scanned");
    for secret in planted.into_iter().chain(sent.iter().map(String::as_str)) {
        let signature = secret.rsplit('.').next().unwrap_or(secret);
        assert!(
            !haystack.contains(signature),
            "a secret leaked: …{}",
            &signature[signature.len().saturating_sub(8)..]
        );
    }
}
