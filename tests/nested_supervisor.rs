//! A nested supervisor over real sockets: caller → outer `switchboard serve` → inner
//! `switchboard serve` → the inner's SQL agent.
//!
//! The outer runs the development identity provider; the inner is configured like production,
//! with `[auth]` trusting only the outer's issuer key (fetched from the outer's JWKS). The
//! outer's one agent is `kind = "supervisor"` with `obo` credentials, so the inner must see the
//! human who asked the outer: its row filter answers per caller, and both audit logs name them.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use switchboard_testkit::{Serve, free_port, run_cli};

/// The repository's demo configuration; the outer copies its `[identity]` section.
const DEMO_CONFIG: &str = include_str!("../switchboard.toml");

/// Runs the CLI and returns its trimmed stdout; `envs` adds variables, `SWITCHBOARD_HOME` is
/// cleared unless given.
fn cli(args: &[&str], envs: &[(&str, &Path)]) -> String {
    run_cli(Path::new(env!("CARGO_BIN_EXE_switchboard")), args, envs)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The `[identity]` section of the demo config, with its `[[identity.*]]` entries.
fn identity_section(config: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in config.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            inside = trimmed == "[identity]"
                || trimmed.starts_with("[[identity.")
                || trimmed.starts_with("[identity.");
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.contains("[[identity.dev_users]]"), "the demo config has development users:\n{config}");
    out
}

/// The inner's production-style config: `switchboard init`'s demo without development users,
/// served as model `inner`, trusting the outer's development issuer through its JWKS.
fn make_inner_config(demo: &str, outer_url: &str) -> String {
    let mut out = String::new();
    let mut section = String::new();
    let mut skipping = false;
    let mut renamed = false;
    for line in demo.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            section = trimmed.to_string();
            skipping = trimmed == "[[identity.dev_users]]";
        }
        if skipping {
            continue;
        }
        if section == "[supervisor]" && trimmed.starts_with("name") && trimmed.contains('=') {
            out.push_str("name = \"inner\"\n");
            renamed = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(renamed, "the init config has a [supervisor] name to replace:\n{demo}");
    assert!(!out.contains("dev_users"), "every development user is removed:\n{out}");
    out.push_str(&format!(
        "\n[auth]\n\n[[auth.issuers]]\nissuer = \"urn:switchboard:dev\"\naudience = \"switchboard\"\n\
         jwks_url = \"{outer_url}/.well-known/jwks.json\"\nalgorithms = [\"ES256\"]\n"
    ));
    out
}

fn write_outer_config(dir: &Path, inner_url: &str) {
    std::fs::create_dir_all(dir.join("agents")).expect("outer agents dir");
    std::fs::write(
        dir.join("switchboard.toml"),
        format!("data_dir = \".\"\n\n[supervisor]\nname = \"outer\"\n\n{}", identity_section(DEMO_CONFIG)),
    )
    .expect("outer config");
    std::fs::write(
        dir.join("agents").join("analytics.toml"),
        format!(
            "name = \"analytics\"\nkind = \"supervisor\"\n\
             description = \"Sales analytics through the analytics supervisor: revenue by region, deals, margins.\"\n\
             examples = [\"total revenue by region\", \"top 5 deals by amount\"]\n\
             [credential]\nmode = \"obo\"\n\
             [supervisor]\nurl = \"{inner_url}/v1/chat/completions\"\nmodel = \"inner\"\n"
        ),
    )
    .expect("outer agent");
}

