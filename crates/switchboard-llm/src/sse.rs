//! Reading a server-sent event stream as it arrives: the `data:` payloads, whole, whatever the
//! chunking of the bytes (a chunk can end anywhere, even inside a character).

/// Splits streamed bytes into event data lines.
#[derive(Debug, Default)]
pub struct SseLines {
    /// Bytes of a line not yet complete.
    pending: Vec<u8>,
}

impl SseLines {
    /// Takes the next bytes and passes the payload of every complete `data:` line to `on_data`,
    /// in order; comments, event names and blank lines are skipped. Stops early, returning true,
    /// when `on_data` returns true (the stream's end marker); its errors end the stream.
    pub fn feed<E>(
        &mut self,
        bytes: &[u8],
        mut on_data: impl FnMut(&str) -> Result<bool, E>,
    ) -> Result<bool, E> {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        let mut done = false;
        while let Some(len) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&self.pending[start..start + len]);
            start += len + 1;
            if let Some(data) = line.trim_end_matches('\r').strip_prefix("data:")
                && on_data(data.trim_start())?
            {
                done = true;
                break;
            }
        }
        self.pending.drain(..start);
        Ok(done)
    }
}
