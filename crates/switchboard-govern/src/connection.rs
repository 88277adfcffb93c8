//! Connections: named outbound endpoints and the egress rules that fence them in.
//!
//! A [`Connection`] is built once at start-up from its [`ConnectionSpec`], with an HTTP client of
//! its own that can reach only what the connection allows: HTTPS to the base URL's host and the
//! listed hosts, no redirects elsewhere, and no name that resolves to a loopback or private
//! address, unless `allow_insecure_loopback` says this is a development connection.

use crate::layers::{TokenSource, UserTokenSource, read_secret};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{ConnectionAuth, ConnectionSpec, Error, Result, Secret};

/// A named outbound endpoint with its own egress-restricted HTTP client.
pub struct Connection {
    spec: ConnectionSpec,
    base: Option<Url>,
    rules: Rules,
    http: reqwest::Client,
    token_source: Option<Arc<dyn TokenSource>>,
    user_tokens: Option<Arc<dyn UserTokenSource>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("name", &self.spec.name).field("base", &self.base).finish()
    }
}

impl Connection {
    /// Builds a connection. `token_source` supplies the far side's token for
    /// `auth = "oauth_m2m"` (OAuth2 client credentials, cached and refreshed by the source).
    pub fn new(spec: ConnectionSpec, token_source: Option<Arc<dyn TokenSource>>) -> Result<Self> {
        let base = spec
            .base_url
            .as_deref()
            .map(|raw| {
                Url::parse(raw).map_err(|e| {
                    Error::config(format!("connection `{}`: base_url `{raw}` is not a URL: {e}", spec.name))
                })
            })
            .transpose()?;
        let rules = Rules::new(&spec, base.as_ref());
        if let Some(base) = &base {
            rules.check(base)?;
        }
        if spec.auth == ConnectionAuth::OauthM2m && token_source.is_none() {
            return Err(Error::config(format!(
                "connection `{}`: auth = \"oauth_m2m\" needs a token source",
                spec.name
            )));
        }
        let redirect_rules = rules.clone();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("too many redirects");
                }
                match redirect_rules.check(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(format!("redirect refused: {}", e.message)),
                }
            }))
            .dns_resolver(Arc::new(GuardedResolver { allow_private: spec.allow_insecure_loopback }))
            .build()
            .map_err(|e| {
                Error::internal(format!("connection `{}`: cannot build its client: {e}", spec.name))
            })?;
        Ok(Self { spec, base, rules, http, token_source, user_tokens: None })
    }

    /// Where an `auth = "oauth_per_user"` connection gets each user's own token.
    pub fn with_user_tokens(mut self, source: Arc<dyn UserTokenSource>) -> Self {
        self.user_tokens = Some(source);
        self
    }

    /// The declaration.
    pub fn spec(&self) -> &ConnectionSpec {
        &self.spec
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The HTTP client for this connection. It refuses redirects to hosts the connection does
    /// not allow and names resolving to loopback or private addresses (unless the connection
    /// allows insecure loopback); check URLs with [`Connection::check_url`] before sending.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `path_or_url` joined onto the base URL (an absolute URL is taken as is), checked against
    /// the egress rules. A path is appended to the base URL's path, so `base_url =
    /// "https://api.example.com/v2"` and `"/issues"` give `https://api.example.com/v2/issues`.
    pub fn url(&self, path_or_url: &str) -> Result<Url> {
        let url = match Url::parse(path_or_url) {
            Ok(url) => url,
            Err(_) => {
                let base = self.base.as_ref().ok_or_else(|| {
                    Error::config(format!(
                        "connection `{}` has no base_url to join `{path_or_url}` onto",
                        self.spec.name
                    ))
                })?;
                let joined = format!(
                    "{}/{}",
                    base.as_str().trim_end_matches('/'),
                    path_or_url.trim_start_matches('/')
                );
                Url::parse(&joined).map_err(|e| {
                    Error::invalid(format!(
                        "connection `{}`: `{path_or_url}` does not make a URL: {e}",
                        self.spec.name
                    ))
                })?
            }
        };
        self.check_url(&url)?;
        Ok(url)
    }

    /// Refuses a URL the connection may not reach, with an error naming the connection and the
    /// host. Nothing is sent.
    pub fn check_url(&self, url: &Url) -> Result<()> {
        self.rules.check(url)
    }

    /// The token the far side sees, given the hop's own resolved token and the subject of the
    /// request's caller (whose own token an `oauth_per_user` connection sends).
    pub async fn far_side_token(&self, hop_token: Option<&Secret>, user: &str) -> Result<Option<Secret>> {
        match self.spec.auth {
            ConnectionAuth::Caller => Ok(hop_token.cloned()),
            ConnectionAuth::None => Ok(None),
            ConnectionAuth::Bearer => {
                let reference = self.spec.secret.as_ref().ok_or_else(|| {
                    Error::config(format!(
                        "connection `{}` uses bearer auth but names no secret",
                        self.spec.name
                    ))
                })?;
                read_secret(reference).map(Some)
            }
            ConnectionAuth::OauthM2m => match &self.token_source {
                Some(source) => source.token().await.map(Some),
                None => Err(Error::config(format!(
                    "connection `{}` uses oauth_m2m but has no token source",
                    self.spec.name
                ))),
            },
            ConnectionAuth::OauthPerUser => match &self.user_tokens {
                Some(source) => source.user_token(user).await.map(Some),
                None => Err(Error::config(format!(
                    "connection `{}` uses oauth_per_user but has no user token source",
                    self.spec.name
                ))),
            },
        }
    }
}

