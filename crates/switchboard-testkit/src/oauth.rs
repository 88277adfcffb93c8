//! A local OAuth 2.0 provider for per-user connection tests: an authorization endpoint with a
//! tiny consent page, a token endpoint (authorization code with PKCE S256, refresh token), and
//! a protected "far side" API, `GET /me/files`, that answers only the token owner's files.
//!
//! The consent page is a plain HTML form: a `login` field chooses the user, "Allow" grants. A
//! test drives it with any HTTP client (or a browser). Access tokens live for a configurable
//! time, so refresh can be tested; [`Injected`] makes the provider refuse the way real ones do.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A refusal the provider can be told to make, as real providers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// The token endpoint answers `redirect_uri_mismatch` (as GitHub's does when the redirect
    /// URL differs from the one registered).
    RedirectUriMismatch,
    /// The authorization endpoint sends the user back with `error=admin_policy_enforced`: the
    /// organisation's policy forbids users consenting to this app.
    AdminPolicyEnforced,
    /// `offline_access` is silently dropped from what is granted, so no refresh token is issued.
    NoOfflineAccess,
}

/// The client the provider knows, and how long its access tokens live.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The registered client id.
    pub client_id: String,
    /// Its secret, checked with HTTP Basic at the token endpoint.
    pub client_secret: String,
    /// The registered redirect URL; an authorization request naming another is refused with a
    /// `redirect_uri_mismatch` page, as Google's does. `None` accepts any.
    pub redirect_uri: Option<String>,
    /// How long access tokens live.
    pub access_ttl: Duration,
}

struct Code {
    user: String,
    challenge: String,
    redirect_uri: String,
    scope: String,
    expires_at: Instant,
}

struct Inner {
    config: ProviderConfig,
    inject: Mutex<Option<Injected>>,
    codes: Mutex<HashMap<String, Code>>,
    access: Mutex<HashMap<String, (String, Instant)>>,
    refresh: Mutex<HashMap<String, (String, String)>>,
    issued_refresh: Mutex<Vec<String>>,
    files: Mutex<HashMap<String, Vec<String>>>,
    refresh_grants: AtomicU64,
    code_grants: AtomicU64,
    counter: AtomicU64,
}

impl Inner {
    fn token(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        format!("{prefix}-{n:04}-{nanos:x}")
    }
}

