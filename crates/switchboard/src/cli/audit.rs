//! `switchboard audit`: recent audit rows.

use std::path::Path;
use std::process::ExitCode;
use switchboard_core::{Error, Result};

/// Prints the newest `limit` rows, or the rows of one request.
pub async fn run(
    limit: usize,
    request: Option<&str>,
    config: Option<&Path>,
    as_json: bool,
) -> Result<ExitCode> {
    let store = super::store(config).await?;
    let rows = match request {
        Some(id) => store.audit_for_request(id).await?,
        None => store.recent_audit(limit).await?,
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| Error::internal(e.to_string()))?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no audit rows yet");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<13} {:<32} {:<20} {:<12} {:<12} {:<6} {:<14} {:<9} reason",
        "time", "request", "caller", "role", "agent", "hop", "principal", "mode"
    );
    for r in rows {
        let secs = r.ts_unix_ms / 1000;
        let time = format!(
            "{:02}:{:02}:{:02}.{:03}",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            r.ts_unix_ms % 1000
        );
        println!(
            "{time:<13} {:<32} {:<20} {:<12} {:<12} {:<6} {:<14} {:<9} {}{}",
            r.request_id,
            r.caller_email,
            r.caller_roles,
            r.agent,
            r.hop.as_str(),
            r.principal,
            r.credential_mode,
            r.decision.as_str(),
            r.reason.map(|x| format!(" — {x}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
