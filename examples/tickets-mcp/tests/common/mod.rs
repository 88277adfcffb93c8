//! Shared test helpers: an issuer with its own signing key, a running server, and raw MCP over
//! HTTP for the cases an MCP client library hides (per-request tokens, 401 bodies).

#![allow(dead_code)] // Each test binary uses a different subset.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tickets_mcp::TicketsAuth;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ALICE: &str = "alice@example.com";
pub const BOB: &str = "bob@example.com";
pub const ISSUER: &str = "http://127.0.0.1:8080";
pub const AUDIENCE: &str = "tickets";

/// The protocol version the raw requests speak (a session-based one).
pub const PROTOCOL: &str = "2025-06-18";

/// A token issuer with a freshly generated key, standing in for Switchboard's identity provider.
pub struct Issuer {
    pub kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
}

impl Issuer {
    /// An ES256 issuer (what Switchboard's development identity provider uses).
    pub fn es256(kid: &str) -> Self {
        install_crypto_provider();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("P-256 key generation");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("parse key");
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }

    /// An RS256 issuer (what most enterprise identity providers use).
    pub fn rs256(kid: &str) -> Self {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
        install_crypto_provider();
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let pkcs8 = pair.as_der().expect("PKCS#8 encoding");
        let b64 = STANDARD.encode(pkcs8.as_ref());
        let body: Vec<&str> =
            b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", body.join("\n"));
        let public = pair.public_key();
        let jwk = json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA PEM");
        Self { kid: kid.into(), alg: Algorithm::RS256, encoding, jwk }
    }

    /// This issuer's public key as a JWK.
    pub fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// A JWK set holding only this issuer's key.
    pub fn jwks(&self) -> JwkSet {
        serde_json::from_value(json!({ "keys": [self.jwk()] })).expect("a JWK set")
    }

    /// Signs `claims` as they are.
    pub fn sign(&self, claims: Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("signing")
    }

    /// A token for `email` valid for an hour, with the test issuer and audience.
    pub fn token(&self, email: &str) -> String {
        self.token_expiring(email, 3600)
    }

    /// A token for `email` that expires `secs` seconds from now (negative: already expired).
    pub fn token_expiring(&self, email: &str, secs: i64) -> String {
        let now = now();
        self.sign(json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": email, "email": email,
            "iat": now, "exp": now + secs,
        }))
    }
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A running server; stopped (and its shutdown checked) by [`Server::stop`].
pub struct Server {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves on a free loopback port.
    pub async fn start(auth: TicketsAuth) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tickets_mcp::serve(listener, auth, async move {
            let _ = stopped.await;
        }));
        Self { url: format!("http://{addr}/mcp"), stop: Some(stop), task }
    }

    /// Signals shutdown and waits for the server to finish, which it must do promptly even with
    /// MCP sessions and event streams still open.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let finished = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        let result = finished.expect("the server did not shut down within 10 s");
        result.expect("server task").expect("server result");
    }
}

/// A server trusting `issuer`'s key, checking the test issuer and audience.
pub async fn server_for(issuer: &Issuer) -> Server {
    let auth =
        TicketsAuth::from_jwks(issuer.jwks(), Some(ISSUER.into()), Some(AUDIENCE.into())).expect("auth");
    Server::start(auth).await
}

/// One raw HTTP exchange with the MCP endpoint.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The JSON-RPC message answering request `id`, from a JSON or an SSE body.
    pub fn rpc(&self, id: u64) -> Value {
        let candidates: Vec<Value> = if self.body.trim_start().starts_with('{') {
            serde_json::from_str(&self.body).into_iter().collect()
        } else {
            self.body
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect()
        };
        candidates
            .into_iter()
            .find(|m: &Value| m["id"] == json!(id))
            .unwrap_or_else(|| panic!("no JSON-RPC reply with id {id} in: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// POSTs one JSON-RPC message, as a streamable-HTTP MCP client would.
pub async fn post(url: &str, token: Option<&str>, session: Option<&str>, body: Value) -> Reply {
    post_with(url, token, session, body, &[]).await
}

/// [`post`] with extra headers.
pub async fn post_with(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: Value,
    extra: &[(&str, &str)],
) -> Reply {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session).header("mcp-protocol-version", PROTOCOL);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(Duration::from_secs(20), request.send())
        .await
        .expect("the server answered within 20 s")
        .expect("HTTP request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .expect("the reply ended within 20 s")
        .expect("reply body");
    Reply { status, headers, body }
}

/// Opens an MCP session as the holder of `token` and returns its id.
pub async fn initialize(url: &str, token: &str) -> String {
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "raw-test", "version": "1"}}
    });
    let reply = post(url, Some(token), None, init).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.rpc(1)["result"]["serverInfo"].is_object(), "{}", reply.body);
    let session = reply.header("mcp-session-id").expect("a stateful session id");
    let done = post(
        url,
        Some(token),
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(done.status, 202, "{}", done.body);
    session
}

/// Calls `tool` with `args` on `session`, authenticated by `token`; returns the HTTP reply.
pub async fn call(url: &str, token: Option<&str>, session: &str, id: u64, tool: &str, args: Value) -> Reply {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    post(url, token, Some(session), body).await
}

/// The owners of the tickets in a `list_tickets` result.
pub fn owners(result: &Value) -> Vec<String> {
    result["structuredContent"]["tickets"]
        .as_array()
        .unwrap_or_else(|| panic!("no tickets in {result}"))
        .iter()
        .map(|t| t["owner"].as_str().expect("owner").to_string())
        .collect()
}
