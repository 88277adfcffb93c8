//! Per-user OAuth connections (`auth = "oauth_per_user"`): each user consents once with the
//! OAuth2 authorization-code flow and PKCE (S256), and every later hop through the connection
//! carries that user's own access token.
//!
//! - [`PerUserOAuth::authorize`] starts the flow for the signed-in caller: a `state` that is
//!   random, bound to the caller, single-use and expiring, a PKCE verifier kept here, and a
//!   browser binding (a cookie the server sets) so the flow can only be finished in the browser
//!   that started it (RFC 6749 §10.12: otherwise a link started by one user and finished by
//!   another would store the second user's account under the first one's name).
//! - [`PerUserOAuth::complete`] takes the provider's redirect (and the binding back from the
//!   browser), exchanges the code and keeps the
//!   refresh token, sealed with AES-256-GCM under the connection's key, in a [`UserTokenVault`]
//!   (the store). `offline_access` is always requested; without a refresh token nothing is kept.
//! - As a [`UserTokenSource`], it hands out the user's access token, refreshed before it expires,
//!   one refresh at a time per user; a user who never connected gets
//!   [`Error::consent_required`] with the consent link.
//!
//! Pending states live in this process's memory: the provider must send the user back to the
//! replica that started the flow (or to the only one).

mod errors;
mod pkce;
mod seal;

use crate::oauth::{self, ClientAuth, read_secret};
use async_trait::async_trait;
use dashmap::DashMap;
use errors::{no_refresh_token, provider_error};
use reqwest::Url;
use seal::SealKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_core::{ConnectionAuth, ConnectionSpec, Error, Result, Secret, SecretRef};
use switchboard_govern::layers::UserTokenSource;

/// How long a user has between starting the flow and coming back from the provider.
const STATE_TTL: Duration = Duration::from_secs(600);
/// Flows started and not finished are capped overall, so a flood of sign-ins cannot grow memory.
const MAX_PENDING: usize = 10_000;
/// And per user, so one user cannot fill the overall cap for everyone: a user's oldest flow
/// makes way for their newest.
const MAX_PENDING_PER_SUBJECT: usize = 5;
/// How long before expiry an access token is refreshed (at most half its life).
const REFRESH_SKEW: Duration = Duration::from_secs(60);
/// The path the provider sends users back to, on this server.
pub const CALLBACK_PATH: &str = "/oauth/callback";
/// The cookie that carries a flow's browser binding from `/oauth/connect` to the callback.
pub const BINDING_COOKIE: &str = "sb_oauth_flow";
/// The scope that asks for a refresh token.
const OFFLINE_ACCESS: &str = "offline_access";

/// Where sealed refresh tokens are kept: the store, keyed by connection and user subject.
#[async_trait]
pub trait UserTokenVault: Send + Sync {
    /// Keeps `sealed` for (`connection`, `subject`), replacing what was there.
    async fn put(&self, connection: &str, subject: &str, sealed: &[u8]) -> Result<()>;
    /// The sealed token kept for (`connection`, `subject`).
    async fn get(&self, connection: &str, subject: &str) -> Result<Option<Vec<u8>>>;
    /// Forgets it; `true` when there was one.
    async fn delete(&self, connection: &str, subject: &str) -> Result<bool>;
    /// Forgets it only if it is still `sealed` (not replaced meanwhile); `true` when it was.
    async fn delete_if(&self, connection: &str, subject: &str, sealed: &[u8]) -> Result<bool>;
}

/// Checks a per-user connection's URL `field` (`authorize_url`, `token_url` or `redirect_url`):
/// a URL, https (or http with `allow_insecure_loopback`, for development), and for the redirect
/// URL, ending at this server's callback. The error says what is wrong with `raw`, for the
/// caller to prefix with where it was found.
pub fn endpoint_url(spec: &ConnectionSpec, field: &str, raw: &str) -> std::result::Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if url.scheme() != "https" && !(spec.allow_insecure_loopback && url.scheme() == "http") {
        return Err(format!(
            "`{raw}` is not https; only https is allowed (set allow_insecure_loopback = true for development)"
        ));
    }
    if field == "redirect_url" && !url.path().ends_with(CALLBACK_PATH) {
        return Err(format!(
            "`{raw}` must end in {CALLBACK_PATH}: the provider sends users back to this server's callback there"
        ));
    }
    Ok(url)
}

