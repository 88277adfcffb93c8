//! Token usage summed per request, across every LLM call a run makes (routing, synthesis,
//! text-to-SQL, formatting), so a response can report what its run really used.

use crate::Usage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Usage per request id, shared by every clone of an [`LlmClient`](crate::LlmClient). Calls
/// are only counted for requests that have an open [`UsageScope`]: nothing accumulates for a
/// request nobody will read, and a scope removes its entry when dropped, even if the run was
/// cancelled midway.
#[derive(Clone, Default)]
pub struct UsageLedger {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

#[derive(Default)]
struct Entry {
    usage: Usage,
    /// Open scopes: a nested run of the same request shares its parent's entry.
    scopes: usize,
}

impl UsageLedger {
    /// Starts counting the calls of `request_id` until the returned scope is dropped.
    pub fn open(&self, request_id: &str) -> UsageScope {
        if let Ok(mut map) = self.inner.lock() {
            map.entry(request_id.to_string()).or_default().scopes += 1;
        }
        UsageScope { ledger: self.clone(), request_id: request_id.to_string() }
    }

    /// Adds one call's usage to its request, if that request is being counted.
    pub(crate) fn add(&self, request_id: &str, usage: Usage) {
        if let Ok(mut map) = self.inner.lock()
            && let Some(entry) = map.get_mut(request_id)
        {
            entry.usage += usage;
        }
    }

    /// How many requests are being counted (for tests: it returns to 0).
    pub fn open_requests(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Counting one request's LLM usage; read it with [`UsageScope::total`].
pub struct UsageScope {
    ledger: UsageLedger,
    request_id: String,
}

impl UsageScope {
    /// The usage of the request's calls so far.
    pub fn total(&self) -> Usage {
        let map = self.ledger.inner.lock();
        map.ok().and_then(|m| m.get(&self.request_id).map(|e| e.usage)).unwrap_or_default()
    }
}

impl Drop for UsageScope {
    fn drop(&mut self) {
        if let Ok(mut map) = self.ledger.inner.lock()
            && let Some(entry) = map.get_mut(&self.request_id)
        {
            entry.scopes -= 1;
            if entry.scopes == 0 {
                map.remove(&self.request_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(p: u64, c: u64) -> Usage {
        Usage { prompt_tokens: p, completion_tokens: c, ..Default::default() }
    }

    #[test]
    fn calls_are_summed_per_open_request_and_forgotten_when_closed() {
        let ledger = UsageLedger::default();
        ledger.add("r1", usage(5, 5)); // not open: not kept
        let scope = ledger.open("r1");
        let nested = ledger.open("r1");
        ledger.add("r1", usage(10, 2));
        ledger.add("r2", usage(1, 1));
        drop(nested);
        ledger.add("r1", usage(3, 4));
        assert_eq!(scope.total(), usage(13, 6));
        drop(scope);
        assert_eq!(ledger.open_requests(), 0);
    }
}
