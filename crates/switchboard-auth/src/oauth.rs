//! The token-endpoint client shared by client credentials, token exchange and federation.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use std::time::Duration;
use switchboard_core::{Error, Secret};

/// RFC 8693 grant type.
pub(crate) const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 token type of a JWT.
pub(crate) const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 token type of an access token.
pub(crate) const TOKEN_TYPE_ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

/// When a token endpoint omits `expires_in`, assume a short life rather than caching forever.
const DEFAULT_EXPIRES_IN: u64 = 300;
/// A token endpoint that hangs must not hang the request (or every single-flight waiter) behind it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Error bodies are quoted only this far, so a chatty upstream cannot flood our messages.
const EXCERPT_CHARS: usize = 200;

pub(crate) use switchboard_govern::layers::read_secret;

/// SHA-256 of a token, so caches can be keyed by tokens without holding them as keys.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    sha256(token.as_bytes())
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Client authentication at a token endpoint.
pub(crate) enum ClientAuth<'a> {
    /// No client authentication.
    None,
    /// A public client: `client_id` as a form field.
    Id(&'a str),
    /// A confidential client: HTTP Basic.
    Basic(&'a str, Secret),
}

/// A successful token response.
pub(crate) struct TokenResponse {
    pub access_token: Secret,
    /// Kept for completeness; RFC 8693 allows `N_A`, so it is not enforced.
    #[allow(dead_code)]
    pub token_type: Option<String>,
    pub expires_in: Duration,
    pub scope: Option<String>,
    /// Issued by the authorization-code and refresh grants when offline access was granted.
    pub refresh_token: Option<Secret>,
}

/// A failed token request: the status, the OAuth `error` code if any, and a redacted message.
pub(crate) struct EndpointError {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
}

impl EndpointError {
    /// The failure as a 502.
    pub fn upstream(self) -> Error {
        Error::upstream(self.message)
    }
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct RawErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Posts `form` to a token endpoint. `what` names the flow in error messages; every secret in
/// `redact_raw` (and the client secret) is scrubbed from any upstream text quoted in an error.
pub(crate) async fn post_token(
    http: &reqwest::Client,
    endpoint: &str,
    form: &[(&str, &str)],
    auth: ClientAuth<'_>,
    what: &str,
    redact_raw: &[&str],
) -> std::result::Result<TokenResponse, EndpointError> {
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    // An upstream may echo the request back in an error body, in any of the encodings it was
    // sent in: raw, form-encoded, or inside the Basic header.
    let mut redact: Vec<String> = Vec::new();
    for s in redact_raw {
        redact.push(s.to_string());
        redact.push(form_encode(s));
    }
    let mut request =
        http.post(endpoint).timeout(REQUEST_TIMEOUT).header(reqwest::header::ACCEPT, "application/json");
    match &auth {
        ClientAuth::None => {}
        ClientAuth::Id(id) => fields.push(("client_id", id)),
        ClientAuth::Basic(id, secret) => {
            redact.push(secret.expose().to_string());
            redact.push(form_encode(secret.expose()));
            redact.push(STANDARD.encode(format!("{id}:{}", secret.expose())));
            request = request.basic_auth(id, Some(secret.expose()));
        }
    }
    let redact: Vec<&str> = redact.iter().map(String::as_str).collect();
    let response = request.form(&fields).send().await.map_err(|e| EndpointError {
        status: None,
        code: None,
        message: scrub(&format!("{what}: token endpoint unreachable: {}", e.without_url()), &redact),
    })?;
    let status = response.status();
    let body = response.text().await.map_err(|e| EndpointError {
        status: Some(status.as_u16()),
        code: None,
        message: scrub(&format!("{what}: reading the token response failed: {e}"), &redact),
    })?;
    if !status.is_success() {
        let (code, detail) = match serde_json::from_str::<RawErrorResponse>(&body) {
            Ok(e) => {
                let detail = match e.error_description {
                    Some(d) => format!("{}: {d}", e.error),
                    None => e.error.clone(),
                };
                (Some(e.error), detail)
            }
            Err(_) => (None, body),
        };
        let detail = excerpt(&scrub(&detail, &redact));
        let code = code.map(|c| excerpt(&scrub(&c, &redact)));
        return Err(EndpointError {
            status: Some(status.as_u16()),
            code,
            message: format!("{what}: token endpoint answered {}: {detail}", status.as_u16()),
        });
    }
    // serde messages can quote input values, so a parse failure is reported without them.
    let raw: RawTokenResponse = serde_json::from_str(&body).map_err(|_| EndpointError {
        status: Some(status.as_u16()),
        code: None,
        message: format!("{what}: token endpoint answered without a usable access_token"),
    })?;
    if raw.access_token.is_empty() {
        return Err(EndpointError {
            status: Some(status.as_u16()),
            code: None,
            message: format!("{what}: token endpoint answered an empty access_token"),
        });
    }
    let expires_in = match raw.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(DEFAULT_EXPIRES_IN),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(DEFAULT_EXPIRES_IN),
        _ => DEFAULT_EXPIRES_IN,
    };
    Ok(TokenResponse {
        access_token: Secret::new(raw.access_token),
        token_type: raw.token_type,
        expires_in: Duration::from_secs(expires_in),
        scope: raw.scope,
        refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
    })
}

/// `application/x-www-form-urlencoded` encoding, as reqwest's form serializer produces it.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Replaces every occurrence of each (non-trivial) secret with `[REDACTED]`.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        // Very short strings would redact ordinary words and cannot identify a secret anyway.
        if s.len() >= 4 {
            out = out.replace(s, "[REDACTED]");
        }
    }
    out
}

/// The first `EXCERPT_CHARS` characters, on one line.
pub(crate) fn excerpt(text: &str) -> String {
    let one_line: String =
        text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string();
    if one_line.chars().count() > EXCERPT_CHARS {
        let cut: String = one_line.chars().take(EXCERPT_CHARS).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_then_excerpt_never_reintroduces_a_secret() {
        let secret = "s3cr3t-VALUE-123";
        let body = format!("{}{secret}{}", "x".repeat(190), "y".repeat(50));
        let out = excerpt(&scrub(&body, &[secret]));
        assert!(!out.contains("s3cr3t"));
        assert!(out.chars().count() <= EXCERPT_CHARS + 1);
    }

    #[test]
    fn form_encoding_matches_the_wire() {
        assert_eq!(form_encode("a b+c/d=é"), "a+b%2Bc%2Fd%3D%C3%A9");
    }

    #[test]
    fn excerpt_flattens_newlines() {
        assert_eq!(excerpt("a\nb\r\nc"), "a b  c");
    }
}
