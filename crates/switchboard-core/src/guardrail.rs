//! Guardrail settings: what text may cross the boundary, per direction. Enforced by
//! `switchboard_govern::guardrails`; declared endpoint-wide (`[guardrails]`) or per agent.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What to do with PII found in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiAction {
    /// Refuse the text.
    Block,
    /// Replace each finding with `[REDACTED_<KIND>]` and let the rest through.
    Mask,
    /// Let it through.
    #[default]
    None,
}

/// A kind of personal information the PII guardrail recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// A payment card number that passes the Luhn check.
    CardNumber,
    /// A US social security number.
    Ssn,
    /// An email address.
    Email,
    /// A phone number (North American or international `+` form).
    Phone,
}

impl PiiKind {
    /// Every kind, in the order they are looked for (cards before phones: a card number's digits
    /// would otherwise read as phone numbers).
    pub const ALL: [PiiKind; 4] = [Self::CardNumber, Self::Ssn, Self::Email, Self::Phone];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CardNumber => "card_number",
            Self::Ssn => "ssn",
            Self::Email => "email",
            Self::Phone => "phone",
        }
    }

    /// What replaces a finding of this kind in masked text.
    pub fn placeholder(self) -> &'static str {
        match self {
            Self::CardNumber => "[REDACTED_CARD_NUMBER]",
            Self::Ssn => "[REDACTED_SSN]",
            Self::Email => "[REDACTED_EMAIL]",
            Self::Phone => "[REDACTED_PHONE]",
        }
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The PII guardrail's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    /// What happens to PII in what goes in.
    #[serde(default)]
    pub input: PiiAction,
    /// What happens to PII in what comes back.
    #[serde(default)]
    pub output: PiiAction,
    /// The kinds looked for; all of them when empty.
    #[serde(default)]
    pub kinds: Vec<PiiKind>,
}

/// The topic guardrail's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Words and phrases whose presence blocks the text, in either direction.
    #[serde(default)]
    pub block: Vec<String>,
}

/// `[guardrails]`: endpoint-wide, or one agent's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    /// PII detection.
    #[serde(default)]
    pub pii: PiiConfig,
    /// The topic block list.
    #[serde(default)]
    pub topics: TopicConfig,
}

impl GuardrailConfig {
    /// Whether this configuration checks anything at all.
    pub fn is_active(&self) -> bool {
        self.pii.input != PiiAction::None
            || self.pii.output != PiiAction::None
            || !self.topics.block.is_empty()
    }
}
