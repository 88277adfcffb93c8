//! `switchboard payloads`: the payload log (`[payload_log]`), newest first.

use std::path::Path;
use std::process::ExitCode;
use switchboard_core::{Error, Result, unix_nanos_now};
use switchboard_store::PayloadFilter;

/// Prints the logged payloads since `since` (see `usage --since`), of one request if `request`
/// is set, at most `limit` of them.
pub async fn run(
    since: Option<&str>,
    request: Option<&str>,
    limit: usize,
    config: Option<&Path>,
    as_json: bool,
) -> Result<ExitCode> {
    let filter = PayloadFilter {
        since_unix_ms: since
            .map(|s| super::usage::parse_since(s, unix_nanos_now() / 1_000_000))
            .transpose()?,
        request_id: request.map(str::to_string),
        limit,
    };
    // Before opening the store: a bad --limit is the user's typo, not a store problem.
    filter.validate()?;
    let store = super::store(config).await?;
    let rows = store.payloads(&filter).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| Error::internal(e.to_string()))?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no logged payloads (is [payload_log] enabled?)");
        return Ok(ExitCode::SUCCESS);
    }
    for r in rows {
        let requester = match &r.caller_subject {
            Some(subject) => format!("{} ({subject})", r.caller_email),
            None => r.caller_email.clone(),
        };
        println!(
            "{} {} {} {} {} ms {requester}\n  request:  {}\n  response: {}",
            r.ts_unix_ms, r.request_id, r.endpoint, r.status, r.duration_ms, r.request_body, r.response_body
        );
    }
    Ok(ExitCode::SUCCESS)
}
