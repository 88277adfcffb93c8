//! A run's answer sent to a streaming caller while it is produced: a single agent's answer as its
//! model writes it, a fan-out's parts as each branch finishes, a synthesis as the model writes it.
//!
//! Whatever streams live is final: the supervisor's answer starts with it, and only the rest is
//! sent after the run (see `RunEvent::Streaming`).

use crate::supervisor::{RunEvent, Step};
use futures::channel::mpsc::UnboundedSender;
use std::sync::Mutex;

/// The live part of one run's answer: the first piece announces the stream, and every piece is
/// kept so the run knows what the caller already has.
pub(crate) struct LiveAnswer {
    events: UnboundedSender<RunEvent>,
    sent: Mutex<String>,
}

impl LiveAnswer {
    /// Sends live pieces as events on `events`.
    pub(crate) fn new(events: UnboundedSender<RunEvent>) -> Self {
        Self { events, sent: Mutex::new(String::new()) }
    }

    /// Sends `piece` now, announcing the stream first if it is the first piece. Empty pieces are
    /// dropped, so the announcement always comes with text.
    pub(crate) fn send(&self, piece: &str) {
        if piece.is_empty() {
            return;
        }
        let Ok(mut sent) = self.sent.lock() else { return };
        // A client that stopped listening does not stop the run; cancellation does that.
        if sent.is_empty() {
            let _ = self.events.unbounded_send(RunEvent::Streaming);
        }
        sent.push_str(piece);
        let _ = self.events.unbounded_send(RunEvent::Delta { text: piece.to_string() });
    }

    /// Sends a fan-out branch's part of the joined answer: parts are separated by a blank line.
    pub(crate) fn send_part(&self, step: &Step) {
        let part = part(step);
        if self.started() { self.send(&format!("\n\n{part}")) } else { self.send(&part) }
    }

    /// Whether anything has been sent yet.
    pub(crate) fn started(&self) -> bool {
        self.sent.lock().map(|s| !s.is_empty()).unwrap_or(true)
    }

    /// Everything sent so far.
    pub(crate) fn sent(&self) -> String {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// One branch's part of a joined answer: its agent's name, then its answer or why it has none.
pub(crate) fn part(step: &Step) -> String {
    match (&step.output, &step.error) {
        (Some(o), _) => format!("**{}**\n{}", step.agent, o.text),
        (None, Some(e)) => format!("**{}**\n({}: {e})", step.agent, step.status),
        (None, None) => format!("**{}**\n(no answer)", step.agent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::AgentOutput;

    fn step(agent: &str, answer: Option<&str>) -> Step {
        Step {
            agent: agent.into(),
            input: "q".into(),
            status: if answer.is_some() { "ok" } else { "error" },
            error: answer.is_none().then(|| "it broke".to_string()),
            error_status: None,
            retry_after_ms: None,
            consent_url: None,
            output: answer.map(|a| AgentOutput { text: a.into(), ..Default::default() }),
            duration_ms: 1,
        }
    }

    #[test]
    fn the_stream_is_announced_once_and_parts_are_separated() {
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let live = LiveAnswer::new(tx);
        live.send("");
        live.send_part(&step("fast", Some("one")));
        live.send_part(&step("slow", None));
        assert_eq!(live.sent(), "**fast**\none\n\n**slow**\n(error: it broke)");
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        assert!(matches!(
            events.as_slice(),
            [RunEvent::Streaming, RunEvent::Delta { .. }, RunEvent::Delta { .. }]
        ));
    }
}
