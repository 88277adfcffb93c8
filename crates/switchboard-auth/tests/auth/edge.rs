//! EdgeAuth: JWT via JWKS and static keys, rejections, trusted proxies, federation.

use crate::common::*;
use axum::Router;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use switchboard_auth::{AuthConfig, EdgeAuth, IssuerConfig, StaticKey, www_authenticate};
use switchboard_core::{AuthMethod, ErrorKind};

const ISS: &str = "https://idp.test";
const AUD: &str = "switchboard";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Deserialize)]
struct File {
    auth: AuthConfig,
}

pub fn parse(toml_text: &str) -> AuthConfig {
    toml::from_str::<File>(toml_text).unwrap().auth
}

fn jwks_config(jwks_url: &str) -> AuthConfig {
    parse(&format!(
        r#"
        [auth]
        [[auth.issuers]]
        issuer = "{ISS}"
        audience = "{AUD}"
        jwks_url = "{jwks_url}"
        "#
    ))
}

async fn expect_rejected(edge: &EdgeAuth, headers: &HeaderMap, message: &str) {
    let err = edge.authenticate(headers, LOCALHOST).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthenticated, "{err:?}");
    assert_eq!(err.message, message);
    assert_eq!(
        www_authenticate(&err),
        format!("Bearer realm=\"switchboard\", error=\"invalid_token\", error_description=\"{message}\"")
    );
}

#[tokio::test]
async fn jwt_via_jwks_rs256_and_es256() {
    let rsa = TestKey::rsa("rsa-1");
    let ec = TestKey::ec("ec-1");
    let (jwks, url) = JwksServer::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    let edge = EdgeAuth::new(jwks_config(&url), reqwest::Client::new()).unwrap();

    let token = rsa.sign(&claims(ISS, AUD, "alice@example.com"));
    let caller = edge.authenticate(&bearer(&token), LOCALHOST).await.unwrap();
    assert_eq!(caller.subject(), "sub-alice@example.com");
    assert_eq!(caller.email(), "alice@example.com");
    assert_eq!(caller.groups(), ["west_sales", "users"]);
    assert_eq!(caller.scopes(), ["sql", "genie"]);
    assert_eq!(caller.method(), AuthMethod::Jwt);
    assert_eq!(caller.token().unwrap().expose(), token);

    // Groups as a space-separated string; scopes from the `scp` array fallback; no email claim.
    let mut c = claims(ISS, AUD, "bob@example.com");
    let obj = c.as_object_mut().unwrap();
    obj.insert("groups".into(), json!("east_sales managers"));
    obj.remove("scope");
    obj.remove("email");
    obj.insert("scp".into(), json!(["mcp.genie"]));
    let caller = edge.authenticate(&bearer(&ec.sign(&c)), LOCALHOST).await.unwrap();
    assert_eq!(caller.groups(), ["east_sales", "managers"]);
    assert_eq!(caller.scopes(), ["mcp.genie"]);
    assert_eq!(caller.email(), "sub-bob@example.com", "email falls back to sub");
    assert_eq!(jwks.fetches(), 1, "the JWKS is fetched once and cached");
}

