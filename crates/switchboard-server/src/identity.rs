use async_trait::async_trait;
use axum::http::HeaderMap;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_core::{Caller, Result};
use switchboard_runtime::Runtime;

/// Establishes the caller of an HTTP request, once, at the edge.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The caller, or an `Unauthenticated` error (401).
    async fn authenticate(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<Caller>;
}

/// The runtime's edge identity: a bearer JWT from a configured issuer (or the development
/// identity provider), or identity asserted by a trusted proxy. See `switchboard_auth::EdgeAuth`.
pub struct EdgeAuthenticator {
    runtime: Arc<Runtime>,
}

impl EdgeAuthenticator {
    /// Authenticates against `runtime`'s `[auth]` configuration (or its development provider).
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }
}

#[async_trait]
impl Authenticator for EdgeAuthenticator {
    async fn authenticate(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<Caller> {
        self.runtime.identity.authenticate(headers, peer.ip()).await
    }
}
