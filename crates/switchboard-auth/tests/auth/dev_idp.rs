//! The development identity provider: key persistence, JWKS, and its token endpoint.

use crate::common::*;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use switchboard_auth::{
    AuthConfig, ClientCredentials, ClientCredentialsConfig, DEV_IDP_KEY_FILE, DevClients,
    DevIdentityProvider, EdgeAuth, Rfc8693Exchanger, TokenExchangeConfig, routes,
};
use switchboard_core::{AuthMethod, ErrorKind, Secret, SecretRef};
use switchboard_govern::layers::{TokenExchanger, TokenSource};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn edge_for(issuer: switchboard_auth::IssuerConfig) -> EdgeAuth {
    EdgeAuth::new(AuthConfig { issuers: vec![issuer], ..AuthConfig::default() }, reqwest::Client::new())
        .unwrap()
}

#[tokio::test]
async fn key_persists_across_load_or_create() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let first = DevIdentityProvider::load_or_create(&data, "http://idp.local/").unwrap();
    assert_eq!(first.issuer(), "http://idp.local");
    let path = data.join(DEV_IDP_KEY_FILE);
    let stored = std::fs::read(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // No temp files are left behind.
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);

    let token = first
        .issue(
            "alice@example.com",
            &strings(&["west_sales"]),
            &strings(&["sql"]),
            "switchboard",
            Duration::from_secs(300),
        )
        .unwrap();

    let second = DevIdentityProvider::load_or_create(&data, "http://idp.local").unwrap();
    assert_eq!(second.kid(), first.kid());
    assert_eq!(second.jwks(), first.jwks());
    assert_eq!(std::fs::read(&path).unwrap(), stored, "the key file is reused, not rewritten");

    // A token from the first instance verifies against the second's static key.
    let edge = edge_for(second.verifier_issuer_config("switchboard"));
    let caller = edge.authenticate(&bearer(token.expose()), LOCALHOST).await.unwrap();
    assert_eq!(caller.email(), "alice@example.com");
    assert_eq!(caller.subject(), "alice@example.com");
    assert_eq!(caller.groups(), ["west_sales"]);
    assert_eq!(caller.scopes(), ["sql"]);
    assert_eq!(caller.method(), AuthMethod::Development);

    // A different data dir means a different key: the token is refused there.
    let other = DevIdentityProvider::load_or_create(&dir.path().join("other"), "http://idp.local").unwrap();
    assert_ne!(other.kid(), first.kid());
    let err = edge_for(other.verifier_issuer_config("switchboard"))
        .authenticate(&bearer(token.expose()), LOCALHOST)
        .await
        .unwrap_err();
    assert_eq!(err.message, "token signing key is not known");
}

#[test]
fn corrupt_key_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DEV_IDP_KEY_FILE), b"not a key").unwrap();
    let err = DevIdentityProvider::load_or_create(dir.path(), "http://idp.local").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message.contains("delete it to generate a new one"), "{}", err.message);
}

#[test]
fn jwks_shape() {
    let dir = tempfile::tempdir().unwrap();
    let idp = DevIdentityProvider::load_or_create(dir.path(), "http://idp.local").unwrap();
    let jwks = idp.jwks();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], idp.kid());
    assert_eq!(key["x"].as_str().unwrap().len(), 43);
    assert_eq!(key["y"].as_str().unwrap().len(), 43);
    assert_eq!(idp.kid().len(), 16);
}

struct Running {
    idp: Arc<DevIdentityProvider>,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start_idp() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (listener, addr) = bind().await;
    let base = format!("http://{addr}");
    let idp = Arc::new(DevIdentityProvider::load_or_create(dir.path(), &base).unwrap());
    let clients = DevClients::new().with_client(
        "switchboard-sp",
        Secret::new("sp-secret"),
        strings(&["sql", "all-apis"]),
    );
    serve_on(listener, routes(idp.clone(), clients));
    Running { idp, base, _dir: dir }
}

#[tokio::test]
async fn tokens_verify_through_the_served_jwks() {
    let run = start_idp().await;
    let http = reqwest::Client::new();
    let discovery: Value = http
        .get(format!("{}/.well-known/openid-configuration", run.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], run.base);
    assert_eq!(discovery["token_endpoint"], format!("{}/oidc/v1/token", run.base));
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap().to_string();
    let served: Value = http.get(&jwks_uri).send().await.unwrap().json().await.unwrap();
    assert_eq!(served, run.idp.jwks());

    let edge = edge_for(run.idp.jwks_issuer_config("switchboard", &jwks_uri));
    let token = run
        .idp
        .issue(
            "frank@example.com",
            &strings(&["admin"]),
            &strings(&["sql", "genie"]),
            "switchboard",
            Duration::from_secs(60),
        )
        .unwrap();
    let caller = edge.authenticate(&bearer(token.expose()), LOCALHOST).await.unwrap();
    assert_eq!(caller.email(), "frank@example.com");
    assert_eq!(caller.groups(), ["admin"]);
    assert_eq!(caller.scopes(), ["sql", "genie"]);
    assert_eq!(caller.method(), AuthMethod::Development);

    let elsewhere =
        run.idp.issue("frank@example.com", &[], &[], "another-audience", Duration::from_secs(60)).unwrap();
    let err = edge.authenticate(&bearer(elsewhere.expose()), LOCALHOST).await.unwrap_err();
    assert_eq!(err.message, "token audience is not accepted");
}

