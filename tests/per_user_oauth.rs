//! Per-user OAuth connections end to end, over real sockets: `switchboard serve` as a child
//! process, the test kit's local OAuth provider (consent page, PKCE token endpoint, and a far
//! side that answers only the token owner's files), and the consent flow driven by a plain HTTP
//! client the way a browser would: follow the redirect, fill in the consent form, press Allow.
//!
//! Covered: the consent link on a first hop, connect and callback, each user's own token at the
//! far side, refresh after expiry (one refresh for concurrent requests), a restart (the sealed
//! refresh token from the store), a revoked grant blocking a connected user, disconnect, the
//! provider's refusals explained, and the refresh tokens absent from the SQLite file and the log.

use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use switchboard_testkit::browser::{chromium, run_node};
use switchboard_testkit::oauth::{Injected, OAuthProvider, ProviderConfig};
use switchboard_testkit::{Serve, find_node, free_port, repo_root};

const CLIENT_ID: &str = "switchboard-drive";
const CLIENT_SECRET: &str = "drive-client-secret-PLANTED-91c2";
const KEY: &str = "5f1e0c9a7b3d2e4f60718293a4b5c6d7e8f90123456789abcdef0123456789ab";
/// Access tokens live this long; Switchboard refreshes at half of it.
const ACCESS_TTL: Duration = Duration::from_secs(6);
const QUESTION: &str = "list my drive files";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_switchboard"))
}

fn envs() -> [(&'static str, &'static str); 2] {
    [("SB_TEST_DRIVE_SECRET", CLIENT_SECRET), ("SB_TEST_DRIVE_KEY", KEY)]
}

fn write_config(dir: &Path, provider: &OAuthProvider, port: u16) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("agents")).expect("agents dir");
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \".\"\n\
             [router]\nthreshold = 0.3\n\
             [[connections]]\nname = \"drive\"\ndescription = \"Each user's own files\"\n\
             base_url = \"{far}\"\nauth = \"oauth_per_user\"\n\
             authorize_url = \"{authorize}\"\ntoken_url = \"{token}\"\n\
             client_id = \"{CLIENT_ID}\"\nclient_secret = \"env:SB_TEST_DRIVE_SECRET\"\n\
             scopes = [\"files.read\"]\n\
             redirect_url = \"http://127.0.0.1:{port}/oauth/callback\"\n\
             encryption_key = \"env:SB_TEST_DRIVE_KEY\"\n\
             allow_insecure_loopback = true\ngrants = [\"west_sales\", \"east_sales\"]\n\
             [identity]\nservice_principal = \"switchboard-sp\"\n\
             [[identity.dev_users]]\nemail = \"alice@example.com\"\nroles = [\"west_sales\"]\n\
             [[identity.dev_users]]\nemail = \"bob@example.com\"\nroles = [\"east_sales\"]\n\
             [[identity.dev_users]]\nemail = \"frank@example.com\"\nroles = [\"admin\"]\n",
            far = provider.url(),
            authorize = provider.authorize_url(),
            token = provider.token_url(),
        ),
    )
    .expect("main config");
    std::fs::write(
        dir.join("agents/drive_files.toml"),
        "name = \"drive_files\"\nkind = \"tool\"\nconnection = \"drive\"\n\
         description = \"Drive: lists the files in my drive.\"\n\
         examples = [\"list my drive files\", \"my files\"]\n\
         [credential]\nmode = \"obo\"\n\
         [tool.http]\nmethod = \"GET\"\npath = \"/me/files\"\nanswer_pointer = \"/summary\"\n",
    )
    .expect("agent file");
    config
}

fn token(config: &Path, email: &str) -> String {
    let out = Command::new(bin())
        .args(["token", "--as", email, "--config"])
        .arg(config)
        .envs(envs())
        .output()
        .expect("switchboard token runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn ask(url: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": "switchboard", "messages": [{"role": "user", "content": QUESTION}]}))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

fn answer(body: &Value) -> &str {
    body["choices"][0]["message"]["content"].as_str().unwrap_or("")
}

/// The `name="…" value="…"` pairs of the consent page's hidden inputs.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let unescape =
        |v: &str| v.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once("\" value=\"")?;
            let (value, _) = rest.split_once('"')?;
            Some((name.to_string(), unescape(value)))
        })
        .collect()
}

/// The `name=value` of the flow-binding cookie Switchboard's connect answer sets.
fn binding_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sb_oauth_flow="))
        .expect("connect sets the sb_oauth_flow cookie");
    assert!(set.contains("HttpOnly") && set.contains("Path=/oauth/callback"), "{set}");
    set.split(';').next().unwrap_or_default().to_string()
}

