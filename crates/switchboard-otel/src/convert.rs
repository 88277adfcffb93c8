//! Conversion of Switchboard's [`SpanRecord`] into the OpenTelemetry SDK's [`SpanData`].

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_core::{SpanRecord, SpanStatus};

/// Hop kinds whose span is a call out of the process, which OpenTelemetry calls a CLIENT span.
const CLIENT_HOPS: [&str; 4] = ["llm", "http", "mcp", "sql"];

/// Why a record cannot be exported. Carries no attribute values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadId {
    Trace,
    Span,
    Parent,
}

impl BadId {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace id is not 32 hex digits (or is all zero)",
            Self::Span => "span id is not 16 hex digits (or is all zero)",
            Self::Parent => "parent span id is not 16 hex digits",
        }
    }
}

/// Converts one record. Ids must be the W3C hex forms Switchboard produces; anything else is
/// refused rather than exported under an id that would break the trace's parent links.
pub(crate) fn span_data(record: &SpanRecord, scope: &InstrumentationScope) -> Result<SpanData, BadId> {
    let trace_id = hex_id(&record.trace_id, 32)
        .and_then(|v| TraceId::from_hex(v).ok())
        .filter(|id| *id != TraceId::INVALID)
        .ok_or(BadId::Trace)?;
    let span_id = hex_id(&record.span_id, 16)
        .and_then(|v| SpanId::from_hex(v).ok())
        .filter(|id| *id != SpanId::INVALID)
        .ok_or(BadId::Span)?;
    let parent_span_id = match &record.parent_id {
        None => SpanId::INVALID,
        Some(parent) => hex_id(parent, 16).and_then(|v| SpanId::from_hex(v).ok()).ok_or(BadId::Parent)?,
    };

    let hop_kind = record.attributes.get("switchboard.hop.kind").and_then(|v| v.as_str());
    let span_kind = if hop_kind.is_some_and(|k| CLIENT_HOPS.contains(&k)) {
        SpanKind::Client
    } else {
        SpanKind::Internal
    };

    let mut attributes: Vec<KeyValue> =
        record.attributes.iter().filter_map(|(key, value)| attribute(key, value)).collect();
    // MLflow reads the span type from this attribute; the hop layer sets it, other producers may
    // not, and the record's kind is the same information.
    let mut add_missing = |key: &'static str, value: &str| {
        if !record.attributes.contains_key(key) {
            attributes.push(KeyValue::new(key, value.to_string()));
        }
    };
    add_missing("mlflow.spanType", record.kind.as_str());
    // Phoenix reads OpenInference names, not MLflow's: the kind (its AGENT, CHAIN, TOOL, LLM and
    // RETRIEVER are MLflow's span types, spelled the same) and the inputs and outputs as
    // `input.value` / `output.value`. Derived here, on export, so every producer's spans get them
    // and the stored spans keep one copy.
    add_missing("openinference.span.kind", record.kind.as_str());
    for (mlflow, value, mime) in [
        ("mlflow.spanInputs", "input.value", "input.mime_type"),
        ("mlflow.spanOutputs", "output.value", "output.mime_type"),
    ] {
        if let Some(text) = record.attributes.get(mlflow).and_then(|v| v.as_str()) {
            add_missing(value, text);
            add_missing(mime, "application/json");
        }
    }
    add_missing("switchboard.request_id", &record.request_id);
    if let Some(agent) = &record.agent {
        add_missing("gen_ai.agent.name", agent);
    }

    let status = match record.status {
        SpanStatus::Ok => Status::Ok,
        SpanStatus::Error => Status::error(record.status_message.clone().unwrap_or_default()),
    };

    Ok(SpanData {
        span_context: SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, false, TraceState::default()),
        parent_span_id,
        parent_span_is_remote: false,
        span_kind,
        name: record.name.clone().into(),
        start_time: time(record.start_unix_nano),
        end_time: time(record.end_unix_nano.max(record.start_unix_nano)),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    })
}

