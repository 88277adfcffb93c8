//! A streamed answer trimmed as it streams, so its pieces concatenate to the whole answer's
//! `trim()`: leading whitespace is dropped, and whitespace is held back until text follows it.

use std::sync::Mutex;
use switchboard_core::OnDelta;

/// Passes pieces on trimmed.
pub(super) struct Trimmed<'a> {
    on_delta: &'a OnDelta<'a>,
    /// Whether text has been passed on, and the whitespace held back since.
    state: Mutex<(bool, String)>,
}

impl<'a> Trimmed<'a> {
    /// Passes trimmed pieces to `on_delta`.
    pub(super) fn new(on_delta: &'a OnDelta<'a>) -> Self {
        Self { on_delta, state: Mutex::new((false, String::new())) }
    }

    /// Takes the next piece; passes on what is certainly not at either end of the answer.
    pub(super) fn push(&self, piece: &str) {
        let Ok(mut state) = self.state.lock() else { return };
        let (started, held) = &mut *state;
        let piece = if *started { piece } else { piece.trim_start() };
        let body = piece.trim_end();
        if body.is_empty() {
            held.push_str(piece);
            return;
        }
        *started = true;
        let out = format!("{held}{body}");
        held.clear();
        held.push_str(&piece[body.len()..]);
        (self.on_delta)(&out);
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
        let out = out.into_inner().unwrap();
        assert_eq!(out.concat(), pieces.concat().trim());
        assert!(out.iter().all(|p| !p.is_empty()));
    }
}
