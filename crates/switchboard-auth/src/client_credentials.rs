//! The runtime service principal's token: OAuth2 client credentials, cached and refreshed.

use crate::oauth::{self, ClientAuth, read_secret};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard_core::{Error, Result, Secret, SecretRef};
use switchboard_govern::layers::TokenSource;

/// Where and how the service principal obtains its token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsConfig {
    /// The token endpoint, e.g. `https://<workspace>/oidc/v1/token`.
    pub token_endpoint: String,
    /// The service principal's client id (sent with the secret as HTTP Basic auth).
    pub client_id: String,
    /// The client secret (`env:NAME` or `file:PATH`), read at every refresh.
    pub client_secret: SecretRef,
    /// Scopes requested, space-joined into `scope` (default none: the endpoint's default).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// How long before expiry the token is refreshed, in seconds (default 60).
    #[serde(default = "default_skew")]
    pub refresh_skew_secs: u64,
}

impl ClientCredentialsConfig {
    /// A config with the default skew and no scopes.
    pub fn new(
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretRef,
    ) -> Self {
        Self {
            token_endpoint: token_endpoint.into(),
            client_id: client_id.into(),
            client_secret,
            scopes: Vec::new(),
            refresh_skew_secs: default_skew(),
        }
    }
}

fn default_skew() -> u64 {
    60
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// An OAuth2 client-credentials [`TokenSource`] for `automatic` hops.
///
/// The token is cached and refreshed `refresh_skew` before it expires. Refreshes are
/// single-flight: callers that find the token stale while another refresh is running wait for
/// that refresh instead of starting their own, and share its failure if it fails.
pub struct ClientCredentials {
    config: ClientCredentialsConfig,
    http: reqwest::Client,
    cached: RwLock<Option<Cached>>,
    /// Held for the duration of a refresh; the value is the last refresh failure, if any.
    refresh: tokio::sync::Mutex<Option<Error>>,
    /// Counts refresh attempts, so waiters can tell whether a refresh ran while they waited.
    attempts: AtomicU64,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_endpoint", &self.config.token_endpoint)
            .field("client_id", &self.config.client_id)
            .field("scopes", &self.config.scopes)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// A token source; nothing is fetched until the first `token()`.
    pub fn new(config: ClientCredentialsConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
            attempts: AtomicU64::new(0),
        }
    }

    fn current(&self) -> Option<Cached> {
        self.cached.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn fetch(&self) -> Result<Cached> {
        let secret = read_secret(&self.config.client_secret)?;
        let scope = self.config.scopes.join(" ");
        let mut form = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", scope.as_str()));
        }
        let response = oauth::post_token(
            &self.http,
            &self.config.token_endpoint,
            &form,
            ClientAuth::Basic(&self.config.client_id, secret),
            "service principal token",
            &[],
        )
        .await
        .map_err(|e| e.upstream())?;
        let now = Instant::now();
        // A token shorter-lived than twice the skew would otherwise be "stale" the moment it arrives.
        let skew = Duration::from_secs(self.config.refresh_skew_secs).min(response.expires_in / 2);
        Ok(Cached {
            token: response.access_token,
            refresh_at: now + response.expires_in.saturating_sub(skew),
            expires_at: now + response.expires_in,
        })
    }
}

#[async_trait]
impl TokenSource for ClientCredentials {
    async fn token(&self) -> Result<Secret> {
        if let Some(c) = self.current()
            && c.refresh_at > Instant::now()
        {
            return Ok(c.token);
        }
        let seen = self.attempts.load(Ordering::Acquire);
        let mut last_error = self.refresh.lock().await;
        if let Some(c) = self.current()
            && c.refresh_at > Instant::now()
        {
            return Ok(c.token);
        }
        // A refresh ran and failed while this caller waited: share its outcome rather than
        // queueing one more request against an endpoint that is failing.
        if self.attempts.load(Ordering::Acquire) != seen
            && let Some(e) = last_error.as_ref()
        {
            return Err(e.clone());
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match self.fetch().await {
            Ok(fresh) => {
                *last_error = None;
                *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
                Ok(fresh.token)
            }
            Err(e) => {
                *last_error = Some(e.clone());
                // Inside the skew window the old token still works; prefer it to an outage.
                match self.current() {
                    Some(old) if old.expires_at > Instant::now() => {
                        tracing::warn!(error = %e.message, "service principal token refresh failed; using the current token");
                        Ok(old.token)
                    }
                    _ => Err(e),
                }
            }
        }
    }
}
