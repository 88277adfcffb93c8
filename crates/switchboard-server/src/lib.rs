//! Switchboard's HTTP surface: the supervisor served as an OpenAI-compatible chat endpoint.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat completions; `stream: true` gives `chat.completion.chunk` events |
//! | `POST /v1/responses`, `POST /invocations` | OpenAI Responses / MLflow ResponsesAgent requests |
//! | `POST /serving-endpoints/{name}/invocations` | `/invocations` as a Databricks serving endpoint named for the served model |
//! | `GET`, `DELETE /v1/responses/{id}` | the caller's stored responses (see `stored`) |
//! | `GET /v1/models`, `GET /v1/models/{id}` | the served supervisor, as an OpenAI model |
//! | `GET /v1/traces/{id}` | one of the caller's requests as an MLflow (V3) trace |
//! | `GET /health` | the store, the LLM (when configured) and every sub-agent; 503 if any is down |
//! | `GET /metrics` | Prometheus metrics |
//! | `/api/2.0/connections…` | the connections admin API (see `connections`) |
//! | `/oauth/…` | per-user OAuth connections: connect, callback, status, disconnect (see `oauth`) |
//! | `/mcp` | the supervisor as an MCP server, streamable HTTP (see `mcp`) |
//! | `GET /api/2.0/audit?request_id=ID` | a request's audit rows the caller may read (see `audit`) |
//! | `GET /`, `/playground/…` | the web playground (see `playground`) |
//!
//! Every response carries `x-request-id`; every error is OpenAI's error object. Callers are
//! identified by the [`Authenticator`] in [`AppState`], the one seam for edge identity.

mod audit;
mod chat;
mod connections;
mod error;
mod fdlimit;
mod health;
mod identity;
mod input;
mod listener;
mod mcp;
mod metrics;
mod oauth;
mod observe;
mod params;
mod payload_log;
mod playground;
mod probe;
mod responses;
mod run;
mod stored;
mod trace;

pub use error::ApiError;
pub use fdlimit::raise_fd_limit;
pub use identity::{Authenticator, EdgeAuthenticator};
pub use mcp::{MCP_PATH, SupervisorMcp, caller_for_token, serve_stdio};
pub use metrics::Metrics;
pub use observe::ACCESS_LOG_TARGET;

use axum::Router;
use axum::routing::{delete, get, post};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_runtime::Runtime;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for runs whose clients went away to finish unwinding (and write their
/// audit rows) before the store is flushed regardless.
const UNWIND_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of the server. Cloning is cheap.
#[derive(Clone)]
pub struct AppState {
    /// The loaded runtime: supervisor, store and configuration.
    pub runtime: Arc<Runtime>,
    /// How callers are identified.
    pub auth: Arc<dyn Authenticator>,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// Runs in flight, so shutdown can wait for them.
    tasks: TaskTracker,
    /// When the server started, in Unix seconds (the served model's `created`).
    started: u64,
    /// Housekeeping of stored responses.
    responses: Arc<stored::Housekeeping>,
    /// Cancelled when shutdown begins, so open MCP sessions end their event streams instead of
    /// holding connections open until the shutdown timeout.
    mcp_stop: tokio_util::sync::CancellationToken,
}

impl AppState {
    /// State for serving `runtime` to callers identified by its own edge identity.
    pub fn for_runtime(runtime: Arc<Runtime>) -> Self {
        Self::new(runtime.clone(), Arc::new(EdgeAuthenticator::new(runtime)))
    }

    /// State for serving `runtime` to callers identified by `auth`.
    pub fn new(runtime: Arc<Runtime>, auth: Arc<dyn Authenticator>) -> Self {
        Self {
            runtime,
            auth,
            metrics: Arc::new(Metrics::new()),
            tasks: TaskTracker::new(),
            started: unix_secs(),
            responses: Arc::default(),
            mcp_stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The largest request body accepted.
    fn body_limit(&self) -> usize {
        self.runtime.config.config.server.body_limit_bytes
    }

    /// When a rate-limited caller may try again, for a refusal that carries no wait of its own
    /// (an upstream 429): the spacing of `requests_per_minute`. Refusals by the gateway's own
    /// limits carry the wait their window computed.
    fn retry_after(&self) -> Duration {
        let per_minute = self.runtime.config.config.limits.requests_per_minute.max(1);
        Duration::from_secs(60u64.div_ceil(u64::from(per_minute)))
    }
}

/// The routes, with request ids, logging, metrics and error shaping around them.
pub fn app(state: AppState) -> Router {
    // The development identity provider's JWKS and token endpoint, served only when it is on.
    let identity_provider = state.runtime.identity.dev().map(|dev| dev.routes()).unwrap_or_default();
    // The payload log's tap (see `payload_log`) on the run endpoints, named as their rows record
    // them; without `[payload_log] enabled` the routes go untapped.
    let logged = |route: axum::routing::MethodRouter<AppState>, endpoint: &'static str| {
        if state.runtime.config.config.payload_log.enabled {
            route.route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), endpoint),
                payload_log::tap,
            ))
        } else {
            route
        }
    };
    Router::new()
        .route(
            "/health",
            get(health::handler)
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), probe::health)),
        )
        .route(
            "/metrics",
            get(metrics::handler)
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), probe::metrics)),
        )
        .route("/v1/models", get(chat::models))
        .route("/v1/models/{model}", get(chat::model))
        .route("/v1/chat/completions", logged(post(chat::completions), "chat.completions"))
        .route("/v1/responses", logged(post(responses::create), "responses"))
        .route("/v1/responses/{id}", get(stored::get).delete(stored::delete))
        .route("/invocations", logged(post(responses::invocations), "invocations"))
        .route(
            "/serving-endpoints/{name}/invocations",
            logged(post(responses::serving_endpoint), "invocations"),
        )
        .route("/v1/traces/{id}", get(trace::get))
        .route("/api/2.0/connections", get(connections::list))
        .route("/api/2.0/connections/{name}/grants", get(connections::grants).post(connections::grant))
        .route("/api/2.0/connections/{name}/grants/{principal}", delete(connections::revoke))
        .route("/oauth/connect/{connection}", get(oauth::connect))
        .route("/oauth/callback", get(oauth::callback))
        .route("/oauth/connections", get(oauth::list))
        .route("/oauth/connections/{connection}", delete(oauth::disconnect))
        .route("/api/2.0/audit", get(audit::for_request))
        .fallback(observe::not_found)
        .with_state(state.clone())
        .merge(mcp::router(state.clone()))
        .merge(playground::router(state.clone()))
        .merge(identity_provider)
        .layer(axum::middleware::from_fn_with_state(state, observe::observe))
}

/// Serves `state` on `listener` until `shutdown` resolves, with the header, body and keep-alive
/// timeouts and the connection caps of `[server]`. On shutdown it stops accepting, in-flight
/// requests finish (connections still open after `[server] shutdown_timeout_ms` are closed),
/// runs whose clients went away finish unwinding, and then the runtime drains its telemetry (the
/// store's audit and span queues, and the OTLP exporter when there is one).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = listener::Limits::from_config(&state.runtime.config.config.server);
    let mcp_stop = state.mcp_stop.clone();
    let shutdown = async move {
        shutdown.await;
        mcp_stop.cancel();
    };
    listener::run(listener, app(state.clone()), limits, shutdown).await;
    state.tasks.close();
    if tokio::time::timeout(UNWIND_TIMEOUT, state.tasks.wait()).await.is_err() {
        tracing::warn!("some cancelled runs were still unwinding at shutdown");
    }
    state.runtime.shutdown().await;
    Ok(())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
