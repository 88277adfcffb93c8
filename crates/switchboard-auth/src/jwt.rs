//! JWT verification against configured issuers, with JWKS fetching and caching.

use crate::config::{IssuerConfig, StaticKey};
use crate::oauth::token_digest;
use crate::verified::VerifiedTokens;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use switchboard_core::{Error, ErrorKind, Result};

/// The message of the one 401 that carries no `error` attribute in its challenge (RFC 6750 §3.1).
pub(crate) const MISSING_TOKEN: &str = "missing bearer token";
/// A refresh caused by an unknown `kid` happens at most this often per issuer, so a stream of
/// tokens with made-up key ids cannot turn the edge into a JWKS-fetching amplifier.
const KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed JWKS fetch with nothing cached, requests fail fast for this long.
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(5);
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn unauthenticated(message: &str) -> Error {
    Error::new(ErrorKind::Unauthenticated, message)
}
fn malformed() -> Error {
    unauthenticated("malformed token")
}
fn issuer_not_accepted() -> Error {
    unauthenticated("token issuer is not accepted")
}

/// Selects the aws-lc-rs backend for jsonwebtoken explicitly, so the choice does not depend on
/// which features other crates in the build happen to enable.
pub(crate) fn ensure_crypto_provider() {
    // Err only means a provider is already installed, which is fine.
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
}

/// One verification key.
#[derive(Clone)]
struct KeyEntry {
    kid: Option<String>,
    family: AlgorithmFamily,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl KeyEntry {
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => AlgorithmFamily::Ec,
            _ => return None,
        };
        let alg = match jwk.common.key_algorithm {
            Some(a) => Some(Algorithm::try_from(a).ok()?),
            None => None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self { kid: jwk.common.key_id.clone(), family, alg, key })
    }

    fn from_pem(pem: &str) -> Result<Self> {
        if pem.contains("PRIVATE KEY") {
            return Err(Error::config("is a private key; configure the issuer's public key"));
        }
        let bytes = pem.as_bytes();
        if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
            return Ok(Self { kid: None, family: AlgorithmFamily::Ec, alg: None, key });
        }
        DecodingKey::from_rsa_pem(bytes)
            .map(|key| Self { kid: None, family: AlgorithmFamily::Rsa, alg: None, key })
            .map_err(|_| Error::config("is not an RSA or P-256 public key in PEM form"))
    }

    fn matches(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        self.family == alg.family()
            && self.alg.is_none_or(|a| a == alg)
            && match (kid, self.kid.as_deref()) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    }
}

struct Fetched {
    keys: Arc<Vec<KeyEntry>>,
    at: Instant,
}

#[derive(Default)]
struct RefreshState {
    last_kid_refresh: Option<Instant>,
    last_failure: Option<Instant>,
}

struct JwksCache {
    url: String,
    ttl: Duration,
    current: RwLock<Option<Fetched>>,
    /// Serialises fetches so concurrent requests share one.
    refresh: tokio::sync::Mutex<RefreshState>,
}

enum KeySource {
    Static(Arc<Vec<KeyEntry>>),
    Jwks(JwksCache),
}

/// A configured issuer with its keys.
pub(crate) struct IssuerState {
    pub config: IssuerConfig,
    algorithms: Vec<Algorithm>,
    keys: KeySource,
}

/// A verified token's claims and the issuer that vouched for them.
pub(crate) struct Verified<'a> {
    pub issuer: &'a IssuerState,
    /// Shared with the verified-token cache: a hit hands them out without copying them.
    pub claims: Arc<Map<String, Value>>,
}

/// The identity fields a verified token maps to.
pub(crate) struct Identity {
    pub subject: String,
    pub email: String,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
}

/// Verifies bearer JWTs against the configured issuers.
pub(crate) struct Verifier {
    issuers: Vec<IssuerState>,
    by_name: HashMap<String, usize>,
    http: reqwest::Client,
    /// Tokens that verified, reused until they expire (see [`VerifiedTokens`]).
    verified: VerifiedTokens,
}

