//! `switchboard mcp`: the supervisor as an MCP server over stdio, for one caller.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use switchboard_core::{Error, ErrorKind, Result};

/// The environment variable holding the caller's bearer token.
pub const TOKEN_ENV: &str = "SWITCHBOARD_TOKEN";

/// Serves MCP on stdin/stdout as `as_user` (a development identity) or as the subject of the
/// token in [`TOKEN_ENV`], until the client closes stdin. Logs go to stderr, so stdout carries
/// only JSON-RPC.
pub async fn run(as_user: Option<&str>, config: Option<&Path>) -> Result<ExitCode> {
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty());
    let runtime = Arc::new(super::runtime(config).await?);
    let caller = match (as_user, token) {
        (Some(email), _) => runtime.dev_caller(email).await?,
        (None, Some(token)) => switchboard_server::caller_for_token(&runtime, &token).await?,
        (None, None) => {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "say who is calling: set {TOKEN_ENV} to a bearer token, or pass --as EMAIL (development identities)"
                ),
            ));
        }
    };
    tracing::info!(caller = caller.email(), "serving MCP over stdio");
    let served = switchboard_server::serve_stdio(runtime.clone(), caller).await;
    runtime.shutdown().await;
    served.map(|()| ExitCode::SUCCESS)
}
