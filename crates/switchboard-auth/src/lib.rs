//! Who is calling, and with what credentials Switchboard calls onward.
//!
//! - [`EdgeAuth`] establishes the [`Caller`](switchboard_core::Caller) of each request once, at
//!   the edge: a bearer JWT verified against configured issuers (static keys or JWKS), identity
//!   asserted by a trusted proxy (`X-Forwarded-Access-Token` / `X-Forwarded-Email`), or an
//!   external IdP's token federated (RFC 8693) into a role principal that acts for the human.
//! - [`ClientCredentials`] is the runtime service principal's token source for `automatic` hops.
//! - [`Rfc8693Exchanger`] downscopes the caller's token per `obo` hop.
//! - [`PerUserOAuth`] is a per-user OAuth connection's client: consent with PKCE, sealed refresh
//!   tokens, and each user's own access token.
//! - [`DevIdentityProvider`] is a local ES256 issuer with a JWKS and token endpoint, for the demo
//!   and tests.
//!
//! Tokens are [`Secret`](switchboard_core::Secret)s from the moment they are read; caches are
//! keyed by token digests; error messages name what failed, never the token.

#![warn(missing_docs)]

mod client_credentials;
mod config;
mod dev_idp;
mod edge;
mod exchange;
mod jwt;
mod oauth;
mod per_user;
mod verified;

pub use client_credentials::{ClientCredentials, ClientCredentialsConfig};
pub use config::{AuthConfig, FederationConfig, IssuerConfig, JwtAlgorithm, StaticKey};
pub use dev_idp::{DEV_IDP_KEY_FILE, DevClients, DevIdentityProvider, routes};
pub use edge::{EdgeAuth, www_authenticate};
pub use exchange::{Rfc8693Exchanger, TokenExchangeConfig};
pub use per_user::{
    Authorization, BINDING_COOKIE, CALLBACK_PATH, CallbackParams, PerUserConfig, PerUserOAuth,
    UserTokenVault, endpoint_url,
};
