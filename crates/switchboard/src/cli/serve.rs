//! `switchboard serve`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use switchboard_core::{Error, Result};
use switchboard_server::AppState;

/// Serves until Ctrl-C or SIGTERM; in-flight requests finish and the audit queue drains.
/// With the development identity provider on, refuses a non-loopback address unless
/// `dev_idp_on_public_address`.
pub async fn run(config: Option<&Path>, addr: &str, dev_idp_on_public_address: bool) -> Result<ExitCode> {
    // Each open connection holds a descriptor; the default soft limit (often 1,024) would refuse
    // connections long before `[server] max_connections`.
    match switchboard_server::raise_fd_limit() {
        Ok(limit) => tracing::debug!(limit = ?limit, "file-descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the file-descriptor limit"),
    }
    let runtime = Arc::new(super::runtime(config).await?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
    if runtime.identity.dev().is_some() {
        // Checked on the bound address, so a host name that resolves elsewhere, or `0.0.0.0`,
        // cannot slip past.
        if !local.ip().is_loopback() && !dev_idp_on_public_address {
            return Err(Error::config(format!(
                "refusing to serve the development identity provider on {local}, which is not a loopback \
                 address: anyone who reaches it can mint any identity. Configure [auth] with a real \
                 identity provider, listen on 127.0.0.1, or pass --dev-idp-on-public-address to do it anyway"
            )));
        }
        tracing::warn!(
            addr = %local,
            "THE DEVELOPMENT IDENTITY PROVIDER IS ON: /oidc/v1/token mints tokens for any configured \
             identity and its key is in the data directory; never use this in production (configure [auth])"
        );
    }
    crate::allocator::release_freed_memory();
    // Printed once the socket is held; the test harness (`switchboard_testkit::Serve`) reads the
    // bound address from this line, so keep its shape.
    eprintln!("switchboard serving `{}` on http://{local}", runtime.supervisor.name());
    let state = AppState::for_runtime(runtime);
    switchboard_server::serve(listener, state, shutdown_signal())
        .await
        .map_err(|e| Error::internal(format!("server failed: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