/// A per-user connection's OAuth client settings, checked once at start-up.
#[derive(Debug, Clone)]
pub struct PerUserConfig {
    name: String,
    authorize_url: Url,
    token_url: String,
    client_id: String,
    client_secret: SecretRef,
    scopes: Vec<String>,
    redirect_url: Url,
    encryption_key: SecretRef,
}

impl PerUserConfig {
    /// The settings of `spec`, which must be `auth = "oauth_per_user"`; the error names the field.
    pub fn from_spec(spec: &ConnectionSpec) -> Result<Self> {
        let name = spec.name.clone();
        let missing = |field: &str| {
            Error::config(format!("connection `{name}`: auth = \"oauth_per_user\" needs `{field}`"))
        };
        if spec.auth != ConnectionAuth::OauthPerUser {
            return Err(Error::config(format!("connection `{name}` is not auth = \"oauth_per_user\"")));
        }
        let url = |field: &str, raw: &Option<String>| -> Result<Url> {
            let raw = raw.as_deref().ok_or_else(|| missing(field))?;
            endpoint_url(spec, field, raw)
                .map_err(|problem| Error::config(format!("connection `{name}`: {field} {problem}")))
        };
        let authorize_url = url("authorize_url", &spec.authorize_url)?;
        let token_url = url("token_url", &spec.token_url)?.to_string();
        let redirect_url = url("redirect_url", &spec.redirect_url)?;
        Ok(Self {
            authorize_url,
            token_url,
            client_id: spec.client_id.clone().ok_or_else(|| missing("client_id"))?,
            client_secret: spec.client_secret.clone().ok_or_else(|| missing("client_secret"))?,
            scopes: spec.scopes.clone(),
            redirect_url,
            encryption_key: spec.encryption_key.clone().ok_or_else(|| missing("encryption_key"))?,
            name,
        })
    }
}

/// A flow started and not finished yet.
struct Pending {
    subject: String,
    verifier: String,
    /// SHA-256 of the browser binding handed out with the flow.
    binding: [u8; 32],
    expires_at: Instant,
    /// Order of starting, so a user's oldest flow is known.
    seq: u64,
}

/// A flow just started: where to send the user, and the value the browser must bring back.
pub struct Authorization {
    /// The provider's authorization URL.
    pub url: Url,
    /// Random and secret: the server hands it to the starting browser (as a cookie) and
    /// [`PerUserOAuth::complete`] wants it back, so nobody else's browser can finish the flow.
    pub binding: Secret,
}

/// A user's access token, in memory only.
#[derive(Clone)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// The provider's answer at the callback, as its query parameters.
#[derive(Default, Clone, serde::Deserialize)]
pub struct CallbackParams {
    /// The `state` sent with the authorization request.
    #[serde(default)]
    pub state: Option<String>,
    /// The authorization code, on success.
    #[serde(default)]
    pub code: Option<String>,
    /// The OAuth error code, on failure.
    #[serde(default)]
    pub error: Option<String>,
    /// The provider's description of the failure.
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Without the code, which is a credential until it is exchanged.
impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("state", &self.state)
            .field("code", &self.code.as_ref().map(|_| "[REDACTED]"))
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .finish()
    }
}

/// The OAuth client of one per-user connection: flows in progress, users' access tokens, and the
/// sealed refresh tokens in the vault.
pub struct PerUserOAuth {
    config: PerUserConfig,
    vault: Arc<dyn UserTokenVault>,
    http: reqwest::Client,
    pending: Mutex<HashMap<String, Pending>>,
    cached: DashMap<String, Cached>,
    /// One refresh at a time per user: the first caller to find the token stale refreshes,
    /// the others wait for it and take its result.
    flights: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    refreshes: AtomicU64,
    /// Flows started, for [`Pending::seq`].
    started: AtomicU64,
}

impl std::fmt::Debug for PerUserOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerUserOAuth").field("connection", &self.config.name).finish_non_exhaustive()
    }
}