#[tokio::test]
async fn unknown_kid_refreshes_the_jwks_once() {
    let k1 = TestKey::ec("k1");
    let k2 = TestKey::ec("k2");
    let (jwks, url) = JwksServer::start(vec![k1.jwk.clone()]).await;
    let edge = EdgeAuth::new(jwks_config(&url), reqwest::Client::new()).unwrap();

    edge.authenticate(&bearer(&k1.sign(&claims(ISS, AUD, "a@x"))), LOCALHOST).await.unwrap();
    assert_eq!(jwks.fetches(), 1);

    // The issuer rotates in k2: the first token naming it triggers one refresh and verifies.
    jwks.keys.lock().unwrap().push(k2.jwk.clone());
    let caller = edge.authenticate(&bearer(&k2.sign(&claims(ISS, AUD, "b@x"))), LOCALHOST).await.unwrap();
    assert_eq!(caller.email(), "b@x");
    assert_eq!(jwks.fetches(), 2);

    // Garbage kids do not make the edge hammer the issuer.
    for i in 0..5 {
        let garbage = k2.with_kid(&format!("garbage-{i}"));
        let err =
            edge.authenticate(&bearer(&garbage.sign(&claims(ISS, AUD, "c@x"))), LOCALHOST).await.unwrap_err();
        assert_eq!(err.message, "token signing key is not known");
    }
    assert_eq!(jwks.fetches(), 2, "refreshes for unknown kids are rate limited");
    // Known keys keep working from the cache.
    edge.authenticate(&bearer(&k1.sign(&claims(ISS, AUD, "a@x"))), LOCALHOST).await.unwrap();
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn rejections_are_401_with_precise_messages() {
    let key = TestKey::ec("k1");
    let (_jwks, url) = JwksServer::start(vec![key.jwk.clone()]).await;
    let edge = EdgeAuth::new(jwks_config(&url), reqwest::Client::new()).unwrap();
    let t = now();

    let mut expired = claims(ISS, AUD, "a@x");
    expired["exp"] = json!(t - 120);
    expired["iat"] = json!(t - 700);
    expired["nbf"] = json!(t - 700);
    expect_rejected(&edge, &bearer(&key.sign(&expired)), "token expired").await;

    // Inside the 30 s leeway an expired token still passes.
    let mut recent = claims(ISS, AUD, "a@x");
    recent["exp"] = json!(t - 10);
    edge.authenticate(&bearer(&key.sign(&recent)), LOCALHOST).await.unwrap();

    let impostor = TestKey::ec("k1"); // same kid, different key
    expect_rejected(&edge, &bearer(&impostor.sign(&claims(ISS, AUD, "a@x"))), "invalid token signature")
        .await;

    // A valid signature with a tampered payload fails too.
    let good = key.sign(&claims(ISS, AUD, "a@x"));
    let parts: Vec<&str> = good.split('.').collect();
    let forged_claims = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&claims(ISS, AUD, "admin@x")).unwrap(),
    );
    let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    expect_rejected(&edge, &bearer(&forged), "invalid token signature").await;

    expect_rejected(
        &edge,
        &bearer(&key.sign(&claims(ISS, "someone-else", "a@x"))),
        "token audience is not accepted",
    )
    .await;

    let mut future = claims(ISS, AUD, "a@x");
    future["nbf"] = json!(t + 300);
    expect_rejected(&edge, &bearer(&key.sign(&future)), "token is not yet valid").await;

    expect_rejected(
        &edge,
        &bearer(&key.sign(&claims("https://evil.test", AUD, "a@x"))),
        "token issuer is not accepted",
    )
    .await;
    expect_rejected(&edge, &bearer("not-a-jwt"), "malformed token").await;
    expect_rejected(&edge, &bearer("aaa.bbb.ccc"), "malformed token").await;

    // An algorithm the issuer does not allow (here, HS256 with the public key as the secret).
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims(ISS, AUD, "a@x"),
        &jsonwebtoken::EncodingKey::from_secret(key.jwk["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    expect_rejected(&edge, &bearer(&hs), "token algorithm is not accepted").await;

    let err = edge.authenticate(&HeaderMap::new(), LOCALHOST).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthenticated);
    assert_eq!(err.message, "missing bearer token");
    assert_eq!(www_authenticate(&err), "Bearer realm=\"switchboard\"");
}

#[tokio::test]
async fn a_verified_token_is_reused_only_until_it_expires() {
    let key = TestKey::ec("k1");
    let mut config = AuthConfig::default();
    let mut issuer = IssuerConfig::new(ISS, AUD);
    issuer.keys = vec![StaticKey::Jwk(Box::new(serde_json::from_value(key.jwk.clone()).unwrap()))];
    issuer.leeway_secs = 0;
    config.issuers = vec![issuer];
    let edge = EdgeAuth::new(config, reqwest::Client::new()).unwrap();

    let mut short = claims(ISS, AUD, "a@x");
    short["exp"] = json!(now() + 2);
    let token = key.sign(&short);
    for _ in 0..3 {
        let caller = edge.authenticate(&bearer(&token), LOCALHOST).await.unwrap();
        assert_eq!(caller.email(), "a@x");
    }
    let debug = format!("{edge:?}");
    assert!(debug.contains("cached_tokens: 1"), "remembered once: {debug}");
    assert!(!debug.contains(&token), "the token itself is never kept in view: {debug}");

    // Once its expiry has passed, the remembered verification no longer counts.
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    expect_rejected(&edge, &bearer(&token), "token expired").await;

    // A token not yet valid is refused every time, not remembered.
    let mut future = claims(ISS, AUD, "a@x");
    future["nbf"] = json!(now() + 300);
    let future = key.sign(&future);
    for _ in 0..2 {
        expect_rejected(&edge, &bearer(&future), "token is not yet valid").await;
    }
    assert!(format!("{edge:?}").contains("cached_tokens: 0"), "{edge:?}");
}

