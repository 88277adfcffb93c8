//! A streamed answer trimmed as it streams, so its pieces concatenate to the whole answer's
//! `trim()`: leading whitespace is dropped, and whitespace is held back until text follows it.

use std::sync::Mutex;
use switchboard_core::OnDelta;

/// Passes pieces on trimmed.
pub(super) struct Trimmed<'a> {
    on_delta: &'a OnDelta<'a>,
    /// What has been passed on, and the whitespace held back since.
    state: Mutex<(String, String)>,
}

impl<'a> Trimmed<'a> {
    /// Passes trimmed pieces to `on_delta`.
    pub(super) fn new(on_delta: &'a OnDelta<'a>) -> Self {
        Self { on_delta, state: Mutex::new((String::new(), String::new())) }
    }

    /// Takes the next piece; passes on what is certainly not at either end of the answer.
    pub(super) fn push(&self, piece: &str) {
        let Ok(mut state) = self.state.lock() else { return };
        let (sent, held) = &mut *state;
        let piece = if sent.is_empty() { piece.trim_start() } else { piece };
        let body = piece.trim_end();
        if body.is_empty() {
            held.push_str(piece);
            return;
        }
        let out = format!("{held}{body}");
        held.clear();
        held.push_str(&piece[body.len()..]);
        sent.push_str(&out);
        (self.on_delta)(&out);
    }

    /// What has been passed on so far: once sent, it cannot be taken back.
    pub(super) fn sent(&self) -> String {
        self.state.lock().map(|state| state.0.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate_to_the_trimmed_whole() {
        let pieces = ["\n ", " Hotels", " are", " ", "\tcapped ", "at $250.", "\n\n", " "];
        let out = Mutex::new(Vec::new());
        let collect = |p: &str| out.lock().unwrap().push(p.to_string());
        let trimmed = Trimmed::new(&collect);
        for p in pieces {
            trimmed.push(p);
        }
        let sent = trimmed.sent();
        let out = out.into_inner().unwrap();
        assert_eq!(out.concat(), pieces.concat().trim());
        assert_eq!(sent, out.concat());
        assert!(out.iter().all(|p| !p.is_empty()));
    }
}