impl PerUserOAuth {
    /// A client for `config`, keeping sealed refresh tokens in `vault`.
    pub fn new(config: PerUserConfig, vault: Arc<dyn UserTokenVault>, http: reqwest::Client) -> Self {
        Self {
            config,
            vault,
            http,
            pending: Mutex::new(HashMap::new()),
            cached: DashMap::new(),
            flights: DashMap::new(),
            refreshes: AtomicU64::new(0),
            started: AtomicU64::new(0),
        }
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Where a user starts connecting: `/oauth/connect/{connection}` on this server, as the
    /// provider's redirect URL names it.
    pub fn consent_link(&self) -> String {
        let mut link = self.config.redirect_url.clone();
        let base = link.path().strip_suffix(CALLBACK_PATH).unwrap_or("").to_string();
        link.set_path(&format!("{base}/oauth/connect/{}", self.config.name));
        link.set_query(None);
        link.to_string()
    }

    /// How many refresh-token grants this process has made, for metrics and tests.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// The provider's authorization URL for the caller `subject`, with a fresh single-use
    /// `state` (which names the connection, so the shared callback can find it) and the PKCE
    /// challenge; and the binding the caller's browser must bring back to the callback.
    pub fn authorize(&self, subject: &str) -> Result<Authorization> {
        let state = format!("{}.{}", self.config.name, pkce::random_token(32)?);
        let verifier = pkce::random_token(32)?;
        let binding = pkce::random_token(32)?;
        let mut scopes = self.config.scopes.clone();
        if !scopes.iter().any(|s| s == OFFLINE_ACCESS) {
            scopes.push(OFFLINE_ACCESS.into());
        }
        let mut url = self.config.authorize_url.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", self.config.redirect_url.as_str())
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("code_challenge", &pkce::challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| p.expires_at > now);
        let mut own: Vec<(u64, String)> = pending
            .iter()
            .filter(|(_, p)| p.subject == subject)
            .map(|(state, p)| (p.seq, state.clone()))
            .collect();
        if own.len() >= MAX_PENDING_PER_SUBJECT {
            own.sort();
            for (_, state) in &own[..=own.len() - MAX_PENDING_PER_SUBJECT] {
                pending.remove(state);
            }
        }
        if pending.len() >= MAX_PENDING {
            return Err(Error::rate_limited(
                format!(
                    "connection `{}`: too many sign-ins in progress; try again shortly",
                    self.config.name
                ),
                Duration::from_secs(30),
            ));
        }
        let flow = Pending {
            subject: subject.to_string(),
            verifier,
            binding: oauth::sha256(binding.as_bytes()),
            expires_at: now + STATE_TTL,
            seq: self.started.fetch_add(1, Ordering::Relaxed),
        };
        pending.insert(state, flow);
        Ok(Authorization { url, binding: Secret::new(binding) })
    }

    /// The `Set-Cookie` value that hands `binding` to the browser starting the flow: sent back
    /// only to the callback (its path), never readable by scripts, and alive as long as the
    /// flow. `SameSite=Lax` still lets the provider's top-level redirect to the callback carry it.
    pub fn binding_cookie(&self, binding: &Secret) -> String {
        let secure = if self.config.redirect_url.scheme() == "https" { "; Secure" } else { "" };
        format!(
            "{BINDING_COOKIE}={}; Path={}; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            binding.expose(),
            self.config.redirect_url.path(),
            STATE_TTL.as_secs()
        )
    }

    /// The `Set-Cookie` value that removes the binding cookie once the callback has used it.
    pub fn spent_binding_cookie(&self) -> String {
        format!(
            "{BINDING_COOKIE}=; Path={}; HttpOnly; SameSite=Lax; Max-Age=0",
            self.config.redirect_url.path()
        )
    }

    /// The connection a callback's `state` was issued for, by name.
    pub fn connection_of_state(state: &str) -> Option<&str> {
        state.split_once('.').map(|(name, _)| name).filter(|n| !n.is_empty())
    }

    /// Finishes the flow the provider sent the user back from: checks `state` (once only) and
    /// that `binding` (from the browser) is the one [`PerUserOAuth::authorize`] handed out with
    /// it, exchanges the code with the PKCE verifier and keeps the sealed refresh token. Returns
    /// the subject the flow was started for.
    pub async fn complete(&self, params: &CallbackParams, binding: Option<&str>) -> Result<String> {
        let name = &self.config.name;
        let state = params.state.as_deref().unwrap_or_default();
        let taken = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(state);
        let pending = match taken {
            Some(p) if p.expires_at > Instant::now() => p,
            _ => {
                return Err(Error::invalid(format!(
                    "connection `{name}`: this sign-in is unknown, expired or already used; start again at {}",
                    self.consent_link()
                )));
            }
        };
        // The state is used up either way: a link finished in the wrong browser is dead.
        if binding.map(|b| oauth::sha256(b.as_bytes())) != Some(pending.binding) {
            return Err(Error::invalid(format!(
                "connection `{name}`: this sign-in was started in another browser (or this browser \
                 did not keep its cookie), so it cannot be finished here; start again at {}",
                self.consent_link()
            )));
        }
        if let Some(code) = params.error.as_deref() {
            let description = oauth::excerpt(params.error_description.as_deref().unwrap_or_default());
            return Err(self.provider_error(&oauth::excerpt(code), &description));
        }
        let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
            return Err(Error::invalid(format!(
                "connection `{name}`: the provider sent neither a code nor an error"
            )));
        };
        let redirect = self.config.redirect_url.to_string();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        let response =
            self.post_token(&form, &[code, &pending.verifier]).await.map_err(|e| self.token_error(e))?;
        let refresh = response.refresh_token.ok_or_else(|| no_refresh_token(name, &self.config.client_id))?;
        let sealed = self.key()?.seal(&context(name, &pending.subject), &refresh)?;
        // Under the user's refresh lock, so a refresh in flight cannot interleave with the new
        // row and cached token.
        let flight = self.flight(&pending.subject);
        let _held = flight.lock().await;
        self.vault.put(name, &pending.subject, &sealed).await?;
        self.remember(&pending.subject, response.access_token, response.expires_in);
        Ok(pending.subject)
    }

