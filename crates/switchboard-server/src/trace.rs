//! Traces over HTTP: `GET /v1/traces/{id}` and the inline `databricks_output.trace` of
//! `return_trace`. Both are MLflow's trace dictionary in the V3 format, what
//! `mlflow.entities.Trace.from_dict` loads (MLflow 3.x, `Trace.to_dict`): `info` is a V3
//! `TraceInfo` (`trace_id` `tr-<OTel trace id>`, Switchboard's request id as
//! `client_request_id`), and `data.spans` are MLflow spans (see [`span_json`]).

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::net::SocketAddr;
use switchboard_core::{Caller, Error, SpanRecord, SpanStatus};

/// The trace of one request, `spans` in start order, as MLflow's V3 trace dictionary.
pub(crate) fn trace_json(request_id: &str, spans: &[SpanRecord]) -> Value {
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    // The root is the span whose parent is not part of this request (an incoming traceparent's
    // span lives in the caller's process).
    let root = spans.iter().find(|s| s.parent_id.as_deref().is_none_or(|p| !ids.contains(p)));
    let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
    let failed = root.is_some_and(|r| r.status == SpanStatus::Error);
    let trace_id = format!("tr-{}", root.map_or("", |r| r.trace_id.as_str()));
    let spans: Vec<Value> = spans.iter().map(|s| span_json(s, &trace_id)).collect();

    // Metadata values are strings; user and session are what MLflow's UI groups traces by.
    let mut metadata = Map::new();
    metadata.insert("mlflow.trace_schema.version".into(), json!("3"));
    metadata.insert("switchboard.request_id".into(), json!(request_id));
    if let Some(root) = root {
        let attr = |keys: &[&str]| {
            keys.iter().find_map(|k| root.attributes.get(*k).and_then(Value::as_str).map(str::to_owned))
        };
        if let Some(user) = attr(&["mlflow.trace.user", "user.id", "enduser.id"]) {
            metadata.insert("mlflow.trace.user".into(), json!(user));
        }
        if let Some(session) = attr(&["mlflow.trace.session", "session.id"]) {
            metadata.insert("mlflow.trace.session".into(), json!(session));
        }
    }
    let mut tags = Map::new();
    if let Some(root) = root {
        tags.insert("mlflow.traceName".into(), json!(root.name));
    }
    json!({
        "info": {
            "trace_id": trace_id,
            "client_request_id": request_id,
            // Not logged to any experiment: the trace is served by Switchboard, not stored in MLflow.
            "trace_location": {"type": "TRACE_LOCATION_TYPE_UNSPECIFIED"},
            // A protobuf JSON Timestamp, which is how TraceInfo.from_dict reads it.
            "request_time": rfc3339_millis(start / 1_000_000),
            "execution_duration_ms": end.saturating_sub(start) / 1_000_000,
            "state": if failed { "ERROR" } else { "OK" },
            "trace_metadata": metadata,
            "tags": tags,
            "assessments": [],
        },
        "data": {"spans": spans},
    })
}

/// One span as MLflow's `Span.to_dict` writes it, so `Span.from_dict` reads it back: ids are the
/// base64 of the OTel id bytes (MLflow tells its formats apart by whether an id decodes as
/// base64, which hex always does, so hex would be misread), every attribute value is a
/// JSON-encoded string (see [`attribute_json`]), and `mlflow.traceRequestId` names the trace
/// (`Span.from_dict` refuses a span without it).
fn span_json(s: &SpanRecord, trace_id: &str) -> Value {
    let mut attributes: Map<String, Value> =
        s.attributes.iter().map(|(k, v)| (k.clone(), Value::String(attribute_json(k, v)))).collect();
    attributes.insert("mlflow.traceRequestId".into(), Value::String(json!(trace_id).to_string()));
    attributes.entry("mlflow.spanType").or_insert_with(|| Value::String(json!(s.kind.as_str()).to_string()));
    json!({
        "trace_id": hex_to_base64(&s.trace_id),
        "span_id": hex_to_base64(&s.span_id),
        "parent_span_id": s.parent_id.as_deref().map(hex_to_base64),
        "name": s.name,
        "start_time_unix_nano": s.start_unix_nano,
        "end_time_unix_nano": s.end_unix_nano,
        "events": [],
        "status": {
            "code": match s.status {
                SpanStatus::Ok => "STATUS_CODE_OK",
                SpanStatus::Error => "STATUS_CODE_ERROR",
            },
            "message": s.status_message.clone().unwrap_or_default(),
        },
        "attributes": attributes,
        "links": [],
    })
}

