//! `switchboard usage`: LLM usage totals from the store's usage table, for chargeback.

use std::path::Path;
use std::process::ExitCode;
use switchboard_core::{Error, Result, unix_nanos_now};
use switchboard_store::UsageGroup;

/// Prints the totals (requests, calls, prompt and completion tokens) since `since`, grouped by
/// `by` (`user`, `group`, `agent` or `model`) or overall.
pub async fn run(
    since: Option<&str>,
    by: Option<&str>,
    config: Option<&Path>,
    as_json: bool,
) -> Result<ExitCode> {
    // Arguments first: a typo should not wait for the store.
    let since_ms = since.map(|s| parse_since(s, now_unix_ms())).transpose()?;
    let group = by.map(UsageGroup::parse).transpose()?;
    let store = super::store(config).await?;
    let totals = store.usage_totals(since_ms, group).await?;
    if as_json {
        let body = serde_json::json!({"since_unix_ms": since_ms, "by": by, "totals": totals});
        println!("{}", serde_json::to_string_pretty(&body).map_err(|e| Error::internal(e.to_string()))?);
        return Ok(ExitCode::SUCCESS);
    }
    if totals.iter().all(|t| t.calls == 0) {
        println!("no LLM usage recorded{}", since.map(|s| format!(" since {s}")).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let heading = by.unwrap_or("total");
    println!(
        "{heading:<32} {:>9} {:>7} {:>14} {:>17} {:>13}",
        "requests", "calls", "prompt_tokens", "completion_tokens", "avg_latency_ms"
    );
    for t in &totals {
        let key = t.key.as_deref().map_or("all", |k| if k.is_empty() { "(none)" } else { k });
        println!(
            "{key:<32} {:>9} {:>7} {:>14} {:>17} {:>13}",
            t.requests,
            t.calls,
            t.prompt_tokens,
            t.completion_tokens,
            t.latency_ms.checked_div(t.calls).unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn now_unix_ms() -> u64 {
    unix_nanos_now() / 1_000_000
}

/// `--since`: a duration back from `now_ms` (`90s`, `15m`, `2h`, `7d`), or a UTC time
/// (`2026-12-01`, `2026-12-01T09:30:00Z`), as milliseconds since the epoch.
pub(crate) fn parse_since(text: &str, now_ms: u64) -> Result<u64> {
    let text = text.trim();
    let bad = || {
        Error::invalid(format!(
            "--since `{text}`: expected a duration (90s, 15m, 2h, 7d) or a UTC time \
             (2026-12-01 or 2026-12-01T09:30:00Z)"
        ))
    };
    if text.len() >= 10 && text.as_bytes().get(4) == Some(&b'-') {
        return parse_utc(text).ok_or_else(bad);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    Ok(now_ms.saturating_sub(seconds.saturating_mul(1000)))
}

/// `YYYY-MM-DD`, optionally followed by `THH:MM[:SS]` and an optional `Z`, read as UTC.
fn parse_utc(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm) = (t.next()??, t.next()??);
    let ss = t.next().unwrap_or(Some(0))?;
    if t.next().is_some() || !(0..24).contains(&hh) || !(0..60).contains(&mm) || !(0..61).contains(&ss) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), proleptic Gregorian.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_utc_times() {
        let now = 1_764_583_200_000; // 2025-12-01T10:00:00Z
        assert_eq!(parse_since("15m", now).unwrap(), now - 900_000);
        assert_eq!(parse_since("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(parse_since("7d", now).unwrap(), now - 604_800_000);
        assert_eq!(parse_since("2025-12-01T10:00:00Z", 0).unwrap(), now);
        assert_eq!(parse_since("2025-12-01", 0).unwrap(), now - 36_000_000);
        assert_eq!(parse_since("1970-01-01T00:01", 0).unwrap(), 60_000);
        for bad in ["", "15", "15x", "m", "2025-13-01", "2025-12-01T25:00Z", "yesterday"] {
            let e = parse_since(bad, now).unwrap_err();
            assert!(e.message.contains("--since"), "{bad}: {}", e.message);
        }
    }
}
