//! Write-behind for stored responses and thread turns: they travel through the telemetry queue
//! (and its spill file) like audit rows, so storing them never waits for the store, and until
//! the writer has committed them they are served from memory.
//!
//! A pending entry is newer than anything the store holds under its key (this process wrote it
//! last), so a read that finds one answers from memory without asking the store: reads keep
//! working through an outage for what this process wrote during it. Entries leave memory only
//! once the writer committed them (directly, or when the spill file is replayed). Memory is
//! bounded by [`DEFAULT_PENDING_CAPACITY`] entries; beyond it, writes fail with a 503 naming the
//! cause rather than growing without limit.

use crate::StoredResponse;
use crate::queue::{Record, new_id};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use switchboard_core::{Error, Message, Result, unix_nanos_now};

/// How many responses, deletes and thread turns may wait for the store at once.
pub const DEFAULT_PENDING_CAPACITY: usize = 10_000;

/// The `Retry-After` a write refused because the write-behind is full suggests.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What memory knows about one stored response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pending {
    /// Stored, not yet committed.
    Stored(StoredResponse),
    /// Deleted, the delete not yet committed.
    Deleted,
}

/// Writes accepted but not yet committed to the store.
pub(crate) struct WriteBehind {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    /// By response id: the write id of the newest pending write and what it wrote.
    responses: HashMap<String, (String, Pending)>,
    /// By thread id: its pending turns in append order, each with its turn id.
    turns: HashMap<String, Vec<(String, Message)>>,
    /// Entries in both maps.
    len: usize,
}

impl WriteBehind {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { inner: Mutex::new(Inner::default()), capacity }
    }

    /// The state is two maps and a counter updated together under the lock, so a panicking
    /// holder cannot leave it inconsistent.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_room(&self, inner: &Inner) -> Result<()> {
        if inner.len >= self.capacity {
            tracing::error!(pending = inner.len, "store: the write-behind is full; refusing a write");
            return Err(Error::unavailable(
                format!(
                    "store: {} stored responses and thread turns are already waiting for the store \
                     (the write-behind is full); try again once it is back",
                    inner.len
                ),
                FULL_RETRY_AFTER,
            ));
        }
        Ok(())
    }

    /// Takes `response` into memory and returns the record that writes it.
    pub(crate) fn put_response(&self, response: &StoredResponse) -> Result<Record> {
        let mut inner = self.lock();
        let replaces = inner.responses.contains_key(&response.id);
        if !replaces {
            self.check_room(&inner)?;
            inner.len += 1;
        }
        let write_id = new_id();
        inner.responses.insert(response.id.clone(), (write_id.clone(), Pending::Stored(response.clone())));
        Ok(Record::Response { id: write_id, response: Box::new(response.clone()) })
    }

    /// What memory knows about response `id` of `owner`; `None` when the store must be asked.
    /// Another owner's pending response reads as deleted, as the store's owner-scoped lookup would.
    pub(crate) fn response(&self, owner: &str, id: &str) -> Option<Pending> {
        match self.lock().responses.get(id) {
            Some((_, Pending::Stored(r))) if r.owner != owner => Some(Pending::Deleted),
            Some((_, pending)) => Some(pending.clone()),
            None => None,
        }
    }

    /// Deletes response `id` of `owner` if memory knows it: `Some((deleted, record))`, with the
    /// record that deletes it from the store when it was deleted now; `None` when the store must
    /// be asked.
    pub(crate) fn delete_response(&self, owner: &str, id: &str) -> Option<(bool, Option<Record>)> {
        let mut inner = self.lock();
        let (write_id, pending) = inner.responses.get_mut(id)?;
        match pending {
            Pending::Stored(r) if r.owner == owner => {
                *write_id = new_id();
                *pending = Pending::Deleted;
                let record = Record::DeleteResponse {
                    id: write_id.clone(),
                    owner: owner.into(),
                    response_id: id.into(),
                };
                Some((true, Some(record)))
            }
            _ => Some((false, None)),
        }
    }

    /// Takes a turn of `thread_id` into memory and returns the record that appends it.
    pub(crate) fn append_turn(&self, thread_id: &str, request_id: &str, message: &Message) -> Result<Record> {
        let mut inner = self.lock();
        self.check_room(&inner)?;
        inner.len += 1;
        let turn_id = new_id();
        inner.turns.entry(thread_id.to_owned()).or_default().push((turn_id.clone(), message.clone()));
        Ok(Record::Turn {
            id: turn_id,
            thread_id: thread_id.to_owned(),
            request_id: request_id.to_owned(),
            message: Box::new(message.clone()),
            created_unix_ms: unix_nanos_now() / 1_000_000,
        })
    }

    /// The pending turns of `thread_id`, oldest first, with their turn ids. Take this *before*
    /// reading the store: a turn committed in between is then in both, and
    /// [`merge_turns`] drops the copy, whereas the other order could miss it.
    pub(crate) fn turns(&self, thread_id: &str) -> Vec<(String, Message)> {
        self.lock().turns.get(thread_id).cloned().unwrap_or_default()
    }

    /// Forgets the entries `records` wrote, now that they are committed. An entry rewritten since
    /// (a newer write id) stays until its own write commits.
    pub(crate) fn settle<'a>(&self, records: impl IntoIterator<Item = &'a Record>) {
        let mut inner = self.lock();
        if inner.len == 0 {
            return;
        }
        for record in records {
            match record {
                Record::Response { id, response } => inner.settle_response(&response.id, id),
                Record::DeleteResponse { id, response_id, .. } => inner.settle_response(response_id, id),
                Record::Turn { id, thread_id, .. } => {
                    let Some(turns) = inner.turns.get_mut(thread_id) else { continue };
                    let before = turns.len();
                    turns.retain(|(turn_id, _)| turn_id != id);
                    let removed = before - turns.len();
                    if turns.is_empty() {
                        inner.turns.remove(thread_id);
                    }
                    inner.len -= removed;
                }
                Record::Span(_) | Record::Audit { .. } | Record::Payload { .. } => {}
            }
        }
    }

    /// How many entries wait for the store.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }
}

