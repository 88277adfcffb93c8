//! The development identity provider: a local ES256 issuer for the demo and for tests.
//!
//! It signs tokens with a P-256 key kept in the data directory, publishes the key as a JWKS,
//! and serves a small OAuth token endpoint (client credentials and RFC 8693 exchange) so the
//! production code paths run unchanged against it.

use crate::config::{IssuerConfig, JwtAlgorithm, StaticKey};
use crate::jwt::ensure_crypto_provider;
use crate::oauth::{GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT, sha256, token_digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_core::{Error, Result, Secret};

/// The key file inside the data directory.
pub const DEV_IDP_KEY_FILE: &str = "dev-idp-key.p8";
/// Tokens from the token endpoint live at most this long.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A local ES256 identity provider. Never use it in production: anyone with the data directory
/// can mint any identity.
pub struct DevIdentityProvider {
    issuer: String,
    default_audience: String,
    kid: String,
    x: String,
    y: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for DevIdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIdentityProvider")
            .field("issuer", &self.issuer)
            .field("default_audience", &self.default_audience)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl DevIdentityProvider {
    /// Loads the signing key from `<data_dir>/dev-idp-key.p8`, generating and storing it (mode
    /// 0600) on first use, so tokens stay valid across restarts. `issuer` is the `iss` of every
    /// token, conventionally the base URL where [`routes`] are served.
    pub fn load_or_create(data_dir: &Path, issuer: &str) -> Result<Self> {
        ensure_crypto_provider();
        let issuer = issuer.trim_end_matches('/').to_string();
        if issuer.is_empty() {
            return Err(Error::config("dev identity provider: the issuer must not be empty"));
        }
        std::fs::create_dir_all(data_dir).map_err(|e| {
            Error::config(format!("cannot create data directory {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(DEV_IDP_KEY_FILE);
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key_file(data_dir, &path)?,
            Err(e) => return Err(Error::config(format!("cannot read {}: {e}", path.display()))),
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).map_err(|_| {
            Error::config(format!(
                "{} is not a P-256 PKCS#8 key; delete it to generate a new one",
                path.display()
            ))
        })?;
        warn_if_readable_by_others(&path);
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(Error::internal("unexpected P-256 public key encoding"));
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        let kid: String = URL_SAFE_NO_PAD.encode(sha256(point)).chars().take(16).collect();
        let decoding = DecodingKey::from_ec_components(&x, &y)
            .map_err(|_| Error::internal("cannot build the dev identity provider's verification key"))?;
        Ok(Self {
            issuer,
            default_audience: "switchboard".into(),
            kid,
            x,
            y,
            encoding: EncodingKey::from_ec_der(&pkcs8),
            decoding,
        })
    }

    /// The audience of tokens from the token endpoint when the request names none (default
    /// `switchboard`).
    pub fn with_default_audience(mut self, audience: impl Into<String>) -> Self {
        self.default_audience = audience.into();
        self
    }

    /// The `iss` of issued tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id in issued tokens' headers and in the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The audience used when a token request names none.
    pub fn default_audience(&self) -> &str {
        &self.default_audience
    }

    /// A signed ES256 JWT for `subject_email` (used as both `sub` and `email`).
    pub fn issue(
        &self,
        subject_email: &str,
        groups: &[String],
        scopes: &[String],
        audience: &str,
        ttl: Duration,
    ) -> Result<Secret> {
        self.sign(subject_email, Some(subject_email), groups, scopes, audience, ttl)
    }

    fn sign(
        &self,
        subject: &str,
        email: Option<&str>,
        groups: &[String],
        scopes: &[String],
        audience: &str,
        ttl: Duration,
    ) -> Result<Secret> {
        let now = now_unix();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "groups": groups,
            "scope": scopes.join(" "),
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
        });
        if let (Some(email), Some(map)) = (email, claims.as_object_mut()) {
            map.insert("email".into(), json!(email));
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map(Secret::new)
            .map_err(|e| Error::internal(format!("signing a development token failed: {e}")))
    }

    /// The public signing key as a JWK set (`{"keys": [{kty EC, crv P-256, x, y, kid, alg, use}]}`).
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        })
    }

    /// An `[[auth.issuers]]` entry trusting this provider through its static public key, so the
    /// edge needs no HTTP round trip. Callers are recorded as `AuthMethod::Development`.
    pub fn verifier_issuer_config(&self, audience: &str) -> IssuerConfig {
        let mut config = self.base_issuer_config(audience);
        // The JWK is built from our own fields, so it always parses.
        if let Ok(jwk) = serde_json::from_value(self.jwk()) {
            config.keys = vec![StaticKey::Jwk(Box::new(jwk))];
        }
        config
    }

    /// An `[[auth.issuers]]` entry trusting this provider through the JWKS that [`routes`]
    /// serves at `jwks_url`.
    pub fn jwks_issuer_config(&self, audience: &str, jwks_url: &str) -> IssuerConfig {
        let mut config = self.base_issuer_config(audience);
        config.jwks_url = Some(jwks_url.to_string());
        config
    }

    fn base_issuer_config(&self, audience: &str) -> IssuerConfig {
        let mut config = IssuerConfig::new(self.issuer.clone(), audience);
        config.algorithms = vec![JwtAlgorithm::ES256];
        config.development = true;
        config
    }

    /// Verifies a token this provider issued (any audience), for token exchange.
    fn verify_own(&self, token: &str) -> std::result::Result<Map<String, Value>, ()> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|_| ())
    }
}

