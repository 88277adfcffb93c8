//! Windows kept in this process.

use super::{Mark, Tripped, WINDOW, Windows};
use async_trait::async_trait;
use dashmap::DashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One window: marks in the order they were added, each `(when, member, weight)`.
type Log = VecDeque<(Instant, String, u64)>;

/// Windows in memory, one lock per window. A hop's windows are locked together, in key order (so
/// two hops never deadlock), which makes its checks and marks atomic without a global lock.
#[derive(Default)]
pub struct MemoryWindows {
    windows: DashMap<String, Arc<Mutex<Log>>>,
    /// Acquisitions so far, to sweep idle windows now and then.
    calls: AtomicU64,
}

/// Idle windows (every mark older than the window) are swept every this many acquisitions, so a
/// process serving many callers over time does not keep a window per caller it ever saw.
const SWEEP_EVERY: u64 = 4096;

impl MemoryWindows {
    /// No windows yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Windows::acquire`] at `now`, synchronously.
    pub fn acquire_at(&self, marks: &[Mark], now: Instant) -> Result<(), Tripped> {
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
        let mut order: Vec<usize> = (0..marks.len()).collect();
        order.sort_by(|a, b| marks[*a].key.cmp(&marks[*b].key));
        order.dedup_by(|a, b| marks[*a].key == marks[*b].key);
        let logs: Vec<(String, Arc<Mutex<Log>>)> = order
            .iter()
            .map(|&i| {
                let key = &marks[i].key;
                (key.clone(), self.windows.entry(key.clone()).or_default().clone())
            })
            .collect();
        let mut guards: Vec<(&str, MutexGuard<'_, Log>)> = logs
            .iter()
            .map(|(key, log)| (key.as_str(), log.lock().unwrap_or_else(PoisonError::into_inner)))
            .collect();
        for (_, log) in &mut guards {
            while log.front().is_some_and(|(at, _, _)| now.saturating_duration_since(*at) >= WINDOW) {
                log.pop_front();
            }
        }
        let log_of = |guards: &[(&str, MutexGuard<'_, Log>)], key: &str| {
            guards.iter().position(|(k, _)| *k == key).unwrap_or_default()
        };
        for (index, mark) in marks.iter().enumerate() {
            let Some(limit) = mark.limit else { continue };
            let log = &guards[log_of(&guards, &mark.key)].1;
            if log.iter().any(|(_, member, weight)| *member == mark.member && *weight == mark.weight) {
                continue;
            }
            let total: u64 = log.iter().map(|(_, _, w)| w).sum();
            let need = mark.weight.max(1);
            if total + need > limit {
                return Err(Tripped { index, retry_after: wait(log, total, need, limit, now) });
            }
        }
        for mark in marks.iter().filter(|m| m.weight > 0) {
            let i = log_of(&guards, &mark.key);
            let log = &mut guards[i].1;
            if !log.iter().any(|(_, member, weight)| *member == mark.member && *weight == mark.weight) {
                log.push_back((now, mark.member.clone(), mark.weight));
            }
        }
        Ok(())
    }
}

impl MemoryWindows {
    /// Drops windows whose marks have all expired. Only windows nobody else holds are dropped (the
    /// map's shard lock keeps anyone from taking one meanwhile), so no mark is ever added to a
    /// window that is no longer in the map.
    fn sweep(&self, now: Instant) {
        self.windows.retain(|_, log| {
            if Arc::strong_count(log) > 1 {
                return true;
            }
            log.lock().map_or(true, |l| {
                l.back().is_some_and(|(at, _, _)| now.saturating_duration_since(*at) < WINDOW)
            })
        });
    }

    /// How many windows are kept.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no window is kept.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// How long until enough of `log`'s oldest marks expire to make room for `need`.
fn wait(log: &Log, total: u64, need: u64, limit: u64, now: Instant) -> Duration {
    let mut freed = 0;
    for (at, _, weight) in log {
        freed += weight;
        if total - freed + need <= limit {
            return (*at + WINDOW).saturating_duration_since(now);
        }
    }
    // More than the limit alone (a limit of 0, or a mark heavier than the limit): a full window.
    WINDOW
}

#[async_trait]
impl Windows for MemoryWindows {
    async fn acquire(&self, marks: &[Mark]) -> Result<(), Tripped> {
        self.acquire_at(marks, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(key: &str, member: &str, limit: u64) -> Mark {
        Mark { key: key.into(), member: member.into(), weight: 1, limit: Some(limit), label: key.into() }
    }

    #[test]
    fn a_window_admits_its_limit_then_says_when_the_oldest_mark_expires() {
        let w = MemoryWindows::new();
        let t0 = Instant::now();
        for n in 0..3 {
            assert!(
                w.acquire_at(&[query("u", &format!("r{n}"), 3)], t0 + Duration::from_secs(n * 10)).is_ok()
            );
        }
        let tripped = w.acquire_at(&[query("u", "r3", 3)], t0 + Duration::from_secs(30)).unwrap_err();
        assert_eq!(tripped, Tripped { index: 0, retry_after: Duration::from_secs(30) });
        assert!(w.acquire_at(&[query("u", "r3", 3)], t0 + Duration::from_secs(60)).is_ok(), "slid past r0");
    }

    #[test]
    fn a_request_counts_once_and_a_refused_hop_marks_nothing() {
        let w = MemoryWindows::new();
        let t = Instant::now();
        assert!(w.acquire_at(&[query("u", "r1", 1), query("a", "s1", 5)], t).is_ok());
        assert!(w.acquire_at(&[query("u", "r1", 1), query("a", "s2", 5)], t).is_ok(), "same request");
        let tripped = w.acquire_at(&[query("a", "s3", 5), query("u", "r2", 1)], t).unwrap_err();
        assert_eq!(tripped.index, 1, "the user limit tripped");
        // s3 was not marked: the agent window still has room for three more.
        for n in 4..7 {
            assert!(w.acquire_at(&[query("a", &format!("s{n}"), 5)], t).is_ok());
        }
        assert!(w.acquire_at(&[query("a", "s7", 5)], t).is_err());
    }

    #[test]
    fn idle_windows_are_swept() {
        let w = MemoryWindows::new();
        let t = Instant::now();
        for n in 0..SWEEP_EVERY - 1 {
            assert!(w.acquire_at(&[query(&format!("user-{n}"), "r", 1)], t).is_ok());
        }
        assert_eq!(w.len(), (SWEEP_EVERY - 1) as usize);
        assert!(w.acquire_at(&[query("late", "r", 1)], t + WINDOW).is_ok());
        assert_eq!(w.len(), 1, "only the live window is kept");
    }

    #[test]
    fn tokens_are_charged_after_the_call_and_checked_before_the_next() {
        let w = MemoryWindows::new();
        let t = Instant::now();
        let check =
            Mark { key: "t".into(), member: "s1".into(), weight: 0, limit: Some(100), label: "t".into() };
        assert!(w.acquire_at(std::slice::from_ref(&check), t).is_ok());
        let charge = Mark { weight: 150, limit: None, ..check.clone() };
        assert!(w.acquire_at(&[charge], t).is_ok(), "charging never refuses");
        let tripped = w.acquire_at(&[Mark { member: "s2".into(), ..check }], t).unwrap_err();
        assert_eq!(tripped.retry_after, WINDOW, "the window must slide past the whole call");
    }
}