/// MLflow keys whose value is by definition the JSON text of a value, which span records already
/// hold as that text (so they export to OTLP as MLflow's own SDK writes them).
const JSON_TEXT_KEYS: [&str; 2] = ["mlflow.spanInputs", "mlflow.spanOutputs"];

/// An attribute value as MLflow stores it: the JSON text of the value (`"AGENT"` becomes
/// `"\"AGENT\""`), except a JSON-text key's text, which already is that, so `span.inputs` reads
/// back the inputs rather than a string of them.
fn attribute_json(key: &str, value: &Value) -> String {
    match value {
        Value::String(text)
            if JSON_TEXT_KEYS.contains(&key) && serde_json::from_str::<Value>(text).is_ok() =>
        {
            text.clone()
        }
        _ => value.to_string(),
    }
}

/// The base64 of the bytes a hex id spells. Span records hold the ids the telemetry layer wrote
/// (always hex); anything else is passed through rather than failing the whole trace.
fn hex_to_base64(hex: &str) -> String {
    let bytes: Option<Vec<u8>> = hex
        .len()
        .is_multiple_of(2)
        .then(|| {
            (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
                .collect()
        })
        .flatten();
    bytes.map_or_else(|| hex.to_string(), |b| BASE64.encode(b))
}

/// `ms` since the Unix epoch as RFC 3339 UTC with milliseconds, e.g. `2026-12-01T14:39:51.123Z`.
fn rfc3339_millis(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil conversion (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Whether `caller` made the request these spans belong to. A trace holds the caller's question
/// and route, so it is shown to its own caller only.
fn owned_by(spans: &[SpanRecord], caller: &Caller) -> bool {
    spans.iter().any(|s| {
        s.attributes
            .get("enduser.id")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case(caller.email()))
    })
}

/// `GET /v1/traces/{id}`: the caller's own request's span tree; 404 for an unknown id or
/// someone else's request (so ids cannot be probed).
pub(crate) async fn get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.auth.authenticate(&headers, peer).await?;
    let store = &state.runtime.store;
    // Spans are written off the request path; flushing makes a just-finished request visible.
    store.flush().await;
    let spans = store.spans(&id).await?;
    if spans.is_empty() || !owned_by(&spans, &caller) {
        return Err(ApiError::new(Error::not_found(format!(
            "no trace recorded for request `{}`",
            crate::chat::truncated(&id)
        )))
        .with_param("id")
        .with_code("trace_not_found"));
    }
    Ok(Json(trace_json(&id, &spans)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_are_json_text() {
        assert_eq!(attribute_json("mlflow.spanType", &json!("AGENT")), r#""AGENT""#);
        assert_eq!(attribute_json("enduser.id", &json!("{}")), r#""{}""#);
        assert_eq!(attribute_json("switchboard.rows", &json!(3)), "3");
        let inputs = r#"{"question":"revenue"}"#;
        assert_eq!(attribute_json("mlflow.spanInputs", &json!(inputs)), inputs);
        assert_eq!(attribute_json("mlflow.spanOutputs", &json!({"a": 1})), r#"{"a":1}"#);
        // Text that is not JSON is encoded like any string.
        assert_eq!(attribute_json("mlflow.spanOutputs", &json!("plain")), r#""plain""#);
    }

    #[test]
    fn ids_are_the_base64_of_their_bytes() {
        assert_eq!(hex_to_base64("00f067aa0ba902b7"), "APBnqgupArc=");
        assert_eq!(hex_to_base64("not-hex"), "not-hex");
    }

    #[test]
    fn request_time_is_rfc3339() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        // A leap day.
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
