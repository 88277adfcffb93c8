//! Verification keys: parsed from JWKs, and for a JWKS URL fetched, cached and re-fetched when
//! the issuer rotates its keys.

use crate::auth::AuthError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Fetched keys are re-fetched after this long, so a key removed from the JWKS stops working.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// An unknown `kid` triggers a re-fetch at most this often, so a stream of tokens with made-up
/// key ids cannot turn this server into a JWKS-fetching amplifier.
const KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed fetch with nothing cached, requests fail fast for this long.
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(2);
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);
/// A JWKS is a few keys; anything this large is not one.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// One verification key.
#[derive(Clone)]
pub(crate) struct Key {
    kid: Option<String>,
    family: AlgorithmFamily,
    /// The JWK's `alg`, which pins the key to one algorithm when present.
    alg: Option<Algorithm>,
    pub(crate) decoding: DecodingKey,
}

impl Key {
    pub(crate) fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
            AlgorithmParameters::EllipticCurve(p)
                if matches!(p.curve, EllipticCurve::P256 | EllipticCurve::P384) =>
            {
                AlgorithmFamily::Ec
            }
            _ => return None,
        };
        let alg = match jwk.common.key_algorithm {
            Some(a) => Some(Algorithm::try_from(a).ok()?),
            None => None,
        };
        let decoding = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self { kid: jwk.common.key_id.clone(), family, alg, decoding })
    }

    fn matches(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        self.family == alg.family()
            && self.alg.is_none_or(|a| a == alg)
            && match (kid, self.kid.as_deref()) {
                (Some(want), Some(have)) => want == have,
                // Without a kid on either side the key is only a candidate: the signature decides.
                _ => true,
            }
    }
}

/// The keys that may have signed a token with this `kid` and algorithm.
pub(crate) fn pick(keys: &[Key], kid: Option<&str>, alg: Algorithm) -> Vec<Key> {
    keys.iter().filter(|k| k.matches(kid, alg)).cloned().collect()
}

/// Keys fetched from a JWKS URL, cached.
pub(crate) struct RemoteKeys {
    pub(crate) url: String,
    http: reqwest::Client,
    cache: RwLock<Option<Cached>>,
    /// Serialises fetches, so concurrent requests share one.
    refresh: tokio::sync::Mutex<RefreshState>,
}

struct Cached {
    keys: Arc<Vec<Key>>,
    at: Instant,
}

#[derive(Default)]
struct RefreshState {
    last_kid_refresh: Option<Instant>,
    last_failure: Option<Instant>,
}

impl RemoteKeys {
    pub(crate) fn new(url: String) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        Ok(Self {
            url,
            http,
            cache: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        })
    }

    /// The keys that may have signed a token with this `kid` and algorithm.
    pub(crate) async fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<Key>, AuthError> {
        let keys = self.current().await?;
        let found = pick(&keys, kid, alg);
        if !found.is_empty() {
            return Ok(found);
        }
        let keys = self.refresh_for_unknown_kid().await;
        Ok(pick(&keys, kid, alg))
    }

    fn cached(&self, fresh_only: bool) -> Option<Arc<Vec<Key>>> {
        // A poisoned lock only means a panic elsewhere; the cached keys are still consistent.
        let guard = self.cache.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|c| !fresh_only || c.at.elapsed() < JWKS_TTL).map(|c| c.keys.clone())
    }

    fn store(&self, keys: Arc<Vec<Key>>) {
        let mut guard = self.cache.write().unwrap_or_else(|p| p.into_inner());
        *guard = Some(Cached { keys, at: Instant::now() });
    }

    /// The cached keys, fetched on first use and once they have aged out. A failed re-fetch
    /// keeps the previous keys rather than locking every caller out.
    async fn current(&self) -> Result<Arc<Vec<Key>>, AuthError> {
        if let Some(keys) = self.cached(true) {
            return Ok(keys);
        }
        let mut state = self.refresh.lock().await;
        if let Some(keys) = self.cached(true) {
            return Ok(keys);
        }
        let stale = self.cached(false);
        if stale.is_none() && state.last_failure.is_some_and(|t| t.elapsed() < FAILED_FETCH_BACKOFF) {
            return Err(AuthError::KeysUnavailable);
        }
        match self.fetch().await {
            Ok(keys) => {
                state.last_failure = None;
                self.store(keys.clone());
                Ok(keys)
            }
            Err(e) => {
                state.last_failure = Some(Instant::now());
                tracing::warn!(url = %self.url, error = %e, "fetching the JWKS failed");
                stale.ok_or(AuthError::KeysUnavailable)
            }
        }
    }

    /// Re-fetches because a token named a key we do not have (the issuer may have rotated),
    /// rate-limited per [`KID_REFRESH_INTERVAL`].
    async fn refresh_for_unknown_kid(&self) -> Arc<Vec<Key>> {
        let mut state = self.refresh.lock().await;
        let current = self.cached(false).unwrap_or_default();
        if state.last_kid_refresh.is_some_and(|t| t.elapsed() < KID_REFRESH_INTERVAL) {
            return current;
        }
        state.last_kid_refresh = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                self.store(keys.clone());
                keys
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "re-fetching the JWKS for an unknown kid failed");
                current
            }
        }
    }

    async fn fetch(&self) -> Result<Arc<Vec<Key>>, String> {
        let mut response = self.http.get(&self.url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        let listed = set.get("keys").and_then(Value::as_array).ok_or("no `keys` array")?;
        // Parsed one by one, so a key of a type jsonwebtoken does not know does not hide the rest.
        let keys: Vec<Key> = listed
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter_map(|jwk| Key::from_jwk(&jwk))
            .collect();
        if keys.is_empty() {
            return Err("the JWKS has no usable RSA or EC signing key".into());
        }
        Ok(Arc::new(keys))
    }
}
