//! Users' refresh tokens sealed at rest with AES-256-GCM, bound to their (connection, subject).

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use switchboard_core::{Error, Result, Secret};

/// The format byte in front of every sealed token, so a later format can be told apart.
const VERSION: u8 = 1;

/// An AES-256-GCM key read from a secret reference: 64 hex digits, or base64 of 32 bytes.
pub(crate) struct SealKey(RandomizedNonceKey);

impl SealKey {
    /// Parses `secret`; `what` names the reference in the error, never the value.
    pub(crate) fn parse(secret: &Secret, what: &str) -> Result<Self> {
        let raw = secret.expose().trim();
        let bytes = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&raw[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
        } else {
            STANDARD.decode(raw).unwrap_or_default()
        };
        if bytes.len() != 32 {
            return Err(Error::config(format!(
                "{what} is not a 256-bit key: give 64 hex digits or the base64 of 32 random bytes (e.g. `openssl rand -hex 32`)"
            )));
        }
        RandomizedNonceKey::new(&AES_256_GCM, &bytes)
            .map(Self)
            .map_err(|_| Error::internal(format!("{what}: the key was refused by AES-256-GCM")))
    }

    /// `token` encrypted under a fresh random nonce, bound to `context` (authenticated, not stored).
    pub(crate) fn seal(&self, context: &str, token: &Secret) -> Result<Vec<u8>> {
        let mut in_out = token.expose().as_bytes().to_vec();
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut in_out)
            .map_err(|_| Error::internal("sealing a refresh token failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        out.push(VERSION);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// The token sealed by [`SealKey::seal`] with the same `context`; `None` when it does not
    /// open (another key, another row, or tampering).
    pub(crate) fn open(&self, context: &str, sealed: &[u8]) -> Option<Secret> {
        let (&version, rest) = sealed.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self.0.open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out).ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex_digit: char) -> SealKey {
        SealKey::parse(&Secret::new(hex_digit.to_string().repeat(64)), "test key").expect("a key")
    }

    #[test]
    fn a_sealed_token_opens_only_with_its_key_and_row() {
        let token = Secret::new("refresh-PLANTED-1234");
        let sealed = key('a').seal("drive\0alice", &token).expect("sealed");
        assert!(!sealed.windows(7).any(|w| w == b"PLANTED"), "the ciphertext holds no plaintext");
        assert_eq!(
            key('a').open("drive\0alice", &sealed).map(|s| s.expose().to_string()),
            Some(token.expose().into())
        );
        assert!(key('a').open("drive\0bob", &sealed).is_none(), "another user's row");
        assert!(key('b').open("drive\0alice", &sealed).is_none(), "another key");
    }

    #[test]
    fn keys_must_be_256_bits() {
        let e = SealKey::parse(&Secret::new("short"), "env:KEY").err().expect("refused");
        assert!(e.message.contains("env:KEY") && !e.message.contains("short"), "{}", e.message);
        assert!(SealKey::parse(&Secret::new(STANDARD.encode([7u8; 32])), "k").is_ok());
    }
}
