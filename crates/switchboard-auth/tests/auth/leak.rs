//! Planted secrets never appear in error messages, challenges, Debug output or logs.

use crate::common::*;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::json;
use std::net::IpAddr;
use switchboard_auth::{
    AuthConfig, ClientCredentials, ClientCredentialsConfig, DevClients, DevIdentityProvider, EdgeAuth,
    FederationConfig, IssuerConfig, Rfc8693Exchanger, StaticKey, TokenExchangeConfig, www_authenticate,
};
use switchboard_core::{AuthMethod, Caller, Error, Secret, SecretRef};
use switchboard_govern::layers::{TokenExchanger, TokenSource};
use switchboard_testkit::logs::Logs;

const PLANTED_BEARER: &str = "eyJQLANTED.BEARER-c4n4ry-0001.sig";
const PLANTED_FORWARDED: &str = "PLANTED-FORWARDED-c4n4ry-0002";
const PLANTED_CLIENT_SECRET: &str = "PLANTED-CLIENT+SECRET/c4n4ry=0003";
const PLANTED_SUBJECT: &str = "PLANTED SUBJECT+TOKEN/c4n4ry==0004";
const PLANTED_PROXY_SECRET: &str = "PLANTED-PROXY-SECRET-c4n4ry-0005";

/// Every rendering of `text` a caller or operator could see must be free of every planted value
/// and of their encodings (the marker survives form encoding; Basic headers are base64).
fn assert_clean(what: &str, text: &str, planted: &[&str]) {
    let mut forbidden = vec!["c4n4ry".to_string()];
    for p in planted {
        forbidden.push(p.to_string());
        for id in ["sp", "fed", "x", "c"] {
            forbidden.push(base64::engine::general_purpose::STANDARD.encode(format!("{id}:{p}")));
        }
    }
    for f in &forbidden {
        assert!(!text.contains(f.as_str()), "{what} leaks `{f}`: {text}");
    }
}

fn render(e: &Error) -> String {
    format!("{} | {e:?} | {} | {}", e.message, serde_json::to_string(e).unwrap(), www_authenticate(e))
}

/// Token endpoints that echo the whole request back in their error, as a careless upstream might.
fn echoed(headers: &HeaderMap, body: &Bytes) -> String {
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    format!("you sent {auth} with {}", String::from_utf8_lossy(body))
}

async fn echo_text(headers: HeaderMap, body: Bytes) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, echoed(&headers, &body)).into_response()
}

async fn echo_json(headers: HeaderMap, body: Bytes) -> Response {
    let description = echoed(&headers, &body);
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": "invalid_request", "error_description": description})),
    )
        .into_response()
}

