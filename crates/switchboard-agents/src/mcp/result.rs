//! A `tools/call` result as an answer: text as text, structured content as data (and as text when
//! there is nothing else), images, audio and resources summarised in a line each, and a result
//! whose `isError` is set as an upstream error carrying the tool's own words.

use serde_json::{Map, Value, json};
use switchboard_core::{AgentOutput, Error, Result};

/// How much of a failed tool's text an error message quotes.
const MAX_ERROR_CHARS: usize = 2000;

/// `n` bytes, as people read sizes: "512 B", "1.2 kB", "10.5 MB".
pub(crate) fn size(n: usize) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        _ => format!("{:.1} MB", n as f64 / 1e6),
    }
}

/// The size of base64 `data` once decoded.
fn decoded_len(data: &str) -> usize {
    let data = data.trim_end_matches('=');
    data.len() * 3 / 4
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// One content block as text.
fn block(item: &Value) -> String {
    let mime = |v: &Value| match str_at(v, "mimeType") {
        "" => "unknown type".to_string(),
        m => m.to_string(),
    };
    match str_at(item, "type") {
        "text" => str_at(item, "text").to_string(),
        "image" => format!("[image: {}, {}]", mime(item), size(decoded_len(str_at(item, "data")))),
        "audio" => format!("[audio: {}, {}]", mime(item), size(decoded_len(str_at(item, "data")))),
        "resource" => {
            let r = &item["resource"];
            let bytes = match r.get("text").and_then(Value::as_str) {
                Some(text) => text.len(),
                None => decoded_len(str_at(r, "blob")),
            };
            format!("[resource: {} ({}, {})]", str_at(r, "uri"), mime(r), size(bytes))
        }
        "resource_link" => {
            let name = match str_at(item, "name") {
                "" => str_at(item, "uri"),
                n => n,
            };
            format!("[resource link: {name} <{}>]", str_at(item, "uri"))
        }
        other => format!("[{} content]", if other.is_empty() { "untyped" } else { other }),
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The answer for the result of calling `tool` with `arguments`. `result` is the
/// `CallToolResult` as JSON.
pub(crate) fn answer(
    tool: &str,
    arguments: &Map<String, Value>,
    result: &Value,
    max_bytes: usize,
) -> Result<AgentOutput> {
    let parts: Vec<String> =
        result["content"].as_array().into_iter().flatten().map(block).filter(|s| !s.is_empty()).collect();
    let structured = result.get("structuredContent").filter(|v| !v.is_null());
    let mut text = parts.join("\n");
    if text.is_empty()
        && let Some(s) = structured
    {
        text = serde_json::to_string_pretty(s).unwrap_or_default();
    }
    if result["isError"] == json!(true) {
        let said = if text.is_empty() { "no details".to_string() } else { text };
        let quoted = match said.char_indices().nth(MAX_ERROR_CHARS) {
            Some((i, _)) => format!("{}…", &said[..i]),
            None => said,
        };
        return Err(Error::upstream(format!("the `{tool}` tool failed: {quoted}")));
    }
    if text.is_empty() {
        text = format!("The `{tool}` tool returned no content.");
    }
    let mut data = json!({"tool": tool, "arguments": arguments});
    let total = text.len();
    if total > max_bytes {
        text = format!(
            "{}\n\n[truncated: the `{tool}` result is {}; the first {} are shown]",
            cut(&text, max_bytes),
            size(total),
            size(max_bytes)
        );
        data["truncated"] = json!(true);
        data["result_bytes"] = json!(total);
    }
    if let Some(s) = structured {
        let bytes = serde_json::to_string(s).map(|j| j.len()).unwrap_or(0);
        if bytes <= max_bytes {
            data["structured_content"] = s.clone();
        } else {
            data["structured_content_omitted"] = json!(format!("{} of structured content", size(bytes)));
        }
    }
    Ok(AgentOutput { text, citations: Vec::new(), data: Some(data) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Map<String, Value> {
        Map::new()
    }

    #[test]
    fn text_and_structured_content() {
        let r = json!({"content": [{"type": "text", "text": "The sum of 2 and 40 is 42."}],
                       "structuredContent": {"result": 42}});
        let out = answer("get-sum", &args(), &r, 1024).expect("ok");
        assert_eq!(out.text, "The sum of 2 and 40 is 42.");
        let data = out.data.expect("data");
        assert_eq!(data["structured_content"]["result"], 42);
        assert_eq!(data["tool"], "get-sum");

        let only_structured =
            answer("t", &args(), &json!({"content": [], "structuredContent": {"a": 1}}), 1024).expect("ok");
        assert!(only_structured.text.contains("\"a\": 1"), "{}", only_structured.text);
        let empty = answer("t", &args(), &json!({"content": []}), 1024).expect("ok");
        assert_eq!(empty.text, "The `t` tool returned no content.");
    }

    #[test]
    fn images_audio_and_resources_are_summarised() {
        let png = "A".repeat(1600); // 1200 bytes once decoded
        let r = json!({"content": [
            {"type": "text", "text": "Here:"},
            {"type": "image", "data": png, "mimeType": "image/png"},
            {"type": "audio", "data": "AAAA", "mimeType": "audio/wav"},
            {"type": "resource", "resource": {"uri": "test://static/resource/1", "mimeType": "text/plain", "text": "hello"}},
            {"type": "resource_link", "uri": "test://x", "name": "x.txt"}
        ]});
        let out = answer("t", &args(), &r, 1 << 20).expect("ok");
        assert_eq!(
            out.text,
            "Here:\n[image: image/png, 1.2 kB]\n[audio: audio/wav, 3 B]\n\
             [resource: test://static/resource/1 (text/plain, 5 B)]\n[resource link: x.txt <test://x>]"
        );
    }

    #[test]
    fn is_error_is_an_upstream_error_in_the_tools_words() {
        let r = json!({"content": [{"type": "text", "text": "division by zero"}], "isError": true});
        let e = answer("divide", &args(), &r, 1024).expect_err("tool failed");
        assert_eq!(e.kind, switchboard_core::ErrorKind::Upstream);
        assert_eq!(e.message, "the `divide` tool failed: division by zero");
    }

    #[test]
    fn large_results_are_truncated_with_a_note() {
        let big = "é".repeat(3000); // 6000 bytes
        let r = json!({"content": [{"type": "text", "text": big}], "structuredContent": {"blob": "x".repeat(5000)}});
        let out = answer("big", &args(), &r, 1001).expect("truncated, not an error");
        assert!(out.text.starts_with(&"é".repeat(500)));
        assert!(
            out.text.ends_with("[truncated: the `big` result is 6.0 kB; the first 1.0 kB are shown]"),
            "{}",
            out.text
        );
        assert!(out.text.len() < 1200);
        let data = out.data.expect("data");
        assert_eq!(data["truncated"], true);
        assert!(data.get("structured_content").is_none());
        assert!(data["structured_content_omitted"].as_str().is_some_and(|s| s.contains("kB")));
    }

    #[test]
    fn sizes_read_like_sizes() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1234), "1.2 kB");
        assert_eq!(size(10_485_760), "10.5 MB");
    }
}