/// Follows redirects as a browser does, sending `cookie` only where it was set for: the callback.
async fn follow(
    client: &reqwest::Client,
    mut response: reqwest::Response,
    cookie: &str,
) -> reqwest::Response {
    for _ in 0..10 {
        if !response.status().is_redirection() {
            return response;
        }
        let location = response.headers()["location"].to_str().expect("location");
        let next = response.url().join(location).expect("a redirect URL");
        let mut request = client.get(next.clone());
        if next.path().ends_with("/oauth/callback") {
            request = request.header("cookie", cookie);
        }
        response = request.send().await.expect("the redirect answers");
    }
    panic!("more than 10 redirects");
}

/// Drives the consent flow as a browser would: Switchboard's connect link (with the caller's
/// bearer, redirects not followed, so the token never goes to the provider), then the provider's
/// consent page, the form posted with `login` and Allow, and the redirects back to the callback,
/// which gets the cookie the connect link set. Returns the final status and page.
async fn consent(url: &str, token: &str, login: &str) -> (u16, String) {
    let no_redirects =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let start = no_redirects
        .get(format!("{url}/oauth/connect/drive"))
        .bearer_auth(token)
        .send()
        .await
        .expect("connect answers");
    assert_eq!(start.status().as_u16(), 303, "connect redirects to the provider");
    let cookie = binding_cookie(&start);
    let location = start.headers()["location"].to_str().expect("location").to_string();
    let authorize = reqwest::Url::parse(&location).expect("an absolute provider URL");
    let q: std::collections::HashMap<String, String> = authorize.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(
        q["scope"].split(' ').any(|s| s == "offline_access"),
        "offline_access is requested: {}",
        q["scope"]
    );
    assert!(q["state"].starts_with("drive."), "{}", q["state"]);

    let browser = no_redirects;
    let page = browser.get(&location).send().await.expect("the consent page");
    let page = follow(&browser, page, &cookie).await;
    let page_status = page.status().as_u16();
    let html = page.text().await.expect("html");
    if page_status != 200 || !html.contains("<form") {
        // The provider refused before showing a form (or sent the browser straight back).
        return (page_status, html);
    }
    assert!(html.contains(">Allow</button>"), "{html}");
    let mut form = hidden_inputs(&html);
    form.push(("login".into(), login.into()));
    form.push(("decision".into(), "allow".into()));
    let action = format!("{}/authorize", authorize.origin().ascii_serialization());
    let done = browser.post(action).form(&form).send().await.expect("the form posts");
    let done = follow(&browser, done, &cookie).await;
    assert!(
        done.url().path().ends_with("/oauth/callback"),
        "the browser lands on the callback: {}",
        done.url()
    );
    (done.status().as_u16(), done.text().await.expect("callback page"))
}

async fn connections(url: &str, token: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{url}/oauth/connections"))
        .bearer_auth(token)
        .send()
        .await
        .expect("status answers")
        .json()
        .await
        .expect("json")
}

async fn admin(url: &str, token: &str, grant: bool, principal: &str) {
    let client = reqwest::Client::new();
    let base = format!("{url}/api/2.0/connections/drive/grants");
    let response = if grant {
        client.post(&base).bearer_auth(token).json(&json!({"principal": principal})).send().await
    } else {
        client.delete(format!("{base}/{principal}")).bearer_auth(token).send().await
    }
    .expect("admin API answers");
    assert!(response.status().is_success(), "{:?}", response.text().await);
}

