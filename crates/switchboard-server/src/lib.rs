//! Switchboard's HTTP surface: an OpenAI-compatible chat endpoint over the supervisor.

mod error;
mod identity;
mod openai;

pub use error::ApiError;
pub use identity::{Authenticator, DevHeaderAuthenticator};

use axum::Router;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_runtime::Runtime;

/// Shared state of the server.
#[derive(Clone)]
pub struct AppState {
    /// The loaded runtime.
    pub runtime: Arc<Runtime>,
    /// How callers are identified.
    pub auth: Arc<dyn Authenticator>,
}

/// The routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(openai::health))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    state.runtime.store.flush().await;
    Ok(())
}
