//! The `[auth]` table of `switchboard.toml`.

use jsonwebtoken::jwk::Jwk;
use serde::{Deserialize, Serialize};
use switchboard_core::SecretRef;

/// Edge authentication settings: the `[auth]` table of `switchboard.toml`.
///
/// ```toml
/// [auth]
/// required = true
/// trusted_proxies = ["10.0.0.0/8"]
/// trusted_proxy_secret = "env:SWITCHBOARD_PROXY_SECRET"
///
/// [[auth.issuers]]
/// issuer = "https://login.example.com"
/// audience = "switchboard"
/// jwks_url = "https://login.example.com/.well-known/jwks.json"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether a request that carries no identity at all is rejected with 401 (default `true`).
    /// When `false`, such a request runs as the anonymous caller (subject and email `anonymous`,
    /// groups `anonymous_groups`). A token that is present but invalid is rejected either way.
    #[serde(default = "default_true")]
    pub required: bool,
    /// Groups given to the anonymous caller when `required = false` (default none).
    #[serde(default)]
    pub anonymous_groups: Vec<String>,
    /// The JWT issuers whose bearer tokens are accepted (`[[auth.issuers]]`).
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Peers (IP addresses or CIDRs such as `10.0.0.0/8`) whose `X-Forwarded-Access-Token` and
    /// `X-Forwarded-Email` headers are honoured. From any other peer those headers are ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// A shared secret (`env:NAME` or `file:PATH`) a trusted proxy must also present, in
    /// `trusted_proxy_secret_header`. Read at every request, so rotation needs no restart.
    #[serde(default)]
    pub trusted_proxy_secret: Option<SecretRef>,
    /// The header carrying `trusted_proxy_secret` (default `x-switchboard-proxy-secret`).
    #[serde(default = "default_proxy_secret_header")]
    pub trusted_proxy_secret_header: String,
    /// Groups of a proxy-asserted caller whose forwarded token is not a JWT from a configured
    /// issuer (default none).
    #[serde(default)]
    pub proxy_default_groups: Vec<String>,
    /// Scopes of a proxy-asserted caller whose forwarded token is not a JWT from a configured
    /// issuer (default none, so `obo` hops that declare scopes are refused for such callers).
    #[serde(default)]
    pub proxy_default_scopes: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            required: true,
            anonymous_groups: Vec::new(),
            issuers: Vec::new(),
            trusted_proxies: Vec::new(),
            trusted_proxy_secret: None,
            trusted_proxy_secret_header: default_proxy_secret_header(),
            proxy_default_groups: Vec::new(),
            proxy_default_scopes: Vec::new(),
        }
    }
}

/// One trusted JWT issuer (`[[auth.issuers]]`). Exactly one of `jwks_url` and `keys` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` claim value.
    pub issuer: String,
    /// The `aud` value tokens must carry to be accepted here.
    pub audience: String,
    /// Where the issuer publishes its signing keys. Fetched on first use, cached for
    /// `jwks_cache_secs`, and refreshed early when a token names an unknown `kid`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Static verification keys instead of a JWKS URL: public-key PEM strings or JWK tables.
    #[serde(default)]
    pub keys: Vec<StaticKey>,
    /// Accepted signature algorithms (default both `RS256` and `ES256`).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 30).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// How long fetched JWKS keys are trusted before a routine refetch, in seconds (default 3600).
    #[serde(default = "default_jwks_cache")]
    pub jwks_cache_secs: u64,
    /// The claim holding the caller's email (default `email`; falls back to `sub`). A dotted
    /// path such as `profile.email` reaches into nested objects.
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// The claim holding the caller's groups, an array or a space-separated string (default
    /// `groups`). Dotted paths such as `realm_access.roles` work.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim holding the token's scopes, space-separated (default `scope`; an `scp` array is
    /// used when this claim is absent).
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// Callers verified by this issuer are recorded as `AuthMethod::Development` rather than
    /// `Jwt` (set for the development identity provider; default `false`).
    #[serde(default)]
    pub development: bool,
    /// When set, a token from this (external) issuer is not used directly: it is exchanged
    /// (RFC 8693) for a role principal's token, and the caller becomes that role.
    #[serde(default)]
    pub federation: Option<FederationConfig>,
}

impl IssuerConfig {
    /// An issuer with the defaults for everything but its name, audience and key source; used by
    /// the development identity provider and by tests.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: None,
            keys: Vec::new(),
            algorithms: default_algorithms(),
            leeway_secs: default_leeway(),
            jwks_cache_secs: default_jwks_cache(),
            email_claim: default_email_claim(),
            groups_claim: default_groups_claim(),
            scope_claim: default_scope_claim(),
            development: false,
            federation: None,
        }
    }
}

/// Identity federation for an external issuer (`federation = { ... }` on an issuer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// The RFC 8693 token endpoint that trades the external token for a role token.
    pub token_endpoint: String,
    /// The `scope` requested in the exchange.
    pub scope: String,
    /// Client id; with `client_secret` it is sent as HTTP Basic auth, alone as a form field.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Client secret (`env:NAME` or `file:PATH`), read at every exchange.
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// Groups of the role principal when the exchanged token is not a JWT from a configured
    /// issuer (default none).
    #[serde(default)]
    pub role_groups: Vec<String>,
    /// Subject and email of the role principal when the exchanged token is not a JWT from a
    /// configured issuer (default `client_id`, else `federated`).
    #[serde(default)]
    pub role_principal: Option<String>,
}

/// A static verification key: a public-key PEM string or a JWK table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StaticKey {
    /// `-----BEGIN PUBLIC KEY-----` (RSA or P-256) or `-----BEGIN RSA PUBLIC KEY-----`.
    Pem(String),
    /// A JWK with `kty` `RSA` or `EC`; its `kid`, when present, must match the token's.
    Jwk(Box<Jwk>),
}

/// A JWT signature algorithm the edge accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
}

impl JwtAlgorithm {
    pub(crate) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_proxy_secret_header() -> String {
    "x-switchboard-proxy-secret".into()
}
fn default_algorithms() -> Vec<JwtAlgorithm> {
    vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256]
}
fn default_leeway() -> u64 {
    30
}
fn default_jwks_cache() -> u64 {
    3600
}
fn default_email_claim() -> String {
    "email".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_scope_claim() -> String {
    "scope".into()
}
