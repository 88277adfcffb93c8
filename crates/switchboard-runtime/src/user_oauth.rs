//! Per-user OAuth connections wired to the store: each `auth = "oauth_per_user"` connection gets
//! a [`PerUserOAuth`] client whose sealed refresh tokens are kept in the store's `user_tokens`.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_auth::{PerUserConfig, PerUserOAuth, UserTokenVault};
use switchboard_core::{ConnectionAuth, ConnectionSpec, Error, Result};
use switchboard_store::Store;

/// The per-user OAuth clients of a runtime, by connection name.
pub type UserOAuth = HashMap<String, Arc<PerUserOAuth>>;

/// The store as the vault of sealed refresh tokens.
struct StoreVault(Arc<dyn Store>);

#[async_trait]
impl UserTokenVault for StoreVault {
    async fn put(&self, connection: &str, subject: &str, sealed: &[u8]) -> Result<()> {
        self.0.put_user_token(connection, subject, sealed).await
    }
    async fn get(&self, connection: &str, subject: &str) -> Result<Option<Vec<u8>>> {
        self.0.user_token(connection, subject).await
    }
    async fn delete(&self, connection: &str, subject: &str) -> Result<bool> {
        self.0.delete_user_token(connection, subject).await
    }
    async fn delete_if(&self, connection: &str, subject: &str, sealed: &[u8]) -> Result<bool> {
        self.0.delete_user_token_if(connection, subject, sealed).await
    }
}

/// A client for every per-user connection in `specs`. Their token requests carry codes, PKCE
/// verifiers and refresh tokens in the body, so they get an HTTP client of their own that never
/// follows a redirect (a token endpoint that redirects would forward them elsewhere).
pub(crate) fn build(specs: &[ConnectionSpec], store: &Arc<dyn Store>) -> Result<UserOAuth> {
    if !specs.iter().any(|s| s.auth == ConnectionAuth::OauthPerUser) {
        return Ok(UserOAuth::new());
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::internal(format!("cannot build the per-user OAuth HTTP client: {e}")))?;
    let vault: Arc<dyn UserTokenVault> = Arc::new(StoreVault(store.clone()));
    specs
        .iter()
        .filter(|s| s.auth == ConnectionAuth::OauthPerUser)
        .map(|spec| {
            let config = PerUserConfig::from_spec(spec)?;
            Ok((spec.name.clone(), Arc::new(PerUserOAuth::new(config, vault.clone(), http.clone()))))
        })
        .collect()
}
