use crate::Secret;
use serde::Serialize;

/// How the edge established who the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A bearer JWT verified against a configured issuer.
    Jwt,
    /// Identity asserted by a configured trusted proxy (`X-Forwarded-*`).
    TrustedProxy,
    /// An external IdP token exchanged (RFC 8693) for a role-based service principal.
    Federation,
    /// The runtime's own service principal.
    ServicePrincipal,
    /// The development identity provider (demo and tests).
    Development,
}

/// Who a request runs for. Built once at the edge and immutable afterwards; every hop reads the
/// identity from here, never from ambient state.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    subject: String,
    email: String,
    groups: Vec<String>,
    scopes: Vec<String>,
    token: Option<Secret>,
    method: AuthMethod,
    acting_for: Option<String>,
}

impl Caller {
    /// A caller with a subject, email and groups (roles); add the rest with the `with_*` builders.
    pub fn new(
        subject: impl Into<String>,
        email: impl Into<String>,
        groups: Vec<String>,
        method: AuthMethod,
    ) -> Self {
        Self {
            subject: subject.into(),
            email: email.into(),
            groups,
            scopes: Vec::new(),
            token: None,
            method,
            acting_for: None,
        }
    }

    /// Attaches the caller's own token, used by `obo` hops.
    pub fn with_token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// The OAuth scopes the caller's token carries.
    pub fn with_scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = scopes;
        self
    }

    /// For federated callers: the human the role principal acts for, kept for attribution.
    pub fn with_acting_for(mut self, human_email: impl Into<String>) -> Self {
        self.acting_for = Some(human_email.into());
        self
    }

    /// Stable subject identifier (`sub`).
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The caller's email; for SQL this is `current_user()` on obo hops.
    pub fn email(&self) -> &str {
        &self.email
    }
    /// Groups or roles; policy matches against these.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }
    /// Whether the caller belongs to `group`.
    pub fn is_member(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
    /// Scopes the caller's token was issued with.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    /// The caller's token, if the edge received one.
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }
    /// How the identity was established.
    pub fn method(&self) -> AuthMethod {
        self.method
    }
    /// The human behind a federated role principal.
    pub fn acting_for(&self) -> Option<&str> {
        self.acting_for.as_deref()
    }
    /// The first group, shown as "role" in audit rows and span attributes.
    pub fn primary_role(&self) -> &str {
        self.groups.first().map(String::as_str).unwrap_or("")
    }
}
