//! Edge identity: who a request runs for, established once per request.

use crate::config::{AuthConfig, FederationConfig};
use crate::jwt::{MISSING_TOKEN, Verified, Verifier, unauthenticated};
use crate::oauth::{
    self, ClientAuth, EndpointError, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_JWT, read_secret, token_digest,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header::AUTHORIZATION};
use dashmap::DashMap;
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use switchboard_core::{AuthMethod, Caller, Error, ErrorKind, Result, Secret};

const FORWARDED_TOKEN: &str = "x-forwarded-access-token";
const FORWARDED_EMAIL: &str = "x-forwarded-email";
/// Exchanged role tokens are dropped this long before they expire, so a request never starts
/// with a token about to lapse.
const FEDERATION_SKEW: Duration = Duration::from_secs(60);
/// Above this many cached federations, expired entries are swept on insert.
const FEDERATION_CACHE_SWEEP: usize = 4096;

/// Authenticates requests at the edge: bearer JWTs from configured issuers, identity asserted
/// by trusted proxies, and federated external identities exchanged for role principals.
///
/// Built once at start-up; `authenticate` runs per request and yields the immutable [`Caller`].
pub struct EdgeAuth {
    config: AuthConfig,
    verifier: Verifier,
    proxies: Vec<IpNet>,
    secret_header: HeaderName,
    http: reqwest::Client,
    /// Keyed by the SHA-256 of the external token, never the token itself.
    federations: DashMap<[u8; 32], CachedCaller>,
}

struct CachedCaller {
    caller: Caller,
    fresh_until: Instant,
}

impl fmt::Debug for EdgeAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeAuth")
            .field("required", &self.config.required)
            .field("issuers", &self.config.issuers.iter().map(|i| i.issuer.as_str()).collect::<Vec<_>>())
            .field("trusted_proxies", &self.proxies)
            .field("cached_tokens", &self.verifier.remembered())
            .field("cached_federations", &self.federations.len())
            .finish()
    }
}

