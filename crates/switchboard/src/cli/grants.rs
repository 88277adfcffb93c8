//! `switchboard grant`, `revoke` and `grants`: USE CONNECTION grants, kept in the configured
//! store, so a running server (or every replica sharing PostgreSQL) sees a change on its next hop.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use switchboard_core::{Error, Result};
use switchboard_runtime::{Actor, Grants, Runtime};

/// The privileges that can be granted.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Privilege {
    /// `USE CONNECTION`: hops through the connection.
    UseConnection,
}

/// Opens the store and grants of a configuration, without building its agents.
async fn grants(config: Option<&Path>) -> Result<(Arc<Grants>, Arc<dyn switchboard_store::Store>)> {
    let loaded = Runtime::validate(&super::source(config)?).map_err(|e| Error::config(e.to_string()))?;
    let store = Runtime::open_store(&loaded).await?;
    let grants = Grants::start(store.clone(), store.clone(), &loaded.config.connections).await?;
    Ok((grants, store))
}

/// `switchboard grant use-connection CONN --to PRINCIPAL`.
pub async fn grant(
    _: Privilege,
    connection: &str,
    principal: &str,
    config: Option<&Path>,
) -> Result<ExitCode> {
    change(true, connection, principal, config).await
}

/// `switchboard revoke use-connection CONN --from PRINCIPAL`.
pub async fn revoke(
    _: Privilege,
    connection: &str,
    principal: &str,
    config: Option<&Path>,
) -> Result<ExitCode> {
    change(false, connection, principal, config).await
}

/// Grants or revokes, flushing the audit row before the process exits.
async fn change(grant: bool, connection: &str, principal: &str, config: Option<&Path>) -> Result<ExitCode> {
    let (grants, store) = grants(config).await?;
    let actor = Actor::cli();
    let changed = if grant {
        grants.grant(&actor, connection, principal).await
    } else {
        grants.revoke(&actor, connection, principal).await
    };
    store.flush().await;
    let message = match (grant, changed?) {
        (true, true) => format!("granted USE CONNECTION on {connection} to {principal}"),
        (true, false) => format!("{principal} already holds USE CONNECTION on {connection}"),
        (false, true) => format!("revoked USE CONNECTION on {connection} from {principal}"),
        (false, false) => {
            format!("{principal} held no USE CONNECTION grant on {connection}; nothing changed")
        }
    };
    println!("{message}");
    Ok(ExitCode::SUCCESS)
}

/// `switchboard grants [CONN]`: the active grants, with each connection's owner.
pub async fn list(connection: Option<&str>, config: Option<&Path>, as_json: bool) -> Result<ExitCode> {
    let (grants, _) = grants(config).await?;
    let rows = grants.list(connection).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| Error::internal(e.to_string()))?);
        return Ok(ExitCode::SUCCESS);
    }
    for c in grants.connections().iter().filter(|c| connection.is_none_or(|n| n == c.name)) {
        let owner = c.owner.as_deref().unwrap_or("(none)");
        println!("{}  owner: {owner}", c.name);
        let held: Vec<_> = rows.iter().filter(|g| g.connection == c.name).collect();
        if held.is_empty() {
            println!("  (no grants)");
        }
        for g in held {
            println!("  {:<28} granted by {}", g.principal, g.granted_by);
        }
    }
    if grants.connections().is_empty() {
        println!("no connections are declared");
    }
    Ok(ExitCode::SUCCESS)
}