    /// Whether `subject` has connected (holds a refresh token).
    pub async fn connected(&self, subject: &str) -> Result<bool> {
        Ok(self.vault.get(&self.config.name, subject).await?.is_some())
    }

    /// Forgets `subject`'s tokens; `true` when they had connected.
    pub async fn disconnect(&self, subject: &str) -> Result<bool> {
        let flight = self.flight(subject);
        let _held = flight.lock().await;
        self.cached.remove(subject);
        self.vault.delete(&self.config.name, subject).await
    }

    fn flight(&self, subject: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.flights.entry(subject.to_string()).or_default().clone()
    }

    fn fresh(&self, subject: &str) -> Option<Secret> {
        self.cached.get(subject).filter(|c| c.refresh_at > Instant::now()).map(|c| c.token.clone())
    }

    fn remember(&self, subject: &str, token: Secret, expires_in: Duration) {
        let skew = REFRESH_SKEW.min(expires_in / 2);
        let refresh_at = Instant::now() + expires_in.saturating_sub(skew);
        self.cached.insert(subject.to_string(), Cached { token, refresh_at });
    }

    fn key(&self) -> Result<SealKey> {
        let reference = match &self.config.encryption_key {
            SecretRef::Env(name) => format!("env:{name}"),
            SecretRef::File(path) => format!("file:{path}"),
        };
        let what = format!("connection `{}`: encryption_key {reference}", self.config.name);
        SealKey::parse(&read_secret(&self.config.encryption_key)?, &what)
    }

    fn provider_error(&self, code: &str, description: &str) -> Error {
        let c = &self.config;
        provider_error(&c.name, &c.client_id, c.redirect_url.as_str(), code, description)
    }

    async fn post_token(
        &self,
        form: &[(&str, &str)],
        redact: &[&str],
    ) -> std::result::Result<oauth::TokenResponse, oauth::EndpointError> {
        let secret = read_secret(&self.config.client_secret).map_err(|e| oauth::EndpointError {
            status: None,
            code: None,
            message: e.message,
        })?;
        let what = format!("connection `{}`", self.config.name);
        oauth::post_token(
            &self.http,
            &self.config.token_url,
            form,
            ClientAuth::Basic(&self.config.client_id, secret),
            &what,
            redact,
        )
        .await
    }

