//! Who is calling, and what the runtime itself presents downstream: edge authentication, the
//! development identity provider, and the credential provider behind every hop.
//!
//! The development identity provider is on exactly when `switchboard.toml` has no `[auth]`
//! section (the demo); a production config points `[auth]` at a real IdP and it is off.

use crate::config::{Config, DevUser};
use async_trait::async_trait;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_auth::{
    AuthConfig, ClientCredentials, DevClients, DevIdentityProvider, EdgeAuth, Rfc8693Exchanger,
};
use switchboard_core::{Caller, Error, ErrorKind, Result, Secret};
use switchboard_govern::layers::{CredentialProvider, StandardCredentials, TokenSource, read_secret};
use switchboard_govern::reqwest;

/// The issuer of development tokens.
pub const DEV_ISSUER: &str = "urn:switchboard:dev";
/// The audience of tokens this runtime accepts from the development identity provider.
pub const DEV_AUDIENCE: &str = "switchboard";
/// How long a development token for `chat --as` lives.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Edge identity and the runtime's own credentials, built once at start-up.
pub struct Identity {
    edge: EdgeAuth,
    dev: Option<DevIdentity>,
    credentials: Arc<dyn CredentialProvider>,
}

/// The development identity provider with its users (demo and tests only).
pub struct DevIdentity {
    provider: Arc<DevIdentityProvider>,
    users: Vec<DevUser>,
    scopes: Vec<String>,
    clients: DevClients,
}

impl Identity {
    /// Builds edge authentication and credentials from `config`; the development identity
    /// provider keeps its key in `data_dir`.
    pub fn build(config: &Config, data_dir: &Path, http: reqwest::Client) -> Result<Self> {
        let identity = &config.identity;
        let dev = match &config.auth {
            Some(_) => None,
            None => {
                let provider = Arc::new(
                    DevIdentityProvider::load_or_create(data_dir, DEV_ISSUER)?
                        .with_default_audience(DEV_AUDIENCE),
                );
                let mut clients = DevClients::new();
                for c in &identity.dev_clients {
                    let secret = read_secret(&c.secret)?;
                    clients = clients.with_client(c.id.clone(), secret, c.scopes.clone());
                }
                Some(DevIdentity {
                    provider,
                    users: identity.dev_users.clone(),
                    scopes: identity.dev_scopes.clone(),
                    clients,
                })
            }
        };
        let edge_config = match (&config.auth, &dev) {
            (Some(auth), _) => auth.clone(),
            (None, Some(dev)) => AuthConfig {
                issuers: vec![dev.provider.verifier_issuer_config(DEV_AUDIENCE)],
                ..AuthConfig::default()
            },
            (None, None) => AuthConfig::default(),
        };
        let edge = EdgeAuth::new(edge_config, http.clone())?;

        let mut credentials = StandardCredentials::new(identity.service_principal.clone());
        match (&identity.client_credentials, &dev) {
            (Some(cc), _) => {
                credentials =
                    credentials.with_service_token(Arc::new(ClientCredentials::new(cc.clone(), http.clone())))
            }
            (None, Some(dev)) => {
                credentials = credentials.with_service_token(Arc::new(DevServiceToken::new(
                    dev.provider.clone(),
                    identity.service_principal.clone(),
                    dev.scopes.clone(),
                )))
            }
            (None, None) => {}
        }
        if let Some(exchange) = &identity.token_exchange {
            credentials =
                credentials.with_exchanger(Arc::new(Rfc8693Exchanger::new(exchange.clone(), http)?));
        }
        Ok(Self { edge, dev, credentials: Arc::new(credentials) })
    }

    /// Establishes the caller of a request from its headers and peer address.
    pub async fn authenticate(&self, headers: &axum::http::HeaderMap, peer: IpAddr) -> Result<Caller> {
        self.edge.authenticate(headers, peer).await
    }

