//! Bearer-token authentication of every HTTP request.
//!
//! The server trusts exactly one thing: a JWT signed by a key in Switchboard's JWKS. Identity
//! headers such as `X-Forwarded-Email` are never read, because anyone can send them. A verified
//! request carries a [`Caller`] in its extensions; rmcp hands the request's `http::request::Parts`
//! to the tool that request calls, so identity is per HTTP request, never per MCP session.

use crate::keys::{Key, RemoteKeys, pick};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value, json};
use std::fmt;
use std::sync::Arc;

/// The only algorithms accepted: asymmetric ones, so holding the public JWKS never lets anyone
/// mint a token (no `HS*`, no `none`).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// The `realm` of every challenge.
const REALM: &str = "tickets-mcp";

/// The verified caller of one HTTP request: the token's `email` claim, or its `sub` when it has
/// no email. Only [`TicketsAuth`] creates it, after checking the token's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    id: String,
}

impl Caller {
    /// The caller's email (or subject), which ticket ownership is keyed on.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Why a request was refused. Messages never include the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// The token is not a well-formed JWT, or uses an algorithm that is not accepted.
    Malformed,
    /// No key in the JWKS matches the token's `kid` and algorithm.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// A claim check failed: `iss`, `aud`, `nbf`, or a required claim is missing.
    Claims(&'static str),
    /// The token names neither an `email` nor a `sub`.
    NoCaller,
    /// The signing keys could not be fetched, so no token can be checked right now.
    KeysUnavailable,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match self {
            Self::Missing => "a bearer token is required",
            Self::Malformed => "the bearer token is malformed or uses an unaccepted algorithm",
            Self::UnknownKey => "the token's signing key is not known",
            Self::BadSignature => "the token's signature is invalid",
            Self::Expired => "the token has expired",
            Self::Claims(what) => what,
            Self::NoCaller => "the token names no caller (no email or sub claim)",
            Self::KeysUnavailable => "the signing keys are unavailable; try again shortly",
        };
        f.write_str(message)
    }
}

impl std::error::Error for AuthError {}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let description = self.to_string();
        if self == Self::KeysUnavailable {
            let body = json!({ "error": "temporarily_unavailable", "error_description": description });
            return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "5")], Json(body))
                .into_response();
        }
        // RFC 6750 §3.1: a request with no credentials gets a bare challenge, without an error code.
        let (code, challenge) = match self {
            Self::Missing => ("unauthorized", format!("Bearer realm=\"{REALM}\"")),
            _ => (
                "invalid_token",
                format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\""
                ),
            ),
        };
        let body = json!({ "error": code, "error_description": description });
        let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        // Every challenge is built from constants, so it is always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// A configuration that cannot work: no usable key, or a JWKS URL that is not http(s).
#[derive(Debug, Clone)]
pub struct AuthSetupError(String);

impl fmt::Display for AuthSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthSetupError {}

/// Verifies bearer JWTs against Switchboard's signing keys. Cheap to clone; clones share the key
/// cache.
#[derive(Clone)]
pub struct TicketsAuth {
    inner: Arc<Inner>,
}

impl fmt::Debug for TicketsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.inner.keys {
            KeySource::Static(keys) => format!("{} static key(s)", keys.len()),
            KeySource::Remote(remote) => remote.url.clone(),
        };
        f.debug_struct("TicketsAuth")
            .field("keys", &source)
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .finish()
    }
}

struct Inner {
    keys: KeySource,
    issuer: Option<String>,
    audience: Option<String>,
}

enum KeySource {
    Static(Arc<Vec<Key>>),
    Remote(RemoteKeys),
}

impl TicketsAuth {
    /// Trusts the keys of `jwk_set` (for running in-process next to the issuer). `issuer` and
    /// `audience`, when given, must match the token's `iss` and `aud`. Keys that cannot verify
    /// signatures (encryption keys, symmetric keys, unsupported curves) are ignored; it is an
    /// error if none is left.
    pub fn from_jwks(
        jwk_set: JwkSet,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, AuthSetupError> {
        install_crypto_provider();
        let keys: Vec<Key> = jwk_set.keys.iter().filter_map(Key::from_jwk).collect();
        if keys.is_empty() {
            return Err(AuthSetupError("the JWK set has no usable RSA or EC signing key".into()));
        }
        Ok(Self::new(KeySource::Static(Arc::new(keys)), issuer, audience))
    }

    /// Trusts the keys published at `url` (Switchboard's `/.well-known/jwks.json`). They are
    /// fetched on first use and cached; a token with an unknown `kid` triggers a re-fetch (at
    /// most every 30 s), so key rotation needs no restart.
    pub fn from_jwks_url(
        url: impl Into<String>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, AuthSetupError> {
        install_crypto_provider();
        let url = url.into();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(AuthSetupError(format!("the JWKS URL `{url}` is not an http(s) URL")));
        }
        let remote = RemoteKeys::new(url).map_err(AuthSetupError)?;
        Ok(Self::new(KeySource::Remote(remote), issuer, audience))
    }

    fn new(keys: KeySource, issuer: Option<String>, audience: Option<String>) -> Self {
        Self { inner: Arc::new(Inner { keys, issuer, audience }) }
    }

    /// Verifies the `Authorization` header of a request and returns its caller.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let value = headers.get(header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Missing)?;
        // Another scheme (Basic…) offers no bearer credentials at all.
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        self.verify(token.trim()).await
    }

