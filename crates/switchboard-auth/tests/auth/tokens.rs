//! ClientCredentials (automatic) and Rfc8693Exchanger (obo) against real token endpoints.

use crate::common::*;
use crate::edge::Recorder;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use switchboard_auth::{ClientCredentials, ClientCredentialsConfig, Rfc8693Exchanger, TokenExchangeConfig};
use switchboard_core::{ErrorKind, Secret, SecretRef};
use switchboard_govern::layers::{TokenExchanger, TokenSource};

fn file_ref(text: &str) -> SecretRef {
    SecretRef::try_from(text.to_string()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_refresh_is_single_flight() {
    let recorder = Recorder::default();
    // The first token is issued already expired; later ones live an hour.
    async fn token(
        State(rec): State<Recorder>,
        headers: HeaderMap,
        Form(form): Form<Vec<(String, String)>>,
    ) -> Response {
        let n = rec.record(&headers, form);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let expires_in = if n == 1 { 0 } else { 3600 };
        axum::Json(json!({"access_token": format!("sp-token-{n}"), "token_type": "Bearer", "expires_in": expires_in}))
            .into_response()
    }
    let base = serve(Router::new().route("/oidc/v1/token", post(token)).with_state(recorder.clone())).await;
    let (secret_ref, _guard) = secret_file("sp-secret");
    let mut config =
        ClientCredentialsConfig::new(format!("{base}/oidc/v1/token"), "sp-client", file_ref(&secret_ref));
    config.scopes = vec!["all-apis".into(), "sql".into()];
    let source = Arc::new(ClientCredentials::new(config, reqwest::Client::new()));

    assert_eq!(source.token().await.unwrap().expose(), "sp-token-1");
    assert_eq!(recorder.calls(), 1);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let source = source.clone();
        tasks.spawn(async move { source.token().await.unwrap().expose().to_string() });
    }
    let mut tokens = Vec::new();
    while let Some(t) = tasks.join_next().await {
        tokens.push(t.unwrap());
    }
    assert_eq!(tokens.len(), 100);
    assert!(tokens.iter().all(|t| t == "sp-token-2"), "{tokens:?}");
    assert_eq!(recorder.calls(), 2, "100 concurrent callers of a stale token cause exactly one refresh");

    // The fresh token is served from the cache.
    assert_eq!(source.token().await.unwrap().expose(), "sp-token-2");
    assert_eq!(recorder.calls(), 2);

    let form = recorder.forms.lock().unwrap()[1].clone();
    assert_eq!(
        form,
        vec![("grant_type".into(), "client_credentials".into()), ("scope".into(), "all-apis sql".into())]
    );
    let basic = recorder.auth.lock().unwrap()[1].clone().unwrap();
    let decoded =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &basic["Basic ".len()..]).unwrap();
    assert_eq!(decoded, b"sp-client:sp-secret");
}

#[tokio::test]
async fn client_credentials_errors_are_upstream_and_config() {
    async fn reject() -> Response {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "bad secret"})),
        )
            .into_response()
    }
    let base = serve(Router::new().route("/token", post(reject))).await;
    let (secret_ref, _guard) = secret_file("sp-secret");
    let source = ClientCredentials::new(
        ClientCredentialsConfig::new(format!("{base}/token"), "sp", file_ref(&secret_ref)),
        reqwest::Client::new(),
    );
    let err = source.token().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Upstream);
    assert!(err.message.contains("401"), "{}", err.message);
    assert!(err.message.contains("invalid_client: bad secret"), "{}", err.message);

    let missing = ClientCredentials::new(
        ClientCredentialsConfig::new(
            format!("{base}/token"),
            "sp",
            SecretRef::Env("SWITCHBOARD_AUTH_TEST_UNSET".into()),
        ),
        reqwest::Client::new(),
    );
    let err = missing.token().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert_eq!(err.message, "secret env:SWITCHBOARD_AUTH_TEST_UNSET is not set");

    let unreachable = ClientCredentials::new(
        ClientCredentialsConfig::new("http://127.0.0.1:1/token", "sp", file_ref(&secret_ref)),
        reqwest::Client::new(),
    );
    assert_eq!(unreachable.token().await.unwrap_err().kind, ErrorKind::Upstream);
}

