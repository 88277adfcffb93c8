//! A remote agent's answer read as it streams: chat completion chunks (an OpenAI-compatible
//! server, another Switchboard) or Responses events (`response.output_text.delta`, as OpenAI,
//! MLflow ResponsesAgent and Switchboard send them).

use crate::endpoint::Protocol;
use serde_json::Value;
use switchboard_core::{Error, OnDelta, Result};
use switchboard_govern::reqwest;
use switchboard_llm::{SseLines, parse_chunk};

/// Reads the stream to its end, passing each piece of text to `on_delta` as it arrives, and
/// returns the whole text. More than `limit` bytes, an error event, or a stream that breaks off
/// is an upstream error.
pub(crate) async fn read(
    mut response: reqwest::Response,
    protocol: Protocol,
    limit: usize,
    on_delta: &OnDelta<'_>,
) -> Result<String> {
    let mut lines = SseLines::default();
    let mut events = Events { protocol, text: String::new(), deltas: false, on_delta };
    let mut read = 0;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::upstream(format!("the remote agent's stream broke off: {}", e.without_url())))?
    {
        read += chunk.len();
        if read > limit {
            return Err(crate::endpoint::too_large());
        }
        if lines.feed(&chunk, |data| events.take(data))? {
            break;
        }
    }
    if events.text.is_empty() {
        return Err(Error::upstream("the remote agent's stream ended without any text"));
    }
    Ok(events.text)
}

/// The text gathered from a stream's events so far.
struct Events<'a> {
    protocol: Protocol,
    text: String,
    /// Whether any text came as deltas; if none did, whole output items are the answer.
    deltas: bool,
    on_delta: &'a OnDelta<'a>,
}

impl Events<'_> {
    /// Takes one event's data; true at the stream's end.
    fn take(&mut self, data: &str) -> Result<bool> {
        if data == "[DONE]" {
            return Ok(true);
        }
        match self.protocol {
            Protocol::ChatCompletions => {
                let chunk = parse_chunk(data)?;
                self.delta(&chunk.text);
                Ok(false)
            }
            Protocol::Responses => {
                let event: Value = serde_json::from_str(data).map_err(|e| {
                    Error::upstream(format!("the remote agent's stream sent an event that is not JSON: {e}"))
                })?;
                match event["type"].as_str().unwrap_or_default() {
                    "response.output_text.delta" => {
                        self.delta(event["delta"].as_str().unwrap_or_default());
                        Ok(false)
                    }
                    "response.output_item.done" if !self.deltas => {
                        let item = &event["item"];
                        let parts = item["content"].as_array().into_iter().flatten();
                        let text: Vec<&str> = parts.filter_map(|c| c["text"].as_str()).collect();
                        if item["type"] == "message" && !text.is_empty() {
                            let joined = text.join("\n");
                            let piece = if self.text.is_empty() { joined } else { format!("\n{joined}") };
                            self.push(&piece);
                        }
                        Ok(false)
                    }
                    "response.completed" => Ok(true),
                    "error" | "response.failed" => {
                        let message = event["error"]["message"]
                            .as_str()
                            .or(event["response"]["error"]["message"].as_str())
                            .or(event["message"].as_str())
                            .unwrap_or("no reason given");
                        Err(Error::upstream(format!("the remote agent's stream failed: {message}")))
                    }
                    _ => Ok(false),
                }
            }
        }
    }

    fn delta(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.deltas = true;
        self.push(text);
    }

    /// Passes a piece on and keeps it.
    fn push(&mut self, text: &str) {
        (self.on_delta)(text);
        self.text.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn events(protocol: Protocol, data: &[&str]) -> (Result<Vec<String>>, String) {
        let seen = Mutex::new(Vec::new());
        let on_delta = |t: &str| seen.lock().unwrap().push(t.to_string());
        let mut events = Events { protocol, text: String::new(), deltas: false, on_delta: &on_delta };
        for d in data {
            if let Err(e) = events.take(d) {
                return (Err(e), events.text);
            }
        }
        let text = events.text;
        (Ok(seen.into_inner().unwrap()), text)
    }

    #[test]
    fn chat_chunks_and_responses_events_both_stream() {
        let chat = [
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hotels are "}}]}"#,
            r#"{"choices":[{"delta":{"content":"capped."}}]}"#,
            "[DONE]",
        ];
        let (pieces, text) = events(Protocol::ChatCompletions, &chat);
        assert_eq!(pieces.unwrap(), ["Hotels are ", "capped."]);
        assert_eq!(text, "Hotels are capped.");
        let responses = [
            r#"{"type":"response.created"}"#,
            r#"{"type":"response.output_text.delta","delta":"Hotels are "}"#,
            r#"{"type":"response.output_text.delta","delta":"capped."}"#,
            r#"{"type":"response.output_item.done","item":{"type":"message","content":[{"type":"output_text","text":"Hotels are capped."}]}}"#,
        ];
        let (pieces, text) = events(Protocol::Responses, &responses);
        assert_eq!(pieces.unwrap(), ["Hotels are ", "capped."], "the whole item does not repeat the deltas");
        assert_eq!(text, "Hotels are capped.");
        // A ResponsesAgent that sends whole items only.
        let (pieces, _) = events(Protocol::Responses, &responses[3..]);
        assert_eq!(pieces.unwrap(), ["Hotels are capped."]);
        let (failed, _) = events(Protocol::Responses, &[r#"{"type":"error","message":"overloaded"}"#]);
        assert!(failed.unwrap_err().message.contains("overloaded"));
        let (failed, _) = events(Protocol::ChatCompletions, &[r#"{"error":{"message":"overloaded"}}"#]);
        assert!(failed.unwrap_err().message.contains("overloaded"));
    }
}
