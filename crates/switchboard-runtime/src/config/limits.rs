//! Validation of `[limits]`: every rate positive, every named agent and connection declared, and
//! a Redis URL this build can use.

use super::Problem;
use super::files::Files;
use super::model::Config;
use std::sync::Arc;
use switchboard_core::AgentSpec;
use switchboard_govern::limits::{LimitRules, Rate};

/// The Redis key prefix when `[limits] redis_prefix` is not given.
pub const DEFAULT_REDIS_PREFIX: &str = "switchboard";

/// Reports every problem of `[limits]` with its field.
pub(super) fn check_limits(
    config: &Config,
    files: &Files,
    agents: &[Arc<AgentSpec>],
    problems: &mut Vec<Problem>,
) {
    let file = files.main.label.as_str();
    let mut problem = |field: String, message: String| {
        problems.push(Problem { file: file.into(), field, message });
    };
    let limits = &config.limits;
    let mut rates: Vec<(String, &Rate)> =
        vec![("limits.endpoint".into(), &limits.endpoint), ("limits.user".into(), &limits.user)];
    rates.extend(limits.users.iter().map(|(name, rate)| (format!("limits.users.\"{name}\""), rate)));
    rates.extend(limits.groups.iter().map(|(name, rate)| (format!("limits.groups.{name}"), rate)));
    rates.extend(limits.agents.iter().map(|(name, rate)| (format!("limits.agents.{name}"), rate)));
    rates.extend(limits.connections.iter().map(|(name, rate)| (format!("limits.connections.{name}"), rate)));
    for (field, rate) in rates {
        for (unit, value) in [("qpm", rate.qpm), ("tpm", rate.tpm)] {
            if value == Some(0) {
                problem(format!("{field}.{unit}"), "must be at least 1 (omit it for no limit)".into());
            }
        }
    }
    for name in limits.agents.keys() {
        if !agents.iter().any(|a| &a.name == name) {
            problem(format!("limits.agents.{name}"), format!("no agent is named `{name}`"));
        }
    }
    for name in limits.connections.keys() {
        if !config.connections.iter().any(|c| &c.name == name) {
            problem(format!("limits.connections.{name}"), format!("no connection is named `{name}`"));
        }
    }
    if let Some(prefix) = &limits.redis_prefix
        && (prefix.is_empty() || prefix.contains(['{', '}']))
    {
        problem("limits.redis_prefix".into(), "must be non-empty, without `{` or `}`".into());
    }
    match limits.redis.as_deref() {
        None => {}
        Some("env:") => {
            problem("limits.redis".into(), "env: must name a variable, e.g. env:REDIS_URL".into())
        }
        Some(reference) if reference.starts_with("env:") => {}
        Some(url) => {
            if let Err(e) = check_redis_url(url) {
                problem("limits.redis".into(), e);
            }
        }
    }
}

/// Whether this build can use `url`; the message never repeats the URL (it may hold a password).
pub(crate) fn check_redis_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") {
        return Err(
            "rediss:// (TLS) is not supported by this build; use redis:// on a trusted network".into()
        );
    }
    if !url.starts_with("redis://") && !url.starts_with("redis+unix://") && !url.starts_with("unix://") {
        return Err("must be a redis:// URL or env:NAME".into());
    }
    switchboard_govern::limits::RedisWindows::new(url, DEFAULT_REDIS_PREFIX).map(drop).map_err(|e| e.message)
}

/// The configured limits as the gateway takes them.
pub fn rules(config: &Config) -> LimitRules {
    let l = &config.limits;
    LimitRules {
        per_caller_agent: u64::from(l.requests_per_minute),
        endpoint: l.endpoint,
        user: l.user,
        users: l.users.clone(),
        groups: l.groups.clone(),
        agents: l.agents.clone(),
        connections: l.connections.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_are_checked_without_being_repeated() {
        assert!(check_redis_url("redis://127.0.0.1:6379/0").is_ok());
        let e = check_redis_url("rediss://u:hunter2@h:6379").unwrap_err();
        assert!(e.contains("TLS") && !e.contains("hunter2"), "{e}");
        let e = check_redis_url("http://u:hunter2@h").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
