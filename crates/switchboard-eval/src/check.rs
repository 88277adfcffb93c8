//! The deterministic checks: agents, outcome, tool trajectory, answer and retrieval recall.

use crate::case::{AgentsMatch, AnswerExpect, CitesMatch, Outcome, TrajectoryMatch};
use regex::RegexBuilder;

/// Whether the routed agents match the expected ones. An expected clarification matches only a
/// clarification (`clarified`), and a clarification matches nothing else.
pub fn routing(
    expected: &[String],
    mode: AgentsMatch,
    outcome: Outcome,
    routed: &[String],
    clarified: bool,
) -> bool {
    if outcome == Outcome::Clarify {
        return clarified;
    }
    if clarified || routed.is_empty() {
        return false;
    }
    match mode {
        AgentsMatch::Ordered => expected == routed,
        AgentsMatch::Set => {
            let mut a: Vec<&String> = expected.iter().collect();
            let mut b: Vec<&String> = routed.iter().collect();
            a.sort();
            a.dedup();
            b.sort();
            b.dedup();
            a == b
        }
    }
}

/// Whether the expected outcome happened. `denied` and `rate_limited` are met when at least one
/// proposed agent was refused that way (a two-part question may answer its other half);
/// `ok` and `clarify` need the run's status.
pub fn outcome(expected: Outcome, status: &str, step_statuses: &[(&str, Option<u16>)]) -> bool {
    match expected {
        Outcome::Ok => status == "ok",
        Outcome::Clarify => status == "clarify",
        Outcome::Denied => step_statuses.iter().any(|(s, _)| *s == "denied"),
        Outcome::RateLimited => step_statuses.iter().any(|(_, code)| *code == Some(429)),
    }
}

/// The observed outcome's name for reports.
pub fn observed_outcome(status: &str, step_statuses: &[(&str, Option<u16>)]) -> &'static str {
    match status {
        "clarify" => "clarify",
        "ok" => "ok",
        _ if step_statuses.iter().any(|(_, c)| *c == Some(429)) => "rate_limited",
        "denied" => "denied",
        _ => "error",
    }
}

/// Whether the tool calls made match the expected ones.
pub fn trajectory(expected: &[String], mode: TrajectoryMatch, actual: &[String]) -> bool {
    match mode {
        TrajectoryMatch::Exact => expected == actual,
        TrajectoryMatch::InOrder => {
            let mut rest = actual.iter();
            expected.iter().all(|e| rest.any(|a| a == e))
        }
        TrajectoryMatch::AnyOrder => {
            let mut pool: Vec<&String> = actual.iter().collect();
            expected.iter().all(|e| match pool.iter().position(|a| *a == e) {
                Some(i) => {
                    pool.swap_remove(i);
                    true
                }
                None => false,
            })
        }
    }
}

/// Runs every deterministic answer check; returns the failures (empty: all passed).
pub fn answer(expect: &AnswerExpect, text: &str, cited: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    let lower = text.to_lowercase();
    for needle in &expect.contains {
        if !lower.contains(&needle.to_lowercase()) {
            failures.push(format!("answer lacks \"{needle}\""));
        }
    }
    if let Some(pattern) = &expect.regex {
        match RegexBuilder::new(pattern).build() {
            Ok(re) if re.is_match(text) => {}
            Ok(_) => failures.push(format!("answer does not match /{pattern}/")),
            Err(e) => failures.push(format!("regex /{pattern}/ is invalid: {e}")),
        }
    }
    if let Some(equals) = &expect.equals
        && text.trim() != equals.trim()
    {
        failures.push("answer is not the expected text".into());
    }
    if let Some(n) = &expect.number
        && !numbers(text).iter().any(|x| (x - n.value).abs() <= n.tolerance)
    {
        failures.push(format!("answer has no number within {} of {}", n.tolerance, n.value));
    }
    if !expect.cites.is_empty() {
        let hit = |id: &String| cited.contains(id);
        let ok = match expect.cites_match {
            CitesMatch::All => expect.cites.iter().all(hit),
            CitesMatch::Any => expect.cites.iter().any(hit),
        };
        if !ok {
            let missing: Vec<&str> =
                expect.cites.iter().filter(|c| !hit(c)).map(String::as_str).take(5).collect();
            failures.push(format!("does not cite {}", missing.join(", ")));
        }
    }
    failures
}

/// Share of `expected` among the first `k` of `cited`.
pub fn recall_at(k: usize, expected: &[String], cited: &[String]) -> f64 {
    if expected.is_empty() {
        return 1.0;
    }
    let top = &cited[..cited.len().min(k)];
    expected.iter().filter(|e| top.contains(e)).count() as f64 / expected.len() as f64
}

