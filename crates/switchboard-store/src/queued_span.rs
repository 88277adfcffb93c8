//! A span as the writers take it: its attributes already written as JSON text and its usage row
//! already derived.
//!
//! Both are done when the span is queued, on the thread that recorded it. A span's attributes are
//! a map of a few dozen small allocations; freed by the writer thread, each went back to another
//! thread's allocator arena, under that arena's lock (a CPU profile of `switchboard serve` put
//! dropping queued spans at a quarter of the writer thread's time). Freed where they were made,
//! they are cheap, and the writer is left with one string to store.

use crate::usage::UsageRow;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use switchboard_core::{SpanKind, SpanRecord, SpanStatus};

/// The room first given to a span's attributes' JSON. Most spans' take 0.6–1.5 kB, but the writer
/// (sonic-rs) asks for room for the worst case of each string before escaping it, six times its
/// length: a span with a 350-byte `mlflow.spanInputs` needs 2.5 kB free while writing it, which
/// would grow 2 kB to 4 kB by a copy.
const ATTRIBUTES_CAPACITY: usize = 4096;

/// A queued span. It is written to the spill file exactly as a [`SpanRecord`] is, and read back
/// from one as a `SpanRecord`, so spill files from before it replay unchanged.
#[derive(Debug, Serialize)]
pub(crate) struct QueuedSpan {
    pub(crate) request_id: String,
    pub(crate) trace_id: String,
    pub(crate) span_id: String,
    pub(crate) parent_id: Option<String>,
    pub(crate) name: String,
    pub(crate) kind: SpanKind,
    pub(crate) agent: Option<String>,
    pub(crate) start_unix_nano: u64,
    pub(crate) end_unix_nano: u64,
    pub(crate) status: SpanStatus,
    pub(crate) status_message: Option<String>,
    /// The attributes as a JSON object.
    #[serde(serialize_with = "json_object")]
    pub(crate) attributes: String,
    /// The usage (chargeback) row of an LLM hop's span.
    #[serde(skip)]
    pub(crate) usage: Option<UsageRow>,
}

impl From<SpanRecord> for QueuedSpan {
    fn from(span: SpanRecord) -> Self {
        let usage = UsageRow::from_span(&span);
        let mut json = Vec::with_capacity(ATTRIBUTES_CAPACITY);
        // A map of strings to JSON values always serializes, into valid UTF-8.
        let attributes = match switchboard_core::write_json(&mut json, &span.attributes) {
            Ok(()) => String::from_utf8(json).unwrap_or_else(|_| "{}".to_string()),
            Err(_) => "{}".to_string(),
        };
        // What is not moved, the attribute map, is freed here, on the thread that made it.
        Self {
            request_id: span.request_id,
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_id: span.parent_id,
            name: span.name,
            kind: span.kind,
            agent: span.agent,
            start_unix_nano: span.start_unix_nano,
            end_unix_nano: span.end_unix_nano,
            status: span.status,
            status_message: span.status_message,
            attributes,
            usage,
        }
    }
}

impl<'de> Deserialize<'de> for QueuedSpan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SpanRecord::deserialize(deserializer).map(Self::from)
    }
}

/// Writes `text`, JSON made by [`QueuedSpan::from`], as the object it is rather than as a string.
/// Only spilling a span takes this path, so checking the text again costs nothing that matters.
fn json_object<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    let raw: &RawValue = serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
    raw.serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn llm_span() -> SpanRecord {
        let attributes = json!({
            "switchboard.hop.kind": "llm", "gen_ai.request.model": "m",
            "gen_ai.usage.input_tokens": 7, "note": "a \"quoted\" word",
        });
        SpanRecord {
            request_id: "r".into(),
            trace_id: "t".into(),
            span_id: "s".into(),
            parent_id: Some("p".into()),
            name: "chat m".into(),
            kind: SpanKind::Llm,
            agent: Some("a".into()),
            start_unix_nano: 1_000_000,
            end_unix_nano: 3_000_000,
            status: SpanStatus::Ok,
            status_message: None,
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn spills_as_a_span_record_and_reads_back_the_same() {
        let span = llm_span();
        let queued = QueuedSpan::from(span.clone());
        let line = serde_json::to_string(&queued).unwrap();
        assert_eq!(serde_json::from_str::<SpanRecord>(&line).unwrap(), span);
        assert_eq!(serde_json::to_value(&queued).unwrap(), serde_json::to_value(&span).unwrap());

        let back: QueuedSpan = serde_json::from_str(&line).unwrap();
        assert_eq!(back.attributes, queued.attributes);
        assert_eq!(back.usage, UsageRow::from_span(&span));
    }

    #[test]
    fn derives_the_usage_row_of_an_llm_span_only() {
        let queued = QueuedSpan::from(llm_span());
        let usage = queued.usage.expect("an LLM span has a usage row");
        assert_eq!((usage.model.as_str(), usage.prompt_tokens, usage.latency_ms), ("m", 7, 2));

        let mut tool = llm_span();
        tool.attributes.insert("switchboard.hop.kind".into(), json!("http"));
        assert!(QueuedSpan::from(tool).usage.is_none());
    }
}