/// POSTs one question; returns the status, the `x-request-id` and the body.
async fn ask(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    model: &str,
    q: &str,
) -> (u16, String, Value) {
    let mut rb = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": q}]}));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let response = rb.send().await.expect("the request completes");
    let status = response.status().as_u16();
    let id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = response.text().await.expect("body");
    (status, id, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn answer(body: &Value) -> &str {
    body["choices"][0]["message"]["content"].as_str().unwrap_or("")
}

fn audit(config: &Path) -> Vec<Value> {
    let text = cli(&["audit", "--json", "--limit", "200", "--config", path_str(config)], &[]);
    let rows: Value = serde_json::from_str(&text).expect("audit JSON");
    rows.as_array().expect("audit rows").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_supervisor_sees_the_same_caller() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (outer_dir, inner_dir, stranger_home) =
        (tmp.path().join("outer"), tmp.path().join("inner"), tmp.path().join("stranger"));
    let (outer_port, inner_port) = (free_port(), free_port());
    let (outer_url, inner_url) =
        (format!("http://127.0.0.1:{outer_port}"), format!("http://127.0.0.1:{inner_port}"));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");

    // The inner: the demo as files, then made production-style.
    cli(&["init", path_str(&inner_dir)], &[]);
    let inner_config = inner_dir.join("switchboard.toml");
    let demo = std::fs::read_to_string(&inner_config).expect("init wrote switchboard.toml");
    std::fs::write(&inner_config, make_inner_config(&demo, &outer_url)).expect("inner config");
    cli(&["validate", "--config", path_str(&inner_config)], &[]);

    write_outer_config(&outer_dir, &inner_url);
    let outer_config = outer_dir.join("switchboard.toml");
    cli(&["validate", "--config", path_str(&outer_config)], &[]);

    // The outer first: the inner fetches its JWKS on first use.
    let bin = Path::new(env!("CARGO_BIN_EXE_switchboard"));
    let mut outer = Serve::start_on(bin, Some(&outer_config), outer_port, &[("RUST_LOG", "info")]).await;
    let mut inner = Serve::start_on(bin, Some(&inner_config), inner_port, &[("RUST_LOG", "info")]).await;
    let logs = |outer: &Serve, inner: &Serve| {
        format!("--- outer server log ---\n{}\n--- inner server log ---\n{}", outer.log(), inner.log())
    };

    let token = |who: &str| cli(&["token", "--config", path_str(&outer_config), "--as", who], &[]);
    let (alice, carol) = (token("alice@example.com"), token("carol@example.com"));

    // Alice (west_sales) through the outer: the inner's row filter applies to her.
    let (status, alice_id, body) =
        ask(&http, &outer_url, Some(&alice), "outer", "total revenue by region").await;
    assert_eq!(status, 200, "alice via the outer: {body}\n{}", logs(&outer, &inner));
    let text = answer(&body);
    assert!(text.contains("West"), "alice sees the West: {body}\n{}", logs(&outer, &inner));
    assert!(
        !text.contains("East") && !text.contains("Central"),
        "alice sees only the West, so the inner ran as alice: {body}"
    );

    // Carol (managers) through the outer: every region.
    let (status, carol_id, body) =
        ask(&http, &outer_url, Some(&carol), "outer", "total revenue by region").await;
    assert_eq!(status, 200, "carol via the outer: {body}\n{}", logs(&outer, &inner));
    for region in ["West", "East", "Central"] {
        assert!(answer(&body).contains(region), "carol sees {region}: {body}");
    }

    // The inner trusts the outer's issuer key directly too.
    let (status, _, body) = ask(&http, &inner_url, Some(&alice), "inner", "total revenue by region").await;
    assert_eq!(status, 200, "alice's outer token at the inner: {body}\n{}", logs(&outer, &inner));

    // ... and nothing else: no token, or a token from a different development IdP (the built-in
    // demo's own key in another home) with the same issuer, audience and user.
    let (status, _, body) = ask(&http, &inner_url, None, "inner", "total revenue by region").await;
    assert_eq!(status, 401, "no token at the inner: {body}");
    std::fs::create_dir_all(&stranger_home).expect("stranger home");
    let stranger = cli(&["token", "--as", "alice@example.com"], &[("SWITCHBOARD_HOME", &stranger_home)]);
    assert_ne!(stranger, alice);
    let (status, _, body) = ask(&http, &inner_url, Some(&stranger), "inner", "total revenue by region").await;
    assert_eq!(status, 401, "a token signed by another key at the inner: {body}\n{}", logs(&outer, &inner));
    // The outer rejects it as well, so it never reaches the inner on anyone's behalf.
    let (status, _, body) = ask(&http, &outer_url, Some(&stranger), "outer", "total revenue by region").await;
    assert_eq!(status, 401, "a token signed by another key at the outer: {body}");

    outer.stop();
    inner.stop();

    // The inner's audit: alice's request ran its SQL as alice. The inner keys it by its own
    // request id; the outer's travels with the hop and is logged as the client's.
    let inner_rows = audit(&inner_config);
    let of =
        |rows: &[Value], id: &str| rows.iter().filter(|r| r["request_id"] == id).cloned().collect::<Vec<_>>();
    let inner_log = inner.log();
    let inner_id = |outer_id: &str| {
        inner_request_id(&inner_log, outer_id)
            .unwrap_or_else(|| panic!("no inner request logged for outer request {outer_id}:\n{inner_log}"))
    };
    let (alice_inner_id, carol_inner_id) = (inner_id(&alice_id), inner_id(&carol_id));
    assert_ne!(alice_inner_id, alice_id, "the inner does not adopt the outer's request id");
    let alice_inner = of(&inner_rows, &alice_inner_id);
    assert!(
        alice_inner.iter().any(|r| r["agent"] == "sales"
            && r["hop"] == "sql"
            && r["caller_email"] == "alice@example.com"
            && r["principal"] == "alice@example.com"),
        "the inner ran alice's SQL as alice under request {alice_id}: {alice_inner:#?}\nall inner rows: {inner_rows:#?}"
    );
    assert!(
        alice_inner.iter().all(|r| r["caller_email"] == "alice@example.com"),
        "no row of alice's request names anyone else: {alice_inner:#?}"
    );
    assert!(
        inner_rows.iter().all(|r| r["principal"] != "switchboard-sp"),
        "the inner never acted as a service principal: {inner_rows:#?}"
    );
    let carol_inner = of(&inner_rows, &carol_inner_id);
    assert!(
        carol_inner.iter().any(|r| r["agent"] == "sales" && r["principal"] == "carol@example.com"),
        "the inner ran carol's SQL as carol: {carol_inner:#?}"
    );

    // The outer's audit: the nested-supervisor hop, on behalf of alice, with her credential.
    let outer_rows = audit(&outer_config);
    let alice_outer = of(&outer_rows, &alice_id);
    assert!(
        alice_outer.iter().any(|r| r["agent"] == "analytics"
            && r["caller_email"] == "alice@example.com"
            && r["principal"] == "alice@example.com"
            && r["credential_mode"] == "obo"
            && r["decision"] == "allowed")
            && alice_outer.iter().any(|r| r["agent"] == "analytics"
                && r["hop"] == "http"
                && r["target"] == format!("127.0.0.1:{inner_port}")
                && r["principal"] == "alice@example.com"
                && r["credential_mode"] == "obo"),
        "the outer's analytics hop for alice: {alice_outer:#?}\nall outer rows: {outer_rows:#?}"
    );
}

/// The inner server's own request id for the request the outer sent with `x-request-id:
/// outer_id`, read from its access log, where the outer's id is the client request id.
fn inner_request_id(log: &str, outer_id: &str) -> Option<String> {
    log.lines().filter(|line| line.contains(outer_id)).find_map(|line| {
        line.split("request_id=").skip(1).find_map(|rest| {
            let id: String = rest
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                .collect();
            (!id.is_empty() && id != outer_id).then_some(id)
        })
    })
}
