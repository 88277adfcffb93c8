use async_trait::async_trait;
use axum::http::HeaderMap;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_core::{Caller, Error, ErrorKind, Result};
use switchboard_runtime::Runtime;

/// Establishes the caller of an HTTP request, once, at the edge.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The caller, or an `Unauthenticated` error (401).
    async fn authenticate(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<Caller>;
}

/// Development only: the caller named by the `x-switchboard-user` header, looked up among the
/// configuration's development identities. Never enabled with a production identity provider.
pub struct DevHeaderAuthenticator {
    runtime: Arc<Runtime>,
}

impl DevHeaderAuthenticator {
    /// Identities come from `runtime`'s `[identity] dev_users`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }
}

#[async_trait]
impl Authenticator for DevHeaderAuthenticator {
    async fn authenticate(&self, headers: &HeaderMap, _peer: SocketAddr) -> Result<Caller> {
        let email = headers.get("x-switchboard-user").and_then(|v| v.to_str().ok()).ok_or_else(|| {
            Error::new(ErrorKind::Unauthenticated, "no identity: send the x-switchboard-user header")
        })?;
        self.runtime.dev_caller(email).await
    }
}
