//! `switchboard audit`: audit rows, newest first, filtered by the store's query.

use std::path::Path;
use std::process::ExitCode;
use switchboard_core::{Error, Result, unix_nanos_now};
use switchboard_store::AuditFilter;

/// What `switchboard audit` was asked for.
#[derive(Debug, Default)]
pub struct AuditArgs<'a> {
    /// At most this many rows.
    pub limit: usize,
    /// Only the rows of this request (then oldest first, the order the hops ran in).
    pub request: Option<&'a str>,
    /// Only rows since this duration ago or time (see `usage --since`).
    pub since: Option<&'a str>,
    /// Only this caller's rows (email).
    pub caller: Option<&'a str>,
    /// Only rows with this status.
    pub status: Option<&'a str>,
    /// Only this agent's rows.
    pub agent: Option<&'a str>,
}

/// Prints the audit rows matching `args`.
pub async fn run(args: AuditArgs<'_>, config: Option<&Path>, as_json: bool) -> Result<ExitCode> {
    let filter = AuditFilter {
        since_unix_ms: args
            .since
            .map(|s| super::usage::parse_since(s, unix_nanos_now() / 1_000_000))
            .transpose()?,
        caller: args.caller.map(str::to_string),
        status: args.status.map(str::to_string),
        agent: args.agent.map(str::to_string),
        request_id: args.request.map(str::to_string),
        limit: args.limit,
    };
    // Before opening the store: a bad --status is the user's typo, not a store problem.
    filter.validate()?;
    let store = super::store(config).await?;
    let mut rows = store.query_audit(&filter).await?;
    if args.request.is_some() {
        rows.reverse();
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| Error::internal(e.to_string()))?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no matching audit rows");
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
