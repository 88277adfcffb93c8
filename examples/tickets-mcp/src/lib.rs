//! `tickets-mcp`: a small custom MCP server, the demo's example of bringing your own MCP server to
//! Switchboard. It serves each caller's own support tickets over MCP streamable HTTP at `/mcp`.
//!
//! Every HTTP request must carry `Authorization: Bearer <JWT>` signed by a key in Switchboard's
//! JWKS; the token's `email` claim (or `sub`) is the caller for the tool call in that request.
//! Nothing else identifies a caller: not the MCP session, not headers such as
//! `X-Forwarded-Email`. A request without a valid token is answered with 401 before it reaches
//! MCP.
//!
//! Tools: `list_tickets` (the caller's tickets, `status` open/closed/all), `show_ticket` (one of
//! the caller's tickets by id) and `open_ticket` (a new ticket owned by the caller).
//!
//! ```no_run
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! use tickets_mcp::TicketsAuth;
//! let auth = TicketsAuth::from_jwks_url("http://127.0.0.1:8080/.well-known/jwks.json", None, None)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8765").await?;
//! tickets_mcp::serve(listener, auth, std::future::pending()).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod auth;
mod keys;
mod server;
mod tickets;

pub use auth::{AuthError, AuthSetupError, Caller, TicketsAuth};
pub use server::{StatusFilter, TicketList};
pub use tickets::{Ticket, TicketStatus};

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The path the MCP endpoint is served at.
pub const MCP_PATH: &str = "/mcp";

/// The MCP endpoint at [`MCP_PATH`], behind bearer authentication, over a fresh seeded ticket
/// book. Sessions are stateful (`Mcp-Session-Id`), but every request is authenticated on its own.
/// Mount it in your own axum app, or use [`serve`], which also ends open event streams on
/// shutdown.
pub fn router(auth: TicketsAuth) -> axum::Router {
    build(auth, CancellationToken::new())
}

/// Serves [`router`] on `listener` until `shutdown` completes, then closes every MCP session and
/// event stream (so open SSE streams cannot hold the shutdown) and returns once the connections
/// have drained.
pub async fn serve(
    listener: tokio::net::TcpListener,
    auth: TicketsAuth,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let app = build(auth, stop.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop.cancel();
        })
        .await
}

fn build(auth: TicketsAuth, stop: CancellationToken) -> axum::Router {
    let book = Arc::new(tickets::TicketBook::seeded());
    // rmcp's default Host allow-list (loopback only) guards unauthenticated local servers against
    // DNS rebinding. Here every request needs a signed token, which a rebinding page cannot
    // present, so the list would only break access through a proxy or a non-loopback address.
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts().with_cancellation_token(stop);
    let mcp = StreamableHttpService::new(
        move || Ok(server::TicketsServer::new(book.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .route_service(MCP_PATH, mcp)
        .layer(axum::middleware::from_fn_with_state(auth, auth::require_bearer))
}
