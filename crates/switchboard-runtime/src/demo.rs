//! The built-in demo: six identities, the `sales`, `policies`, `deal_desk`, `audit` and `tickets`
//! agents, and their data, generated deterministically on first run into the data dir. The
//! tickets MCP server (`examples/tickets-mcp`) runs in-process on a free loopback port.

use crate::config::ConfigSource;
use std::path::{Path, PathBuf};
use switchboard_core::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/demo_files.rs"));

/// The SQL script that builds the demo sales database.
const SALES_SCRIPT: &str = "data/sales.sql";

/// The data dir: `$SWITCHBOARD_HOME`, or `.switchboard` in the current directory.
pub fn data_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".switchboard"))
}

/// The demo configuration, resolving relative paths against `data_dir`.
pub fn source(data_dir: &Path) -> ConfigSource {
    ConfigSource::Embedded { files: CONFIG_FILES, base_dir: data_dir.to_path_buf() }
}

/// Generates the demo's data in `data_dir` if it is missing or from another version: the policy
/// documents, the sales database, and an empty store. Safe to call on every start.
pub fn prepare(data_dir: &Path) -> Result<()> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        Error::config(format!("cannot {what} {}: {e}", path.display()))
    };
    std::fs::create_dir_all(data_dir).map_err(|e| io("create the data dir", data_dir, e))?;
    for (rel, text) in DATA_FILES {
        let Some(rel) = rel.strip_prefix("data/") else { continue };
        if rel.ends_with(".sql") {
            continue;
        }
        let path = data_dir.join(rel);
        if std::fs::read_to_string(&path).is_ok_and(|existing| existing == *text) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
        }
        std::fs::write(&path, text).map_err(|e| io("write", &path, e))?;
    }
    if let Some((_, script)) = DATA_FILES.iter().find(|(rel, _)| *rel == SALES_SCRIPT) {
        seed_database(data_dir, "sales.db", script)?;
    }
    switchboard_store::SqliteStore::open(&data_dir.join("switchboard.db")).map(drop)
}

/// Writes the demo configuration and data to `dir` as editable files.
pub fn write_to(dir: &Path) -> Result<()> {
    for (rel, _) in CONFIG_FILES {
        let path = dir.join(rel);
        if path.exists() {
            return Err(Error::invalid(format!(
                "{} already exists; choose an empty directory",
                path.display()
            )));
        }
    }
    for (rel, text) in CONFIG_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::config(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))?;
    }
    prepare(dir)
}

/// Runs `script` into `name` unless the database was already built from this exact script. Builds
/// into a temporary file and renames it, so concurrent first runs never see a half-built file.
fn seed_database(data_dir: &Path, name: &str, script: &str) -> Result<()> {
    let db = data_dir.join(name);
    let stamp = data_dir.join(format!(".{name}.version"));
    let version = format!("{:016x}", fnv1a(script.as_bytes()));
    if db.exists() && std::fs::read_to_string(&stamp).is_ok_and(|v| v == version) {
        return Ok(());
    }
    let tmp = data_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let build = || -> rusqlite::Result<()> {
        let conn = rusqlite::Connection::open(&tmp)?;
        conn.execute_batch(script)
    };
    build().map_err(|e| Error::config(format!("cannot build the demo database {}: {e}", db.display())))?;
    std::fs::rename(&tmp, &db)
        .map_err(|e| Error::config(format!("cannot move the demo database into place: {e}")))?;
    std::fs::write(&stamp, version)
        .map_err(|e| Error::config(format!("cannot write {}: {e}", stamp.display())))?;
    Ok(())
}

/// A stable 64-bit FNV-1a hash, so the version stamp is the same across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The demo's tickets MCP server, running in-process until this is dropped.
pub struct TicketsServer {
    /// Its MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the tickets MCP server on a free loopback port, trusting what `auth` trusts.
pub async fn start_tickets(auth: tickets_mcp::TicketsAuth) -> Result<TicketsServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::config(format!("the demo tickets server cannot listen on loopback: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("the demo tickets server has no address: {e}")))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = tickets_mcp::serve(listener, auth, shutdown).await {
            tracing::warn!(error = %e, "the demo tickets server stopped");
        }
    });
    Ok(TicketsServer { url: format!("http://{addr}{}", tickets_mcp::MCP_PATH), _stop: stop })
}