impl EdgeAuth {
    /// Validates `config` (issuers, key material, proxy CIDRs, the proxy secret's readability)
    /// and prepares the verifier. `http` is used for JWKS fetches and federation exchanges.
    pub fn new(config: AuthConfig, http: reqwest::Client) -> Result<Self> {
        let verifier = Verifier::new(&config.issuers, http.clone())?;
        let mut proxies = Vec::with_capacity(config.trusted_proxies.len());
        for (i, p) in config.trusted_proxies.iter().enumerate() {
            let net = p
                .trim()
                .parse::<IpNet>()
                .or_else(|_| p.trim().parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Error::config(format!("auth.trusted_proxies[{i}]: `{p}` is not an IP address or CIDR"))
                })?;
            proxies.push(net);
        }
        let secret_header =
            HeaderName::from_bytes(config.trusted_proxy_secret_header.as_bytes()).map_err(|_| {
                Error::config(format!(
                    "auth.trusted_proxy_secret_header: `{}` is not a valid header name",
                    config.trusted_proxy_secret_header
                ))
            })?;
        if let Some(reference) = &config.trusted_proxy_secret {
            if proxies.is_empty() {
                return Err(Error::config(
                    "auth.trusted_proxy_secret: set trusted_proxies too; the secret alone trusts no one",
                ));
            }
            read_secret(reference)
                .map_err(|e| Error::config(format!("auth.trusted_proxy_secret: {}", e.message)))?;
        }
        if config.required && verifier.is_empty() && proxies.is_empty() {
            return Err(Error::config(
                "auth: required = true but no issuers or trusted_proxies are configured, so nobody could sign in",
            ));
        }
        Ok(Self { config, verifier, proxies, secret_header, http, federations: DashMap::new() })
    }

    /// Establishes the caller of one request from its headers and the TCP peer address.
    ///
    /// Order: identity asserted by a trusted proxy; else the bearer token; else, when
    /// `required = false`, the anonymous caller. Errors are `Unauthenticated` (401) with a
    /// message that never contains the token; see [`www_authenticate`] for the challenge.
    pub async fn authenticate(&self, headers: &HeaderMap, peer: IpAddr) -> Result<Caller> {
        let peer = peer.to_canonical();
        if let Some(caller) = self.proxy_identity(headers, peer).await? {
            return Ok(caller);
        }
        match bearer_token(headers)? {
            Some(token) => self.bearer_identity(token).await,
            None if self.config.required => Err(unauthenticated(MISSING_TOKEN)),
            None => Ok(Caller::new(
                "anonymous",
                "anonymous",
                self.config.anonymous_groups.clone(),
                AuthMethod::Development,
            )),
        }
    }

    async fn bearer_identity(&self, token: &str) -> Result<Caller> {
        let verified = self.verifier.verify(token).await?;
        if let Some(federation) = &verified.issuer.config.federation {
            return self.federate(token, &verified, federation).await;
        }
        let id = verified.identity()?;
        let method =
            if verified.issuer.config.development { AuthMethod::Development } else { AuthMethod::Jwt };
        Ok(Caller::new(id.subject, id.email, id.groups, method)
            .with_scopes(id.scopes)
            .with_token(Secret::new(token)))
    }

    /// Whether `peer` is a configured proxy that also presented the shared secret, if one is set.
    fn proxy_trusted(&self, headers: &HeaderMap, peer: IpAddr) -> Result<bool> {
        if !self.proxies.iter().any(|net| net.contains(&peer)) {
            return Ok(false);
        }
        let Some(reference) = &self.config.trusted_proxy_secret else {
            return Ok(true);
        };
        let expected = read_secret(reference)?;
        let Some(presented) = headers.get(&self.secret_header) else {
            return Ok(false);
        };
        // Comparing digests keeps the comparison constant-time in the secret's length as well.
        let a = token_digest(expected.expose());
        let b = token_digest(&String::from_utf8_lossy(presented.as_bytes()));
        Ok(aws_lc_rs::constant_time::verify_slices_are_equal(&a, &b).is_ok())
    }

    async fn proxy_identity(&self, headers: &HeaderMap, peer: IpAddr) -> Result<Option<Caller>> {
        let token_header = headers.get(FORWARDED_TOKEN);
        let email_header = headers.get(FORWARDED_EMAIL);
        if token_header.is_none() && email_header.is_none() {
            return Ok(None);
        }
        if !self.proxy_trusted(headers, peer)? {
            tracing::warn!(
                %peer,
                "ignoring X-Forwarded-Access-Token / X-Forwarded-Email from an untrusted peer (not a trusted proxy, or the proxy secret did not match)"
            );
            return Ok(None);
        }
        let forwarded_email = header_text(email_header, "malformed X-Forwarded-Email header")?;
        let token = header_text(token_header, "malformed token")?;
        if let Some(token) = token {
            match self.verifier.verify(token).await {
                Ok(verified) => {
                    let id = verified.identity()?;
                    if let Some(email) = forwarded_email
                        && email != id.email
                    {
                        tracing::warn!(%peer, "X-Forwarded-Email differs from the forwarded token's email; using the token's");
                    }
                    return Ok(Some(
                        Caller::new(id.subject, id.email, id.groups, AuthMethod::TrustedProxy)
                            .with_scopes(id.scopes)
                            .with_token(Secret::new(token)),
                    ));
                }
                // Not a JWT of ours: an opaque platform token the proxy vouches for.
                Err(e) if is_foreign_token(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let email = forwarded_email.ok_or_else(|| {
            unauthenticated("the trusted proxy forwarded a token without X-Forwarded-Email")
        })?;
        let mut caller =
            Caller::new(email, email, self.config.proxy_default_groups.clone(), AuthMethod::TrustedProxy)
                .with_scopes(self.config.proxy_default_scopes.clone());
        if let Some(token) = token {
            caller = caller.with_token(Secret::new(token));
        }
        Ok(Some(caller))
    }

    /// Trades an external IdP's (already verified) token for a role principal's token, RFC 8693.
    async fn federate(&self, token: &str, verified: &Verified<'_>, fed: &FederationConfig) -> Result<Caller> {
        let human = verified.identity()?;
        let key = token_digest(token);
        if let Some(hit) = self.federations.get(&key)
            && hit.fresh_until > Instant::now()
        {
            return Ok(hit.caller.clone());
        }
        let client_secret = match &fed.client_secret {
            Some(reference) => Some(read_secret(reference)?),
            None => None,
        };
        let auth = match (fed.client_id.as_deref(), client_secret) {
            (Some(id), Some(secret)) => ClientAuth::Basic(id, secret),
            (Some(id), None) => ClientAuth::Id(id),
            _ => ClientAuth::None,
        };
        let form = [
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("subject_token", token),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("scope", fed.scope.as_str()),
        ];
        let response =
            oauth::post_token(&self.http, &fed.token_endpoint, &form, auth, "identity federation", &[token])
                .await
                .map_err(federation_error)?;
        let role = match self.verifier.verify(response.access_token.expose()).await {
            Ok(v) => {
                let id = v.identity()?;
                Caller::new(id.subject, id.email, id.groups, AuthMethod::Federation).with_scopes(id.scopes)
            }
            Err(e) => {
                tracing::debug!(reason = %e.message, "federated token is not a verifiable JWT; using role config");
                let principal =
                    fed.role_principal.as_deref().or(fed.client_id.as_deref()).unwrap_or("federated");
                let scopes = response.scope.as_deref().unwrap_or(&fed.scope);
                Caller::new(principal, principal, fed.role_groups.clone(), AuthMethod::Federation)
                    .with_scopes(scopes.split_whitespace().map(str::to_string).collect())
            }
        };
        let caller = role.with_token(response.access_token).with_acting_for(human.email);
        let skew = FEDERATION_SKEW.min(response.expires_in / 2);
        let fresh_until = Instant::now() + response.expires_in.saturating_sub(skew);
        if self.federations.len() >= FEDERATION_CACHE_SWEEP {
            let now = Instant::now();
            self.federations.retain(|_, c| c.fresh_until > now);
        }
        self.federations.insert(key, CachedCaller { caller: caller.clone(), fresh_until });
        Ok(caller)
    }
}

/// Errors meaning "this token is not one of our issuers' JWTs", as opposed to "it is one, and it
/// is bad".
fn is_foreign_token(e: &Error) -> bool {
    matches!(e.message.as_str(), "malformed token" | "token issuer is not accepted")
}

fn federation_error(e: EndpointError) -> Error {
    let refused = matches!(e.status, Some(400..=499))
        && matches!(
            e.code.as_deref(),
            Some(
                "invalid_grant"
                    | "access_denied"
                    | "invalid_scope"
                    | "unauthorized_client"
                    | "invalid_target"
            )
        );
    if refused { Error::denied(e.message) } else { e.upstream() }
}

fn header_text<'a>(value: Option<&'a HeaderValue>, malformed: &str) -> Result<Option<&'a str>> {
    match value {
        None => Ok(None),
        Some(v) => {
            let text = v.to_str().map_err(|_| unauthenticated(malformed))?.trim();
            Ok(if text.is_empty() { None } else { Some(text) })
        }
    }
}

