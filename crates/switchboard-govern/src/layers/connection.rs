use crate::{HopCall, HopLayer, Next};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use switchboard_core::{CredentialMode, Error, HopKind, Result};

/// Answers whether a principal holds `USE CONNECTION` on a connection. Implementations answer
/// from memory: the check runs on every hop, so the store is read by a watcher, not here.
pub trait ConnectionGrants: Send + Sync {
    /// Whether any of `principals` (a user's email and subject, their groups, or a service
    /// principal id) holds `USE CONNECTION` on `connection`.
    fn is_granted(&self, connection: &str, principals: &[&str]) -> bool;
}

/// Grants held in memory and changed in code: for embedders and tests, and the cache the runtime
/// refreshes from the store.
#[derive(Default)]
pub struct StaticGrants {
    grants: RwLock<HashMap<String, HashSet<String>>>,
}

impl StaticGrants {
    /// Grants `principal` USE CONNECTION on `connection`.
    pub fn grant(&self, connection: &str, principal: &str) {
        if let Ok(mut g) = self.grants.write() {
            g.entry(connection.to_string()).or_default().insert(principal.to_string());
        }
    }
    /// Revokes it.
    pub fn revoke(&self, connection: &str, principal: &str) {
        if let Ok(mut g) = self.grants.write()
            && let Some(set) = g.get_mut(connection)
        {
            set.remove(principal);
        }
    }
    /// Replaces every grant at once (a refresh from the store).
    pub fn replace(&self, grants: impl IntoIterator<Item = (String, String)>) {
        let mut fresh: HashMap<String, HashSet<String>> = HashMap::new();
        for (connection, principal) in grants {
            fresh.entry(connection).or_default().insert(principal);
        }
        if let Ok(mut g) = self.grants.write() {
            *g = fresh;
        }
    }
}

impl ConnectionGrants for StaticGrants {
    fn is_granted(&self, connection: &str, principals: &[&str]) -> bool {
        self.grants
            .read()
            .ok()
            .and_then(|g| g.get(connection).map(|set| principals.iter().any(|p| set.contains(*p))))
            .unwrap_or(false)
    }
}

/// Layer that refuses a hop to a connection its principal holds no `USE CONNECTION` grant on,
/// before any credential is resolved. The principal checked follows the agent's credential mode:
/// the caller (email, subject and groups) for `obo`, the runtime's service principal for
/// `automatic` and `manual`, whose hops act as the runtime. A connection's owner always may.
pub struct ConnectionGrant {
    grants: Arc<dyn ConnectionGrants>,
    service_principal: String,
}

impl ConnectionGrant {
    /// Checks `grants`; `service_principal` is the id checked for `automatic` and `manual` hops.
    pub fn new(grants: Arc<dyn ConnectionGrants>, service_principal: impl Into<String>) -> Self {
        Self { grants, service_principal: service_principal.into() }
    }
}

#[async_trait]
impl HopLayer for ConnectionGrant {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        let Some(connection) = hop.connection.clone() else {
            return next.run(hop).await;
        };
        let caller = &hop.ctx.caller;
        let principals: Vec<&str> = match hop.agent.credential.mode {
            CredentialMode::Obo => {
                let mut p = vec![caller.email(), caller.subject()];
                p.extend(caller.groups().iter().map(String::as_str));
                p
            }
            CredentialMode::Automatic | CredentialMode::Manual => vec![self.service_principal.as_str()],
        };
        let owner = connection.spec().owner.as_deref();
        let granted = owner.is_some_and(|o| principals.contains(&o))
            || self.grants.is_granted(connection.name(), &principals);
        hop.record("switchboard.connection", connection.name());
        hop.record("switchboard.connection.grant", if granted { "granted" } else { "denied" });
        if !granted {
            let who = match hop.agent.credential.mode {
                CredentialMode::Obo => {
                    format!("{} (roles: {})", caller.email(), caller.groups().join(", "))
                }
                _ => format!("the service principal `{}`", self.service_principal),
            };
            return Err(Error::denied(format!(
                "access denied: {who} holds no USE CONNECTION grant on `{}` (agent `{}`)",
                connection.name(),
                hop.agent.name
            )));
        }
        next.run(hop).await
    }
}

/// Layer that puts the connection's own authentication on the hop, once the agent's credential
/// is resolved: the hop's token for `caller`, the caller's own token for `oauth_per_user`, the
/// connection's secret or client-credentials token otherwise. The principal (who the hop acts
/// as) stays the agent's. It runs after [`ConnectionGrant`], so a revoked grant blocks a user
/// who has consented.
pub struct ConnectionAuthLayer;

#[async_trait]
impl HopLayer for ConnectionAuthLayer {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        // Invoking the agent itself sends nothing to the far side; its own hops do.
        if let Some(connection) = hop.connection.clone()
            && hop.target.kind != HopKind::Agent
            && let Some(credential) = hop.credential.as_mut()
        {
            let user = hop.ctx.caller.subject();
            credential.token = connection.far_side_token(credential.token.as_ref(), user).await?;
        }
        next.run(hop).await
    }
}
