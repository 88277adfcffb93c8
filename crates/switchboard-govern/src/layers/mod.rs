//! The standard layers of the hop pipeline, one idea each.

mod authorize;
mod budget;
mod connection;
mod credential;
mod limit;
mod telemetry;
mod timeout;

pub use authorize::{Authorize, Policy, RolePolicy, role_allows};
pub use budget::HopBudget;
pub use connection::{ConnectionAuthLayer, ConnectionGrant, ConnectionGrants, StaticGrants};
pub use credential::{
    CredentialLayer, CredentialProvider, StandardCredentials, TokenExchanger, TokenSource, UserTokenSource,
    read_secret,
};
pub use limit::RateLimit;
pub use telemetry::{AuditLayer, SpanLayer};
pub use timeout::Timeout;