/// The token of an `Authorization: Bearer` header; other schemes count as no token.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| unauthenticated("malformed token"))?.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(unauthenticated("malformed token"));
    }
    Ok(Some(token))
}

/// The `WWW-Authenticate` value for an authentication error (RFC 6750 §3): a bare challenge for
/// a missing token, `error="invalid_token"` with the message for a rejected one.
pub fn www_authenticate(err: &Error) -> String {
    const CHALLENGE: &str = "Bearer realm=\"switchboard\"";
    if err.kind != ErrorKind::Unauthenticated || err.message == MISSING_TOKEN {
        return CHALLENGE.to_string();
    }
    let description: String = err
        .message
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect();
    format!("{CHALLENGE}, error=\"invalid_token\", error_description=\"{description}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h).unwrap(), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic Zm9vOmJhcg=="));
        assert_eq!(bearer_token(&h).unwrap(), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  abc.def.ghi "));
        assert_eq!(bearer_token(&h).unwrap(), Some("abc.def.ghi"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert_eq!(bearer_token(&h).unwrap_err().message, "malformed token");
    }

    #[test]
    fn challenge_shapes() {
        assert_eq!(www_authenticate(&unauthenticated(MISSING_TOKEN)), "Bearer realm=\"switchboard\"");
        assert_eq!(
            www_authenticate(&unauthenticated("token expired")),
            "Bearer realm=\"switchboard\", error=\"invalid_token\", error_description=\"token expired\""
        );
        assert_eq!(www_authenticate(&Error::upstream("x")), "Bearer realm=\"switchboard\"");
    }
}
