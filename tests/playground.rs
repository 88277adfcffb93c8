//! The web playground at `/` of `switchboard serve`, in a real headless Chromium (Debian's
//! `chromium`, driven by `playwright-core` from `tests/playground/scenarios.mjs`), and the HTTP
//! surface it stands on: its assets and their headers, development sign-in, and the audit rows of
//! a request, scoped to who may read them.
//!
//! The browser scenarios: alice asks the fan-out question and sees both parts arrive as streamed
//! deltas and both agents' spans overlap in the waterfall, follows a citation to its source, gets a
//! clarifying question in a new thread and goes back to the first;
//! bob is denied the audit agent and sees the denial and its audit row; frank revokes `tickets_mcp`
//! from east_sales, bob's next tickets question is denied, and a re-grant restores it. Screenshots
//! are kept in `target/playground-screenshots/`; the checks read the DOM, never pixels.
//!
//! Without Node.js the test is skipped (loudly); with Node.js but without Chromium or
//! playwright-core it fails, naming what installs them.

use serde_json::{Value, json};
use std::ffi::OsString;
use std::time::Duration;
use switchboard_testkit::browser::{chromium, playground_scenarios, run_node};
use switchboard_testkit::{Serve, repo_root, skip_without_node};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

async fn serve(home: &tempfile::TempDir) -> Serve {
    let home = home.path().to_str().expect("a UTF-8 temp path");
    Serve::start(BIN.as_ref(), None, &[("SWITCHBOARD_HOME", home)]).await
}