/// The provider, serving on a loopback port until dropped.
pub struct OAuthProvider {
    url: String,
    inner: Arc<Inner>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl OAuthProvider {
    /// Serves a provider for `config` on a free loopback port.
    pub async fn start(config: ProviderConfig) -> Self {
        let listener =
            TcpListener::bind("127.0.0.1:0").await.expect("a loopback port for the OAuth provider");
        let url = format!("http://{}", listener.local_addr().expect("the provider's address"));
        let inner = Arc::new(Inner {
            config,
            inject: Mutex::default(),
            codes: Mutex::default(),
            access: Mutex::default(),
            refresh: Mutex::default(),
            issued_refresh: Mutex::default(),
            files: Mutex::default(),
            refresh_grants: AtomicU64::new(0),
            code_grants: AtomicU64::new(0),
            counter: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/authorize", get(authorize_page).post(authorize_decision))
            .route("/token", axum::routing::post(token))
            .route("/me/files", get(files))
            .with_state(inner.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self { url, inner, shutdown: Some(tx) }
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The authorization endpoint.
    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.url)
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    /// Makes the provider refuse as `inject` says from now on (`None`: behave).
    pub fn inject(&self, inject: Option<Injected>) {
        *self.inner.inject.lock().expect("lock") = inject;
    }

    /// Gives `user` these files at the far side.
    pub fn set_files(&self, user: &str, files: &[&str]) {
        let files = files.iter().map(|f| f.to_string()).collect();
        self.inner.files.lock().expect("lock").insert(user.to_string(), files);
    }

    /// How many refresh-token grants were made.
    pub fn refresh_grants(&self) -> u64 {
        self.inner.refresh_grants.load(Ordering::Relaxed)
    }

    /// How many authorization codes were exchanged.
    pub fn code_grants(&self) -> u64 {
        self.inner.code_grants.load(Ordering::Relaxed)
    }

    /// Every refresh token ever issued, for scanning what the client stored.
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.inner.issued_refresh.lock().expect("lock").clone()
    }
}

impl Drop for OAuthProvider {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Deserialize, Default)]
struct AuthorizeParams {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    /// Set by the consent form.
    #[serde(default)]
    login: String,
    /// `allow` or `deny`, from the consent form's buttons.
    #[serde(default)]
    decision: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn error_page(code: &str, detail: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><title>Error 400: {code}</title></head><body><h1 id=\"error\">Error 400: {code}</h1><p>{}</p></body></html>",
        escape(detail)
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

/// What is wrong with an authorization request, as the page a provider shows instead of
/// redirecting (it cannot trust the redirect URL then).
fn check_request(inner: &Inner, p: &AuthorizeParams) -> Option<Response> {
    if p.client_id != inner.config.client_id {
        return Some(error_page("invalid_client", "unknown client_id"));
    }
    if inner.config.redirect_uri.as_deref().is_some_and(|r| r != p.redirect_uri) {
        return Some(error_page(
            "redirect_uri_mismatch",
            &format!(
                "The redirect URI in the request, {}, does not match the ones authorized for the OAuth client.",
                p.redirect_uri
            ),
        ));
    }
    if p.response_type != "code" || p.code_challenge.is_empty() || p.code_challenge_method != "S256" {
        return Some(error_page(
            "invalid_request",
            "response_type=code and a PKCE S256 code_challenge are required",
        ));
    }
    None
}

fn back(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut url = reqwest::Url::parse(redirect_uri).expect("a checked redirect URI");
    url.query_pairs_mut().extend_pairs(pairs);
    Redirect::to(url.as_str()).into_response()
}

async fn authorize_page(State(inner): State<Arc<Inner>>, Query(p): Query<AuthorizeParams>) -> Response {
    if let Some(refused) = check_request(&inner, &p) {
        return refused;
    }
    if *inner.inject.lock().expect("lock") == Some(Injected::AdminPolicyEnforced) {
        return back(
            &p.redirect_uri,
            &[
                ("error", "admin_policy_enforced"),
                ("error_description", "your organisation's policy does not allow this app"),
                ("state", &p.state),
            ],
        );
    }
    let hidden: String = [
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("scope", &p.scope),
        ("state", &p.state),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
    ]
    .iter()
    .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", escape(v)))
    .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><title>Consent</title></head><body>\
         <h1>Allow {client} to access your files?</h1><p id=\"scopes\">Scopes: {scope}</p>\
         <form method=\"post\" action=\"/authorize\">{hidden}\
         <label for=\"login\">Login</label> <input id=\"login\" name=\"login\" required>\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form></body></html>",
        client = escape(&p.client_id),
        scope = escape(&p.scope),
    ))
    .into_response()
}

async fn authorize_decision(State(inner): State<Arc<Inner>>, Form(p): Form<AuthorizeParams>) -> Response {
    if let Some(refused) = check_request(&inner, &p) {
        return refused;
    }
    if p.decision != "allow" || p.login.trim().is_empty() {
        return back(&p.redirect_uri, &[("error", "access_denied"), ("state", &p.state)]);
    }
    let mut scope = p.scope.clone();
    if *inner.inject.lock().expect("lock") == Some(Injected::NoOfflineAccess) {
        scope = scope.split(' ').filter(|s| *s != "offline_access").collect::<Vec<_>>().join(" ");
    }
    let code = inner.token("code");
    inner.codes.lock().expect("lock").insert(
        code.clone(),
        Code {
            user: p.login.trim().to_string(),
            challenge: p.code_challenge.clone(),
            redirect_uri: p.redirect_uri.clone(),
            scope,
            expires_at: Instant::now() + Duration::from_secs(60),
        },
    );
    back(&p.redirect_uri, &[("code", &code), ("state", &p.state)])
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_verifier: String,
    #[serde(default)]
    refresh_token: String,
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (status, Json(json!({"error": code, "error_description": description}))).into_response()
}

fn client_ok(inner: &Inner, headers: &HeaderMap) -> bool {
    let expected = STANDARD.encode(format!("{}:{}", inner.config.client_id, inner.config.client_secret));
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| v == expected)
}

fn issue(inner: &Inner, user: &str, scope: &str) -> Response {
    let access = inner.token("at");
    let expires = Instant::now() + inner.config.access_ttl;
    inner.access.lock().expect("lock").insert(access.clone(), (user.to_string(), expires));
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": inner.config.access_ttl.as_secs().max(1),
        "scope": scope,
    });
    if scope.split(' ').any(|s| s == "offline_access") {
        let refresh = inner.token("rt");
        inner.refresh.lock().expect("lock").insert(refresh.clone(), (user.to_string(), scope.to_string()));
        inner.issued_refresh.lock().expect("lock").push(refresh.clone());
        body["refresh_token"] = json!(refresh);
    }
    Json(body).into_response()
}

async fn token(State(inner): State<Arc<Inner>>, headers: HeaderMap, Form(f): Form<TokenForm>) -> Response {
    if !client_ok(&inner, &headers) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    }
    match f.grant_type.as_str() {
        "authorization_code" => {
            if *inner.inject.lock().expect("lock") == Some(Injected::RedirectUriMismatch) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "redirect_uri_mismatch",
                    "The redirect_uri MUST match the registered callback URL for this application.",
                );
            }
            let Some(code) = inner.codes.lock().expect("lock").remove(&f.code) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or used code");
            };
            if code.expires_at < Instant::now() || code.redirect_uri != f.redirect_uri {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "expired code or another redirect_uri",
                );
            }
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, f.code_verifier.as_bytes());
            if URL_SAFE_NO_PAD.encode(digest.as_ref()) != code.challenge {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "PKCE verification failed");
            }
            inner.code_grants.fetch_add(1, Ordering::Relaxed);
            issue(&inner, &code.user, &code.scope)
        }
        "refresh_token" => {
            // Refresh tokens rotate: the one presented is spent.
            let Some((user, scope)) = inner.refresh.lock().expect("lock").remove(&f.refresh_token) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or revoked refresh token",
                );
            };
            inner.refresh_grants.fetch_add(1, Ordering::Relaxed);
            issue(&inner, &user, &scope)
        }
        other => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", other),
    }
}

async fn files(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let owner = inner.access.lock().expect("lock").get(bearer).cloned();
    match owner {
        Some((user, expires)) if expires > Instant::now() => {
            let files = inner.files.lock().expect("lock").get(&user).cloned().unwrap_or_default();
            let summary = format!("files of {user}: {}", files.join(", "));
            Json(json!({"owner": user, "files": files, "summary": summary})).into_response()
        }
        Some(_) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "the access token expired"),
        None => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "unknown access token"),
    }
}
