//! Guardrails: what text may cross the boundary, in which direction.
//!
//! Two checks, as an AI gateway offers them:
//! - **PII**: payment card numbers (only digit runs that pass the Luhn check), US social security
//!   numbers, email addresses and phone numbers; per direction `block`, `mask` or `none`.
//! - **Topics**: a block list of words and phrases, matched on word boundaries, case-insensitively.
//!
//! [`Guardrails::check`] returns a [`Verdict`]. A verdict never carries the PII it found, only its
//! kinds, so it can go on spans, audit rows and error messages as it is.

use regex::Regex;
use serde::Serialize;
pub use switchboard_core::{GuardrailConfig, PiiAction, PiiConfig, PiiKind, TopicConfig};

/// Which way text is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the caller (or the supervisor) towards a model or sub-agent.
    Input,
    /// From a model or sub-agent back towards the caller.
    Output,
}

impl Direction {
    /// `input` or `output`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }

    /// The hop span attribute a verdict on text going this way is recorded under; the audit
    /// layer reads the output one to audit a withheld answer as blocked.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::Input => "switchboard.guardrail.input",
            Self::Output => "switchboard.guardrail.output",
        }
    }
}

/// The outcome of one check. Never holds the text's PII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found (or nothing configured).
    Pass,
    /// PII was replaced by placeholders; `text` is the masked text.
    Masked {
        /// The text with each finding replaced.
        text: String,
        /// What was found, each kind once, sorted.
        kinds: Vec<PiiKind>,
    },
    /// The text may not pass.
    Blocked {
        /// `pii` or `topic`.
        category: &'static str,
        /// What was found: PII kinds, or the blocked topic as configured.
        found: Vec<String>,
    },
}

impl Verdict {
    /// `pass`, `masked` or `blocked`, for span attributes and audit rows.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Masked { .. } => "masked",
            Self::Blocked { .. } => "blocked",
        }
    }

    /// A message for the caller naming the category and what kind of thing was found, never the
    /// matched text.
    pub fn message(&self, direction: Direction) -> Option<String> {
        let Self::Blocked { category, found } = self else { return None };
        let what = match *category {
            "pii" => format!("personal information ({})", found.join(", ")),
            _ => format!("a blocked topic ({})", found.join(", ")),
        };
        Some(match direction {
            Direction::Input => format!("the request was blocked by a guardrail: it contains {what}"),
            Direction::Output => {
                format!("the answer was withheld by a guardrail: it would have contained {what}")
            }
        })
    }
}

/// Compiled guardrails, built once and shared.
#[derive(Debug, Clone)]
pub struct Guardrails {
    input: PiiAction,
    output: PiiAction,
    detectors: Vec<(PiiKind, Regex)>,
    topics: Vec<(String, Regex)>,
}

/// A configuration that cannot be compiled (an empty or unusable topic).
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", self.field())]
pub struct GuardrailConfigError {
    /// The position of the offending topic.
    pub index: usize,
    /// Why it is refused.
    pub reason: String,
}

impl GuardrailConfigError {
    /// The offending field, as written in configuration.
    pub fn field(&self) -> String {
        format!("guardrails.topics.block[{}]", self.index)
    }
}

impl Guardrails {
    /// Compiles `config`.
    pub fn new(config: &GuardrailConfig) -> Result<Self, GuardrailConfigError> {
        let kinds: &[PiiKind] = if config.pii.kinds.is_empty() { &PiiKind::ALL } else { &config.pii.kinds };
        let detectors =
            PiiKind::ALL.iter().filter(|k| kinds.contains(k)).map(|&kind| (kind, detector(kind))).collect();
        let mut topics = Vec::with_capacity(config.topics.block.len());
        for (index, topic) in config.topics.block.iter().enumerate() {
            let words: Vec<String> = topic.split_whitespace().map(regex::escape).collect();
            if words.is_empty() {
                return Err(GuardrailConfigError { index, reason: "a topic must not be empty".into() });
            }
            // Any run of spaces between the phrase's words; word boundaries so "gun" spares "begun".
            let pattern = format!(r"(?i)\b{}\b", words.join(r"\s+"));
            let regex =
                Regex::new(&pattern).map_err(|e| GuardrailConfigError { index, reason: e.to_string() })?;
            topics.push((topic.trim().to_string(), regex));
        }
        Ok(Self { input: config.pii.input, output: config.pii.output, detectors, topics })
    }