/// Writes a fresh key to a private temp file, then links it into place without clobbering, so
/// two processes starting together agree on one key.
fn create_key_file(dir: &Path, path: &Path) -> Result<Vec<u8>> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| Error::internal("generating the dev identity provider key failed"))?;
    let bytes = doc.as_ref().to_vec();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".{DEV_IDP_KEY_FILE}.{}.{nanos}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::config(format!("cannot write {}: {e}", tmp.display())));
    }
    let linked = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path),
        // Filesystems without hard links: fall back to a plain rename.
        Err(_) => std::fs::rename(&tmp, path).map(|()| bytes),
    };
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|e| Error::config(format!("cannot store {}: {e}", path.display())))
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the dev identity provider key is readable by other users");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// OAuth clients the development token endpoint accepts, for `client_credentials` and to
/// authenticate RFC 8693 token exchange.
#[derive(Clone, Default)]
pub struct DevClients {
    clients: HashMap<String, DevClient>,
}

#[derive(Clone)]
struct DevClient {
    secret: Secret,
    scopes: Vec<String>,
}

impl fmt::Debug for DevClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClients").field("client_ids", &self.clients.keys().collect::<Vec<_>>()).finish()
    }
}

impl DevClients {
    /// No clients.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a client that may request any of `scopes` (all of them when it requests none).
    pub fn with_client(mut self, client_id: impl Into<String>, secret: Secret, scopes: Vec<String>) -> Self {
        self.clients.insert(client_id.into(), DevClient { secret, scopes });
        self
    }

    /// Whether `id`/`secret` name a registered client; compared in constant time.
    fn check(&self, id: &str, secret: &str) -> Option<&DevClient> {
        let client = self.clients.get(id)?;
        let a = token_digest(client.secret.expose());
        let b = token_digest(secret);
        aws_lc_rs::constant_time::verify_slices_are_equal(&a, &b).ok().map(|()| client)
    }
}

#[derive(Clone)]
struct DevState {
    idp: Arc<DevIdentityProvider>,
    clients: Arc<DevClients>,
}

/// The provider's HTTP surface: `GET /.well-known/jwks.json`,
/// `GET /.well-known/openid-configuration` and `POST /oidc/v1/token` (grant types
/// `client_credentials` and RFC 8693 token exchange, both requiring client authentication
/// against `clients`). Errors follow RFC 6749 §5.2.
pub fn routes(idp: Arc<DevIdentityProvider>, clients: DevClients) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks_handler))
        .route("/.well-known/openid-configuration", get(openid_handler))
        .route("/oidc/v1/token", post(token_handler))
        .with_state(DevState { idp, clients: Arc::new(clients) })
}

async fn jwks_handler(State(state): State<DevState>) -> Json<Value> {
    Json(state.idp.jwks())
}

async fn openid_handler(State(state): State<DevState>) -> Json<Value> {
    let issuer = state.idp.issuer();
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/oidc/v1/token"),
        "grant_types_supported": ["client_credentials", GRANT_TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": [],
    }))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"dev-idp\""));
    }
    response
}