/// Every file of the store (the database and its WAL), as bytes.
fn store_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).expect("data dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("switchboard.db") {
            bytes.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The local provider (alice's and bob's files, a short access-token life) and `switchboard serve`
/// with a `drive` connection to it.
async fn start() -> (OAuthProvider, tempfile::TempDir, std::path::PathBuf, Serve) {
    let port = free_port();
    let provider = OAuthProvider::start(ProviderConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uri: Some(format!("http://127.0.0.1:{port}/oauth/callback")),
        access_ttl: ACCESS_TTL,
    })
    .await;
    provider.set_files("alice", &["q3-plan.docx", "alice-notes.txt"]);
    provider.set_files("bob", &["bob-budget.xlsx"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &provider, port);
    let server = Serve::start_on(bin(), Some(&config), port, &envs()).await;
    (provider, dir, config, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_user_reaches_the_far_side_with_their_own_token() {
    let (provider, dir, config, mut server) = start().await;
    let url = server.url().to_string();
    let (alice, bob, frank) = (
        token(&config, "alice@example.com"),
        token(&config, "bob@example.com"),
        token(&config, "frank@example.com"),
    );

    // A first hop before consent: a consent link, not a failure.
    let (status, body) = ask(&url, &alice).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "consent_required", "{body}");
    assert_eq!(body["error"]["consent_url"], format!("{url}/oauth/connect/drive"), "{body}");

    // Consent, callback, and alice's own files through her own token.
    let (status, page) = consent(&url, &alice, "alice").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("connected to `drive`"), "{page}");
    assert_eq!(provider.code_grants(), 1);
    let (status, body) = ask(&url, &alice).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&body), "files of alice: q3-plan.docx, alice-notes.txt", "{body}");
    let listed = connections(&url, &alice).await;
    assert_eq!(listed["connections"][0]["connected"], true, "{listed}");

    // A state is single-use: replaying a finished sign-in is refused.
    let replay =
        reqwest::get(format!("{url}/oauth/callback?state=drive.replayed&code=x")).await.expect("callback");
    assert_eq!(replay.status().as_u16(), 400);

    // A sign-in finished in a browser other than the one that started it (no cookie) is
    // refused: a connect link passed to someone else cannot store their account under the
    // starter's name.
    let started: Value = reqwest::Client::new()
        .get(format!("{url}/oauth/connect/drive"))
        .bearer_auth(&bob)
        .header("accept", "application/json")
        .send()
        .await
        .expect("connect answers")
        .json()
        .await
        .expect("json");
    let authorize =
        reqwest::Url::parse(started["authorize_url"].as_str().expect("authorize_url")).expect("url");
    let state =
        authorize.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).expect("state");
    let elsewhere =
        reqwest::get(format!("{url}/oauth/callback?state={state}&code=x")).await.expect("callback");
    assert_eq!(elsewhere.status().as_u16(), 400);
    assert!(elsewhere.text().await.expect("page").contains("another browser"));

    // After the access token expired: concurrent hops, one refresh, and the far side (which
    // refuses expired tokens) still answers alice.
    tokio::time::sleep(ACCESS_TTL + Duration::from_millis(500)).await;
    let before = provider.refresh_grants();
    let asks: Vec<_> = (0..4)
        .map(|_| {
            let (url, alice) = (url.clone(), alice.clone());
            tokio::spawn(async move { ask(&url, &alice).await })
        })
        .collect();
    for task in asks {
        let (status, body) = task.await.expect("the ask task");
        assert_eq!(status, 200, "{body}");
        assert_eq!(answer(&body), "files of alice: q3-plan.docx, alice-notes.txt");
    }
    let refreshes = provider.refresh_grants() - before;
    println!("refresh grants for 4 concurrent hops after expiry: {refreshes}");
    assert_eq!(refreshes, 1, "one refresh per user, shared by concurrent hops");

    // A second user: consent of their own, and only their own data.
    let (status, body) = ask(&url, &bob).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("consent_required")), "{body}");
    let (status, page) = consent(&url, &bob, "bob").await;
    assert_eq!(status, 200, "{page}");
    let (status, body) = ask(&url, &bob).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&body), "files of bob: bob-budget.xlsx", "{body}");
    let (_, body) = ask(&url, &alice).await;
    assert_eq!(answer(&body), "files of alice: q3-plan.docx, alice-notes.txt", "{body}");

    // Revoking the grant blocks a connected user: the grant is checked first.
    admin(&url, &frank, false, "west_sales").await;
    let (status, body) = ask(&url, &alice).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "access_denied", "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("USE CONNECTION"), "{body}");
    admin(&url, &frank, true, "west_sales").await;
    let (status, body) = ask(&url, &alice).await;
    assert_eq!(status, 200, "{body}");

    // A restart forgets access tokens; the sealed refresh token in the store brings alice back.
    server.stop();
    let before = provider.refresh_grants();
    let port: u16 = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the server's port");
    let mut server = Serve::start_on(bin(), Some(&config), port, &envs()).await;
    let (status, body) = ask(&url, &alice).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&body), "files of alice: q3-plan.docx, alice-notes.txt");
    assert_eq!(provider.refresh_grants() - before, 1, "the stored refresh token was used");

    // Disconnect: the next hop asks for consent again.
    let gone: Value = reqwest::Client::new()
        .delete(format!("{url}/oauth/connections/drive"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("disconnect answers")
        .json()
        .await
        .expect("json");
    assert_eq!(gone["disconnected"], true, "{gone}");
    let (status, body) = ask(&url, &alice).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("consent_required")), "{body}");
    let listed = connections(&url, &alice).await;
    assert_eq!(listed["connections"][0]["connected"], false, "{listed}");
    let (_, body) = ask(&url, &bob).await;
    assert_eq!(answer(&body), "files of bob: bob-budget.xlsx", "bob is still connected: {body}");

    // The provider's refusals, explained; nothing is stored for them.
    provider.inject(Some(Injected::AdminPolicyEnforced));
    let (status, page) = consent(&url, &alice, "alice").await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("admin_policy_enforced") && page.contains("administrator"), "{page}");
    provider.inject(Some(Injected::NoOfflineAccess));
    let (status, page) = consent(&url, &alice, "alice").await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("offline_access") && page.contains("no refresh token"), "{page}");
    provider.inject(Some(Injected::RedirectUriMismatch));
    let (status, page) = consent(&url, &alice, "alice").await;
    assert_eq!(status, 500, "{page}");
    assert!(
        page.contains("redirect_uri_mismatch") && page.contains(&format!("{url}/oauth/callback")),
        "{page}"
    );
    provider.inject(None);
    let (status, body) = ask(&url, &alice).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("consent_required")), "{body}");

    // No refresh token is readable in the database file, nor in the server's log.
    server.stop();
    let stored = store_bytes(dir.path());
    assert!(contains(&stored, "user_tokens"), "the store has the user token table");
    let issued = provider.issued_refresh_tokens();
    assert!(issued.len() >= 3, "{issued:?}");
    let log = server.log();
    for token in &issued {
        assert!(!contains(&stored, token), "a refresh token is readable in the database file");
        assert!(!log.contains(token.as_str()), "a refresh token is in the server log");
    }
    assert!(!log.contains(CLIENT_SECRET) && !log.contains(KEY), "a secret is in the server log");
}

