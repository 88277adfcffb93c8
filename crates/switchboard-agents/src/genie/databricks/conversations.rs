//! Which Genie conversation a Switchboard thread continues.
//!
//! The conversation id travels in the thread itself: every answer ends with a
//! `Genie conversation: <id>` line, and the thread's history (stored per caller) brings it back
//! on the next turn. History can also be sent by the client, so an id read from it is honoured
//! only if this agent started that conversation for the same caller; anything else starts a new
//! conversation. Under `automatic` credentials every conversation belongs to the service
//! principal at Databricks, so this check is what keeps one caller out of another's.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use switchboard_core::{Message, Role};

/// The line of an answer that names its Genie conversation.
pub const CONVERSATION_PREFIX: &str = "Genie conversation: ";

/// How many conversations are remembered; the oldest are forgotten first (a forgotten one just
/// means the next turn starts a fresh conversation).
const CAPACITY: usize = 10_000;

/// Conversations this agent started, and for whom.
#[derive(Debug, Default)]
pub struct Conversations {
    inner: Mutex<Owners>,
}

#[derive(Debug, Default)]
struct Owners {
    by_id: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Conversations {
    /// Records that `conversation_id` was started for `caller`.
    pub fn remember(&self, conversation_id: &str, caller: &str) {
        let mut owners = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if owners.by_id.insert(conversation_id.to_string(), caller.to_string()).is_none() {
            owners.order.push_back(conversation_id.to_string());
        }
        while owners.order.len() > CAPACITY {
            if let Some(old) = owners.order.pop_front() {
                owners.by_id.remove(&old);
            }
        }
    }

    /// The conversation to continue: the one named by this agent's latest answer in `history`,
    /// if it was started for `caller`.
    pub fn continued(&self, history: &[Message], agent: &str, caller: &str) -> Option<String> {
        let id = named_in(history, agent)?;
        let owners = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (owners.by_id.get(&id).map(String::as_str) == Some(caller)).then_some(id)
    }
}

/// The conversation id on the last line naming one in this agent's latest answer.
fn named_in(history: &[Message], agent: &str) -> Option<String> {
    let last = history
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant && m.agent.as_deref().is_none_or(|a| a == agent))?;
    last.content
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(CONVERSATION_PREFIX))
        .map(|id| id.trim().trim_matches('`').to_string())
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: &str) -> Message {
        Message::assistant(format!("A table.\n\n{CONVERSATION_PREFIX}`{id}`"), Some("sales".into()))
    }

    #[test]
    fn only_the_callers_own_conversation_continues() {
        let conversations = Conversations::default();
        conversations.remember("c1", "alice");
        let history = vec![Message::user("deals by region"), answer("c1")];
        assert_eq!(conversations.continued(&history, "sales", "alice").as_deref(), Some("c1"));
        assert_eq!(conversations.continued(&history, "sales", "bob"), None);
        assert_eq!(conversations.continued(&[answer("forged")], "sales", "alice"), None);
        let by_other = vec![Message::assistant(format!("{CONVERSATION_PREFIX}c1"), Some("policies".into()))];
        assert_eq!(conversations.continued(&by_other, "sales", "alice"), None);
    }
}