impl Inner {
    fn settle_response(&mut self, response_id: &str, write_id: &str) {
        if self.responses.get(response_id).is_some_and(|(w, _)| w == write_id) {
            self.responses.remove(response_id);
            self.len -= 1;
        }
    }
}

/// `stored` (the thread as the store has it, with each turn's id where it has one) followed by
/// the `pending` turns the store does not have yet.
pub(crate) fn merge_turns(
    stored: Vec<(Option<String>, Message)>,
    pending: Vec<(String, Message)>,
) -> Vec<Message> {
    let seen: std::collections::HashSet<String> = stored.iter().filter_map(|(id, _)| id.clone()).collect();
    let mut turns: Vec<Message> = stored.into_iter().map(|(_, m)| m).collect();
    turns.extend(pending.into_iter().filter(|(id, _)| !seen.contains(id)).map(|(_, m)| m));
    turns
}

/// What a response read returns when memory knows the answer: the pending response if it is
/// within retention, else nothing.
pub(crate) fn pending_response(pending: Pending, not_before_unix_ms: u64) -> Option<StoredResponse> {
    match pending {
        Pending::Stored(r) if r.created_unix_ms >= not_before_unix_ms => Some(r),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(id: &str, owner: &str) -> StoredResponse {
        StoredResponse {
            id: id.into(),
            owner: owner.into(),
            previous_id: None,
            turns: vec![Message::user("q")],
            body: json!({"id": id}),
            created_unix_ms: 1_000,
        }
    }

    #[test]
    fn pending_responses_are_served_until_their_own_write_settles() {
        let behind = WriteBehind::new(10);
        let first = behind.put_response(&response("r1", "alice")).unwrap();
        assert!(matches!(behind.response("alice", "r1"), Some(Pending::Stored(_))));
        assert_eq!(behind.response("bob", "r1"), Some(Pending::Deleted), "scoped by owner");
        let second = behind.put_response(&response("r1", "alice")).unwrap();
        behind.settle(std::slice::from_ref(&first));
        assert!(behind.response("alice", "r1").is_some(), "a newer write keeps the entry");
        behind.settle(std::slice::from_ref(&second));
        assert_eq!(behind.response("alice", "r1"), None);
        assert_eq!(behind.len(), 0);
    }

    #[test]
    fn deleting_a_pending_response_leaves_a_tombstone_until_the_delete_settles() {
        let behind = WriteBehind::new(10);
        behind.put_response(&response("r1", "alice")).unwrap();
        assert!(matches!(behind.delete_response("bob", "r1"), Some((false, None))));
        let Some((true, Some(delete))) = behind.delete_response("alice", "r1") else { panic!("deleted") };
        assert_eq!(behind.response("alice", "r1"), Some(Pending::Deleted));
        assert!(matches!(behind.delete_response("alice", "r1"), Some((false, None))));
        behind.settle(&[delete]);
        assert_eq!(behind.response("alice", "r1"), None);
        assert!(behind.delete_response("alice", "r1").is_none(), "the store decides now");
    }

    #[test]
    fn turns_merge_without_doubles_and_a_full_write_behind_refuses_with_503() {
        let behind = WriteBehind::new(2);
        let t1 = behind.append_turn("t", "r", &Message::user("one")).unwrap();
        behind.append_turn("t", "r", &Message::user("two")).unwrap();
        let e = behind.append_turn("t", "r", &Message::user("three")).unwrap_err();
        assert_eq!(e.kind.http_status(), 503);
        assert!(e.message.contains("write-behind is full"), "{}", e.message);
        let pending = behind.turns("t");
        let Record::Turn { id, .. } = &t1 else { panic!("a turn") };
        // The first turn is committed meanwhile: it comes back from the store with its id.
        let merged = merge_turns(vec![(Some(id.clone()), Message::user("one"))], pending);
        assert_eq!(merged.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["one", "two"]);
        behind.settle(&[t1]);
        assert_eq!(behind.len(), 1);
        assert!(behind.append_turn("t", "r", &Message::user("three")).is_ok());
    }
}