#[tokio::test]
async fn static_pem_and_jwk_keys_need_no_http() {
    let rsa = TestKey::rsa("any-kid");
    let ec = TestKey::ec("ec-static");
    let mut config = AuthConfig::default();
    let mut pem_issuer = IssuerConfig::new("https://pem.test", AUD);
    pem_issuer.keys = vec![StaticKey::Pem(RSA_PUBLIC.into())];
    let mut jwk_issuer = IssuerConfig::new("https://jwk.test", AUD);
    jwk_issuer.keys = vec![StaticKey::Jwk(Box::new(serde_json::from_value(ec.jwk.clone()).unwrap()))];
    jwk_issuer.groups_claim = "realm_access.roles".into();
    config.issuers = vec![pem_issuer, jwk_issuer];
    let edge = EdgeAuth::new(config, reqwest::Client::new()).unwrap();

    let caller = edge
        .authenticate(&bearer(&rsa.sign(&claims("https://pem.test", AUD, "a@x"))), LOCALHOST)
        .await
        .unwrap();
    assert_eq!(caller.email(), "a@x");

    let mut c = claims("https://jwk.test", AUD, "b@x");
    c["realm_access"] = json!({"roles": ["finance"]});
    let caller = edge.authenticate(&bearer(&ec.sign(&c)), LOCALHOST).await.unwrap();
    assert_eq!(caller.groups(), ["finance"]);

    // The EC token presented to the RSA-only issuer fails on the signature.
    let err = edge
        .authenticate(&bearer(&ec.sign(&claims("https://pem.test", AUD, "a@x"))), LOCALHOST)
        .await
        .unwrap_err();
    assert_eq!(err.message, "token signing key is not known");
}

#[test]
fn config_is_validated() {
    let bad = |toml_text: &str| EdgeAuth::new(parse(toml_text), reqwest::Client::new()).unwrap_err();

    let e = bad("[auth]\ntrusted_proxies = [\"10.0.0.300/8\"]");
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.contains("auth.trusted_proxies[0]"), "{}", e.message);

    let e = bad("[auth]\n[[auth.issuers]]\nissuer = \"a\"\naudience = \"b\"");
    assert!(e.message.contains("exactly one of `jwks_url` and `keys`"), "{}", e.message);

    let e = bad(
        "[auth]\n[[auth.issuers]]\nissuer = \"a\"\naudience = \"b\"\nkeys = [\"-----BEGIN PRIVATE KEY-----\"]",
    );
    assert!(e.message.contains("auth.issuers[0].keys[0]"), "{}", e.message);

    let e = bad("[auth]\n");
    assert!(e.message.contains("nobody could sign in"), "{}", e.message);

    let e = bad(
        "[auth]\ntrusted_proxies = [\"127.0.0.1\"]\ntrusted_proxy_secret = \"env:SWITCHBOARD_AUTH_TEST_UNSET_VAR\"",
    );
    assert!(e.message.contains("auth.trusted_proxy_secret"), "{}", e.message);

    // Unknown fields are refused at parse time.
    assert!(toml::from_str::<File>("[auth]\nrequird = true").is_err());
}

#[tokio::test]
async fn anonymous_caller_when_not_required() {
    let edge = EdgeAuth::new(
        parse("[auth]\nrequired = false\nanonymous_groups = [\"guests\"]"),
        reqwest::Client::new(),
    )
    .unwrap();
    let caller = edge.authenticate(&HeaderMap::new(), LOCALHOST).await.unwrap();
    assert_eq!(caller.email(), "anonymous");
    assert_eq!(caller.groups(), ["guests"]);
    assert!(caller.token().is_none());
    // A presented but bad token is still rejected.
    let err = edge.authenticate(&bearer("garbage"), LOCALHOST).await.unwrap_err();
    assert_eq!(err.message, "malformed token");
}