/// The connections of a runtime, by name.
pub type Connections = HashMap<String, Arc<Connection>>;

/// The egress rules of one connection.
#[derive(Clone)]
struct Rules {
    name: String,
    hosts: Vec<String>,
    insecure_loopback: bool,
}

impl Rules {
    fn new(spec: &ConnectionSpec, base: Option<&Url>) -> Self {
        let mut hosts: Vec<String> = spec.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        if let Some(host) = base.and_then(Url::host_str) {
            hosts.push(host.to_ascii_lowercase());
        }
        Self { name: spec.name.clone(), hosts, insecure_loopback: spec.allow_insecure_loopback }
    }

    fn check(&self, url: &Url) -> Result<()> {
        let name = &self.name;
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return Err(Error::denied(format!("connection `{name}`: `{url}` has no host")));
        };
        let host_port = format!("{host}:{}", url.port_or_known_default().unwrap_or(0));
        let listed = self.hosts.iter().any(|h| *h == host || *h == host_port);
        if !listed {
            return Err(Error::denied(format!(
                "connection `{name}` does not allow host `{host}` (allowed: {})",
                self.hosts.join(", ")
            )));
        }
        let local = is_local_host(&host);
        if !self.insecure_loopback {
            if url.scheme() != "https" {
                return Err(Error::denied(format!(
                    "connection `{name}`: only https is allowed, not {}:// to `{host}` (set allow_insecure_loopback = true for a development server on loopback)",
                    url.scheme()
                )));
            }
            if local {
                return Err(Error::denied(format!(
                    "connection `{name}`: host `{host}` is a loopback or private address (set allow_insecure_loopback = true for development)"
                )));
            }
        } else if url.scheme() != "https" && !local {
            return Err(Error::denied(format!(
                "connection `{name}`: plain {}:// is allowed only to loopback and private addresses, not to `{host}`",
                url.scheme()
            )));
        } else if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::denied(format!(
                "connection `{name}`: scheme {} is not allowed",
                url.scheme()
            )));
        }
        Ok(())
    }
}

/// Whether `host` names this machine or a private network: `localhost` or a loopback, private,
/// link-local or unspecified IP literal.
fn is_local_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare == "localhost" || bare.ends_with(".localhost") {
        return true;
    }
    bare.parse::<IpAddr>().is_ok_and(is_local_ip)
}

fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// Resolves names, refusing answers that point at loopback or private addresses, so a public
/// name cannot be used to reach this machine or its network (DNS rebinding, SSRF).
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                addrs.into_iter().filter(|a| allow_private || !is_local_ip(a.ip())).collect();
            if allowed.is_empty() {
                let message = format!(
                    "`{host}` resolves only to loopback or private addresses, which this connection may not reach"
                );
                return Err(message.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(base: &str, edit: impl FnOnce(&mut ConnectionSpec)) -> Result<Connection> {
        let mut spec = ConnectionSpec::new("partner", base);
        edit(&mut spec);
        Connection::new(spec, None)
    }

    #[test]
    fn https_to_listed_hosts_only() {
        let c = connection("https://api.example.com/v2", |s| {
            s.allowed_hosts = vec!["uploads.example.com".into()]
        })
        .expect("valid");
        assert_eq!(c.url("/issues").expect("joined").as_str(), "https://api.example.com/v2/issues");
        assert!(c.url("https://uploads.example.com/x").is_ok());
        let e = c.url("https://evil.example.net/x").expect_err("unlisted host");
        assert!(e.message.contains("`partner`") && e.message.contains("evil.example.net"), "{}", e.message);
        let e = c.url("http://api.example.com/x").expect_err("plain http");
        assert!(e.message.contains("`partner`") && e.message.contains("api.example.com"), "{}", e.message);
    }

    #[test]
    fn loopback_needs_the_development_setting() {
        let e = connection("http://127.0.0.1:9000/mcp", |_| {}).expect_err("loopback refused");
        assert!(e.message.contains("127.0.0.1"), "{}", e.message);
        let e = connection("https://10.1.2.3/mcp", |_| {}).expect_err("private refused");
        assert!(e.message.contains("private"), "{}", e.message);
        let c = connection("http://127.0.0.1:9000/mcp", |s| s.allow_insecure_loopback = true).expect("dev");
        assert!(c.url("/x").is_ok());
        let c = connection("https://api.example.com", |s| {
            s.allow_insecure_loopback = true;
            s.allowed_hosts = vec!["other.example.com".into()];
        })
        .expect("dev");
        let e = c.url("http://other.example.com/x").expect_err("http to a public host stays refused");
        assert!(e.message.contains("other.example.com"), "{}", e.message);
    }

    #[test]
    fn local_addresses_are_recognised() {
        for host in [
            "localhost",
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "[::1]",
            "169.254.1.1",
            "[fd00::1]",
            "0.0.0.0",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in ["example.com", "8.8.8.8", "[2001:db8::1]"] {
            assert!(!is_local_host(host), "{host}");
        }
    }
}