/// The whole flow through the playground in a real headless Chromium (Debian's `chromium`, driven
/// by playwright-core from `tests/playground/oauth_consent.mjs`): alice asks and is shown the
/// consent link; Connect opens the provider's page in a new tab, she logs in and allows, the
/// callback says connected; the same question now brings her own files, and again after her
/// access token expired (refreshed); Disconnect forgets her. Then bob, who sees only his.
/// Screenshots are kept in `target/oauth-screenshots/`. Skipped, loudly, where Node.js or
/// playwright-core is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_ask_and_disconnect_through_the_playground_in_chromium() {
    let playwright = repo_root().join("tests/playground/node_modules/playwright-core/package.json");
    if find_node().is_none() || !playwright.is_file() {
        eprintln!(
            "\n\n*** SKIPPED connect_ask_and_disconnect_through_the_playground_in_chromium: Node.js or playwright-core is missing; \
             run scripts/playground-browser. ***\n\n"
        );
        return;
    }
    let (provider, _dir, config, server) = start().await;
    let url = server.url().to_string();
    let shots = repo_root().join("target/oauth-screenshots");
    let script = repo_root().join("tests/playground/oauth_consent.mjs");
    // One person's whole flow in the browser, asking again `reask_after` later when given.
    let browse = |email: &str, login: &str, reask_after: Duration| {
        let args: Vec<OsString> = vec![
            url.clone().into(),
            email.into(),
            login.into(),
            QUESTION.into(),
            shots.clone().into(),
            reask_after.as_millis().to_string().into(),
        ];
        let script = script.clone();
        async move {
            let run =
                run_node(&script, &args, &[("CHROMIUM", chromium().into())], Duration::from_secs(180)).await;
            assert!(run.success, "the browser run failed:\n{}\n{}", run.stdout, run.stderr);
            let seen: Value =
                serde_json::from_str(run.stdout.lines().last().unwrap_or_default()).expect("one JSON line");
            assert_eq!(seen["heading"], "Connected", "{seen}");
            seen
        }
    };

    // alice: consent, her own files, and again once her access token expired (one refresh).
    let seen = browse("alice@example.com", "alice", ACCESS_TTL + Duration::from_millis(500)).await;
    let alice_files = "files of alice: q3-plan.docx, alice-notes.txt";
    assert!(seen["answer"].as_str().unwrap_or_default().contains(alice_files), "{seen}");
    assert!(seen["reanswer"].as_str().unwrap_or_default().contains(alice_files), "{seen}");
    // At least once: on a slow machine the first ask may already come after half the token's life.
    assert!(provider.refresh_grants() >= 1, "the expired access token was refreshed");
    // bob, a second user in his own browser session, sees only his own files.
    let seen = browse("bob@example.com", "bob", Duration::ZERO).await;
    assert!(seen["answer"].as_str().unwrap_or_default().contains("files of bob: bob-budget.xlsx"), "{seen}");
    assert!(!seen["answer"].as_str().unwrap_or_default().contains("alice"), "{seen}");
    for login in ["alice", "bob"] {
        for shot in ["callback-connected", "playground-connected", "playground-answer"] {
            let file = shots.join(format!("{shot}-{login}.png"));
            assert!(std::fs::metadata(&file).map(|m| m.len() > 0).unwrap_or(false), "{file:?} was saved");
        }
    }
    assert_eq!(provider.code_grants(), 2);

    // The page's Disconnect forgot alice's account: the next hop asks for consent again.
    let alice = token(&config, "alice@example.com");
    let (status, body) = ask(&url, &alice).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("consent_required")), "{body}");
}