#[tokio::test]
async fn exchanger_sends_rfc8693_fields_and_caches_until_expiry() {
    let recorder = Recorder::default();
    async fn token(
        State(rec): State<Recorder>,
        headers: HeaderMap,
        Form(form): Form<Vec<(String, String)>>,
    ) -> Response {
        let n = rec.record(&headers, form);
        axum::Json(json!({
            "access_token": format!("downscoped-{n}"),
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 2,
        }))
        .into_response()
    }
    let base = serve(Router::new().route("/token", post(token)).with_state(recorder.clone())).await;
    let exchanger =
        Rfc8693Exchanger::new(TokenExchangeConfig::new(format!("{base}/token")), reqwest::Client::new())
            .unwrap();
    let caller_token = Secret::new("caller.jwt.token");
    let scopes = vec!["sql".to_string(), "genie".to_string()];

    let t1 = exchanger.exchange(&caller_token, Some("https://genie.test"), &scopes).await.unwrap();
    assert_eq!(t1.expose(), "downscoped-1");
    assert_eq!(
        recorder.forms.lock().unwrap()[0],
        vec![
            ("grant_type".to_string(), "urn:ietf:params:oauth:grant-type:token-exchange".to_string()),
            ("subject_token".to_string(), "caller.jwt.token".to_string()),
            ("subject_token_type".to_string(), "urn:ietf:params:oauth:token-type:jwt".to_string()),
            ("requested_token_type".to_string(), "urn:ietf:params:oauth:token-type:access_token".to_string()),
            ("scope".to_string(), "sql genie".to_string()),
            ("audience".to_string(), "https://genie.test".to_string()),
        ]
    );
    assert_eq!(recorder.auth.lock().unwrap()[0], None);

    // Same caller, audience and scope set (in any order): a cache hit.
    let reversed = vec!["genie".to_string(), "sql".to_string()];
    let t2 = exchanger.exchange(&caller_token, Some("https://genie.test"), &reversed).await.unwrap();
    assert_eq!(t2.expose(), "downscoped-1");
    assert_eq!(recorder.calls(), 1);

    // Another audience, another caller: new exchanges; no audience → no audience field.
    exchanger.exchange(&caller_token, None, &scopes).await.unwrap();
    assert!(recorder.forms.lock().unwrap()[1].iter().all(|(k, _)| k != "audience"));
    exchanger
        .exchange(&Secret::new("other.caller.token"), Some("https://genie.test"), &scopes)
        .await
        .unwrap();
    assert_eq!(recorder.calls(), 3);

    // expires_in 2 s with the skew capped at half the lifetime: stale after one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t3 = exchanger.exchange(&caller_token, Some("https://genie.test"), &scopes).await.unwrap();
    assert_eq!(t3.expose(), "downscoped-4");
    assert_eq!(recorder.calls(), 4);
}

#[tokio::test]
async fn exchanger_client_auth_and_refusals() {
    let recorder = Recorder::default();
    async fn token(
        State(rec): State<Recorder>,
        headers: HeaderMap,
        Form(form): Form<Vec<(String, String)>>,
    ) -> Response {
        rec.record(&headers, form);
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_scope", "error_description": "scope sql not held"})),
        )
            .into_response()
    }
    let base = serve(Router::new().route("/token", post(token)).with_state(recorder.clone())).await;
    let mut config = TokenExchangeConfig::new(format!("{base}/token"));
    config.client_id = Some("public-client".into());
    let exchanger = Rfc8693Exchanger::new(config, reqwest::Client::new()).unwrap();
    let err = exchanger.exchange(&Secret::new("caller.token"), None, &["sql".into()]).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Denied);
    assert!(err.message.contains("invalid_scope: scope sql not held"), "{}", err.message);
    let form = recorder.forms.lock().unwrap()[0].clone();
    assert!(form.contains(&("client_id".into(), "public-client".into())));

    let mut bad = TokenExchangeConfig::new("http://x");
    bad.client_secret = Some(SecretRef::Env("X".into()));
    assert_eq!(Rfc8693Exchanger::new(bad, reqwest::Client::new()).unwrap_err().kind, ErrorKind::Config);
}
