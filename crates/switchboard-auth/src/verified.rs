//! Verified bearer tokens remembered until they expire, so a client that presents the same token
//! on every request pays for one signature check (a P-256 or RSA verification) instead of one per
//! request.
//!
//! Entries are keyed by the SHA-256 of the token, never the token itself. A hit still honours the
//! token's `exp` and `nbf` (with the issuer's leeway, as verification does), and no entry outlives
//! [`MAX_AGE`], so a key withdrawn from an issuer's JWKS stops vouching for its tokens within that
//! time. The cache is bounded: when full, stale entries are swept, and if none are stale the new
//! token is simply not remembered.

use dashmap::DashMap;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest a verification is reused, whatever the token's own expiry.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(300);
/// The most tokens remembered at once.
pub(crate) const CAPACITY: usize = 10_000;

struct Entry {
    /// Index of the issuer that vouched for the token.
    issuer: usize,
    claims: Arc<Map<String, Value>>,
    /// Unix seconds from which the token is valid (`nbf` less the leeway), if it has an `nbf`.
    valid_from: Option<i64>,
    /// Unix seconds after which it is not (`exp` plus the leeway).
    valid_until: i64,
    /// When this entry stops being used regardless of the token.
    reuse_until: Instant,
}

/// Tokens already verified: their issuer and claims, by token digest.
#[derive(Default)]
pub(crate) struct VerifiedTokens {
    entries: DashMap<[u8; 32], Entry>,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Entry {
    fn usable(&self, now: i64, instant: Instant) -> bool {
        instant < self.reuse_until
            && now <= self.valid_until
            && self.valid_from.is_none_or(|from| from <= now)
    }
}

impl VerifiedTokens {
    /// The issuer index and claims of the token with digest `key`, if it was verified and is
    /// still within its validity window; a stale entry is dropped, and the caller verifies anew
    /// (and so reports exactly why the token is no longer accepted).
    pub fn get(&self, key: &[u8; 32]) -> Option<(usize, Arc<Map<String, Value>>)> {
        let (now, instant) = (unix_now(), Instant::now());
        let hit =
            self.entries.get(key).and_then(|e| e.usable(now, instant).then(|| (e.issuer, e.claims.clone())));
        if hit.is_none() {
            self.entries.remove(key);
        }
        hit
    }

    /// Remembers a token just verified by issuer `issuer`, whose leeway is `leeway_secs`. Claims
    /// without a numeric `exp` are not remembered (verification requires one anyway).
    pub fn insert(&self, key: [u8; 32], issuer: usize, claims: &Arc<Map<String, Value>>, leeway_secs: u64) {
        let leeway = leeway_secs.min(i64::MAX as u64) as i64;
        let Some(exp) = claims.get("exp").and_then(Value::as_i64) else { return };
        let valid_from = claims.get("nbf").and_then(Value::as_i64).map(|nbf| nbf.saturating_sub(leeway));
        if self.entries.len() >= CAPACITY {
            let (now, instant) = (unix_now(), Instant::now());
            self.entries.retain(|_, e| e.usable(now, instant));
            if self.entries.len() >= CAPACITY {
                return;
            }
        }
        self.entries.insert(
            key,
            Entry {
                issuer,
                claims: claims.clone(),
                valid_from,
                valid_until: exp.saturating_add(leeway),
                reuse_until: Instant::now() + MAX_AGE,
            },
        );
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Arc<Map<String, Value>> {
        Arc::new(value.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn a_hit_honours_exp_and_nbf_with_the_leeway() {
        let cache = VerifiedTokens::default();
        let now = unix_now();
        cache.insert([1; 32], 0, &claims(json!({"sub": "a", "exp": now + 60, "nbf": now - 5})), 0);
        assert_eq!(cache.get(&[1; 32]).map(|(i, c)| (i, c["sub"].clone())), Some((0, json!("a"))));

        // Expired 10 s ago: usable only while the leeway covers it.
        cache.insert([2; 32], 1, &claims(json!({"exp": now - 10})), 30);
        assert!(cache.get(&[2; 32]).is_some());
        cache.insert([3; 32], 1, &claims(json!({"exp": now - 10})), 5);
        assert!(cache.get(&[3; 32]).is_none());
        assert_eq!(cache.len(), 2, "the stale entry is dropped on lookup");

        // Not valid before a minute from now, even if it somehow got in.
        cache.insert([4; 32], 0, &claims(json!({"exp": now + 600, "nbf": now + 60})), 0);
        assert!(cache.get(&[4; 32]).is_none());

        // No numeric expiry, nothing remembered.
        cache.insert([5; 32], 0, &claims(json!({"sub": "b"})), 0);
        assert!(cache.get(&[5; 32]).is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedTokens::default();
        let valid = claims(json!({"exp": unix_now() + 600}));
        for i in 0..CAPACITY + 10 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.insert(key, 0, &valid, 0);
        }
        assert_eq!(cache.len(), CAPACITY);
    }
}