/// A real HTTP front: authenticates each request with the TCP peer address.
async fn whoami_server(edge: Arc<EdgeAuth>) -> String {
    async fn whoami(
        State(edge): State<Arc<EdgeAuth>>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        headers: HeaderMap,
    ) -> Response {
        match edge.authenticate(&headers, peer.ip()).await {
            Ok(c) => axum::Json(json!({
                "email": c.email(), "groups": c.groups(), "scopes": c.scopes(), "method": c.method(),
                "token": c.token().map(|t| t.expose().to_string()),
            }))
            .into_response(),
            Err(e) => {
                let challenge = HeaderValue::from_str(&www_authenticate(&e)).unwrap();
                (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)], e.message).into_response()
            }
        }
    }
    serve(Router::new().route("/whoami", get(whoami)).with_state(edge)).await
}

#[tokio::test]
async fn trusted_proxy_headers_are_honoured_only_from_trusted_peers_with_the_secret() {
    let key = TestKey::ec("k1");
    let (secret_ref, _guard) = secret_file("proxy-shared-secret");
    let proxy_toml = |proxies: &str| {
        format!(
            r#"
            [auth]
            trusted_proxies = [{proxies}]
            trusted_proxy_secret = "{secret_ref}"
            proxy_default_groups = ["proxied"]
            proxy_default_scopes = ["sql"]
            [[auth.issuers]]
            issuer = "{ISS}"
            audience = "{AUD}"
            keys = [{{ kty = "EC", crv = "P-256", kid = "k1", x = "{x}", y = "{y}" }}]
            "#,
            x = key.jwk["x"].as_str().unwrap(),
            y = key.jwk["y"].as_str().unwrap(),
        )
    };
    let trusted = whoami_server(Arc::new(
        EdgeAuth::new(parse(&proxy_toml("\"127.0.0.0/8\", \"::1\"")), reqwest::Client::new()).unwrap(),
    ))
    .await;
    let untrusted = whoami_server(Arc::new(
        EdgeAuth::new(parse(&proxy_toml("\"10.0.0.0/8\"")), reqwest::Client::new()).unwrap(),
    ))
    .await;
    let http = reqwest::Client::new();
    let get = |base: &str| http.get(format!("{base}/whoami"));

    // Trusted peer, right secret, opaque platform token: default groups and scopes.
    let r = get(&trusted)
        .header("x-forwarded-access-token", "opaque-platform-token")
        .header("x-forwarded-email", "carol@example.com")
        .header("x-switchboard-proxy-secret", "proxy-shared-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["email"], "carol@example.com");
    assert_eq!(body["groups"], json!(["proxied"]));
    assert_eq!(body["scopes"], json!(["sql"]));
    assert_eq!(body["method"], "trusted_proxy");
    assert_eq!(body["token"], "opaque-platform-token");

    // A forwarded token that is one of our issuers' JWTs supplies the groups.
    let jwt = key.sign(&claims(ISS, AUD, "dave@example.com"));
    let body: Value = get(&trusted)
        .header("x-forwarded-access-token", &jwt)
        .header("x-forwarded-email", "dave@example.com")
        .header("x-switchboard-proxy-secret", "proxy-shared-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["groups"], json!(["west_sales", "users"]));
    assert_eq!(body["method"], "trusted_proxy");

    // ...but an expired one of ours is refused, not downgraded to default groups.
    let mut old = claims(ISS, AUD, "dave@example.com");
    old["exp"] = json!(now() - 600);
    let r = get(&trusted)
        .header("x-forwarded-access-token", key.sign(&old))
        .header("x-switchboard-proxy-secret", "proxy-shared-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "token expired");

    // Wrong secret: the headers are ignored and, with no bearer token, the caller is anonymous → 401.
    let r = get(&trusted)
        .header("x-forwarded-email", "carol@example.com")
        .header("x-switchboard-proxy-secret", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"switchboard\"");
    assert_eq!(r.text().await.unwrap(), "missing bearer token");

    // Missing secret header: same.
    let r = get(&trusted).header("x-forwarded-email", "carol@example.com").send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Untrusted peer (127.0.0.1 is not in 10.0.0.0/8), even with the right secret: ignored, and
    // the bearer token decides.
    let bearer_jwt = key.sign(&claims(ISS, AUD, "alice@example.com"));
    let body: Value = get(&untrusted)
        .header("x-forwarded-email", "frank@example.com")
        .header("x-forwarded-access-token", "opaque-platform-token")
        .header("x-switchboard-proxy-secret", "proxy-shared-secret")
        .bearer_auth(&bearer_jwt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["email"], "alice@example.com");
    assert_eq!(body["method"], "jwt");
    let r = get(&untrusted)
        .header("x-forwarded-email", "frank@example.com")
        .header("x-switchboard-proxy-secret", "proxy-shared-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn ipv4_mapped_peers_match_ipv4_proxies() {
    let edge = EdgeAuth::new(
        parse("[auth]\ntrusted_proxies = [\"127.0.0.1\"]\nproxy_default_groups = [\"p\"]"),
        reqwest::Client::new(),
    )
    .unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-email", HeaderValue::from_static("erin@example.com"));
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    let caller = edge.authenticate(&h, mapped).await.unwrap();
    assert_eq!(caller.email(), "erin@example.com");
    assert_eq!(caller.method(), AuthMethod::TrustedProxy);
    assert!(edge.authenticate(&h, "127.0.0.2".parse().unwrap()).await.is_err());
}

/// One request's form fields, in wire order.
pub type FormFields = Vec<(String, String)>;

/// A token endpoint recording each form (in order) and the Authorization header.
#[derive(Clone, Default)]
pub struct Recorder {
    pub forms: Arc<Mutex<Vec<FormFields>>>,
    pub auth: Arc<Mutex<Vec<Option<String>>>>,
    pub calls: Arc<AtomicUsize>,
}

impl Recorder {
    pub fn record(&self, headers: &HeaderMap, form: Vec<(String, String)>) -> usize {
        self.forms.lock().unwrap().push(form);
        self.auth.lock().unwrap().push(headers.get("authorization").map(|v| v.to_str().unwrap().to_string()));
        self.calls.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn federation_exchanges_the_external_token_for_a_role() {
    let external = TestKey::ec("ext");
    let role_key = TestKey::rsa("role");
    let recorder = Recorder::default();
    let role_token = role_key.sign(&json!({
        "iss": "https://databricks.test", "aud": AUD, "sub": "role-analyst", "email": "analysts@roles",
        "groups": ["analysts"], "scope": "sql genie", "exp": now() + 900,
    }));
    #[derive(Clone)]
    struct S(Recorder, String);
    async fn token(
        State(S(rec, tok)): State<S>,
        headers: HeaderMap,
        Form(form): Form<Vec<(String, String)>>,
    ) -> Response {
        rec.record(&headers, form);
        axum::Json(json!({"access_token": tok, "token_type": "Bearer", "expires_in": 900})).into_response()
    }
    let base =
        serve(Router::new().route("/token", post(token)).with_state(S(recorder.clone(), role_token.clone())))
            .await;
    let (secret_ref, _guard) = secret_file("fed-client-secret");
    let config = parse(&format!(
        r#"
        [auth]
        [[auth.issuers]]
        issuer = "https://external.test"
        audience = "switchboard-app"
        keys = [{{ kty = "EC", crv = "P-256", x = "{x}", y = "{y}" }}]
        federation = {{ token_endpoint = "{base}/token", scope = "sql genie", client_id = "fed-client", client_secret = "{secret_ref}" }}

        [[auth.issuers]]
        issuer = "https://databricks.test"
        audience = "{AUD}"
        keys = ["""{RSA_PUBLIC}"""]
        "#,
        x = external.jwk["x"].as_str().unwrap(),
        y = external.jwk["y"].as_str().unwrap(),
    ));
    let edge = EdgeAuth::new(config, reqwest::Client::new()).unwrap();
    let human = external.sign(&claims("https://external.test", "switchboard-app", "henry@partner.com"));

    let caller = edge.authenticate(&bearer(&human), LOCALHOST).await.unwrap();
    assert_eq!(caller.method(), AuthMethod::Federation);
    assert_eq!(caller.subject(), "role-analyst");
    assert_eq!(caller.email(), "analysts@roles");
    assert_eq!(caller.groups(), ["analysts"]);
    assert_eq!(caller.scopes(), ["sql", "genie"]);
    assert_eq!(caller.acting_for(), Some("henry@partner.com"));
    assert_eq!(caller.token().unwrap().expose(), role_token);

    let forms = recorder.forms.lock().unwrap().clone();
    assert_eq!(
        forms[0],
        vec![
            ("grant_type".to_string(), "urn:ietf:params:oauth:grant-type:token-exchange".to_string()),
            ("subject_token".to_string(), human.clone()),
            ("subject_token_type".to_string(), "urn:ietf:params:oauth:token-type:jwt".to_string()),
            ("scope".to_string(), "sql genie".to_string()),
        ]
    );
    let basic = recorder.auth.lock().unwrap()[0].clone().unwrap();
    let decoded = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        basic.strip_prefix("Basic ").unwrap(),
    )
    .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "fed-client:fed-client-secret");

    // Cached until expiry: the second request makes no exchange.
    let again = edge.authenticate(&bearer(&human), LOCALHOST).await.unwrap();
    assert_eq!(again.acting_for(), Some("henry@partner.com"));
    assert_eq!(recorder.calls(), 1);

    // The external token is still verified on every request, cache or not.
    let mut expired = claims("https://external.test", "switchboard-app", "henry@partner.com");
    expired["exp"] = json!(now() - 600);
    let err = edge.authenticate(&bearer(&external.sign(&expired)), LOCALHOST).await.unwrap_err();
    assert_eq!(err.message, "token expired");
    assert_eq!(recorder.calls(), 1);
}

#[tokio::test]
async fn federation_with_an_opaque_role_token_uses_role_config() {
    let external = TestKey::ec("ext");
    let recorder = Recorder::default();
    async fn token(
        State(rec): State<Recorder>,
        headers: HeaderMap,
        Form(form): Form<Vec<(String, String)>>,
    ) -> Response {
        let n = rec.record(&headers, form);
        axum::Json(json!({"access_token": format!("opaque-role-token-{n}"), "token_type": "Bearer", "expires_in": 600}))
            .into_response()
    }
    let base = serve(Router::new().route("/token", post(token)).with_state(recorder.clone())).await;
    let config = parse(&format!(
        r#"
        [auth]
        [[auth.issuers]]
        issuer = "https://external.test"
        audience = "app"
        keys = [{{ kty = "EC", crv = "P-256", x = "{x}", y = "{y}" }}]
        [auth.issuers.federation]
        token_endpoint = "{base}/token"
        scope = "sql"
        role_groups = ["partners"]
        role_principal = "partner-role"
        "#,
        x = external.jwk["x"].as_str().unwrap(),
        y = external.jwk["y"].as_str().unwrap(),
    ));
    let edge = EdgeAuth::new(config, reqwest::Client::new()).unwrap();
    let caller = edge
        .authenticate(
            &bearer(&external.sign(&claims("https://external.test", "app", "ivy@p.com"))),
            LOCALHOST,
        )
        .await
        .unwrap();
    assert_eq!(caller.subject(), "partner-role");
    assert_eq!(caller.groups(), ["partners"]);
    assert_eq!(caller.scopes(), ["sql"]);
    assert_eq!(caller.acting_for(), Some("ivy@p.com"));
    assert_eq!(caller.token().unwrap().expose(), "opaque-role-token-1");
    assert_eq!(recorder.auth.lock().unwrap()[0], None, "no client auth configured");
    assert_eq!(recorder.forms.lock().unwrap()[0].len(), 4);
}

#[tokio::test]
async fn federation_refusal_is_denied_and_outage_is_upstream() {
    let external = TestKey::ec("ext");
    async fn refuse(Form(form): Form<Vec<(String, String)>>) -> Response {
        let scope = form.iter().find(|(k, _)| k == "scope").map(|(_, v)| v.clone()).unwrap_or_default();
        if scope == "refused" {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant", "error_description": "no role"})),
            )
                .into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response()
        }
    }
    let base = serve(Router::new().route("/token", post(refuse))).await;
    for (scope, kind, fragment) in [
        ("refused", ErrorKind::Denied, "400: invalid_grant: no role"),
        ("outage", ErrorKind::Upstream, "503: down for maintenance"),
    ] {
        let mut issuer = IssuerConfig::new("https://external.test", "app");
        issuer.keys = vec![StaticKey::Jwk(Box::new(serde_json::from_value(external.jwk.clone()).unwrap()))];
        issuer.federation = Some(switchboard_auth::FederationConfig {
            token_endpoint: format!("{base}/token"),
            scope: scope.into(),
            client_id: None,
            client_secret: None,
            role_groups: vec![],
            role_principal: None,
        });
        let config = AuthConfig { issuers: vec![issuer], ..AuthConfig::default() };
        let edge = EdgeAuth::new(config, reqwest::Client::new()).unwrap();
        let err = edge
            .authenticate(
                &bearer(&external.sign(&claims("https://external.test", "app", "j@p.com"))),
                LOCALHOST,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind);
        assert!(err.message.contains(fragment), "{}", err.message);
    }
}

#[tokio::test]
async fn jwks_outage_is_upstream_and_fails_fast() {
    let key = TestKey::ec("k1");
    let calls = Arc::new(AtomicUsize::new(0));
    async fn down(State(calls): State<Arc<AtomicUsize>>) -> StatusCode {
        calls.fetch_add(1, Ordering::SeqCst);
        StatusCode::INTERNAL_SERVER_ERROR
    }
    let base = serve(Router::new().route("/jwks", get(down)).with_state(calls.clone())).await;
    let edge = EdgeAuth::new(jwks_config(&format!("{base}/jwks")), reqwest::Client::new()).unwrap();
    let token = key.sign(&claims(ISS, AUD, "a@x"));
    for _ in 0..3 {
        let err = edge.authenticate(&bearer(&token), LOCALHOST).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Upstream);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a failing JWKS endpoint is not retried on every request");
}

/// The sample `[auth]` tables handed to the integrator parse and validate.
#[test]
fn sample_configs_parse() {
    let dev = parse(
        r#"
        [auth]
        required = true

        # The development identity provider, served by `switchboard_auth::routes` at this base URL.
        [[auth.issuers]]
        issuer = "http://127.0.0.1:8080"
        audience = "switchboard"
        jwks_url = "http://127.0.0.1:8080/.well-known/jwks.json"
        algorithms = ["ES256"]
        development = true
        "#,
    );
    EdgeAuth::new(dev, reqwest::Client::new()).unwrap();

    let (secret_ref, _guard) = secret_file("s");
    let production = parse(&format!(
        r#"
        [auth]
        required = true
        trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]
        trusted_proxy_secret = "{secret_ref}"
        trusted_proxy_secret_header = "x-switchboard-proxy-secret"
        proxy_default_groups = ["users"]
        proxy_default_scopes = ["sql"]

        [[auth.issuers]]
        issuer = "https://login.example.com/tenant/v2.0"
        audience = "api://switchboard"
        jwks_url = "https://login.example.com/tenant/discovery/v2.0/keys"
        algorithms = ["RS256"]
        leeway_secs = 30
        jwks_cache_secs = 3600
        email_claim = "preferred_username"
        groups_claim = "roles"
        scope_claim = "scp"

        [[auth.issuers]]
        issuer = "https://partner-idp.example.net"
        audience = "switchboard"
        jwks_url = "https://partner-idp.example.net/.well-known/jwks.json"
        [auth.issuers.federation]
        token_endpoint = "https://adb-1234.azuredatabricks.net/oidc/v1/token"
        scope = "all-apis"
        client_id = "federation-client"
        client_secret = "env:SWITCHBOARD_FEDERATION_SECRET"
        role_groups = ["partners"]
        "#
    ));
    assert_eq!(production.issuers.len(), 2);
    assert!(production.issuers[1].federation.is_some());
    EdgeAuth::new(production, reqwest::Client::new()).unwrap();
}
