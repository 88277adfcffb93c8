//! `USE CONNECTION` grants: kept in the store (so every replica sees the same ones), cached in
//! memory for the hop pipeline, and refreshed as soon as any process changes them.
//!
//! A watcher task waits on the store ([`Store::wait_grants_changed`]: LISTEN/NOTIFY with
//! PostgreSQL, a short sleep with SQLite) and reloads the cache when the store's grants version
//! moves, so a revoke from another server or from `switchboard revoke` takes effect on the next
//! hop everywhere, with no restart. Changes made through this process reload at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchboard_core::{
    AuditDecision, AuditRecord, Caller, ConnectionSpec, Error, HopKind, RequestId, Result, TelemetrySink,
    unix_nanos_now,
};
use switchboard_govern::layers::{ConnectionGrants, StaticGrants};
use switchboard_store::{ConnectionGrant, Store};

/// How long the watcher waits for a change notification before checking the version anyway.
const POLL: Duration = Duration::from_millis(500);

/// The role that may grant and revoke on every connection.
pub const ADMIN_ROLE: &str = "admin";

/// Who changes a grant, for the audit row.
#[derive(Debug, Clone)]
pub struct Actor {
    /// An email, or `cli:USER` for the command line.
    pub name: String,
    /// Their roles.
    pub roles: Vec<String>,
}

impl Actor {
    /// The caller of an HTTP request.
    pub fn caller(caller: &Caller) -> Self {
        Self { name: caller.email().to_string(), roles: caller.groups().to_vec() }
    }

    /// The local operator running the CLI against the store.
    pub fn cli() -> Self {
        let user = ["USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "operator".into());
        Self { name: format!("cli:{user}"), roles: Vec::new() }
    }
}

/// The grants of a runtime.
pub struct Grants {
    store: Arc<dyn Store>,
    sink: Arc<dyn TelemetrySink>,
    connections: Vec<ConnectionSpec>,
    cache: Arc<StaticGrants>,
    version: AtomicU64,
    /// The store's grants version after each reload that changed the cache, for those who
    /// react to a grant or revoke (the MCP server's `notifications/tools/list_changed`).
    changed: tokio::sync::watch::Sender<u64>,
}

impl Grants {
    /// Seeds each connection's configured grants (once per principal: later revokes stick),
    /// loads the cache and starts the watcher, which ends when the returned value is dropped.
    pub async fn start(
        store: Arc<dyn Store>,
        sink: Arc<dyn TelemetrySink>,
        connections: &[ConnectionSpec],
    ) -> Result<Arc<Self>> {
        for c in connections {
            store.seed_connection_grants(&c.name, &c.grants, "config").await?;
        }
        let grants = Arc::new(Self {
            store,
            sink,
            connections: connections.to_vec(),
            cache: Arc::new(StaticGrants::default()),
            version: AtomicU64::new(0),
            changed: tokio::sync::watch::Sender::new(0),
        });
        grants.reload().await?;
        tokio::spawn(watch(Arc::downgrade(&grants), grants.store.clone()));
        Ok(grants)
    }

    /// What the hop pipeline checks.
    pub fn checker(&self) -> Arc<dyn ConnectionGrants> {
        self.cache.clone()
    }

    /// Wakes whenever the cached grants change (a grant or revoke here, or seen in the store).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The declared connections.
    pub fn connections(&self) -> &[ConnectionSpec] {
        &self.connections
    }

    /// A declared connection, or a 404 naming it.
    pub fn connection(&self, name: &str) -> Result<&ConnectionSpec> {
        self.connections
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::not_found(format!("no connection named `{name}`")))
    }

    /// Whether `caller` may grant and revoke on `connection`: admins, and the connection's owner.
    pub fn may_administer(&self, caller: &Caller, connection: &ConnectionSpec) -> bool {
        caller.is_member(ADMIN_ROLE)
            || connection
                .owner
                .as_deref()
                .is_some_and(|o| o == caller.email() || o == caller.subject() || caller.is_member(o))
    }

    /// Grants `principal` USE CONNECTION on `connection`, audited. `Ok(false)` if already held.
    pub async fn grant(&self, actor: &Actor, connection: &str, principal: &str) -> Result<bool> {
        let principal = checked_principal(principal)?;
        self.connection(connection)?;
        let changed = self.store.grant_connection(connection, principal, &actor.name).await?;
        self.audit(actor, HopKind::Grant, connection, principal, changed);
        self.reload().await?;
        Ok(changed)
    }

    /// Revokes it, audited. `Ok(false)` if it was not held.
    pub async fn revoke(&self, actor: &Actor, connection: &str, principal: &str) -> Result<bool> {
        let principal = checked_principal(principal)?;
        self.connection(connection)?;
        let changed = self.store.revoke_connection(connection, principal, &actor.name).await?;
        self.audit(actor, HopKind::Revoke, connection, principal, changed);
        self.reload().await?;
        Ok(changed)
    }

    /// Active grants, on one connection or all.
    pub async fn list(&self, connection: Option<&str>) -> Result<Vec<ConnectionGrant>> {
        if let Some(name) = connection {
            self.connection(name)?;
        }
        self.store.connection_grants(connection).await
    }

    /// Reloads the cache from the store if the store's version moved.
    async fn reload(&self) -> Result<()> {
        let version = self.store.grants_version().await?;
        if version == self.version.load(Ordering::Acquire) && version != 0 {
            return Ok(());
        }
        let grants = self.store.connection_grants(None).await?;
        self.cache.replace(grants.into_iter().map(|g| (g.connection, g.principal)));
        self.version.store(version, Ordering::Release);
        self.changed.send_replace(version);
        Ok(())
    }

    fn audit(&self, actor: &Actor, kind: HopKind, connection: &str, principal: &str, changed: bool) {
        let verb = if kind == HopKind::Grant { "granted" } else { "revoked" };
        let what = format!(
            "USE CONNECTION on `{connection}` {verb} {} `{principal}`",
            if kind == HopKind::Grant { "to" } else { "from" }
        );
        self.sink.audit(AuditRecord {
            request_id: RequestId::new().to_string(),
            span_id: String::new(),
            ts_unix_ms: unix_nanos_now() / 1_000_000,
            caller_email: actor.name.clone(),
            caller_roles: actor.roles.join(","),
            acting_for: None,
            principal: principal.to_string(),
            credential_mode: String::new(),
            agent: String::new(),
            hop: kind,
            target: connection.to_string(),
            decision: AuditDecision::Allowed,
            reason: Some(if changed { what } else { format!("{what} (no change)") }),
            duration_ms: 0,
            error_code: None,
        });
    }
}

fn checked_principal(principal: &str) -> Result<&str> {
    let principal = principal.trim();
    if principal.is_empty() || principal.len() > 256 || principal.chars().any(char::is_control) {
        return Err(Error::invalid(
            "a principal is a user's email, a group name or a service principal id (1-256 printable characters)",
        ));
    }
    Ok(principal)
}

/// Reloads the cache whenever the store says grants may have changed; ends with the [`Grants`].
async fn watch(grants: Weak<Grants>, store: Arc<dyn Store>) {
    loop {
        store.wait_grants_changed(POLL).await;
        let Some(grants) = grants.upgrade() else { return };
        if let Err(e) = grants.reload().await {
            // Keep serving the last known grants; the next round tries again.
            tracing::warn!(error = %e, "could not refresh USE CONNECTION grants from the store");
        }
    }
}