    /// Whether anything is checked in `direction`.
    pub fn checks(&self, direction: Direction) -> bool {
        self.action(direction) != PiiAction::None || !self.topics.is_empty()
    }

    fn action(&self, direction: Direction) -> PiiAction {
        match direction {
            Direction::Input => self.input,
            Direction::Output => self.output,
        }
    }

    /// Checks `text` going in `direction`: blocked topics first, then PII.
    pub fn check(&self, direction: Direction, text: &str) -> Verdict {
        let topics: Vec<String> =
            self.topics.iter().filter(|(_, re)| re.is_match(text)).map(|(t, _)| t.clone()).collect();
        if !topics.is_empty() {
            return Verdict::Blocked { category: "topic", found: topics };
        }
        let action = self.action(direction);
        if action == PiiAction::None {
            return Verdict::Pass;
        }
        let findings = self.find_pii(text);
        if findings.is_empty() {
            return Verdict::Pass;
        }
        let mut kinds: Vec<PiiKind> = findings.iter().map(|f| f.kind).collect();
        kinds.sort();
        kinds.dedup();
        match action {
            PiiAction::Block => {
                Verdict::Blocked { category: "pii", found: kinds.iter().map(|k| k.to_string()).collect() }
            }
            PiiAction::Mask => Verdict::Masked { text: mask(text, &findings), kinds },
            PiiAction::None => Verdict::Pass,
        }
    }

    /// Every PII finding, non-overlapping, in text order. Earlier kinds win overlaps.
    fn find_pii(&self, text: &str) -> Vec<Finding> {
        let mut findings: Vec<Finding> = Vec::new();
        for (kind, regex) in &self.detectors {
            for m in regex.find_iter(text) {
                let overlaps = findings.iter().any(|f| m.start() < f.end && f.start < m.end());
                if !overlaps && valid(*kind, m.as_str()) {
                    findings.push(Finding { kind: *kind, start: m.start(), end: m.end() });
                }
            }
        }
        findings.sort_by_key(|f| f.start);
        findings
    }
}

/// One piece of PII in a text, by byte range.
#[derive(Debug, Clone, Copy)]
struct Finding {
    kind: PiiKind,
    start: usize,
    end: usize,
}

fn detector(kind: PiiKind) -> Regex {
    let pattern = match kind {
        // 13–19 digits, optionally grouped by single spaces or dashes; Luhn decides.
        PiiKind::CardNumber => r"\b\d(?:[ -]?\d){12,18}\b",
        // AAA-GG-SSSS, dashed or spaced (a bare nine-digit run is too often something else).
        PiiKind::Ssn => r"\b\d{3}[- ]\d{2}[- ]\d{4}\b",
        PiiKind::Email => r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",
        // +CC then 6–14 digits, or North American (NXX) NXX-XXXX with common separators.
        PiiKind::Phone => {
            r"(?:\+\d{1,3}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){1,4}\d{2,4}\b|(?:\b|\()\(?[2-9]\d{2}\)?[ .-]?[2-9]\d{2}[ .-]\d{4}\b)"
        }
    };
    // The patterns are constants; a failure here is a bug caught by the unit tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("guardrail pattern for {kind}: {e}"))
}

/// Checks that go beyond the pattern: Luhn for cards, the SSA's never-issued areas for SSNs.
fn valid(kind: PiiKind, matched: &str) -> bool {
    match kind {
        PiiKind::CardNumber => luhn(matched),
        PiiKind::Ssn => {
            let digits: Vec<u32> = matched.chars().filter_map(|c| c.to_digit(10)).collect();
            let number = |range: std::ops::Range<usize>| digits[range].iter().fold(0, |n, d| n * 10 + d);
            let (area, group, serial) = (number(0..3), number(3..5), number(5..9));
            area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
        }
        PiiKind::Email | PiiKind::Phone => true,
    }
}

