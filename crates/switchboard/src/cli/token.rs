//! `switchboard token`: a development token, for curl, SDKs and tests.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use switchboard_core::{Error, Result};
use switchboard_runtime::Runtime;
use switchboard_runtime::identity::Identity;

/// The longest token the command issues.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Prints a token for `email`.
pub async fn run(
    email: &str,
    scopes: Option<&[String]>,
    ttl: &str,
    config: Option<&Path>,
) -> Result<ExitCode> {
    let ttl = parse_ttl(ttl)?;
    let loaded = Runtime::validate(&super::source(config)?).map_err(|e| Error::config(e.to_string()))?;
    let identity =
        Identity::build(&loaded.config, &loaded.data_dir, switchboard_govern::reqwest::Client::new())?;
    let dev = identity.dev().ok_or_else(|| {
        Error::invalid("this configuration has [auth], so the development identity provider is off; get a token from your identity provider")
    })?;
    let token = dev.token_for(email, scopes, ttl)?;
    println!("{}", token.expose());
    Ok(ExitCode::SUCCESS)
}

/// `900`, `90s`, `15m`, `1h` → a duration in (0, 24 h].
fn parse_ttl(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| Error::invalid(format!("--ttl `{text}`: expected e.g. 900, 90s, 15m or 1h")))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        other => {
            return Err(Error::invalid(format!("--ttl `{text}`: unknown unit `{other}` (use s, m or h)")));
        }
    };
    let ttl = Duration::from_secs(seconds);
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(Error::invalid(format!("--ttl `{text}`: must be between 1 s and 24 h")));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_with_units_and_bounds() {
        assert_eq!(parse_ttl("900").expect("plain"), Duration::from_secs(900));
        assert_eq!(parse_ttl("15m").expect("minutes"), Duration::from_secs(900));
        assert_eq!(parse_ttl("2h").expect("hours"), Duration::from_secs(7200));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("25h").unwrap_err().message.contains("24 h"));
        assert!(parse_ttl("5d").unwrap_err().message.contains("unknown unit"));
        assert!(parse_ttl("soon").is_err());
    }
}
