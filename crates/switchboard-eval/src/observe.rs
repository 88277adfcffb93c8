//! Reading what a run did from its spans: every hop leaves one, so the tool calls (MCP tools,
//! SQL tools, the SQL objects queried, HTTP calls) and the LLM calls with their token usage are
//! there whatever kind of agent made them.

use crate::result::LlmUsage;
use serde_json::Value;
use std::collections::BTreeMap;
use switchboard_core::SpanRecord;
use switchboard_llm::count_tokens;
use switchboard_runtime::config::ModelPrice;

/// Hop kinds that are tool calls.
const TOOL_HOPS: &[&str] = &["tool", "sql", "http", "mcp"];
/// MCP protocol requests that are not calls of a tool.
const PROTOCOL_CALLS: &[&str] = &["tools/list", "initialize"];

/// The tool calls of a run, in the order they started.
pub fn tool_calls(spans: &[SpanRecord]) -> Vec<String> {
    let mut calls: Vec<(u64, String)> = spans
        .iter()
        .filter(|s| hop_kind(s).is_some_and(|k| TOOL_HOPS.contains(&k)))
        .filter_map(|s| {
            let name = s.attributes.get("gen_ai.tool.name").and_then(Value::as_str)?;
            (!PROTOCOL_CALLS.contains(&name)).then(|| (s.start_unix_nano, name.to_string()))
        })
        .collect();
    calls.sort();
    calls.into_iter().map(|(_, name)| name).collect()
}

/// The LLM calls of a run and their tokens. A span without usage (a failed call) is counted
/// with tiktoken over what it recorded of the prompt and completion; the cost is given only when
/// every model called has a price.
pub fn llm_usage(spans: &[SpanRecord], prices: &BTreeMap<String, ModelPrice>) -> LlmUsage {
    let mut usage = LlmUsage::default();
    let mut cost = Some(0.0);
    for span in spans.iter().filter(|s| hop_kind(s) == Some("llm")) {
        let attr = |k: &str| span.attributes.get(k);
        let tokens = |k: &str, fallback: &str| {
            attr(k)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| attr(fallback).map_or(0, |v| count_tokens(&text_of(v))))
        };
        let input = tokens("gen_ai.usage.input_tokens", "mlflow.spanInputs");
        let output = tokens("gen_ai.usage.output_tokens", "mlflow.spanOutputs");
        usage.calls += 1;
        usage.input_tokens += input;
        usage.output_tokens += output;
        let model = attr("gen_ai.request.model").and_then(Value::as_str).unwrap_or_default();
        cost = match (cost, prices.get(model)) {
            (Some(c), Some(p)) => {
                Some(c + (input as f64 * p.input_per_million + output as f64 * p.output_per_million) / 1e6)
            }
            _ => None,
        };
    }
    usage.cost = if usage.calls == 0 { None } else { cost };
    usage
}

fn hop_kind(span: &SpanRecord) -> Option<&str> {
    span.attributes.get("switchboard.hop.kind").and_then(Value::as_str)
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_core::{SpanKind, SpanStatus};

    fn span(start: u64, attributes: Value) -> SpanRecord {
        SpanRecord {
            request_id: "r".into(),
            trace_id: "t".into(),
            span_id: format!("s{start}"),
            parent_id: None,
            name: "x".into(),
            kind: SpanKind::Tool,
            agent: None,
            start_unix_nano: start,
            end_unix_nano: start + 1,
            status: SpanStatus::Ok,
            status_message: None,
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn tools_in_start_order_without_protocol_calls() {
        let spans = [
            span(3, json!({"switchboard.hop.kind": "sql", "gen_ai.tool.name": "discount_policy"})),
            span(1, json!({"switchboard.hop.kind": "mcp", "gen_ai.tool.name": "tools/list"})),
            span(2, json!({"switchboard.hop.kind": "tool", "gen_ai.tool.name": "deal_desk"})),
            span(0, json!({"switchboard.hop.kind": "agent"})),
        ];
        assert_eq!(tool_calls(&spans), ["deal_desk", "discount_policy"]);
    }

    #[test]
    fn llm_tokens_and_cost() {
        let spans = [
            span(
                1,
                json!({"switchboard.hop.kind": "llm", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 10}),
            ),
            span(
                2,
                json!({"switchboard.hop.kind": "llm", "gen_ai.request.model": "m", "mlflow.spanInputs": "hello world"}),
            ),
        ];
        let prices = BTreeMap::from([(
            "m".to_string(),
            ModelPrice { input_per_million: 1.0, output_per_million: 100.0 },
        )]);
        let usage = llm_usage(&spans, &prices);
        assert_eq!((usage.calls, usage.input_tokens, usage.output_tokens), (2, 1002, 10));
        assert!((usage.cost.unwrap_or_default() - 0.002002).abs() < 1e-9);
        assert_eq!(llm_usage(&spans, &BTreeMap::new()).cost, None);
    }
}
