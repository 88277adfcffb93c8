//! Rate limits over sliding one-minute windows: queries per minute and tokens per minute, at the
//! levels an AI gateway offers (the whole endpoint, each user with overrides by name, each group,
//! each agent, each connection), counted in this process or, shared by every replica, in Redis.
//!
//! A window is a log of weighted marks (a query weighs 1, an LLM call its tokens) younger than a
//! minute; a limit admits a hop while the marks' total leaves room for it. Request-level marks
//! (endpoint, user, group queries) are keyed by the request id, so a request that fans out to
//! several agents counts once. Every check of one hop is atomic: either all of its marks are
//! added or, when one limit is reached, none.

mod memory;
mod redis;
mod rules;

pub use memory::MemoryWindows;
pub use redis::RedisWindows;
pub(crate) use rules::Phase;
pub use rules::{LimitRules, Rate};

use async_trait::async_trait;
use std::time::Duration;

/// The length of every window: limits are per minute.
pub const WINDOW: Duration = Duration::from_secs(60);

/// One mark to add to (or a limit to check against) one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The window's key, e.g. `user:q:alice@example.com`.
    pub key: String,
    /// What is counted: a request id (counted once however often it comes back) or a hop's span id.
    pub member: String,
    /// Its weight: 1 for a query, the tokens of an LLM call, 0 for a check that adds nothing.
    pub weight: u64,
    /// The window's limit; `None` adds the mark without checking (tokens are known only after
    /// the call, so they are charged afterwards).
    pub limit: Option<u64>,
    /// How the limit is named when it trips, e.g. `10 queries per minute for user alice@example.com`.
    pub label: String,
}

/// Which limit tripped and when it will have room again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tripped {
    /// The index of the tripped mark.
    pub index: usize,
    /// When the window will have room for it: the moment enough of its marks are a minute old.
    pub retry_after: Duration,
}

/// Where windows are kept.
#[async_trait]
pub trait Windows: Send + Sync {
    /// Checks every mark with a limit and, if none trips, adds every mark of non-zero weight.
    async fn acquire(&self, marks: &[Mark]) -> Result<(), Tripped>;
}