/// The Luhn checksum over the digits of `s`.
fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if !i.is_multiple_of(2) {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn mask(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        out.push_str(&text[at..f.start]);
        out.push_str(f.kind.placeholder());
        at = f.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rails(input: PiiAction, output: PiiAction, topics: &[&str]) -> Guardrails {
        Guardrails::new(&GuardrailConfig {
            pii: PiiConfig { input, output, kinds: Vec::new() },
            topics: TopicConfig { block: topics.iter().map(|t| t.to_string()).collect() },
        })
        .expect("valid guardrails")
    }

    #[test]
    fn a_luhn_valid_card_is_masked_and_a_luhn_invalid_one_is_left_alone() {
        let g = rails(PiiAction::Mask, PiiAction::None, &[]);
        let verdict = g.check(Direction::Input, "charge 4111 1111 1111 1111 please");
        assert_eq!(
            verdict,
            Verdict::Masked {
                text: "charge [REDACTED_CARD_NUMBER] please".into(),
                kinds: vec![PiiKind::CardNumber]
            }
        );
        // One digit changed: fails Luhn, so it is just a number.
        assert_eq!(g.check(Direction::Input, "order 4111 1111 1111 1112 shipped"), Verdict::Pass);
        assert_eq!(
            g.check(Direction::Input, "card 5500-0000-0000-0004"),
            Verdict::Masked { text: "card [REDACTED_CARD_NUMBER]".into(), kinds: vec![PiiKind::CardNumber] }
        );
    }

    #[test]
    fn ssns_are_found_but_never_issued_areas_are_not() {
        let g = rails(PiiAction::Block, PiiAction::None, &[]);
        let verdict = g.check(Direction::Input, "my ssn is 123-45-6789");
        assert_eq!(verdict, Verdict::Blocked { category: "pii", found: vec!["ssn".into()] });
        let message = verdict.message(Direction::Input).unwrap();
        assert!(message.contains("ssn") && !message.contains("6789"), "{message}");
        for never_issued in ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000"] {
            assert_eq!(g.check(Direction::Input, never_issued), Verdict::Pass, "{never_issued}");
        }
    }

    #[test]
    fn emails_and_phones_are_masked_in_order() {
        let g = rails(PiiAction::None, PiiAction::Mask, &[]);
        let text = "write to ann.lee+x@corp.example.com or call (415) 555-2671 / +44 20 7946 0958";
        let Verdict::Masked { text: masked, kinds } = g.check(Direction::Output, text) else {
            panic!("not masked")
        };
        assert_eq!(masked, "write to [REDACTED_EMAIL] or call [REDACTED_PHONE] / [REDACTED_PHONE]");
        assert_eq!(kinds, vec![PiiKind::Email, PiiKind::Phone]);
        // Input is not checked for PII in this configuration.
        assert_eq!(g.check(Direction::Input, text), Verdict::Pass);
    }

    #[test]
    fn ordinary_business_numbers_are_not_pii() {
        let g = rails(PiiAction::Block, PiiAction::Block, &[]);
        for text in [
            "who must approve a 25% discount on a 40000 deal?",
            "revenue by region for 2024-05",
            "top 3 deals over $1,200,000",
            "deal 2024-0001 closed on 2024-03-15",
        ] {
            assert_eq!(g.check(Direction::Input, text), Verdict::Pass, "{text}");
        }
    }

    #[test]
    fn topics_block_whole_words_and_phrases_in_both_directions() {
        let g = rails(PiiAction::None, PiiAction::None, &["insider trading", "layoffs"]);
        let verdict = g.check(Direction::Output, "Plans for LAYOFFS next quarter");
        assert_eq!(verdict, Verdict::Blocked { category: "topic", found: vec!["layoffs".into()] });
        assert!(verdict.message(Direction::Output).unwrap().contains("withheld"));
        assert!(matches!(g.check(Direction::Input, "is this insider\n trading?"), Verdict::Blocked { .. }));
        assert_eq!(g.check(Direction::Input, "the insiders traded"), Verdict::Pass);
    }

    #[test]
    fn only_the_configured_kinds_are_looked_for() {
        let g = Guardrails::new(&GuardrailConfig {
            pii: PiiConfig { input: PiiAction::Block, output: PiiAction::None, kinds: vec![PiiKind::Ssn] },
            topics: TopicConfig::default(),
        })
        .unwrap();
        assert_eq!(g.check(Direction::Input, "mail bob@example.com"), Verdict::Pass);
        assert!(matches!(g.check(Direction::Input, "ssn 123-45-6789"), Verdict::Blocked { .. }));
    }

    #[test]
    fn an_empty_topic_is_a_configuration_error_naming_its_position() {
        let err = Guardrails::new(&GuardrailConfig {
            pii: PiiConfig::default(),
            topics: TopicConfig { block: vec!["ok".into(), "  ".into()] },
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "guardrails.topics.block[1]: a topic must not be empty");
    }
}