    /// A failed token request as the error the user sees: the provider's OAuth error explained.
    fn token_error(&self, e: oauth::EndpointError) -> Error {
        match e.code.as_deref() {
            Some(code) => self.provider_error(code, &e.message),
            None => e.upstream(),
        }
    }

    /// Refreshes `subject`'s access token from the sealed refresh token. A refused refresh
    /// token is forgotten only if it is still the stored one: when another replica (or a new
    /// sign-in) replaced it meanwhile, the new one is tried once instead.
    async fn refresh(&self, subject: &str) -> Result<Secret> {
        let name = &self.config.name;
        let consent = || Error::consent_required(name, &self.consent_link());
        let Some(mut sealed) = self.vault.get(name, subject).await? else { return Err(consent()) };
        let key = self.key()?;
        let mut retried = false;
        loop {
            let Some(refresh) = key.open(&context(name, subject), &sealed) else {
                // Another key (rotated) or a damaged row: the user has to consent again.
                tracing::warn!(connection = %name, "a stored refresh token does not open with the current key");
                self.vault.delete_if(name, subject, &sealed).await?;
                return Err(consent());
            };
            self.refreshes.fetch_add(1, Ordering::Relaxed);
            let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.expose())];
            let response = match self.post_token(&form, &[refresh.expose()]).await {
                Ok(r) => r,
                Err(e) if e.code.as_deref() == Some("invalid_grant") => {
                    // Revoked at the provider, or expired: forget it and ask for consent again,
                    // unless it was replaced while this request was out.
                    if self.vault.delete_if(name, subject, &sealed).await? || retried {
                        return Err(consent());
                    }
                    match self.vault.get(name, subject).await? {
                        Some(current) if current != sealed => {
                            sealed = current;
                            retried = true;
                            continue;
                        }
                        _ => return Err(consent()),
                    }
                }
                Err(e) => return Err(self.token_error(e)),
            };
            if let Some(rotated) = &response.refresh_token {
                self.vault.put(name, subject, &key.seal(&context(name, subject), rotated)?).await?;
            }
            let token = response.access_token.clone();
            self.remember(subject, response.access_token, response.expires_in);
            return Ok(token);
        }
    }
}

#[async_trait]
impl UserTokenSource for PerUserOAuth {
    async fn user_token(&self, subject: &str) -> Result<Secret> {
        if let Some(token) = self.fresh(subject) {
            return Ok(token);
        }
        let flight = self.flight(subject);
        let _held = flight.lock().await;
        if let Some(token) = self.fresh(subject) {
            return Ok(token);
        }
        self.refresh(subject).await
    }
}

