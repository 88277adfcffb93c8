use crate::Secret;
use serde::{Deserialize, Serialize};

/// How a sub-agent authenticates its outbound hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialMode {
    /// The runtime's own service principal.
    #[default]
    Automatic,
    /// On behalf of the caller: the caller's token, optionally exchanged per hop for a downscoped one.
    Obo,
    /// A named secret read from a secret source at use time.
    Manual,
}

impl CredentialMode {
    /// The name used in config files and audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Automatic => "automatic",
            Self::Obo => "obo",
            Self::Manual => "manual",
        }
    }
}

/// Where a `manual` secret comes from: `env:NAME` or `file:/path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretRef {
    /// An environment variable, read at every use so rotation needs no restart.
    Env(String),
    /// A file whose trimmed content is the secret, read at every use.
    File(String),
}

impl TryFrom<String> for SecretRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("env:") {
            Ok(Self::Env(name.to_string()))
        } else if let Some(path) = s.strip_prefix("file:") {
            Ok(Self::File(path.to_string()))
        } else {
            Err("a secret reference must be `env:NAME` or `file:PATH`; inline secrets are not allowed".into())
        }
    }
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> String {
        match r {
            SecretRef::Env(n) => format!("env:{n}"),
            SecretRef::File(p) => format!("file:{p}"),
        }
    }
}

/// A sub-agent's declared credential: the mode, the scopes it needs and, for `manual`, the secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// The mode.
    #[serde(default)]
    pub mode: CredentialMode,
    /// OAuth scopes the agent needs; an `obo` hop whose caller lacks one fails with 403.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The audience a downscoped `obo` token is exchanged for.
    #[serde(default)]
    pub audience: Option<String>,
    /// The secret source, required for `manual`.
    #[serde(default)]
    pub secret: Option<SecretRef>,
}

/// What kind of identity a downstream system sees on a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// The human caller (obo).
    User,
    /// The runtime's service principal (automatic).
    ServicePrincipal,
    /// A named secret (manual).
    Secret,
}

/// The identity a hop acts as. For SQL this is `current_user()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The kind of identity.
    pub kind: PrincipalKind,
    /// The email, service-principal id or secret name.
    pub name: String,
    /// Groups the principal belongs to (the caller's groups for obo), for `is_member()`.
    pub groups: Vec<String>,
}

/// A resolved credential for one hop: who it acts as and the token to present, if any.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Who the downstream sees.
    pub principal: Principal,
    /// The bearer token to present; `None` for in-process hops that need only the principal.
    pub token: Option<Secret>,
}