impl Verifier {
    pub fn new(configs: &[IssuerConfig], http: reqwest::Client) -> Result<Self> {
        ensure_crypto_provider();
        let mut issuers = Vec::with_capacity(configs.len());
        let mut by_name = HashMap::new();
        for (i, config) in configs.iter().enumerate() {
            let at = |field: &str| format!("auth.issuers[{i}].{field}");
            if config.issuer.trim().is_empty() {
                return Err(Error::config(format!("{}: must not be empty", at("issuer"))));
            }
            if by_name.insert(config.issuer.clone(), i).is_some() {
                return Err(Error::config(format!(
                    "{}: issuer `{}` is configured twice",
                    at("issuer"),
                    config.issuer
                )));
            }
            if config.audience.trim().is_empty() {
                return Err(Error::config(format!("{}: must not be empty", at("audience"))));
            }
            if config.algorithms.is_empty() {
                return Err(Error::config(format!("{}: list at least one algorithm", at("algorithms"))));
            }
            let keys = match (&config.jwks_url, config.keys.is_empty()) {
                (Some(_), false) | (None, true) => {
                    return Err(Error::config(format!(
                        "auth.issuers[{i}] (`{}`): set exactly one of `jwks_url` and `keys`",
                        config.issuer
                    )));
                }
                (Some(url), true) => {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        return Err(Error::config(format!(
                            "{}: `{url}` is not an http(s) URL",
                            at("jwks_url")
                        )));
                    }
                    KeySource::Jwks(JwksCache {
                        url: url.clone(),
                        ttl: Duration::from_secs(config.jwks_cache_secs),
                        current: RwLock::new(None),
                        refresh: tokio::sync::Mutex::new(RefreshState::default()),
                    })
                }
                (None, false) => {
                    let mut entries = Vec::with_capacity(config.keys.len());
                    for (k, key) in config.keys.iter().enumerate() {
                        let entry = match key {
                            StaticKey::Pem(pem) => KeyEntry::from_pem(pem).map_err(|e| {
                                Error::config(format!("{}: {}", at(&format!("keys[{k}]")), e.message))
                            })?,
                            StaticKey::Jwk(jwk) => KeyEntry::from_jwk(jwk).ok_or_else(|| {
                                Error::config(format!(
                                    "{}: not a usable RSA or P-256 signing JWK",
                                    at(&format!("keys[{k}]"))
                                ))
                            })?,
                        };
                        entries.push(entry);
                    }
                    KeySource::Static(Arc::new(entries))
                }
            };
            if let Some(fed) = &config.federation {
                if fed.token_endpoint.trim().is_empty() {
                    return Err(Error::config(format!(
                        "{}: must not be empty",
                        at("federation.token_endpoint")
                    )));
                }
                if fed.client_secret.is_some() && fed.client_id.is_none() {
                    return Err(Error::config(format!(
                        "{}: a client_secret needs a client_id",
                        at("federation.client_secret")
                    )));
                }
            }
            let algorithms = config.algorithms.iter().map(|a| a.to_jwt()).collect();
            issuers.push(IssuerState { config: config.clone(), algorithms, keys });
        }
        Ok(Self { issuers, by_name, http, verified: VerifiedTokens::default() })
    }

    /// Whether any issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// How many verified tokens are remembered.
    pub fn remembered(&self) -> usize {
        self.verified.len()
    }

    /// Verifies signature, `iss`, `aud`, `exp` and `nbf`, and returns the claims. A token that
    /// verified before is answered from memory while its `exp` and `nbf` still allow it.
    pub async fn verify(&self, token: &str) -> Result<Verified<'_>> {
        let key = token_digest(token);
        if let Some((i, claims)) = self.verified.get(&key)
            && let Some(issuer) = self.issuers.get(i)
        {
            return Ok(Verified { issuer, claims });
        }
        let (i, claims) = self.verify_signature(token).await?;
        let claims = Arc::new(claims);
        let issuer = &self.issuers[i];
        self.verified.insert(key, i, &claims, issuer.config.leeway_secs);
        Ok(Verified { issuer, claims })
    }

    /// The full check, no memory: the issuer's index and the claims.
    async fn verify_signature(&self, token: &str) -> Result<(usize, Map<String, Value>)> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| malformed())?;
        let unverified: Map<String, Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| malformed())?;
        let iss = unverified.get("iss").and_then(Value::as_str).ok_or_else(issuer_not_accepted)?;
        let index = *self.by_name.get(iss).ok_or_else(issuer_not_accepted)?;
        let issuer = &self.issuers[index];
        if !issuer.algorithms.contains(&header.alg) {
            return Err(unauthenticated("token algorithm is not accepted"));
        }
        let candidates = self.keys_for(issuer, header.kid.as_deref(), header.alg).await?;
        if candidates.is_empty() {
            return Err(unauthenticated("token signing key is not known"));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = issuer.config.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_audience(&[&issuer.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let mut last = None;
        for entry in candidates.iter() {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &entry.key, &validation) {
                Ok(data) => return Ok((index, data.claims)),
                // With no kid several keys may be candidates; only the right one verifies.
                Err(e) if matches!(e.kind(), JwtErrorKind::InvalidSignature) => last = Some(e),
                Err(e) => return Err(map_jwt_error(e.kind())),
            }
        }
        Err(last
            .map(|e| map_jwt_error(e.kind()))
            .unwrap_or_else(|| unauthenticated("invalid token signature")))
    }

    async fn keys_for(
        &self,
        issuer: &IssuerState,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<KeyEntry>> {
        let pick =
            |keys: &[KeyEntry]| keys.iter().filter(|k| k.matches(kid, alg)).cloned().collect::<Vec<_>>();
        match &issuer.keys {
            KeySource::Static(keys) => Ok(pick(keys)),
            KeySource::Jwks(cache) => {
                let keys = self.current_keys(issuer, cache).await?;
                let found = pick(&keys);
                if !found.is_empty() {
                    return Ok(found);
                }
                let keys = self.refresh_for_unknown_kid(issuer, cache, kid, alg).await;
                Ok(pick(&keys))
            }
        }
    }

    fn cached(cache: &JwksCache) -> Option<(Arc<Vec<KeyEntry>>, Instant)> {
        // A poisoned lock only means a panic elsewhere; the cached keys are still consistent.
        let guard = cache.current.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|f| (f.keys.clone(), f.at))
    }

    fn store(cache: &JwksCache, keys: Arc<Vec<KeyEntry>>) {
        let mut guard = cache.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = Some(Fetched { keys, at: Instant::now() });
    }

    /// The cached keys, fetching them on first use or once the cache has aged out.
    async fn current_keys(&self, issuer: &IssuerState, cache: &JwksCache) -> Result<Arc<Vec<KeyEntry>>> {
        if let Some((keys, at)) = Self::cached(cache)
            && at.elapsed() < cache.ttl
        {
            return Ok(keys);
        }
        let mut state = cache.refresh.lock().await;
        let stale = Self::cached(cache);
        if let Some((keys, at)) = &stale
            && at.elapsed() < cache.ttl
        {
            return Ok(keys.clone());
        }
        if stale.is_none() && state.last_failure.is_some_and(|t| t.elapsed() < FAILED_FETCH_BACKOFF) {
            return Err(Error::upstream(format!(
                "the signing keys of issuer `{}` are unavailable",
                issuer.config.issuer
            )));
        }
        match self.fetch(cache).await {
            Ok(keys) => {
                state.last_failure = None;
                Self::store(cache, keys.clone());
                Ok(keys)
            }
            Err(e) => {
                state.last_failure = Some(Instant::now());
                match stale {
                    Some((keys, _)) => {
                        tracing::warn!(issuer = %issuer.config.issuer, error = %e.message,
                            "JWKS refresh failed; keeping the previous keys");
                        Ok(keys)
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// Refetches the JWKS because a token named a key we do not hold, at most once per
    /// `KID_REFRESH_INTERVAL`; returns whatever keys are current afterwards.
    async fn refresh_for_unknown_kid(
        &self,
        issuer: &IssuerState,
        cache: &JwksCache,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Arc<Vec<KeyEntry>> {
        let mut state = cache.refresh.lock().await;
        let current = Self::cached(cache).map(|(k, _)| k).unwrap_or_default();
        // Another request may have refreshed while this one waited for the lock.
        if current.iter().any(|k| k.matches(kid, alg)) {
            return current;
        }
        if state.last_kid_refresh.is_some_and(|t| t.elapsed() < KID_REFRESH_INTERVAL) {
            return current;
        }
        state.last_kid_refresh = Some(Instant::now());
        match self.fetch(cache).await {
            Ok(keys) => {
                Self::store(cache, keys.clone());
                keys
            }
            Err(e) => {
                tracing::warn!(issuer = %issuer.config.issuer, error = %e.message, "JWKS refresh failed");
                current
            }
        }
    }

    async fn fetch(&self, cache: &JwksCache) -> Result<Arc<Vec<KeyEntry>>> {
        let fail =
            |detail: String| Error::upstream(format!("fetching JWKS from {} failed: {detail}", cache.url));
        let response = self
            .http
            .get(&cache.url)
            .timeout(JWKS_TIMEOUT)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status().as_u16())));
        }
        let body: Value = response.json().await.map_err(|_| fail("the body is not JSON".into()))?;
        let keys =
            body.get("keys").and_then(Value::as_array).ok_or_else(|| fail("no `keys` array".into()))?;
        // One odd key (an encryption key, an unsupported curve) must not hide the others.
        let entries: Vec<KeyEntry> = keys
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter_map(|jwk| KeyEntry::from_jwk(&jwk))
            .collect();
        tracing::debug!(url = %cache.url, keys = entries.len(), "fetched JWKS");
        Ok(Arc::new(entries))
    }
}

fn map_jwt_error(kind: &JwtErrorKind) -> Error {
    unauthenticated(match kind {
        JwtErrorKind::ExpiredSignature => "token expired",
        JwtErrorKind::ImmatureSignature => "token is not yet valid",
        JwtErrorKind::InvalidSignature
        | JwtErrorKind::InvalidEcdsaKey
        | JwtErrorKind::InvalidRsaKey(_)
        | JwtErrorKind::InvalidKeyFormat => "invalid token signature",
        JwtErrorKind::InvalidAudience => "token audience is not accepted",
        JwtErrorKind::InvalidIssuer => "token issuer is not accepted",
        JwtErrorKind::InvalidAlgorithm => "token algorithm is not accepted",
        JwtErrorKind::MissingRequiredClaim(c) => match c.as_str() {
            "aud" => "token audience is not accepted",
            "iss" => "token issuer is not accepted",
            "exp" => "token has no expiry",
            "sub" => "token has no subject",
            _ => "malformed token",
        },
        _ => "malformed token",
    })
}

/// Looks a claim up by name, or by dotted path into nested objects.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// An array of strings or a space-separated string.
fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

impl Verified<'_> {
    /// Maps the claims to an identity with the issuer's claim names.
    pub fn identity(&self) -> Result<Identity> {
        let cfg = &self.issuer.config;
        let subject = self.claims.get("sub").and_then(Value::as_str).ok_or_else(malformed)?.to_string();
        let email = claim(&self.claims, &cfg.email_claim)
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .unwrap_or(&subject)
            .to_string();
        let groups = string_list(claim(&self.claims, &cfg.groups_claim));
        let scopes = match claim(&self.claims, &cfg.scope_claim) {
            Some(v) => string_list(Some(v)),
            None => string_list(self.claims.get("scp")),
        };
        Ok(Identity { subject, email, groups, scopes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_by_name_and_dotted_path() {
        let claims = json!({"a.b": "literal", "realm": {"roles": ["x", "y"]}, "scope": "s1 s2"});
        let claims = claims.as_object().unwrap();
        assert_eq!(claim(claims, "a.b"), Some(&json!("literal")));
        assert_eq!(string_list(claim(claims, "realm.roles")), vec!["x", "y"]);
        assert_eq!(string_list(claim(claims, "scope")), vec!["s1", "s2"]);
        assert!(claim(claims, "realm.missing").is_none());
    }
}
