//! Reading a server-sent event stream the way a client does, one event at a time as it arrives,
//! so a test can tell what reached it while the server (or the model behind it) was still
//! writing.

use std::collections::VecDeque;

/// The `data:` payloads of an event-stream response, in order, as they arrive.
pub struct SseReader {
    response: reqwest::Response,
    /// Text of events not yet complete (a chunk can end anywhere).
    buffer: Vec<u8>,
    ready: VecDeque<String>,
}

impl SseReader {
    /// Reads `response`'s body as an event stream.
    pub fn new(response: reqwest::Response) -> Self {
        Self { response, buffer: Vec::new(), ready: VecDeque::new() }
    }

    /// The next event's data (`[DONE]` included), waiting for it to arrive; `None` at the end of
    /// the stream. Panics if the connection breaks.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(data) = self.ready.pop_front() {
                return Some(data);
            }
            let chunk = self.response.chunk().await.expect("the event stream reads")?;
            self.buffer.extend_from_slice(&chunk);
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("events are UTF-8");
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if !data.is_empty() {
                    self.ready.push_back(data.join("\n"));
                }
            }
        }
    }
}