/// `value` if it is exactly `len` hex digits.
fn hex_id(value: &str, len: usize) -> Option<&str> {
    (value.len() == len && value.bytes().all(|b| b.is_ascii_hexdigit())).then_some(value)
}

fn time(unix_nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(unix_nanos)
}

/// Scalars map to OpenTelemetry scalars; arrays and objects to their JSON text (backends show
/// those verbatim, and OpenTelemetry arrays cannot hold mixed types or nesting); `null` is
/// omitted, as OpenTelemetry has no null.
fn attribute(key: &str, value: &serde_json::Value) -> Option<KeyValue> {
    use serde_json::Value as J;
    let value = match value {
        J::Null => return None,
        J::Bool(b) => Value::Bool(*b),
        J::String(s) => Value::String(s.clone().into()),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::I64(i),
            // Integers beyond i64 would lose digits as f64; keep them exact as text.
            (None, Some(f)) if n.is_f64() => Value::F64(f),
            _ => Value::String(n.to_string().into()),
        },
        J::Array(_) | J::Object(_) => Value::String(value.to_string().into()),
    };
    Some(KeyValue::new(key.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_core::SpanKind as MlflowKind;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn record(kind: MlflowKind, hop: Option<&str>) -> SpanRecord {
        let mut attributes = serde_json::Map::new();
        if let Some(hop) = hop {
            attributes.insert("switchboard.hop.kind".into(), json!(hop));
        }
        attributes.insert("switchboard.caller.email".into(), json!("alice@example.com"));
        attributes.insert("count".into(), json!(3));
        attributes.insert("ratio".into(), json!(0.5));
        attributes.insert("huge".into(), json!(u64::MAX));
        attributes.insert("flag".into(), json!(true));
        attributes.insert("tags".into(), json!(["a", 1]));
        attributes.insert("obj".into(), json!({"k": "v"}));
        attributes.insert("nothing".into(), json!(null));
        attributes.insert("token_like".into(), json!("Bearer eyJhbGciOi.not-special"));
        SpanRecord {
            request_id: "req-1".into(),
            trace_id: TRACE.into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_id: Some("b7ad6b7169203331".into()),
            name: "execute_tool deals".into(),
            kind,
            agent: Some("sales".into()),
            start_unix_nano: 1_700_000_000_000_000_000,
            end_unix_nano: 1_700_000_000_500_000_000,
            status: SpanStatus::Ok,
            status_message: None,
            attributes,
        }
    }

    fn attr<'a>(data: &'a SpanData, key: &str) -> Option<&'a Value> {
        data.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("switchboard").build()
    }

    #[test]
    fn ids_times_status_and_attributes_convert() {
        let data = span_data(&record(MlflowKind::Tool, Some("sql")), &scope()).unwrap();
        assert_eq!(data.span_context.trace_id().to_string(), TRACE);
        assert_eq!(data.span_context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(data.span_context.is_sampled());
        assert_eq!(data.parent_span_id.to_string(), "b7ad6b7169203331");
        assert_eq!(data.name, "execute_tool deals");
        assert_eq!(data.span_kind, SpanKind::Client);
        assert_eq!(data.status, Status::Ok);
        assert_eq!(data.end_time.duration_since(data.start_time).unwrap(), Duration::from_millis(500));

        assert_eq!(attr(&data, "switchboard.caller.email"), Some(&Value::from("alice@example.com")));
        assert_eq!(attr(&data, "count"), Some(&Value::I64(3)));
        assert_eq!(attr(&data, "ratio"), Some(&Value::F64(0.5)));
        assert_eq!(attr(&data, "huge"), Some(&Value::from(u64::MAX.to_string())));
        assert_eq!(attr(&data, "flag"), Some(&Value::Bool(true)));
        assert_eq!(attr(&data, "tags"), Some(&Value::from(r#"["a",1]"#)));
        assert_eq!(attr(&data, "obj"), Some(&Value::from(r#"{"k":"v"}"#)));
        assert_eq!(attr(&data, "nothing"), None);
        // Attribute values are exported as recorded; keeping tokens out is the producers' job.
        assert_eq!(attr(&data, "token_like"), Some(&Value::from("Bearer eyJhbGciOi.not-special")));
        assert_eq!(attr(&data, "mlflow.spanType"), Some(&Value::from("TOOL")));
        assert_eq!(attr(&data, "openinference.span.kind"), Some(&Value::from("TOOL")));
        assert_eq!(attr(&data, "input.value"), None, "no inputs recorded, none invented");
        assert_eq!(attr(&data, "switchboard.request_id"), Some(&Value::from("req-1")));
        assert_eq!(attr(&data, "gen_ai.agent.name"), Some(&Value::from("sales")));
    }

    #[test]
    fn span_kind_follows_the_hop_kind() {
        for (hop, kind) in [
            (Some("llm"), SpanKind::Client),
            (Some("http"), SpanKind::Client),
            (Some("mcp"), SpanKind::Client),
            (Some("sql"), SpanKind::Client),
            (Some("agent"), SpanKind::Internal),
            (Some("tool"), SpanKind::Internal),
            (Some("retrieval"), SpanKind::Internal),
            (None, SpanKind::Internal),
        ] {
            assert_eq!(
                span_data(&record(MlflowKind::Agent, hop), &scope()).unwrap().span_kind,
                kind,
                "{hop:?}"
            );
        }
    }

    #[test]
    fn errors_roots_and_existing_span_types() {
        let mut r = record(MlflowKind::Llm, Some("llm"));
        r.status = SpanStatus::Error;
        r.status_message = Some("upstream: 502".into());
        r.parent_id = None;
        r.attributes.insert("mlflow.spanType".into(), json!("CUSTOM"));
        let data = span_data(&r, &scope()).unwrap();
        assert_eq!(data.status, Status::error("upstream: 502"));
        assert_eq!(data.parent_span_id, SpanId::INVALID);
        let types: Vec<_> =
            data.attributes.iter().filter(|kv| kv.key.as_str() == "mlflow.spanType").collect();
        assert_eq!(types.len(), 1, "an explicit span type is not duplicated");
        assert_eq!(types[0].value, Value::from("CUSTOM"));
    }

    #[test]
    fn phoenix_gets_the_kind_and_the_inputs_and_outputs() {
        for kind in
            [MlflowKind::Agent, MlflowKind::Chain, MlflowKind::Tool, MlflowKind::Llm, MlflowKind::Retriever]
        {
            let mut r = record(kind, None);
            r.attributes.insert("mlflow.spanInputs".into(), json!(r#"{"question":"q"}"#));
            r.attributes.insert("mlflow.spanOutputs".into(), json!(r#"{"answer":"a"}"#));
            let data = span_data(&r, &scope()).unwrap();
            assert_eq!(attr(&data, "openinference.span.kind"), Some(&Value::from(kind.as_str())));
            assert_eq!(attr(&data, "input.value"), Some(&Value::from(r#"{"question":"q"}"#)));
            assert_eq!(attr(&data, "output.value"), Some(&Value::from(r#"{"answer":"a"}"#)));
            assert_eq!(attr(&data, "input.mime_type"), Some(&Value::from("application/json")));
        }
    }

    #[test]
    fn malformed_ids_are_refused() {
        let mut r = record(MlflowKind::Tool, None);
        r.trace_id = "abc".into();
        assert_eq!(span_data(&r, &scope()).unwrap_err(), BadId::Trace);
        let mut r = record(MlflowKind::Tool, None);
        r.trace_id = "0".repeat(32);
        assert_eq!(span_data(&r, &scope()).unwrap_err(), BadId::Trace);
        let mut r = record(MlflowKind::Tool, None);
        r.span_id = "span-1".into();
        assert_eq!(span_data(&r, &scope()).unwrap_err(), BadId::Span);
        let mut r = record(MlflowKind::Tool, None);
        r.parent_id = Some("+0f067aa0ba902b7".into());
        assert_eq!(span_data(&r, &scope()).unwrap_err(), BadId::Parent);
    }
}
