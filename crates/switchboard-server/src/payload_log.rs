//! The payload log (`[payload_log]`, off by default): per request to a run endpoint, the request
//! and response bodies, status, duration and requester, written to the store's `payloads` table.
//!
//! A route layer taps both bodies as they stream through, keeping the first `max_bytes` of each
//! (and counting the rest), so the handler and the client see exactly what they would without
//! it, streamed answers included. The row is queued when the response body ends, or is dropped
//! because the client went away; queueing never waits for the store. Both bodies go through the
//! PII detector of the guardrails with masking on, whatever the guardrails are configured to do:
//! a log kept for debugging and audit must not become a second copy of the callers' card numbers.
//! The requester is recorded by [`note_caller`], which the run endpoints call once they have
//! authenticated the caller; a request refused before that is logged with an empty requester.

use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Instant;
use switchboard_core::{Caller, GuardrailConfig, PiiAction, PiiConfig, RequestId, unix_nanos_now};
use switchboard_govern::guardrails::{Direction, Guardrails, Verdict};
use switchboard_store::{PayloadRow, Store, cap_payload};

tokio::task_local! {
    /// Where the handler running inside [`tap`] leaves the caller it authenticated.
    static CALLER: Arc<OnceLock<(String, String)>>;
}

/// Records the authenticated caller of the request being tapped, if the payload log is tapping
/// it; a no-op otherwise.
pub(crate) fn note_caller(caller: &Caller) {
    let _ = CALLER.try_with(|slot| slot.set((caller.email().to_string(), caller.subject().to_string())));
}

/// Every PII kind, masked in both directions, and no topics: the detector alone.
static MASKER: LazyLock<Guardrails> = LazyLock::new(|| {
    let config = GuardrailConfig {
        pii: PiiConfig { input: PiiAction::Mask, output: PiiAction::Mask, kinds: Vec::new() },
        ..GuardrailConfig::default()
    };
    // No topics, so nothing can fail to compile.
    Guardrails::new(&config).unwrap_or_else(|e| panic!("the payload log's PII masker: {e}"))
});

/// `text` with its PII replaced by placeholders.
fn masked(text: String) -> String {
    match MASKER.check(Direction::Input, &text) {
        Verdict::Masked { text, .. } => text,
        Verdict::Pass | Verdict::Blocked { .. } => text,
    }
}

/// Bytes kept beyond the cap, so PII straddling it is still seen whole by the masker.
const MASK_MARGIN: usize = 256;

/// The first bytes of a body and how many there were in all.
#[derive(Default)]
struct Capture {
    head: Vec<u8>,
    total: usize,
}

impl Capture {
    fn take(&mut self, chunk: &[u8], max: usize) {
        let room = (max + MASK_MARGIN).saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.total += chunk.len();
    }

    /// The captured text, masked, then capped at `max` bytes.
    fn text(&self, max: usize) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        let cut = self.total > self.head.len();
        if cut {
            // The head ends mid-body, perhaps inside a card number the masker would then miss:
            // drop the trailing run of characters PII is made of. What it drops is past the cap
            // unless the run is longer than the margin, and then the marker still says "cut".
            let keep = text.trim_end_matches(|c: char| c.is_alphanumeric() || " .@+-()_%".contains(c)).len();
            text.truncate(keep);
        }
        let text = masked(text);
        if !cut && text.len() <= max {
            return text;
        }
        cap_payload(text, max, self.total)
    }
}

fn lock(capture: &Mutex<Capture>) -> std::sync::MutexGuard<'_, Capture> {
    capture.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A body whose chunks are copied into `capture` as they pass.
fn tee(body: Body, capture: Arc<Mutex<Capture>>, max: usize, guard: Option<Submit>) -> Body {
    let stream = body.into_data_stream().map(move |chunk| {
        // The guard lives as long as the stream: dropping the body (end or disconnect) submits.
        let _ = &guard;
        if let Ok(bytes) = &chunk {
            lock(&capture).take(bytes, max);
        }
        chunk
    });
    Body::from_stream(stream)
}

/// Queues the row when dropped, that is once the response body is finished with.
struct Submit {
    store: Arc<dyn Store>,
    row: PayloadRow,
    started: Instant,
    request: Arc<Mutex<Capture>>,
    response: Arc<Mutex<Capture>>,
    caller: Arc<OnceLock<(String, String)>>,
    max: usize,
}

impl Drop for Submit {
    fn drop(&mut self) {
        let mut row = std::mem::take(&mut self.row);
        row.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        row.ts_unix_ms = unix_nanos_now() / 1_000_000;
        if let Some((email, subject)) = self.caller.get() {
            row.caller_email.clone_from(email);
            row.caller_subject = (subject != email).then(|| subject.clone());
        }
        row.request_body = lock(&self.request).text(self.max);
        row.response_body = lock(&self.response).text(self.max);
        self.store.log_payload(row);
    }
}

/// The route layer, on the run endpoints when `[payload_log] enabled`: logs the request it wraps
/// under `endpoint`, the name of the API that answers it.
pub(crate) async fn tap(
    State((state, endpoint)): State<(AppState, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let max = state.runtime.config.config.payload_log.max_bytes;
    let started = Instant::now();
    let request_id =
        request.extensions().get::<RequestId>().map(|id| id.as_str().to_string()).unwrap_or_default();
    let request_capture = Arc::new(Mutex::new(Capture::default()));
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, tee(body, request_capture.clone(), max, None));

    let caller = Arc::new(OnceLock::new());
    let response = CALLER.scope(caller.clone(), next.run(request)).await;

    let (parts, body) = response.into_parts();
    let response_capture = Arc::new(Mutex::new(Capture::default()));
    let submit = Submit {
        store: state.runtime.store.clone(),
        row: PayloadRow {
            request_id,
            endpoint: endpoint.into(),
            status: parts.status.as_u16(),
            ..PayloadRow::default()
        },
        started,
        request: request_capture,
        response: response_capture.clone(),
        caller,
        max,
    };
    Response::from_parts(parts, tee(body, response_capture, max, Some(submit)))
}
