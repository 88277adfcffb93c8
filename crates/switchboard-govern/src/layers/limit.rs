use crate::{HopCall, HopLayer, Next};
use async_trait::async_trait;
use dashmap::DashMap;
use std::time::{Duration, Instant};
use switchboard_core::{Error, HopKind, Result};

/// A token bucket per (caller, agent) on agent hops: `per_minute` calls, refilled continuously.
pub struct RateLimit {
    per_minute: u32,
    buckets: DashMap<(String, String), (f64, Instant)>,
}

impl RateLimit {
    /// At most `per_minute` agent calls per caller and agent.
    pub fn per_minute(per_minute: u32) -> Self {
        Self { per_minute: per_minute.max(1), buckets: DashMap::new() }
    }

    /// Takes a token, or says how long until one is free.
    fn take(&self, key: (String, String)) -> std::result::Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let now = Instant::now();
        let mut entry = self.buckets.entry(key).or_insert((capacity, now));
        let (tokens, last) = *entry;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(capacity);
        if tokens >= 1.0 {
            *entry = (tokens - 1.0, now);
            Ok(())
        } else {
            *entry = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / rate))
        }
    }
}

#[async_trait]
impl HopLayer for RateLimit {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        if hop.target.kind == HopKind::Agent {
            let key = (hop.ctx.caller.email().to_string(), hop.agent.name.clone());
            if let Err(wait) = self.take(key) {
                return Err(Error::rate_limited(
                    format!(
                        "rate limit of {} calls per minute to agent `{}` reached",
                        self.per_minute, hop.agent.name
                    ),
                    wait,
                ));
            }
        }
        next.run(hop).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_reports_wait() {
        let limit = RateLimit::per_minute(2);
        let key = || ("a@example.com".to_string(), "sales".to_string());
        assert!(limit.take(key()).is_ok());
        assert!(limit.take(key()).is_ok());
        let wait = limit.take(key()).expect_err("third call within a minute is limited");
        assert!(wait > Duration::from_secs(1));
        assert!(limit.take(("b@example.com".into(), "sales".into())).is_ok(), "buckets are per caller");
    }
}