    /// The development identity provider, when it is on.
    pub fn dev(&self) -> Option<&DevIdentity> {
        self.dev.as_ref()
    }

    /// What every hop's credential layer uses.
    pub fn credentials(&self) -> Arc<dyn CredentialProvider> {
        self.credentials.clone()
    }

    /// The caller for `email`, established exactly as an HTTP request with a development token
    /// would be: a token is minted and verified at the edge.
    pub async fn dev_caller(&self, email: &str) -> Result<Caller> {
        let dev = self.dev.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Unauthenticated,
                "the development identity provider is off because [auth] is configured; pass a token from your identity provider",
            )
        })?;
        let token = dev.token_for(email, None, DEV_TOKEN_TTL)?;
        self.caller_from_token(&token).await
    }

    /// The caller a bearer token establishes, as if it came over HTTP from this machine.
    pub async fn caller_from_token(&self, token: &Secret) -> Result<Caller> {
        let mut headers = axum::http::HeaderMap::new();
        let value =
            axum::http::HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                Error::new(ErrorKind::Unauthenticated, "the token has characters a header cannot carry")
            })?;
        headers.insert(axum::http::header::AUTHORIZATION, value);
        self.edge.authenticate(&headers, IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }
}

impl DevIdentity {
    /// A signed development token for a configured user; `scopes` defaults to `[identity] dev_scopes`
    /// and must be a subset of them.
    pub fn token_for(&self, email: &str, scopes: Option<&[String]>, ttl: Duration) -> Result<Secret> {
        let user = self.users.iter().find(|u| u.email.eq_ignore_ascii_case(email)).ok_or_else(|| {
            let known: Vec<&str> = self.users.iter().map(|u| u.email.as_str()).collect();
            Error::new(
                ErrorKind::Unauthenticated,
                format!("unknown identity `{email}`; known identities: {}", known.join(", ")),
            )
        })?;
        let scopes = match scopes {
            None => self.scopes.clone(),
            Some(asked) => {
                if let Some(bad) = asked.iter().find(|s| !self.scopes.contains(s)) {
                    return Err(Error::invalid(format!(
                        "scope `{bad}` is not one the development identity provider grants ({})",
                        self.scopes.join(", ")
                    )));
                }
                asked.to_vec()
            }
        };
        self.provider.issue(&user.email, &user.roles, &scopes, DEV_AUDIENCE, ttl)
    }

    /// The provider's public keys, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        self.provider.jwks()
    }

    /// The `iss` of development tokens.
    pub fn issuer(&self) -> &str {
        self.provider.issuer()
    }

    /// The configured development identities.
    pub fn users(&self) -> &[DevUser] {
        &self.users
    }

    /// `/.well-known/jwks.json`, `/.well-known/openid-configuration` and `/oidc/v1/token`.
    pub fn routes(&self) -> axum::Router {
        switchboard_auth::routes(self.provider.clone(), self.clients.clone())
    }
}

/// The service principal's token in development: minted in process by the development identity
/// provider and reused until shortly before it expires.
struct DevServiceToken {
    provider: Arc<DevIdentityProvider>,
    principal: String,
    scopes: Vec<String>,
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl DevServiceToken {
    const TTL: Duration = Duration::from_secs(600);

    fn new(provider: Arc<DevIdentityProvider>, principal: String, scopes: Vec<String>) -> Self {
        Self { provider, principal, scopes, cached: Mutex::new(None) }
    }
}

#[async_trait]
impl TokenSource for DevServiceToken {
    async fn token(&self) -> Result<Secret> {
        let mut cached = self.cached.lock().map_err(|_| Error::internal("service token cache poisoned"))?;
        if let Some((token, minted)) = cached.as_ref()
            && minted.elapsed() < Self::TTL / 2
        {
            return Ok(token.clone());
        }
        let groups = ["service_principal".to_string()];
        let token = self.provider.issue(&self.principal, &groups, &self.scopes, DEV_AUDIENCE, Self::TTL)?;
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }
}
