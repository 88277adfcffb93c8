//! RFC 8693 token exchange for `obo` hops: the caller's token traded for a downscoped one.

use crate::oauth::{
    self, ClientAuth, EndpointError, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT, read_secret,
    token_digest,
};
use async_trait::async_trait;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, Instant};
use switchboard_core::{Error, Result, Secret, SecretRef};
use switchboard_govern::layers::TokenExchanger;

/// Above this many cached exchanges, expired entries are swept on insert.
const CACHE_SWEEP: usize = 4096;

/// Where and how `obo` tokens are exchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// The RFC 8693 token endpoint.
    pub token_endpoint: String,
    /// Client id; with `client_secret` it is sent as HTTP Basic auth, alone as a form field.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Client secret (`env:NAME` or `file:PATH`), read at every exchange.
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// How long before expiry a cached exchanged token is dropped, in seconds (default 60).
    #[serde(default = "default_skew")]
    pub refresh_skew_secs: u64,
}

impl TokenExchangeConfig {
    /// A config without client authentication and with the default skew.
    pub fn new(token_endpoint: impl Into<String>) -> Self {
        Self {
            token_endpoint: token_endpoint.into(),
            client_id: None,
            client_secret: None,
            refresh_skew_secs: 60,
        }
    }
}

fn default_skew() -> u64 {
    60
}

/// The cache key: a digest of the subject token, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ExchangeKey {
    subject: [u8; 32],
    audience: Option<String>,
    scopes: Vec<String>,
}

struct Cached {
    token: Secret,
    fresh_until: Instant,
}

/// An RFC 8693 [`TokenExchanger`]: trades the caller's token for one carrying exactly a
/// sub-agent's declared scopes and audience, cached per (caller token, audience, scopes) until
/// shortly before it expires.
pub struct Rfc8693Exchanger {
    config: TokenExchangeConfig,
    http: reqwest::Client,
    cache: DashMap<ExchangeKey, Cached>,
}

impl fmt::Debug for Rfc8693Exchanger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc8693Exchanger")
            .field("token_endpoint", &self.config.token_endpoint)
            .field("client_id", &self.config.client_id)
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl Rfc8693Exchanger {
    /// An exchanger; validates only that the client secret has a client id to go with it.
    pub fn new(config: TokenExchangeConfig, http: reqwest::Client) -> Result<Self> {
        if config.client_secret.is_some() && config.client_id.is_none() {
            return Err(Error::config("token exchange: a client_secret needs a client_id"));
        }
        Ok(Self { config, http, cache: DashMap::new() })
    }
}

/// The IdP refusing the exchange (e.g. the caller does not hold a requested scope) is a
/// permission outcome, not an outage.
fn exchange_error(e: EndpointError) -> Error {
    let refused = matches!(e.status, Some(400..=499))
        && matches!(
            e.code.as_deref(),
            Some(
                "invalid_scope"
                    | "invalid_target"
                    | "access_denied"
                    | "invalid_grant"
                    | "unauthorized_client"
            )
        );
    if refused { Error::denied(e.message) } else { e.upstream() }
}

#[async_trait]
impl TokenExchanger for Rfc8693Exchanger {
    async fn exchange(
        &self,
        subject_token: &Secret,
        audience: Option<&str>,
        scopes: &[String],
    ) -> Result<Secret> {
        let mut sorted = scopes.to_vec();
        sorted.sort();
        sorted.dedup();
        let key = ExchangeKey {
            subject: token_digest(subject_token.expose()),
            audience: audience.map(str::to_string),
            scopes: sorted,
        };
        if let Some(hit) = self.cache.get(&key)
            && hit.fresh_until > Instant::now()
        {
            return Ok(hit.token.clone());
        }
        let client_secret = match &self.config.client_secret {
            Some(reference) => Some(read_secret(reference)?),
            None => None,
        };
        let auth = match (self.config.client_id.as_deref(), client_secret) {
            (Some(id), Some(secret)) => ClientAuth::Basic(id, secret),
            (Some(id), None) => ClientAuth::Id(id),
            _ => ClientAuth::None,
        };
        let scope = scopes.join(" ");
        let mut form = vec![
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("subject_token", subject_token.expose()),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("requested_token_type", TOKEN_TYPE_ACCESS),
        ];
        if !scope.is_empty() {
            form.push(("scope", scope.as_str()));
        }
        if let Some(audience) = audience {
            form.push(("audience", audience));
        }
        let response = oauth::post_token(
            &self.http,
            &self.config.token_endpoint,
            &form,
            auth,
            "token exchange",
            &[subject_token.expose()],
        )
        .await
        .map_err(exchange_error)?;
        let skew = Duration::from_secs(self.config.refresh_skew_secs).min(response.expires_in / 2);
        let now = Instant::now();
        if self.cache.len() >= CACHE_SWEEP {
            self.cache.retain(|_, c| c.fresh_until > now);
        }
        self.cache.insert(
            key,
            Cached {
                token: response.access_token.clone(),
                fresh_until: now + response.expires_in.saturating_sub(skew),
            },
        );
        Ok(response.access_token)
    }
}
