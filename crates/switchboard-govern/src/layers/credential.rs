use crate::{HopCall, HopLayer, Next};
use async_trait::async_trait;
use std::sync::Arc;
use switchboard_core::{
    Credential, CredentialMode, Error, Principal, PrincipalKind, Result, Secret, SecretRef,
};

/// Resolves the credential a hop presents, from the agent's declared mode.
#[async_trait]
pub trait CredentialProvider: Send + Sync {
    /// The credential for `hop`; errors are `Denied` for missing scopes, `Config` for missing secrets.
    async fn credential(&self, hop: &HopCall) -> Result<Credential>;
}

/// Supplies the runtime service principal's token (e.g. OAuth2 client credentials).
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A currently valid token.
    async fn token(&self) -> Result<Secret>;
}

/// Supplies each user's own token for a per-user OAuth connection (`auth = "oauth_per_user"`).
#[async_trait]
pub trait UserTokenSource: Send + Sync {
    /// A currently valid token of the user `subject`, refreshed when it is close to expiry;
    /// [`Error::consent_required`] when the user has not connected (or must connect again).
    async fn user_token(&self, subject: &str) -> Result<Secret>;
}

/// Reads a secret reference at use time, so rotation needs no restart. The error names the
/// reference, never a value.
pub fn read_secret(reference: &SecretRef) -> Result<Secret> {
    match reference {
        SecretRef::Env(name) => std::env::var(name)
            .map(Secret::new)
            .map_err(|_| Error::config(format!("secret env:{name} is not set"))),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|v| Secret::new(v.trim()))
            .map_err(|e| Error::config(format!("secret file:{path} cannot be read: {e}"))),
    }
}

/// Exchanges a caller's token for one restricted to a sub-agent's scopes and audience (RFC 8693).
/// Implementations cache per (caller, audience, scopes) until expiry.
#[async_trait]
pub trait TokenExchanger: Send + Sync {
    /// A token for `audience` carrying exactly `scopes`, on behalf of the holder of `subject_token`.
    async fn exchange(
        &self,
        subject_token: &Secret,
        audience: Option<&str>,
        scopes: &[String],
    ) -> Result<Secret>;
}

/// The three modes: `automatic` (the service principal), `obo` (the caller) and `manual` (a named
/// secret read at use time, so rotation needs no restart).
pub struct StandardCredentials {
    service_principal: String,
    service_token: Option<Arc<dyn TokenSource>>,
    exchanger: Option<Arc<dyn TokenExchanger>>,
}

impl StandardCredentials {
    /// `service_principal` is the id downstream systems see for `automatic` hops.
    pub fn new(service_principal: impl Into<String>) -> Self {
        Self { service_principal: service_principal.into(), service_token: None, exchanger: None }
    }

    /// Where `automatic` hops get their bearer token.
    pub fn with_service_token(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.service_token = Some(source);
        self
    }

    /// Exchanges the caller's token per `obo` hop for a downscoped one.
    pub fn with_exchanger(mut self, exchanger: Arc<dyn TokenExchanger>) -> Self {
        self.exchanger = Some(exchanger);
        self
    }
}

#[async_trait]
impl CredentialProvider for StandardCredentials {
    async fn credential(&self, hop: &HopCall) -> Result<Credential> {
        let spec = &hop.agent.credential;
        match spec.mode {
            CredentialMode::Obo => {
                let caller = &hop.ctx.caller;
                let missing: Vec<String> =
                    spec.scopes.iter().filter(|s| !caller.scopes().contains(s)).cloned().collect();
                if !missing.is_empty() {
                    return Err(Error::missing_scopes(&missing));
                }
                let token = match (&self.exchanger, caller.token()) {
                    (Some(exchanger), Some(token)) => {
                        Some(exchanger.exchange(token, spec.audience.as_deref(), &spec.scopes).await?)
                    }
                    (_, token) => token.cloned(),
                };
                Ok(Credential {
                    principal: Principal {
                        kind: PrincipalKind::User,
                        name: caller.email().to_string(),
                        groups: caller.groups().to_vec(),
                    },
                    token,
                })
            }
            CredentialMode::Automatic => {
                let token = match &self.service_token {
                    Some(source) => Some(source.token().await?),
                    None => None,
                };
                Ok(Credential {
                    principal: Principal {
                        kind: PrincipalKind::ServicePrincipal,
                        name: self.service_principal.clone(),
                        groups: vec!["service_principal".into()],
                    },
                    token,
                })
            }
            CredentialMode::Manual => {
                let reference = spec.secret.as_ref().ok_or_else(|| {
                    Error::config(format!(
                        "agent `{}` uses manual credentials but names no secret",
                        hop.agent.name
                    ))
                })?;
                let token = read_secret(reference)?;
                let name = match reference {
                    SecretRef::Env(name) => name.clone(),
                    SecretRef::File(path) => path.clone(),
                };
                Ok(Credential {
                    principal: Principal { kind: PrincipalKind::Secret, name, groups: Vec::new() },
                    token: Some(token),
                })
            }
        }
    }
}

/// Layer that resolves the hop's credential.
pub struct CredentialLayer {
    provider: Arc<dyn CredentialProvider>,
}

impl CredentialLayer {
    /// Wraps `provider`.
    pub fn new(provider: Arc<dyn CredentialProvider>) -> Self {
        Self { provider }
    }
}

#[async_trait]
impl HopLayer for CredentialLayer {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        hop.credential = Some(self.provider.credential(hop).await?);
        next.run(hop).await
    }
}