    /// Verifies a bearer token: signature, `exp`/`nbf`, and `iss`/`aud` when configured.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::Malformed);
        }
        let candidates = match &self.inner.keys {
            KeySource::Static(keys) => pick(keys, header.kid.as_deref(), header.alg),
            KeySource::Remote(remote) => remote.keys_for(header.kid.as_deref(), header.alg).await?,
        };
        if candidates.is_empty() {
            return Err(AuthError::UnknownKey);
        }
        let validation = self.validation(header.alg);
        let mut last = AuthError::BadSignature;
        for key in &candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation) {
                Ok(data) => return caller_from(&data.claims),
                // Without a `kid` several keys may be candidates; only the right one verifies.
                Err(e) if matches!(e.kind(), JwtErrorKind::InvalidSignature) => {
                    last = AuthError::BadSignature
                }
                Err(e) => return Err(map_jwt_error(e.kind())),
            }
        }
        Err(last)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.inner.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.inner.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // jsonwebtoken rejects any token with an `aud` unless told which audience to expect.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// The axum middleware in front of the MCP service: a request without a valid token is answered
/// here and never reaches rmcp; a valid one continues with its [`Caller`] attached.
pub(crate) async fn require_bearer(
    State(auth): State<TicketsAuth>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth.authenticate(request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => {
            tracing::debug!(reason = %e, method = %request.method(), "request refused");
            e.into_response()
        }
    }
}

fn caller_from(claims: &Map<String, Value>) -> Result<Caller, AuthError> {
    let claim =
        |name: &str| claims.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    claim("email").or_else(|| claim("sub")).map(|id| Caller { id: id.to_string() }).ok_or(AuthError::NoCaller)
}

fn map_jwt_error(kind: &JwtErrorKind) -> AuthError {
    match kind {
        JwtErrorKind::ExpiredSignature => AuthError::Expired,
        JwtErrorKind::InvalidSignature => AuthError::BadSignature,
        JwtErrorKind::InvalidIssuer => AuthError::Claims("the token's issuer is not accepted"),
        JwtErrorKind::InvalidAudience => AuthError::Claims("the token's audience is not accepted"),
        JwtErrorKind::ImmatureSignature => AuthError::Claims("the token is not valid yet"),
        JwtErrorKind::MissingRequiredClaim(_) => AuthError::Claims("the token lacks a required claim"),
        _ => AuthError::Malformed,
    }
}

/// jsonwebtoken needs a process-wide crypto backend; aws-lc-rs is the one the workspace builds.
fn install_crypto_provider() {
    // Err only means a provider is already installed, which is fine.
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_caller_is_the_email_then_the_subject() {
        let c = caller_from(&claims(json!({"email": "a@example.com", "sub": "u1"})));
        assert_eq!(c.map(|c| c.id), Ok("a@example.com".into()));
        let c = caller_from(&claims(json!({"email": " ", "sub": "u1"})));
        assert_eq!(c.map(|c| c.id), Ok("u1".into()));
        assert_eq!(caller_from(&claims(json!({"email": 7}))), Err(AuthError::NoCaller));
    }

    #[tokio::test]
    async fn a_missing_or_foreign_scheme_is_missing_and_garbage_is_malformed() {
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }]}))
        .expect("a JWK set");
        let auth = TicketsAuth::from_jwks(jwks, None, None).expect("usable key");
        let mut headers = HeaderMap::new();
        assert_eq!(auth.authenticate(&headers).await, Err(AuthError::Missing));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
        assert_eq!(auth.authenticate(&headers).await, Err(AuthError::Missing));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer not.a.jwt"));
        assert_eq!(auth.authenticate(&headers).await, Err(AuthError::Malformed));
    }

    #[test]
    fn a_set_without_signing_keys_is_refused() {
        let jwks: JwkSet =
            serde_json::from_value(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}))
                .expect("a JWK set");
        assert!(TicketsAuth::from_jwks(jwks, None, None).is_err());
        assert!(TicketsAuth::from_jwks_url("file:///etc/passwd", None, None).is_err());
    }
}
