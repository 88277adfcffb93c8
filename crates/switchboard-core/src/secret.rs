use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// A bearer token, client secret or API key.
///
/// `Debug`, `Display` and `Serialize` all print `[REDACTED]`, so a secret that ends up in a log line,
/// a span attribute, an audit row or an error body by mistake still does not leak. The value is
/// only reachable through [`Secret::expose`], which is greppable on purpose.
///
/// Clones share one copy of the value (every hop of a request carries its token), which is
/// zeroed when the last clone is dropped.
#[derive(Clone)]
pub struct Secret(Arc<SecretString>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::new(SecretString::from(value.into())))
    }

    /// The secret value, for the one place that must put it on the wire.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendering_redacts() {
        let s = Secret::new("tok-very-secret-123");
        assert!(!format!("{s:?}").contains("very-secret"));
        assert!(!format!("{s}").contains("very-secret"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[REDACTED]\"");
        assert_eq!(s.expose(), "tok-very-secret-123");
    }
}