fn token_response(token: Secret, ttl: Duration, scopes: &[String], exchanged: bool) -> Response {
    let mut body = json!({
        "access_token": token.expose(),
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": scopes.join(" "),
    });
    if exchanged && let Some(map) = body.as_object_mut() {
        map.insert("issued_token_type".into(), json!(TOKEN_TYPE_ACCESS));
    }
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// Client credentials from HTTP Basic or, failing that, the form (RFC 6749 §2.3.1).
fn client_credentials<'a>(
    headers: &HeaderMap,
    form: &'a HashMap<String, String>,
) -> std::result::Result<Option<(String, String)>, ()> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| ())?;
        if let Some((scheme, encoded)) = text.split_once(' ')
            && scheme.eq_ignore_ascii_case("basic")
        {
            let decoded = STANDARD.decode(encoded.trim()).map_err(|_| ())?;
            let decoded = String::from_utf8(decoded).map_err(|_| ())?;
            let (id, secret) = decoded.split_once(':').ok_or(())?;
            return Ok(Some((id.to_string(), secret.to_string())));
        }
    }
    let id: Option<&'a String> = form.get("client_id");
    match (id, form.get("client_secret")) {
        (Some(id), Some(secret)) => Ok(Some((id.clone(), secret.clone()))),
        _ => Ok(None),
    }
}

fn requested_scopes(form: &HashMap<String, String>) -> Option<Vec<String>> {
    form.get("scope").map(|s| s.split_whitespace().map(str::to_string).collect())
}

async fn token_handler(
    State(state): State<DevState>,
    headers: HeaderMap,
    form: std::result::Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        );
    };
    let client = match client_credentials(&headers, &form) {
        Err(()) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "malformed client authentication",
            );
        }
        Ok(None) => None,
        Ok(Some((id, secret))) => match state.clients.check(&id, &secret) {
            Some(client) => Some((id, client.clone())),
            None => {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "unknown client or wrong secret",
                );
            }
        },
    };
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            let Some((client_id, client)) = client else {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication is required",
                );
            };
            let scopes = requested_scopes(&form).unwrap_or_else(|| client.scopes.clone());
            if let Some(missing) = scopes.iter().find(|s| !client.scopes.contains(s)) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    &format!("client `{client_id}` may not request scope `{missing}`"),
                );
            }
            let audience = form.get("audience").map(String::as_str).unwrap_or(state.idp.default_audience());
            let groups = vec!["service_principal".to_string()];
            match state.idp.sign(&client_id, None, &groups, &scopes, audience, MAX_TOKEN_TTL) {
                Ok(token) => token_response(token, MAX_TOKEN_TTL, &scopes, false),
                Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.message),
            }
        }
        // Without client authentication anyone holding any of this provider's tokens could mint a
        // `switchboard` token from it, or one for any audience.
        Some(GRANT_TOKEN_EXCHANGE) => match client {
            Some(_) => exchange(&state.idp, &form),
            None => oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication is required for token exchange",
            ),
        },
        Some(other) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant type `{}` is not supported", other.chars().take(80).collect::<String>()),
        ),
        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
    }
}

/// RFC 8693: a token for the requested audience carrying the requested subset of the subject
/// token's scopes, for the same subject.
fn exchange(idp: &DevIdentityProvider, form: &HashMap<String, String>) -> Response {
    let Some(subject_token) = form.get("subject_token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "subject_token is required");
    };
    match form.get("subject_token_type").map(String::as_str) {
        Some(TOKEN_TYPE_JWT | TOKEN_TYPE_ACCESS) => {}
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "subject_token_type must be the jwt or access_token token type",
            );
        }
    }
    let Ok(claims) = idp.verify_own(subject_token) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "subject_token is invalid or expired");
    };
    let held = match claims.get("scope") {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let scopes = requested_scopes(form).unwrap_or_else(|| held.clone());
    if let Some(missing) = scopes.iter().find(|s| !held.contains(s)) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("the subject token does not hold scope `{missing}`"),
        );
    }
    let audience = match form.get("audience") {
        Some(a) => a.clone(),
        None => match claims.get("aud") {
            Some(Value::String(a)) => a.clone(),
            Some(Value::Array(a)) => {
                a.first().and_then(Value::as_str).unwrap_or(idp.default_audience()).to_string()
            }
            _ => idp.default_audience().to_string(),
        },
    };
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
    let email = claims.get("email").and_then(Value::as_str);
    let groups: Vec<String> = match claims.get("groups") {
        Some(Value::Array(g)) => g.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    // An exchanged token never outlives the token it was exchanged for.
    let remaining = claims.get("exp").and_then(Value::as_u64).unwrap_or(0).saturating_sub(now_unix());
    let ttl = MAX_TOKEN_TTL.min(Duration::from_secs(remaining));
    match idp.sign(sub, email, &groups, &scopes, &audience, ttl) {
        Ok(token) => token_response(token, ttl, &scopes, true),
        Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.message),
    }
}