/// The numbers written in `text`: `2,240,000`, `-3.5`, `$40`, `25%`.
pub fn numbers(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            || (chars[i] == '-'
                && chars.get(i + 1).is_some_and(char::is_ascii_digit)
                && (i == 0 || !chars[i - 1].is_alphanumeric()));
        if !starts_number || (i > 0 && (chars[i - 1].is_ascii_digit() || chars[i - 1] == '.')) {
            i += 1;
            continue;
        }
        let mut s = String::new();
        if chars[i] == '-' {
            s.push('-');
            i += 1;
        }
        while i < chars.len() {
            let c = chars[i];
            let digit_follows = chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if c.is_ascii_digit() || (c == '.' && digit_follows && !s.contains('.')) {
                s.push(c);
            } else if c == ',' && thousands_follow(&chars[i + 1..]) && !s.contains('.') {
                // A thousands separator (exactly three digits follow), not a list comma: skip it.
            } else {
                break;
            }
            i += 1;
        }
        if let Ok(v) = s.parse::<f64>() {
            out.push(v);
        }
    }
    out
}

/// Whether `rest` starts with exactly three digits, as after a thousands separator.
fn thousands_follow(rest: &[char]) -> bool {
    rest.len() >= 3
        && rest[..3].iter().all(char::is_ascii_digit)
        && !rest.get(3).is_some_and(char::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::NumberExpect;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn trajectories_match_by_mode() {
        let actual = s(&["deal_desk", "discount_policy", "deals"]);
        assert!(trajectory(&s(&["deal_desk", "deals"]), TrajectoryMatch::InOrder, &actual));
        assert!(!trajectory(&s(&["deals", "deal_desk"]), TrajectoryMatch::InOrder, &actual));
        assert!(trajectory(&s(&["deals", "deal_desk"]), TrajectoryMatch::AnyOrder, &actual));
        assert!(!trajectory(&s(&["deals", "deals"]), TrajectoryMatch::AnyOrder, &actual));
        assert!(!trajectory(&s(&["deal_desk", "deals"]), TrajectoryMatch::Exact, &actual));
        assert!(trajectory(&actual, TrajectoryMatch::Exact, &actual));
    }

    #[test]
    fn routing_compares_sets_or_order_and_clarifications() {
        let e = s(&["sales", "deal_desk"]);
        assert!(routing(&e, AgentsMatch::Set, Outcome::Ok, &s(&["deal_desk", "sales"]), false));
        assert!(!routing(&e, AgentsMatch::Ordered, Outcome::Ok, &s(&["deal_desk", "sales"]), false));
        assert!(!routing(&e, AgentsMatch::Set, Outcome::Ok, &s(&["sales"]), false));
        assert!(routing(&[], AgentsMatch::Set, Outcome::Clarify, &[], true));
        assert!(!routing(&[], AgentsMatch::Set, Outcome::Clarify, &s(&["sales"]), false));
    }

    #[test]
    fn answer_checks_report_each_failure() {
        let expect = AnswerExpect {
            contains: s(&["west", "North"]),
            regex: Some(r"\d{3}".into()),
            number: Some(NumberExpect { value: 2_240_000.0, tolerance: 0.5 }),
            cites: s(&["travel", "expenses"]),
            cites_match: CitesMatch::Any,
            ..AnswerExpect::default()
        };
        let failures = answer(&expect, "| West | 2,240,000 |", &s(&["travel#2", "expenses"]));
        assert_eq!(failures, ["answer lacks \"North\""]);
        let failures = answer(&expect, "nothing", &[]);
        assert_eq!(failures.len(), 5, "{failures:?}");
    }

    #[test]
    fn numbers_are_read_as_written() {
        assert_eq!(
            numbers("a 25% discount on a $40,000 deal, -3.5 and 1,2"),
            [25.0, 40000.0, -3.5, 1.0, 2.0]
        );
        assert_eq!(numbers("TCK-1004 v2"), [1004.0, 2.0]);
    }

    #[test]
    fn recall_counts_only_the_first_k() {
        let cited = s(&["a", "b", "c", "d", "e", "f"]);
        assert_eq!(recall_at(5, &s(&["a", "f"]), &cited), 0.5);
        assert_eq!(recall_at(5, &s(&["z"]), &cited), 0.0);
    }

    #[test]
    fn denial_is_met_by_one_denied_step() {
        assert!(outcome(Outcome::Denied, "ok", &[("ok", None), ("denied", Some(403))]));
        assert!(!outcome(Outcome::Denied, "clarify", &[]));
        assert!(outcome(Outcome::RateLimited, "error", &[("error", Some(429))]));
        assert_eq!(observed_outcome("error", &[("error", Some(429))]), "rate_limited");
    }
}
