use crate::SecretRef;
use serde::{Deserialize, Serialize};

/// How a connection authenticates to the far side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionAuth {
    /// The hop's own credential: the caller's (possibly exchanged) token for an `obo` agent, the
    /// service principal's for `automatic`, the named secret for `manual`.
    #[default]
    Caller,
    /// A static bearer secret (`secret`), read at every use.
    Bearer,
    /// OAuth2 client credentials (`token_url`, `client_id`, `client_secret`), cached and refreshed.
    OauthM2m,
    /// Each user's own token, from the OAuth2 authorization-code flow with PKCE: the user consents
    /// once (`/oauth/connect/{connection}`), and their refresh token is kept encrypted in the store.
    OauthPerUser,
    /// Nothing: the far side is open.
    None,
}

impl ConnectionAuth {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Bearer => "bearer",
            Self::OauthM2m => "oauth_m2m",
            Self::OauthPerUser => "oauth_per_user",
            Self::None => "none",
        }
    }
}

/// A named outbound endpoint, declared as `[[connections]]` in `switchboard.toml`. Agents of the
/// `mcp`, HTTP `tool` and `endpoint` kinds reach the outside only through one, and a principal
/// needs a `USE CONNECTION` grant to use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// Unique name, e.g. `tickets_mcp`.
    pub name: String,
    /// What it reaches, for people reading grants.
    #[serde(default)]
    pub description: String,
    /// The base URL agents' paths are joined onto. Optional for connections that only govern a
    /// local (stdio) MCP server.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Hosts (`host` or `host:port`) reachable besides the base URL's own.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How the far side is authenticated.
    #[serde(default)]
    pub auth: ConnectionAuth,
    /// The bearer secret, for `auth = "bearer"`.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// The token endpoint, for `auth = "oauth_m2m"` and `"oauth_per_user"`.
    #[serde(default)]
    pub token_url: Option<String>,
    /// The client id, for `auth = "oauth_m2m"` and `"oauth_per_user"`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The client secret, for `auth = "oauth_m2m"` and `"oauth_per_user"`.
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// Scopes requested (with client credentials, or at each user's consent).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The provider's authorization endpoint users consent at, for `auth = "oauth_per_user"`.
    #[serde(default)]
    pub authorize_url: Option<String>,
    /// Where the provider sends users back: this server's `/oauth/callback` as the provider
    /// knows it (registered with the client), for `auth = "oauth_per_user"`.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// The 256-bit key (64 hex digits or base64) sealing users' refresh tokens at rest, for
    /// `auth = "oauth_per_user"`.
    #[serde(default)]
    pub encryption_key: Option<SecretRef>,
    /// The owner (a user's email, a group or a service principal); always holds USE CONNECTION
    /// and may grant it.
    #[serde(default)]
    pub owner: Option<String>,
    /// Principals granted USE CONNECTION when the connection is first seen. Later grants and
    /// revokes are kept in the store and win over this list.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Allows plain HTTP and loopback addresses (development and tests only).
    #[serde(default)]
    pub allow_insecure_loopback: bool,
}

impl ConnectionSpec {
    /// A connection named `name` to `base_url`, authenticating with the hop's own credential.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            base_url: Some(base_url.into()),
            allowed_hosts: Vec::new(),
            auth: ConnectionAuth::Caller,
            secret: None,
            token_url: None,
            client_id: None,
            client_secret: None,
            scopes: Vec::new(),
            authorize_url: None,
            redirect_url: None,
            encryption_key: None,
            owner: None,
            grants: Vec::new(),
            allow_insecure_loopback: false,
        }
    }
}
