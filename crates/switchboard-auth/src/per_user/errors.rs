//! What a provider's refusals mean, in words an operator or user can act on.

use switchboard_core::Error;

/// The error for an OAuth `error` code from the provider (at the authorization redirect or the
/// token endpoint), naming the connection and what to do. `description` is the provider's own
/// text, already scrubbed of secrets.
pub(crate) fn provider_error(
    connection: &str,
    client_id: &str,
    redirect_url: &str,
    code: &str,
    description: &str,
) -> Error {
    let said =
        if description.is_empty() { String::new() } else { format!(" (the provider said: {description})") };
    match code {
        "redirect_uri_mismatch" => Error::config(format!(
            "connection `{connection}`: the provider refused the redirect URL `{redirect_url}` \
             (redirect_uri_mismatch): register exactly this URL for client `{client_id}` at the \
             provider, or set the connection's redirect_url to the one registered{said}"
        )),
        "admin_policy_enforced" => Error::denied(format!(
            "connection `{connection}`: the provider's administrator policy does not let users consent \
             to client `{client_id}` (admin_policy_enforced): an administrator of the provider must \
             approve the app for your organisation before you can connect{said}"
        )),
        "access_denied" => Error::denied(format!(
            "connection `{connection}`: consent was declined at the provider (access_denied){said}"
        )),
        "invalid_grant" => Error::denied(format!(
            "connection `{connection}`: the provider no longer accepts this authorization (invalid_grant): \
             connect again{said}"
        )),
        other => Error::upstream(format!("connection `{connection}`: the provider answered `{other}`{said}")),
    }
}

/// The error for a token response without a refresh token.
pub(crate) fn no_refresh_token(connection: &str, client_id: &str) -> Error {
    Error::denied(format!(
        "connection `{connection}`: the provider issued no refresh token because `offline_access` \
         was not granted, so the connection would stop working when the first access token \
         expires; nothing was stored. Ask the provider's administrator to allow offline access \
         for client `{client_id}`, then connect again"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::ErrorKind;

    #[test]
    fn each_refusal_says_what_to_do() {
        let e = provider_error("drive", "sb", "https://sb/oauth/callback", "redirect_uri_mismatch", "");
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(e.message.contains("https://sb/oauth/callback") && e.message.contains("register"), "{e}");
        let e = provider_error("drive", "sb", "u", "admin_policy_enforced", "blocked by admin");
        assert_eq!(e.kind, ErrorKind::Denied);
        assert!(e.message.contains("administrator") && e.message.contains("blocked by admin"), "{e}");
        assert!(no_refresh_token("drive", "sb").message.contains("offline_access"));
    }
}
