//! `GET /api/2.0/audit?request_id=ID`: the audit rows of one request, for the playground and any
//! client that shows what a request did.
//!
//! Who reads what follows the policy that already governs the audit log: a caller whose roles may
//! use an agent that reads the store's `audit` table (the demo's `audit` agent: executive and
//! admin) sees every row of the request; anyone else sees only the rows of their own calls. A
//! request with no rows the caller may see answers an empty list, as an unknown one does, so ids
//! cannot be probed.

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use switchboard_core::{AgentKind, AgentSpec, Caller, Error};
use switchboard_govern::layers::role_allows;
use switchboard_runtime::config::{LoadedConfig, StoreKind};

/// The longest request id accepted; ids are keys, not documents.
const MAX_REQUEST_ID: usize = 128;

/// The query string.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    request_id: String,
}

/// Whether `spec` reads the audit log: a tool agent with the `audit` table allow-listed, over
/// the Switchboard store itself. A table called `audit` in some other database grants nothing.
fn reads_audit(spec: &AgentSpec, loaded: &LoadedConfig) -> bool {
    let settings = &spec.settings;
    let lists_audit = settings
        .get("tables")
        .and_then(Value::as_array)
        .is_some_and(|tables| tables.iter().any(|t| t.as_str() == Some("audit")));
    spec.kind == AgentKind::Tool && lists_audit && over_the_store(settings, loaded)
}

/// Whether a SQL tool's `settings` point at the Switchboard store, as start-up writes them for
/// `engine = "store"`: the store's SQLite file, or its PostgreSQL URL.
fn over_the_store(settings: &Value, loaded: &LoadedConfig) -> bool {
    let setting = |key: &str| settings.get(key).and_then(Value::as_str);
    let store = &loaded.config.store;
    match store.kind {
        StoreKind::Sqlite => {
            setting("engine") == Some("sqlite")
                && setting("database").map(Path::new) == Some(loaded.data_dir.join(&store.path).as_path())
        }
        StoreKind::Postgres => {
            setting("engine") == Some("postgres")
                && setting("url") == Some(store.url.as_deref().unwrap_or_default())
        }
    }
}

/// Whether `caller` may read every audit row: their roles allow an agent that reads the log.
fn reads_everyone(state: &AppState, caller: &Caller) -> bool {
    let loaded = &state.runtime.config;
    state.runtime.supervisor.agent_specs().any(|spec| reads_audit(spec, loaded) && role_allows(spec, caller))
}

/// `GET /api/2.0/audit?request_id=ID`.
pub(crate) async fn for_request(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.auth.authenticate(&headers, peer).await?;
    let Query(query) = query.map_err(|e| {
        ApiError::new(Error::invalid(format!("expected ?request_id=ID: {}", e.body_text())))
            .with_param("request_id")
    })?;
    let id = query.request_id.trim();
    if id.is_empty() || id.len() > MAX_REQUEST_ID {
        return Err(ApiError::invalid_field(
            "request_id",
            format!("request_id must be 1 to {MAX_REQUEST_ID} characters"),
        ));
    }
    let everyone = reads_everyone(&state, &caller);
    let store = &state.runtime.store;
    // Audit rows are written off the request path; flushing makes a just-finished request visible.
    store.flush().await;
    let rows: Vec<_> = store
        .audit_for_request(id)
        .await?
        .into_iter()
        .filter(|row| everyone || row.caller_email.eq_ignore_ascii_case(caller.email()))
        .collect();
    Ok(Json(json!({
        "request_id": id,
        "scope": if everyone { "all" } else { "own" },
        "rows": rows,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_runtime::config::Config;

    fn loaded(config: Config) -> LoadedConfig {
        LoadedConfig {
            config,
            agents: Vec::new(),
            prompts: Vec::new(),
            base_dir: "/srv/switchboard".into(),
            data_dir: "/srv/switchboard/data".into(),
        }
    }

    fn tool(settings: Value) -> AgentSpec {
        AgentSpec { settings, ..AgentSpec::new("audit", AgentKind::Tool, "the audit log") }
    }

    #[test]
    fn only_an_audit_table_in_the_store_itself_reads_the_log() {
        let sqlite = loaded(Config::default());
        let store_file = json!({"engine": "sqlite", "database": "/srv/switchboard/data/switchboard.db", "tables": ["audit"]});
        assert!(reads_audit(&tool(store_file.clone()), &sqlite));
        let elsewhere = json!({"engine": "sqlite", "database": "/srv/other.db", "tables": ["audit"]});
        assert!(!reads_audit(&tool(elsewhere), &sqlite), "an `audit` table in another file");
        let other_table = json!({"engine": "sqlite", "database": "/srv/switchboard/data/switchboard.db", "tables": ["spans"]});
        assert!(!reads_audit(&tool(other_table), &sqlite));
        let knowledge =
            AgentSpec { settings: store_file, ..AgentSpec::new("k", AgentKind::Knowledge, "documents") };
        assert!(!reads_audit(&knowledge, &sqlite));

        let mut config = Config::default();
        config.store.kind = StoreKind::Postgres;
        config.store.url = Some("env:STORE_URL".into());
        let postgres = loaded(config);
        let store_db = json!({"engine": "postgres", "url": "env:STORE_URL", "tables": ["audit"]});
        assert!(reads_audit(&tool(store_db), &postgres));
        let other_db = json!({"engine": "postgres", "url": "env:CRM_URL", "tables": ["audit"]});
        assert!(!reads_audit(&tool(other_db), &postgres), "an `audit` table in another database");
        let sqlite_file = json!({"engine": "sqlite", "database": "/srv/switchboard/data/switchboard.db", "tables": ["audit"]});
        assert!(!reads_audit(&tool(sqlite_file), &postgres), "the store is not SQLite here");
    }
}
