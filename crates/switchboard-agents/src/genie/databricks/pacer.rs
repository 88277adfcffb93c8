//! Paces a Genie space's `POST`s to its quota (Databricks: 5 per minute per workspace), so the
//! workspace never has to answer `429`: a caller either gets a slot within a short wait or is
//! told at once how long to wait.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sliding window of reserved `POST` times.
#[derive(Debug)]
pub struct Pacer {
    max: usize,
    window: Duration,
    max_wait: Duration,
    // Reserved send times, oldest first; some may lie in the future (callers waiting their turn).
    slots: Mutex<VecDeque<Instant>>,
}

impl Pacer {
    /// At most `max` sends in any `window`; a caller waits at most `max_wait` for a slot.
    pub fn new(max: usize, window: Duration, max_wait: Duration) -> Self {
        Self { max: max.max(1), window, max_wait, slots: Mutex::new(VecDeque::new()) }
    }

    /// The window actually kept: a send reaches the far side a little after its slot, and
    /// unevenly, so slots spaced exactly one window apart could still arrive inside one window
    /// there. A tenth of the window, at most a second, absorbs that.
    fn spacing(&self) -> Duration {
        self.window + (self.window / 10).min(Duration::from_secs(1))
    }

    /// The window's size and length, for messages.
    pub fn quota(&self) -> (usize, Duration) {
        (self.max, self.window)
    }

    /// Reserves the earliest send time at or after `now` that keeps every window within quota.
    /// `Ok(wait)` is how long to wait before sending; `Err(wait)` means the slot is further off
    /// than `max_wait` and nothing was reserved.
    pub fn reserve(&self, now: Instant) -> Result<Duration, Duration> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Sends a full window ago no longer constrain any send at or after `now`.
        let spacing = self.spacing();
        while slots.front().is_some_and(|t| *t + spacing <= now) {
            slots.pop_front();
        }
        let mut at = now;
        if let Some(last) = slots.back() {
            // Appending keeps the list sorted, so the quota check below can index it.
            at = at.max(*last);
        }
        if slots.len() >= self.max {
            at = at.max(slots[slots.len() - self.max] + spacing);
        }
        let wait = at - now;
        if wait > self.max_wait {
            return Err(wait);
        }
        slots.push_back(at);
        Ok(wait)
    }

    /// Waits for a send slot. `Err(wait)` when the next free slot is more than `max_wait` away.
    pub async fn acquire(&self) -> Result<(), Duration> {
        let wait = self.reserve(Instant::now())?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_max_in_any_window() {
        let window = Duration::from_secs(60);
        let pacer = Pacer::new(5, window, Duration::from_secs(120));
        let start = Instant::now();
        let mut sends = Vec::new();
        for i in 0..12 {
            let now = start + Duration::from_secs(i);
            let wait = pacer.reserve(now).expect("within max_wait");
            sends.push(now + wait);
        }
        for (i, t) in sends.iter().enumerate() {
            let within = sends[i..].iter().filter(|s| s.duration_since(*t) < window).count();
            assert!(within <= 5, "{within} sends within a window starting at send {i}");
        }
        // The sixth waits for the first to leave the window, and a margin.
        assert_eq!(sends[5], start + window + Duration::from_secs(1));
    }

    #[test]
    fn refuses_with_the_wait_beyond_max_wait() {
        let pacer = Pacer::new(2, Duration::from_secs(60), Duration::from_secs(5));
        let now = Instant::now();
        assert_eq!(pacer.reserve(now), Ok(Duration::ZERO));
        assert_eq!(pacer.reserve(now + Duration::from_secs(10)), Ok(Duration::ZERO));
        let refused = pacer.reserve(now + Duration::from_secs(20)).expect_err("full");
        assert_eq!(refused, Duration::from_secs(41));
        // A refusal reserves nothing: once the window has moved on there is room again.
        assert_eq!(pacer.reserve(now + Duration::from_secs(61)), Ok(Duration::ZERO));
    }
}