#[tokio::test]
async fn client_credentials_at_the_dev_token_endpoint() {
    let run = start_idp().await;
    let endpoint = format!("{}/oidc/v1/token", run.base);
    let (secret_ref, _guard) = secret_file("sp-secret");
    let mut config =
        ClientCredentialsConfig::new(&endpoint, "switchboard-sp", SecretRef::try_from(secret_ref).unwrap());
    config.scopes = strings(&["sql"]);
    let source = ClientCredentials::new(config, reqwest::Client::new());
    let token = source.token().await.unwrap();

    let edge = edge_for(run.idp.verifier_issuer_config("switchboard"));
    let sp = edge.authenticate(&bearer(token.expose()), LOCALHOST).await.unwrap();
    assert_eq!(sp.subject(), "switchboard-sp");
    assert_eq!(sp.groups(), ["service_principal"]);
    assert_eq!(sp.scopes(), ["sql"]);

    let http = reqwest::Client::new();
    // Wrong secret: 401 invalid_client with a Basic challenge.
    let r = http
        .post(&endpoint)
        .basic_auth("switchboard-sp", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].is_string());

    // No client auth at all.
    let r = http.post(&endpoint).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Client secret in the form body works too; a scope the client may not have is invalid_scope.
    let r = http
        .post(&endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "switchboard-sp"),
            ("client_secret", "sp-secret"),
            ("scope", "sql admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");

    let r = http.post(&endpoint).form(&[("grant_type", "password")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");

    let r = http.post(&endpoint).body("{}").header("content-type", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn token_exchange_at_the_dev_token_endpoint() {
    let run = start_idp().await;
    let endpoint = format!("{}/oidc/v1/token", run.base);
    let user = run
        .idp
        .issue(
            "bob@example.com",
            &strings(&["east_sales"]),
            &strings(&["sql", "genie", "mcp.genie"]),
            "switchboard",
            Duration::from_secs(600),
        )
        .unwrap();
    let (secret_ref, _guard) = secret_file("sp-secret");
    let mut config = TokenExchangeConfig::new(&endpoint);
    config.client_id = Some("switchboard-sp".into());
    config.client_secret = Some(SecretRef::try_from(secret_ref).unwrap());
    let exchanger = Rfc8693Exchanger::new(config, reqwest::Client::new()).unwrap();
    let downscoped = exchanger.exchange(&user, Some("genie-space"), &strings(&["sql"])).await.unwrap();
    assert_ne!(downscoped.expose(), user.expose());

    let genie_edge = edge_for(run.idp.verifier_issuer_config("genie-space"));
    let seen = genie_edge.authenticate(&bearer(downscoped.expose()), LOCALHOST).await.unwrap();
    assert_eq!(seen.subject(), "bob@example.com");
    assert_eq!(seen.email(), "bob@example.com");
    assert_eq!(seen.groups(), ["east_sales"]);
    assert_eq!(seen.scopes(), ["sql"], "only the requested subset");
    // The downscoped token is not accepted where the original was.
    let err = edge_for(run.idp.verifier_issuer_config("switchboard"))
        .authenticate(&bearer(downscoped.expose()), LOCALHOST)
        .await
        .unwrap_err();
    assert_eq!(err.message, "token audience is not accepted");

    // Asking for a scope the subject does not hold: 400 invalid_scope, surfaced as Denied.
    let err = exchanger.exchange(&user, Some("genie-space"), &strings(&["sql", "admin"])).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Denied);
    assert!(err.message.contains("400: invalid_scope"), "{}", err.message);

    let http = reqwest::Client::new();
    let exchange_form = |subject: &str| {
        vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange".to_string()),
            ("subject_token", subject.to_string()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt".to_string()),
            ("scope", "sql".to_string()),
            ("client_id", "switchboard-sp".to_string()),
            ("client_secret", "sp-secret".to_string()),
        ]
    };

    // Without client authentication, or with a wrong secret, the exchange is refused outright,
    // even for a valid subject token.
    let unauthenticated = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", user.expose()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
    ];
    let r = http.post(&endpoint).form(&unauthenticated).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body.get("access_token").is_none(), "{body}");
    let r = http
        .post(&endpoint)
        .basic_auth("switchboard-sp", Some("wrong"))
        .form(&unauthenticated)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    // The runtime's exchanger without a client configured gets the same refusal.
    let anonymous =
        Rfc8693Exchanger::new(TokenExchangeConfig::new(&endpoint), reqwest::Client::new()).unwrap();
    let err = anonymous.exchange(&user, Some("genie-space"), &strings(&["sql"])).await.unwrap_err();
    assert!(err.message.contains("invalid_client"), "{}", err.message);
    // HTTP Basic works as well as the form fields.
    let r = http
        .post(&endpoint)
        .basic_auth("switchboard-sp", Some("sp-secret"))
        .form(&unauthenticated)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A subject token from another issuer (a different key) is invalid_grant.
    let other_dir = tempfile::tempdir().unwrap();
    let stranger = DevIdentityProvider::load_or_create(other_dir.path(), &run.base).unwrap();
    let foreign = stranger
        .issue("mallory@example.com", &[], &strings(&["sql"]), "switchboard", Duration::from_secs(60))
        .unwrap();
    let r = http.post(&endpoint).form(&exchange_form(foreign.expose())).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // A token with a broken signature is invalid_grant.
    let (signed, signature) = user.expose().rsplit_once('.').unwrap();
    let mut sig: Vec<char> = signature.chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{signed}.{}", sig.into_iter().collect::<String>());
    let r = http.post(&endpoint).form(&exchange_form(&tampered)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // The exchanged token never outlives the subject token.
    let short = run
        .idp
        .issue("bob@example.com", &[], &strings(&["sql"]), "switchboard", Duration::from_secs(30))
        .unwrap();
    let body: Value =
        http.post(&endpoint).form(&exchange_form(short.expose())).send().await.unwrap().json().await.unwrap();
    assert!(body["expires_in"].as_u64().unwrap() <= 30, "{body}");
    assert_eq!(body["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(body["scope"], "sql");
}