/// What a sealed token is bound to: its row.
fn context(connection: &str, subject: &str) -> String {
    format!("{connection}\0{subject}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ConnectionSpec {
        let mut spec = ConnectionSpec::new("drive", "https://api.example.com");
        spec.auth = ConnectionAuth::OauthPerUser;
        spec.authorize_url = Some("https://idp.example.com/authorize".into());
        spec.token_url = Some("https://idp.example.com/token".into());
        spec.client_id = Some("sb".into());
        spec.client_secret = Some(SecretRef::Env("SB_UNSET_SECRET".into()));
        spec.encryption_key = Some(SecretRef::Env("SB_UNSET_KEY".into()));
        spec.redirect_url = Some("https://sb.example.com/base/oauth/callback".into());
        spec.scopes = vec!["files.read".into()];
        spec
    }

    struct NoVault;
    #[async_trait]
    impl UserTokenVault for NoVault {
        async fn put(&self, _: &str, _: &str, _: &[u8]) -> Result<()> {
            Ok(())
        }
        async fn get(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>> {
            Ok(None)
        }
        async fn delete(&self, _: &str, _: &str) -> Result<bool> {
            Ok(false)
        }
        async fn delete_if(&self, _: &str, _: &str, _: &[u8]) -> Result<bool> {
            Ok(false)
        }
    }

    fn client() -> PerUserOAuth {
        PerUserOAuth::new(
            PerUserConfig::from_spec(&spec()).expect("valid"),
            Arc::new(NoVault),
            reqwest::Client::new(),
        )
    }

    #[test]
    fn the_authorization_request_carries_pkce_offline_access_and_a_state_naming_the_connection() {
        let url = client().authorize("alice").expect("url").url;
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"].len(), 43);
        assert_eq!(q["scope"], "files.read offline_access");
        assert_eq!(q["redirect_uri"], "https://sb.example.com/base/oauth/callback");
        assert_eq!(PerUserOAuth::connection_of_state(&q["state"]), Some("drive"));
    }

    #[tokio::test]
    async fn a_state_is_single_use_and_a_stranger_needs_consent() {
        let c = client();
        assert_eq!(c.consent_link(), "https://sb.example.com/base/oauth/connect/drive");
        let started = c.authorize("alice").expect("url");
        let binding = Some(started.binding.expose());
        let params = CallbackParams {
            state: state_of(&started),
            error: Some("admin_policy_enforced".into()),
            ..Default::default()
        };
        let e = c.complete(&params, binding).await.expect_err("the provider refused");
        assert!(e.message.contains("admin_policy_enforced"), "{e}");
        let e = c.complete(&params, binding).await.expect_err("the state was used");
        assert!(e.message.contains("already used"), "{e}");
        let e = c.user_token("bob").await.expect_err("bob never connected");
        assert_eq!(e.consent_url.as_deref(), Some("https://sb.example.com/base/oauth/connect/drive"));
    }

    fn state_of(started: &Authorization) -> Option<String> {
        started.url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned())
    }

    #[tokio::test]
    async fn a_flow_finishes_only_in_the_browser_that_started_it() {
        let c = client();
        let started = c.authorize("mallory").expect("url");
        let params =
            CallbackParams { state: state_of(&started), code: Some("c".into()), ..Default::default() };
        let e = c.complete(&params, None).await.expect_err("no cookie");
        assert!(e.message.contains("another browser"), "{e}");
        let started = c.authorize("mallory").expect("url");
        let params =
            CallbackParams { state: state_of(&started), code: Some("c".into()), ..Default::default() };
        let e = c.complete(&params, Some("someone-else's")).await.expect_err("another browser's cookie");
        assert!(e.message.contains("another browser"), "{e}");
        let e = c.complete(&params, Some(started.binding.expose())).await.expect_err("used up");
        assert!(e.message.contains("already used"), "{e}");
    }

    #[test]
    fn one_user_keeps_only_their_newest_flows() {
        let c = client();
        let first = c.authorize("alice").expect("url");
        for _ in 0..MAX_PENDING_PER_SUBJECT {
            c.authorize("alice").expect("url");
        }
        c.authorize("bob").expect("url");
        let pending = c.pending.lock().expect("lock");
        assert_eq!(pending.values().filter(|p| p.subject == "alice").count(), MAX_PENDING_PER_SUBJECT);
        assert!(!pending.contains_key(&state_of(&first).expect("state")), "the oldest made way");
        assert_eq!(pending.values().filter(|p| p.subject == "bob").count(), 1);
    }

    #[test]
    fn the_binding_cookie_goes_only_to_the_callback_and_only_over_https_here() {
        let c = client();
        let cookie = c.binding_cookie(&Secret::new("b1nd"));
        assert_eq!(
            cookie,
            "sb_oauth_flow=b1nd; Path=/base/oauth/callback; HttpOnly; SameSite=Lax; Max-Age=600; Secure"
        );
    }

    /// A store shared by "replicas"; `stale` answers the next read with an older row, as a
    /// replica that read just before another one wrote.
    #[derive(Default)]
    struct MemVault {
        rows: Mutex<HashMap<String, Vec<u8>>>,
        stale: Mutex<Option<Vec<u8>>>,
    }
    #[async_trait]
    impl UserTokenVault for MemVault {
        async fn put(&self, _: &str, subject: &str, sealed: &[u8]) -> Result<()> {
            self.rows.lock().expect("lock").insert(subject.into(), sealed.to_vec());
            Ok(())
        }
        async fn get(&self, _: &str, subject: &str) -> Result<Option<Vec<u8>>> {
            let stale = self.stale.lock().expect("lock").take();
            Ok(stale.or_else(|| self.rows.lock().expect("lock").get(subject).cloned()))
        }
        async fn delete(&self, _: &str, subject: &str) -> Result<bool> {
            Ok(self.rows.lock().expect("lock").remove(subject).is_some())
        }
        async fn delete_if(&self, _: &str, subject: &str, sealed: &[u8]) -> Result<bool> {
            let mut rows = self.rows.lock().expect("lock");
            let same = rows.get(subject).is_some_and(|r| r == sealed);
            if same {
                rows.remove(subject);
            }
            Ok(same)
        }
    }

    #[tokio::test]
    async fn a_refused_refresh_token_replaced_meanwhile_is_retried_not_deleted() {
        use switchboard_testkit::oauth::{OAuthProvider, ProviderConfig};
        let provider = OAuthProvider::start(ProviderConfig {
            client_id: "sb".into(),
            client_secret: "sb-secret".into(),
            redirect_uri: None,
            access_ttl: Duration::from_secs(300),
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |name: &str, value: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, value).expect("secret file");
            SecretRef::File(path.to_string_lossy().into_owned())
        };
        let mut s = spec();
        s.authorize_url = Some(provider.authorize_url());
        s.token_url = Some(provider.token_url());
        s.redirect_url = Some("http://127.0.0.1:9/oauth/callback".into());
        s.allow_insecure_loopback = true;
        s.client_secret = Some(file("secret", "sb-secret"));
        s.encryption_key = Some(file("key", &"7".repeat(64)));
        let vault = Arc::new(MemVault::default());
        let replica = || {
            PerUserOAuth::new(
                PerUserConfig::from_spec(&s).expect("valid"),
                vault.clone(),
                reqwest::Client::new(),
            )
        };
        let (a, b, c) = (replica(), replica(), replica());

        // alice connects through replica a: consent at the provider, then the callback.
        let started = a.authorize("alice").expect("url");
        let mut form: Vec<(String, String)> = started.url.query_pairs().into_owned().collect();
        form.extend([("login".into(), "alice".into()), ("decision".into(), "allow".into())]);
        let no_redirects =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let back = no_redirects
            .post(format!("{}/authorize", provider.url()))
            .form(&form)
            .send()
            .await
            .expect("consent");
        let back =
            Url::parse(back.headers()["location"].to_str().expect("location")).expect("the callback URL");
        let q: HashMap<String, String> = back.query_pairs().into_owned().collect();
        let params = CallbackParams {
            state: q.get("state").cloned(),
            code: q.get("code").cloned(),
            ..Default::default()
        };
        a.complete(&params, Some(started.binding.expose())).await.expect("connected");
        let first = vault.rows.lock().expect("lock")["alice"].clone();

        // Replica b refreshes, which rotates the refresh token; replica c read the row just
        // before, so the provider refuses its (spent) token with invalid_grant.
        b.user_token("alice").await.expect("b refreshes");
        *vault.stale.lock().expect("lock") = Some(first);
        c.user_token("alice").await.expect("c retries with b's token");
        assert_eq!(provider.refresh_grants(), 2, "b's refresh and c's retry succeeded");
        assert!(vault.rows.lock().expect("lock").contains_key("alice"), "b's row was not deleted");

        // A token refused while still the stored one is forgotten: consent again.
        let key = SealKey::parse(&Secret::new("7".repeat(64)), "k").expect("key");
        let unknown = key.seal(&context("drive", "alice"), &Secret::new("never-issued")).expect("sealed");
        vault.rows.lock().expect("lock").insert("alice".into(), unknown);
        let e = replica().user_token("alice").await.expect_err("refused");
        assert!(e.consent_url.is_some(), "{e}");
        assert!(!vault.rows.lock().expect("lock").contains_key("alice"), "the refused row is gone");
    }

    #[test]
    fn the_code_stays_out_of_debug_output() {
        let params = CallbackParams { code: Some("code-PLANTED".into()), ..Default::default() };
        assert!(!format!("{params:?}").contains("PLANTED"));
    }

    #[test]
    fn missing_settings_are_named() {
        let mut s = spec();
        s.encryption_key = None;
        let e = PerUserConfig::from_spec(&s).expect_err("no key");
        assert!(e.message.contains("encryption_key"), "{e}");
        let mut s = spec();
        s.redirect_url = Some("https://sb.example.com/elsewhere".into());
        assert!(PerUserConfig::from_spec(&s).expect_err("bad path").message.contains("/oauth/callback"));
    }
}
