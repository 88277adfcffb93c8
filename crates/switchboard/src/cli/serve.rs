//! `switchboard serve`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use switchboard_core::{Error, Result};
use switchboard_server::AppState;

/// Serves until Ctrl-C or SIGTERM; in-flight requests finish and the audit queue drains.
pub async fn run(config: Option<&Path>, addr: &str) -> Result<ExitCode> {
    let runtime = Arc::new(super::runtime(config).await?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
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