/// A development token for `email` from the playground's own sign-in endpoint.
async fn sign_in(client: &reqwest::Client, url: &str, email: &str) -> String {
    let minted: Value = client
        .post(format!("{url}/playground/token"))
        .json(&json!({"email": email}))
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    minted["access_token"].as_str().unwrap_or_else(|| panic!("no token in {minted}")).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_playground_works_in_chromium_for_alice_bob_and_frank() {
    let test = "the_playground_works_in_chromium_for_alice_bob_and_frank";
    if skip_without_node(test, "scripts/playground-browser to test the playground in Chromium") {
        return;
    }
    let (browser, scenarios) = (chromium(), playground_scenarios());
    let home = tempfile::tempdir().expect("temp dir");
    let server = serve(&home).await;
    let shots = repo_root().join("target/playground-screenshots");
    let args: Vec<OsString> = vec![server.url().into(), shots.clone().into()];
    let run = run_node(&scenarios, &args, &[("CHROMIUM", browser.into())], Duration::from_secs(300)).await;
    println!("{}", run.stdout);
    assert!(
        run.success,
        "the browser scenarios failed:\n{}\n{}\nserver log:\n{}",
        run.stdout,
        run.stderr,
        server.log()
    );

    let reports: Vec<Value> = run.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let scenario = |name: &str| {
        reports
            .iter()
            .find(|r| r["scenario"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {reports:?}"))
    };
    for name in ["alice-fan-out", "alice-citations", "bob-audit-denied", "frank-revoke-regrant", "done"] {
        scenario(name);
    }
    for shot in
        ["alice-fan-out", "bob-audit-denied", "frank-revoked", "bob-tickets-denied", "bob-tickets-restored"]
    {
        let path = shots.join(format!("{shot}.png"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", path.display());
    }

    // What the page showed is what the server holds: the revoke and the re-grant are audit rows
    // by frank, and east_sales holds the grant again.
    let client = reqwest::Client::new();
    let frank = sign_in(&client, server.url(), "frank@example.com").await;
    let grants: Value = client
        .get(format!("{}/api/2.0/connections/tickets_mcp/grants", server.url()))
        .bearer_auth(&frank)
        .send()
        .await
        .expect("grants")
        .json()
        .await
        .expect("grants JSON");
    let east = grants["grants"].as_array().into_iter().flatten().find(|g| g["principal"] == "east_sales");
    assert_eq!(east.map(|g| g["granted_by"].clone()), Some(json!("frank@example.com")), "{grants}");
    let denied = scenario("frank-revoke-regrant")["denied_request"].as_str().expect("request id").to_string();
    let rows: Value = client
        .get(format!("{}/api/2.0/audit?request_id={denied}", server.url()))
        .bearer_auth(&frank)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("audit JSON");
    assert_eq!(rows["scope"], "all", "frank, an admin, reads every row: {rows}");
    let row = &rows["rows"][0];
    assert_eq!(
        (row["caller_email"].as_str(), row["decision"].as_str()),
        (Some("bob@example.com"), Some("access_denied"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_its_sign_in_and_the_audit_endpoint_answer_as_documented() {
    let home = tempfile::tempdir().expect("temp dir");
    let server = serve(&home).await;
    let url = server.url();
    let client = reqwest::Client::new();

    // The page and its scripts: compiled in, typed, locked down by CSP, revalidated by ETag.
    let page = client.get(format!("{url}/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    let csp = header(&page, "content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let tag = header(&page, "etag");
    assert!(page.text().await.expect("page text").contains("/playground/assets/app.js"));
    let again = client.get(format!("{url}/")).header("if-none-match", &tag).send().await.expect("page again");
    assert_eq!(again.status(), 304, "a current copy is not sent again");
    let script = client.get(format!("{url}/playground/assets/app.js")).send().await.expect("script");
    assert_eq!(header(&script, "content-type"), "text/javascript; charset=utf-8");
    assert_eq!(header(&script, "cache-control"), "no-cache");
    let missing = client.get(format!("{url}/playground/assets/nope.js")).send().await.expect("missing");
    assert_eq!(missing.status(), 404);

    // Development sign-in: the demo's identities, a token for one, precise refusals.
    let listed: Value = client
        .get(format!("{url}/playground/identities"))
        .send()
        .await
        .expect("identities")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed["development"], true);
    assert_eq!(listed["identities"].as_array().map(Vec::len), Some(6), "{listed}");
    let unknown = client
        .post(format!("{url}/playground/token"))
        .json(&json!({"email": "mallory@example.com"}))
        .send()
        .await
        .expect("unknown identity");
    assert_eq!(unknown.status(), 400);
    let body: Value = unknown.json().await.expect("error JSON");
    assert_eq!(body["error"]["param"], "email", "{body}");
    // A form post, which any web page could make from a visitor's browser, mints nothing.
    let form = client
        .post(format!("{url}/playground/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=alice%40example.com")
        .send()
        .await
        .expect("form post");
    assert_eq!(form.status(), 400);
    let minted = client
        .post(format!("{url}/playground/token"))
        .json(&json!({"email": "bob@example.com"}))
        .send()
        .await
        .expect("token");
    assert_eq!(header(&minted, "cache-control"), "no-store");
    let bob = minted.json::<Value>().await.expect("token JSON")["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    let alice = sign_in(&client, url, "alice@example.com").await;
    let dave = sign_in(&client, url, "dave@example.com").await;

    // The audit rows of bob's denied request: bob sees his own, dave (executive, who may use the
    // audit agent) sees all, alice none, and no token is 401.
    let denied = client
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&bob)
        .json(&json!({"messages": [{"role": "user", "content": "show recent denied requests in the audit log"}]}))
        .send()
        .await
        .expect("bob's question");
    assert_eq!(denied.status(), 403);
    let request_id = header(&denied, "x-request-id");
    // Request ids are hex: the query needs no escaping.
    let audit = |token: Option<String>, query: &str| {
        let client = client.clone();
        let url = format!("{url}/api/2.0/audit{query}");
        async move {
            let mut request = client.get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("audit request");
            (response.status().as_u16(), response.json::<Value>().await.expect("audit JSON"))
        }
    };
    let query = format!("?request_id={request_id}");
    let by = |token: &str| audit(Some(token.to_string()), &query);
    let (status, own) = by(&bob).await;
    assert_eq!((status, own["scope"].as_str()), (200, Some("own")), "{own}");
    let rows = own["rows"].as_array().expect("rows");
    assert!(rows.iter().any(|r| r["agent"] == "audit" && r["decision"] == "access_denied"), "{own}");
    assert!(rows.iter().all(|r| r["caller_email"] == "bob@example.com"), "{own}");
    let (_, all) = by(&dave).await;
    assert_eq!(
        (all["scope"].as_str(), all["rows"].as_array().map(Vec::len)),
        (Some("all"), Some(rows.len()))
    );
    let (_, none) = by(&alice).await;
    assert_eq!(none["rows"], json!([]), "alice reads nothing of bob's request: {none}");
    let (status, _) = audit(None, &query).await;
    assert_eq!(status, 401);
    let (status, body) = audit(Some(bob.clone()), "").await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("request_id")), "{body}");
    let (status, body) = audit(Some(bob), "?request_id=").await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("request_id")), "{body}");
}
