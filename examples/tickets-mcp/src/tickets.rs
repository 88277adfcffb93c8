//! The ticket book: deterministic seed tickets for the six demo users, plus whatever callers open
//! while the process runs. Every read is scoped to one owner, so no code path can list or show
//! another caller's ticket.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rmcp::schemars;

/// Whether a ticket is still being worked on: `open` or `closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
#[allow(missing_docs)] // Variant docs would turn the schema's `enum` into a `oneOf`.
pub enum TicketStatus {
    Open,
    Closed,
}

impl TicketStatus {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// One support ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    /// The ticket id, e.g. `TCK-1003`.
    pub id: String,
    /// The email of the caller who owns it.
    pub owner: String,
    /// A one-line summary.
    pub title: String,
    /// The details, possibly empty.
    pub description: String,
    /// `open` or `closed`.
    pub status: TicketStatus,
}

/// The first id handed out; seed tickets take the ids from here on, in order.
const FIRST_ID: u32 = 1001;

/// (owner, title, description, status) of every seed ticket. Titles are distinct and specific to
/// their owner, so a test can tell whose tickets a caller was shown.
const SEED: &[(&str, &str, &str, TicketStatus)] = &[
    (
        "alice@example.com",
        "CRM export of the West pipeline fails",
        "The nightly export of West region opportunities stops at 80% with a timeout.",
        TicketStatus::Open,
    ),
    (
        "alice@example.com",
        "Replace the cracked screen on my laptop",
        "Dropped it at the Denver airport; the lower left corner is cracked.",
        TicketStatus::Closed,
    ),
    (
        "alice@example.com",
        "Expense report for the Denver client dinner is stuck",
        "Submitted two weeks ago, still waiting for approval.",
        TicketStatus::Open,
    ),
    (
        "bob@example.com",
        "Boston office badge reader rejects my badge",
        "The reader at the east entrance blinks red since Monday.",
        TicketStatus::Open,
    ),
    (
        "bob@example.com",
        "Add East region deals to my dashboard",
        "The dashboard only shows my own deals, not the region's.",
        TicketStatus::Closed,
    ),
    (
        "carol@example.com",
        "Grant my team access to the quota planner",
        "Four new reps joined and cannot open the planner.",
        TicketStatus::Open,
    ),
    (
        "carol@example.com",
        "Headset for the Monday forecast call",
        "My headset's microphone cuts out every few minutes.",
        TicketStatus::Open,
    ),
    ("carol@example.com", "Move the quarterly review to the large meeting room", "", TicketStatus::Closed),
    (
        "dave@example.com",
        "Board deck template is missing the new logo",
        "The template in the shared drive still has the old logo.",
        TicketStatus::Open,
    ),
    ("dave@example.com", "Set up mail delegation for my assistant", "", TicketStatus::Closed),
    (
        "erin@example.com",
        "Month-end close report times out",
        "The close report for finance times out after 10 minutes.",
        TicketStatus::Open,
    ),
    (
        "erin@example.com",
        "Unlock the ledger reconciliation workbook",
        "Locked after three wrong passwords.",
        TicketStatus::Closed,
    ),
    (
        "erin@example.com",
        "Reimburse the audit firm's travel invoice",
        "Invoice 2291 from the external auditors is unpaid.",
        TicketStatus::Open,
    ),
    (
        "frank@example.com",
        "Rotate the service principal secret for the sales space",
        "The secret expires at the end of the month.",
        TicketStatus::Open,
    ),
    (
        "frank@example.com",
        "Keep audit logs for 400 days",
        "Compliance asked for a longer audit log retention.",
        TicketStatus::Closed,
    ),
    ("frank@example.com", "Provision a sandbox workspace for the new admin", "", TicketStatus::Open),
];

/// All tickets, in id order, behind one lock: the book is tiny and every operation is a short
/// in-memory scan, so finer locking would buy nothing.
#[derive(Debug)]
pub struct TicketBook {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    tickets: Vec<Ticket>,
    next_id: u32,
}