#[tokio::test]
async fn planted_tokens_and_secrets_never_leak() {
    let logs = Logs::global();
    let planted =
        [PLANTED_BEARER, PLANTED_FORWARDED, PLANTED_CLIENT_SECRET, PLANTED_SUBJECT, PLANTED_PROXY_SECRET];
    let base =
        serve(Router::new().route("/token", post(echo_text)).route("/token-json", post(echo_json))).await;
    let mut seen = Vec::new();

    // Edge failures with planted bearer tokens (garbage, and well-formed from a stranger).
    let key = TestKey::ec("k1");
    let (proxy_secret_ref, _g1) = secret_file(PLANTED_PROXY_SECRET);
    let mut issuer = IssuerConfig::new("https://idp.test", "switchboard");
    issuer.keys = vec![StaticKey::Jwk(Box::new(serde_json::from_value(key.jwk.clone()).unwrap()))];
    let mut federated = IssuerConfig::new("https://external.test", "app");
    federated.keys = issuer.keys.clone();
    let (client_secret_ref, _g2) = secret_file(PLANTED_CLIENT_SECRET);
    federated.federation = Some(FederationConfig {
        token_endpoint: format!("{base}/token-json"),
        scope: "json".into(),
        client_id: Some("fed".into()),
        client_secret: Some(SecretRef::try_from(client_secret_ref.clone()).unwrap()),
        role_groups: vec![],
        role_principal: None,
    });
    let config = AuthConfig {
        issuers: vec![issuer, federated],
        trusted_proxies: vec!["10.0.0.0/8".into()],
        trusted_proxy_secret: Some(SecretRef::try_from(proxy_secret_ref).unwrap()),
        ..AuthConfig::default()
    };
    let edge = EdgeAuth::new(config.clone(), reqwest::Client::new()).unwrap();
    let peer: IpAddr = "127.0.0.1".parse().unwrap();

    let mut stranger = claims("https://stranger.test", "switchboard", "c4n4ry@x");
    stranger["note"] = json!(PLANTED_BEARER);
    for token in [PLANTED_BEARER.to_string(), key.sign(&stranger), format!("{PLANTED_BEARER}.extra")] {
        let err = edge.authenticate(&bearer(&token), peer).await.unwrap_err();
        seen.push(("edge error", render(&err)));
        assert!(!render(&err).contains(&token));
    }
    let mut expired = claims("https://idp.test", "switchboard", "x@x");
    expired["exp"] = json!(now() - 999);
    expired["note"] = json!(PLANTED_BEARER);
    let expired = key.sign(&expired);
    let err = edge.authenticate(&bearer(&expired), peer).await.unwrap_err();
    assert_eq!(err.message, "token expired");
    assert!(!render(&err).contains(&expired));

    // Forwarded headers from an untrusted peer are logged as ignored, without the token.
    let mut headers = bearer(PLANTED_BEARER);
    headers.insert("x-forwarded-access-token", HeaderValue::from_static(PLANTED_FORWARDED));
    headers.insert("x-forwarded-email", HeaderValue::from_static("eve@example.com"));
    headers.insert("x-switchboard-proxy-secret", HeaderValue::from_static(PLANTED_PROXY_SECRET));
    let err = edge.authenticate(&headers, peer).await.unwrap_err();
    seen.push(("proxy error", render(&err)));

    // Federation against an echoing endpoint: the external token and client secret are scrubbed.
    let human = key.sign(&claims("https://external.test", "app", "human@x"));
    let err = edge.authenticate(&bearer(&human), peer).await.unwrap_err();
    assert!(err.message.contains("[REDACTED]"), "the echo was scrubbed, not dropped: {}", err.message);
    assert!(!render(&err).contains(&human));
    seen.push(("federation error", render(&err)));

    // Client credentials against an echoing endpoint (plain-text and JSON error bodies).
    for path in ["/token", "/token-json"] {
        let mut cfg = ClientCredentialsConfig::new(
            format!("{base}{path}"),
            "sp",
            SecretRef::try_from(client_secret_ref.clone()).unwrap(),
        );
        cfg.scopes = vec!["json".into()];
        let source = ClientCredentials::new(cfg, reqwest::Client::new());
        let err = source.token().await.unwrap_err();
        assert!(err.message.contains("[REDACTED]"), "{}", err.message);
        seen.push(("client credentials error", render(&err)));
        seen.push(("client credentials debug", format!("{source:?}")));
    }

    // Token exchange against an echoing endpoint, subject token with form-encoded characters.
    let mut xcfg = TokenExchangeConfig::new(format!("{base}/token"));
    xcfg.client_id = Some("x".into());
    xcfg.client_secret = Some(SecretRef::try_from(client_secret_ref.clone()).unwrap());
    let exchanger = Rfc8693Exchanger::new(xcfg, reqwest::Client::new()).unwrap();
    let err =
        exchanger.exchange(&Secret::new(PLANTED_SUBJECT), Some("aud"), &["json".into()]).await.unwrap_err();
    seen.push(("exchange error", render(&err)));
    seen.push(("exchanger debug", format!("{exchanger:?}")));

    // Debug renderings of everything that holds a secret.
    let caller = Caller::new("s", "e", vec![], AuthMethod::Jwt).with_token(Secret::new(PLANTED_BEARER));
    seen.push(("caller debug", format!("{caller:?}")));
    seen.push(("caller json", serde_json::to_string(&caller).unwrap()));
    seen.push(("edge debug", format!("{edge:?}")));
    seen.push(("config debug", format!("{config:?}")));
    let dir = tempfile::tempdir().unwrap();
    let idp = DevIdentityProvider::load_or_create(dir.path(), "http://idp").unwrap();
    seen.push(("idp debug", format!("{idp:?}")));
    let pkcs8 = std::fs::read(dir.path().join(switchboard_auth::DEV_IDP_KEY_FILE)).unwrap();
    assert!(!format!("{idp:?}").contains(&base64::engine::general_purpose::STANDARD.encode(&pkcs8)));
    let clients = DevClients::new().with_client("c", Secret::new(PLANTED_CLIENT_SECRET), vec![]);
    seen.push(("dev clients debug", format!("{clients:?}")));

    let logs = logs.text();
    assert!(logs.contains("untrusted peer"), "the capture works: {logs}");
    seen.push(("logs", logs));

    for (what, text) in &seen {
        assert_clean(what, text, &planted);
    }
}
