//! Shared test helpers: real servers on 127.0.0.1:0, test keys, token signing.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

pub const RSA_PRIVATE: &str = include_str!("../fixtures/rsa-test-key.pem");
pub const RSA_PUBLIC: &str = include_str!("../fixtures/rsa-test-pub.pem");

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn install_crypto() {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
}

/// Binds 127.0.0.1:0 and returns the listener and its address.
pub async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Serves `router` on `listener` in the background, with peer addresses available.
pub fn serve_on(listener: TcpListener, router: Router) {
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
}

/// Serves `router` on a fresh 127.0.0.1 port and returns its base URL.
pub async fn serve(router: Router) -> String {
    let (listener, addr) = bind().await;
    serve_on(listener, router);
    format!("http://{addr}")
}

/// A signing key with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn ec(kid: &str) -> Self {
        install_crypto();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self {
            alg: Algorithm::ES256,
            kid: kid.into(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }

    pub fn rsa(kid: &str) -> Self {
        install_crypto();
        let encoding = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let mut jwk = serde_json::to_value(
            jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap(),
        )
        .unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Self { alg: Algorithm::RS256, kid: kid.into(), encoding, jwk }
    }

    /// The same key under another kid.
    pub fn with_kid(&self, kid: &str) -> Self {
        let mut k = self.clone();
        k.kid = kid.into();
        k.jwk["kid"] = json!(kid);
        k
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// Standard claims for `email` from `iss` to `aud`, valid for ten minutes.
pub fn claims(iss: &str, aud: &str, email: &str) -> Value {
    let now = now();
    json!({
        "iss": iss, "aud": aud, "sub": format!("sub-{email}"), "email": email,
        "groups": ["west_sales", "users"], "scope": "sql genie",
        "iat": now, "nbf": now, "exp": now + 600,
    })
}

/// A JWKS endpoint whose key list can change, counting fetches.
#[derive(Clone, Default)]
pub struct JwksServer {
    pub keys: Arc<Mutex<Vec<Value>>>,
    pub fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>) -> (Self, String) {
        let server = Self { keys: Arc::new(Mutex::new(keys)), fetches: Arc::default() };
        async fn handler(State(s): State<JwksServer>) -> axum::Json<Value> {
            s.fetches.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({ "keys": s.keys.lock().unwrap().clone() }))
        }
        let router = Router::new().route("/jwks", get(handler)).with_state(server.clone());
        let base = serve(router).await;
        (server, format!("{base}/jwks"))
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

pub fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    h
}

/// Writes `secret` to a temp file and returns the `file:` reference text and the guard.
pub fn secret_file(secret: &str) -> (String, tempfile::NamedTempFile) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, format!("{secret}\n").as_bytes()).unwrap();
    (format!("file:{}", f.path().display()), f)
}