impl Default for TicketBook {
    fn default() -> Self {
        Self::seeded()
    }
}

impl TicketBook {
    /// The demo book: the same seed tickets on every start (`TCK-1001` onwards).
    pub fn seeded() -> Self {
        let tickets: Vec<Ticket> = SEED
            .iter()
            .zip(FIRST_ID..)
            .map(|(&(owner, title, description, status), n)| Ticket {
                id: format!("TCK-{n}"),
                owner: owner.into(),
                title: title.into(),
                description: description.into(),
                status,
            })
            .collect();
        let next_id = FIRST_ID + tickets.len() as u32;
        Self { inner: Mutex::new(Inner { tickets, next_id }) }
    }

    /// `owner`'s tickets with the given status (`None` = all), in id order.
    pub fn list(&self, owner: &str, status: Option<TicketStatus>) -> Vec<Ticket> {
        self.lock()
            .tickets
            .iter()
            .filter(|t| t.owner == owner && status.is_none_or(|s| t.status == s))
            .cloned()
            .collect()
    }

    /// The ticket `id` if `owner` owns it. Someone else's ticket and a ticket that does not exist
    /// look the same, so the answer never reveals that another caller's ticket exists.
    pub fn get(&self, owner: &str, id: &str) -> Option<Ticket> {
        let id = id.trim();
        self.lock().tickets.iter().find(|t| t.owner == owner && t.id.eq_ignore_ascii_case(id)).cloned()
    }

    /// Opens a ticket owned by `owner` and returns it.
    pub fn open(&self, owner: &str, title: &str, description: &str) -> Ticket {
        let mut inner = self.lock();
        let ticket = Ticket {
            id: format!("TCK-{}", inner.next_id),
            owner: owner.into(),
            title: title.into(),
            description: description.into(),
            status: TicketStatus::Open,
        };
        inner.next_id += 1;
        inner.tickets.push(ticket.clone());
        ticket
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No operation can leave the book half-updated (each is a push or a read), so a panic
        // elsewhere while holding the lock does not make the data unusable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: [&str; 6] = [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
        "erin@example.com",
        "frank@example.com",
    ];

    #[test]
    fn every_demo_user_has_a_few_tickets_open_and_closed() {
        let book = TicketBook::seeded();
        for user in USERS {
            let all = book.list(user, None);
            assert!((2..=4).contains(&all.len()), "{user}: {all:?}");
            assert!(all.iter().any(|t| t.status == TicketStatus::Open), "{user}");
            assert!(all.iter().any(|t| t.status == TicketStatus::Closed), "{user}");
        }
        let mut titles: Vec<&str> = SEED.iter().map(|s| s.1).collect();
        titles.sort_unstable();
        titles.dedup();
        assert_eq!(titles.len(), SEED.len(), "titles are distinct");
    }

    #[test]
    fn ids_are_deterministic_and_reads_are_scoped_to_the_owner() {
        let book = TicketBook::seeded();
        assert_eq!(
            book.get("alice@example.com", "TCK-1003").map(|t| t.owner),
            Some("alice@example.com".into())
        );
        assert_eq!(book.get("alice@example.com", " tck-1003 ").map(|t| t.id), Some("TCK-1003".into()));
        assert_eq!(book.get("bob@example.com", "TCK-1003"), None);
        assert_eq!(book.get("bob@example.com", "TCK-9999"), None);
    }

    #[test]
    fn opened_tickets_get_the_next_id_and_belong_to_their_owner() {
        let book = TicketBook::seeded();
        let t = book.open("bob@example.com", "New monitor", "");
        assert_eq!(t.id, format!("TCK-{}", FIRST_ID + SEED.len() as u32));
        assert_eq!(t.status, TicketStatus::Open);
        assert!(book.list("bob@example.com", Some(TicketStatus::Open)).contains(&t));
        assert!(!book.list("alice@example.com", None).contains(&t));
    }
}
