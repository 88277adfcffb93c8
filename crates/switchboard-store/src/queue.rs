//! The write queue both stores record through. Spans and audit rows are queued on the request
//! path and written in batches by one writer thread; recording never waits for the store.
//!
//! While the store is unavailable, the writer appends each batch to the spill file (one fsync per
//! batch) instead of waiting, and keeps spilling, so rows stay in order, until a replay of the file
//! into the store succeeds; it retries with backoff. If the queue itself is full (the writer is
//! stuck in a slow connection attempt), the recording call appends its row to the spill file
//! directly rather than blocking (a `write`, never an fsync: the writer's next batch syncs it);
//! such a row may overtake rows still queued, which the replay does not reorder. The writer
//! fsyncs outside the spill file's lock, and while it replays a long outage's file it keeps
//! moving newly queued rows to the file behind it, so the queue does not fill meanwhile.
//!
//! Besides telemetry, the queue carries payload log rows, thread turns and stored responses (and
//! their deletes); turns and responses are served from memory until committed (see `behind`).
//! Every row carries an id the stores insert idempotently (audit rows their row id, spans their
//! span id), so a batch whose commit was in doubt, or a file replayed again after a crash, is
//! never doubled.
//!
//! A flush is acknowledged once everything queued before it is committed to the store or, while
//! the store is unavailable, durably spilled. Dropping the queue lets the writer drain what is
//! left (spilling it if need be) and waits for it; what is still spilled then is replayed by the
//! next process to open the same spill file.

use crate::StoredResponse;
use crate::behind::WriteBehind;
use crate::payload::PayloadRow;
use crate::queued_span::QueuedSpan;
use crate::spill::{Spill, SpillConfig};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvError, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchboard_core::{AuditRecord, Error, Message, Result, SpanRecord, TelemetrySink};
use tokio::sync::oneshot;

/// Rows written in one transaction at most.
const MAX_BATCH: usize = 1024;

/// How long the writer keeps collecting after a batch's first row before committing it (unless
/// the batch is full, a flush asks for it, or the queue closes): the rows a burst of runs records
/// then share one transaction and one fsync, instead of a commit for every few rows rewriting
/// the same table and index pages. 50 ms rather than 10 ms cut the SQLite writer's CPU per run
/// by about a fifth in the supervisor bench; readers that need the rows flush first.
const LINGER: Duration = Duration::from_millis(50);

/// The pause before the first replay attempt after the store failed; it doubles per failure up
/// to [`MAX_RETRY`].
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(250);

/// The longest pause between two replay attempts while the store stays unavailable.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(5);

/// A row waiting for the writer. Boxed so the preallocated queue slots stay small.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Record {
    /// A span; its request and span id make its insert idempotent.
    Span(Box<QueuedSpan>),
    /// An audit row and the id, unique to it, that makes its insert idempotent.
    Audit {
        /// The row id (`audit.row_id`), assigned when the row is queued.
        id: String,
        /// The row.
        row: Box<AuditRecord>,
    },
    /// A payload log row and its id (`payloads.row_id`), assigned when it is queued.
    Payload {
        /// The row id.
        id: String,
        /// The row.
        row: Box<PayloadRow>,
    },
    /// A thread turn; its turn id (`thread_turns.turn_id`) makes the append idempotent. Its
    /// sequence number is assigned when it is written, so turns keep queue order.
    Turn {
        /// The turn id.
        id: String,
        /// The thread it extends.
        thread_id: String,
        /// The request that produced it.
        request_id: String,
        /// The turn.
        message: Box<Message>,
        /// When it was accepted, in milliseconds since the epoch.
        created_unix_ms: u64,
    },
    /// A stored response (an upsert by response id, so writing it again changes nothing).
    Response {
        /// The write id, which tells the write-behind which of several writes settled.
        id: String,
        /// The response.
        response: Box<StoredResponse>,
    },
    /// Deletes a stored response of `owner`.
    DeleteResponse {
        /// The write id.
        id: String,
        /// The owner whose response it is.
        owner: String,
        /// The response id.
        response_id: String,
    },
}

/// A fresh id for a [`Record`]: what makes its write idempotent, and tells the write-behind which
/// of several writes to the same key settled. Ordered by creation time, so the unique indexes on
/// these ids grow at one end.
pub(crate) fn new_id() -> String {
    switchboard_core::time_ordered_id()
}

/// What travels on the queue.
enum Command {
    Record(Record),
    /// Acknowledged once everything queued before it is committed or spilled; the queue is FIFO,
    /// so that is exactly the guarantee `Store::flush` promises.
    Flush(oneshot::Sender<()>),
}

/// The queue's channel with at most `capacity` rows in it. The channel itself is unbounded and the
/// rows are counted: a bounded one (`sync_channel`) allocates and touches every slot up front,
/// 8,192 slots of 96 bytes, which was 0.8 MB of an idle server's 2.6 MB of heap. This one holds
/// memory only for what is queued. Flushes are not counted, so a flush never waits for room.
fn channel(capacity: usize) -> (Sending, Receiving) {
    let (tx, rx) = mpsc::channel();
    let rows = Arc::new(AtomicUsize::new(0));
    (Sending { tx, rows: rows.clone(), capacity }, Receiving { rx, rows })
}

/// The recording side of [`channel`].
struct Sending {
    tx: Sender<Command>,
    rows: Arc<AtomicUsize>,
    capacity: usize,
}

/// Why a row was not queued.
enum Refused {
    /// `capacity` rows are queued already; here is the row back.
    Full(Record),
    /// The writer is gone.
    Closed,
}

impl Sending {
    fn record(&self, record: Record) -> std::result::Result<(), Refused> {
        if self.rows.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.rows.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Full(record));
        }
        self.tx.send(Command::Record(record)).map_err(|_| {
            self.rows.fetch_sub(1, Ordering::Relaxed);
            Refused::Closed
        })
    }

    /// Whether the flush was queued (the writer is still there).
    fn flush(&self, ack: oneshot::Sender<()>) -> bool {
        self.tx.send(Command::Flush(ack)).is_ok()
    }
}

/// The writer's side of [`channel`]: every row taken off it makes room for another.
struct Receiving {
    rx: Receiver<Command>,
    rows: Arc<AtomicUsize>,
}

impl Receiving {
    fn recv(&self) -> std::result::Result<Command, RecvError> {
        self.rx.recv().map(|cmd| self.taken(cmd))
    }

    fn recv_timeout(&self, timeout: Duration) -> std::result::Result<Command, RecvTimeoutError> {
        self.rx.recv_timeout(timeout).map(|cmd| self.taken(cmd))
    }

    fn try_recv(&self) -> std::result::Result<Command, TryRecvError> {
        self.rx.try_recv().map(|cmd| self.taken(cmd))
    }

    fn taken(&self, cmd: Command) -> Command {
        if matches!(cmd, Command::Record(_)) {
            self.rows.fetch_sub(1, Ordering::Relaxed);
        }
        cmd
    }
}

/// Why a batch could not be written: the store is unavailable (or failed in a way a later attempt
/// may not), so the rows are kept for a retry.
#[derive(Debug)]
pub(crate) struct Unavailable(pub(crate) String);

/// The writer's side of the queue.
pub(crate) struct Batches {
    rx: Receiving,
    spill: Arc<Mutex<Spill>>,
    behind: Arc<WriteBehind>,
}

impl Batches {
    /// Calls `write` with each batch until the queue is closed and drained. `write` commits a
    /// batch in one transaction and returns how many rows it had to skip as invalid, or
    /// [`Unavailable`], in which case the rows go to the spill file and are replayed later.
    pub(crate) fn for_each(
        self,
        mut write: impl FnMut(&[Record]) -> std::result::Result<usize, Unavailable>,
    ) {
        let mut batch: Vec<Record> = Vec::with_capacity(MAX_BATCH);
        let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
        let mut retry = Retry::default();
        let mut closed = false;
        while !closed {
            let pending = lock(&self.spill).pending();
            // With spilled rows waiting, wake up in time for the next replay attempt.
            let first = if pending {
                match self.rx.recv_timeout(retry.wait()) {
                    Ok(cmd) => Some(cmd),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        closed = true;
                        None
                    }
                }
            } else {
                // `recv` fails only once every sender is gone *and* the queue is empty, so closing
                // the queue drains it rather than discarding rows.
                self.rx.recv().map_err(|_| closed = true).ok()
            };
            let mut next = first;
            let linger_until = Instant::now() + LINGER;
            loop {
                while let Some(cmd) = next {
                    match cmd {
                        Command::Record(record) => batch.push(record),
                        Command::Flush(ack) => acks.push(ack),
                    }
                    next = if batch.len() < MAX_BATCH { self.rx.try_recv().ok() } else { None };
                }
                if batch.is_empty() || batch.len() >= MAX_BATCH || !acks.is_empty() || closed {
                    break;
                }
                let linger = linger_until.saturating_duration_since(Instant::now());
                if linger.is_zero() {
                    break;
                }
                // Sleep, not wait on the channel: a receiver waiting there is woken by every row
                // sent (a futex wake on the request path and a context switch here, a dozen times
                // a run). A flush or the queue closing unparks this thread.
                std::thread::park_timeout(linger);
                match self.rx.try_recv() {
                    Ok(cmd) => next = Some(cmd),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                self.write_or_spill(&batch, &mut write, &mut retry);
                batch.clear();
            }
            // A flush or the shutdown drain tries the replay at once rather than after the backoff.
            if lock(&self.spill).pending() && (retry.due() || !acks.is_empty() || closed) {
                self.replay(&mut write, &mut retry, &mut acks);
            }
            for ack in acks.drain(..) {
                // The flusher may have been cancelled; nobody left to tell.
                let _ = ack.send(());
            }
        }
        let spill = lock(&self.spill);
        if spill.pending() {
            tracing::warn!(path = %spill.path().display(),
                "store: telemetry is still spilled at shutdown; the next start replays it");
        }
    }

    /// Writes `batch`, or appends it to the spill file: behind rows already spilled (so order is
    /// kept), or because the store failed.
    fn write_or_spill(
        &self,
        batch: &[Record],
        write: &mut impl FnMut(&[Record]) -> std::result::Result<usize, Unavailable>,
        retry: &mut Retry,
    ) {
        if !lock(&self.spill).pending() {
            match write(batch) {
                Ok(skipped) => {
                    if skipped > 0 {
                        tracing::warn!(skipped, "store: skipped telemetry rows that could not be inserted");
                    }
                    self.behind.settle(batch);
                    return;
                }
                Err(Unavailable(why)) => {
                    tracing::warn!(rows = batch.len(), error = %why,
                        "store: the store is unavailable; spilling telemetry to local disk");
                    retry.failed();
                }
            }
        }
        self.spill_and_sync(batch);
    }

    /// Appends `records` to the spill file and fsyncs it, holding the lock only for the append.
    fn spill_and_sync(&self, records: &[Record]) {
        let (lost, handle) = {
            let mut spill = lock(&self.spill);
            let lost = spill.append(records);
            (lost, spill.sync_handle())
        };
        forget_unspilled(&self.behind, lost.iter().filter_map(|&i| records.get(i)));
        if let Some(file) = handle
            && let Err(e) = file.sync_data()
        {
            tracing::error!(error = %e, "store: fsync of the spill file failed");
        }
    }

    /// While a long replay runs, moves what was queued meanwhile to the spill file (behind the rows
    /// being replayed, so order is kept), so the queue never fills and recording calls never
    /// overflow onto the request path. Flushes are collected into `acks`, to be acknowledged once
    /// the replay is over (their rows are then committed, or spilled because the store failed).
    /// Returns whether the queue closed.
    fn absorb_queue(&self, acks: &mut Vec<oneshot::Sender<()>>) -> bool {
        let mut records = Vec::new();
        let mut closed = false;
        while records.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(Command::Record(record)) => records.push(record),
                Ok(Command::Flush(ack)) => acks.push(ack),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if !records.is_empty() {
            self.spill_and_sync(&records);
        }
        closed
    }

    /// Replays the spill file into the store a batch at a time, until it is empty or the store
    /// fails again.
    fn replay(
        &self,
        write: &mut impl FnMut(&[Record]) -> std::result::Result<usize, Unavailable>,
        retry: &mut Retry,
        acks: &mut Vec<oneshot::Sender<()>>,
    ) {
        let mut replayed = 0usize;
        loop {
            // The lock is not held while the store is written, so a recording call that overflows
            // the queue meanwhile only waits for the disk, never for the store.
            let chunk = lock(&self.spill).next_chunk(MAX_BATCH);
            let (records, offset) = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::error!(error = %e.message, "store: cannot replay the spill file");
                    retry.failed();
                    return;
                }
            };
            if !records.is_empty() {
                match write(&records) {
                    Ok(skipped) => {
                        if skipped > 0 {
                            tracing::warn!(
                                skipped,
                                "store: skipped spilled telemetry rows that could not be inserted"
                            );
                        }
                        replayed += records.len();
                        self.behind.settle(&records);
                    }
                    Err(Unavailable(why)) => {
                        tracing::debug!(error = %why, "store: still unavailable; the spill file waits");
                        retry.failed();
                        return;
                    }
                }
            }
            // A replay of a long outage's file takes a while; keep the queue moving meanwhile.
            if self.absorb_queue(acks) {
                tracing::debug!("store: the queue closed during a replay; it drains next");
            }
            let mut spill = lock(&self.spill);
            spill.replayed_to(offset);
            if !spill.pending() {
                if replayed > 0 {
                    tracing::info!(rows = replayed, "store: the store is back; replayed spilled telemetry");
                }
                retry.succeeded();
                return;
            }
        }
    }
}

/// When the next attempt is due: a back-off doubling from [`FIRST_RETRY`] to [`MAX_RETRY`] after
/// each failure, cleared by a success.
#[derive(Default)]
pub(crate) struct Retry {
    at: Option<Instant>,
    backoff: Option<Duration>,
}

impl Retry {
    pub(crate) fn failed(&mut self) {
        let backoff = self.backoff.map_or(FIRST_RETRY, |b| (b * 2).min(MAX_RETRY));
        self.backoff = Some(backoff);
        self.at = Some(Instant::now() + backoff);
    }

    pub(crate) fn succeeded(&mut self) {
        *self = Self::default();
    }

    pub(crate) fn due(&self) -> bool {
        self.at.is_none_or(|at| Instant::now() >= at)
    }

    pub(crate) fn wait(&self) -> Duration {
        self.at.map_or(Duration::ZERO, |at| at.saturating_duration_since(Instant::now()))
    }
}

/// Forgets, in the write-behind, the `lost` rows the spill file did not take (full, or failing):
/// they will never be committed, and kept in memory they would be served as stored and hold its
/// capacity until a restart, so that after a long outage every write would be refused.
fn forget_unspilled<'a>(behind: &WriteBehind, lost: impl IntoIterator<Item = &'a Record>) {
    let lost: Vec<&Record> = lost
        .into_iter()
        .filter(|r| {
            matches!(r, Record::Response { .. } | Record::DeleteResponse { .. } | Record::Turn { .. })
        })
        .collect();
    if lost.is_empty() {
        return;
    }
    tracing::error!(
        rows = lost.len(),
        "store: stored responses, response deletes or thread turns could not be spilled while the \
         store is unavailable; they are lost"
    );
    behind.settle(lost);
}

/// The spill file, whatever a panicking holder left: its state is only offsets and counters, all
/// of which stay consistent between statements.
fn lock(spill: &Mutex<Spill>) -> MutexGuard<'_, Spill> {
    spill.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The recording side, owned by a store.
pub(crate) struct WriteQueue {
    /// `None` only while dropping, so the writer sees the queue close before it is joined.
    queue: Option<Sending>,
    spill: Arc<Mutex<Spill>>,
    /// Responses and turns queued but not yet committed, served from memory meanwhile.
    behind: Arc<WriteBehind>,
    writer: Option<JoinHandle<()>>,
    name: &'static str,
}

impl WriteQueue {
    /// A queue of `capacity` rows spilling to `spill`, and a thread named `name` running `writer`
    /// over its batches. Opening the spill file adopts what earlier runs left in it; the writer
    /// replays that first.
    pub(crate) fn spawn(
        name: &'static str,
        capacity: usize,
        spill: &SpillConfig,
        writer: impl FnOnce(Batches) + Send + 'static,
    ) -> Result<Self> {
        let spill = Arc::new(Mutex::new(Spill::open(spill)?));
        let behind = Arc::new(WriteBehind::new(crate::behind::DEFAULT_PENDING_CAPACITY));
        let (queue, rx) = channel(capacity);
        let batches = Batches { rx, spill: spill.clone(), behind: behind.clone() };
        let writer = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || writer(batches))
            .map_err(|e| Error::internal(format!("store: cannot start the writer thread: {e}")))?;
        Ok(Self { queue: Some(queue), spill, behind, writer: Some(writer), name })
    }

    /// Queues a row without ever waiting for the store: a full queue sends it to the spill file.
    pub(crate) fn enqueue(&self, record: Record) {
        let Some(queue) = &self.queue else { return };
        match queue.record(record) {
            Ok(()) => {}
            Err(Refused::Full(record)) => {
                // Appended, not fsync'd: the request path waits for a `write`, never for the disk.
                // The writer's next batch fsyncs the file, this row with it; until then the row
                // is in the page cache, which survives the process (not the machine) crashing.
                tracing::debug!("store: telemetry queue full; spilling the row to local disk");
                self.wake_writer();
                let lost = lock(&self.spill).append(std::slice::from_ref(&record));
                if !lost.is_empty() {
                    forget_unspilled(&self.behind, [&record]);
                }
            }
            Err(Refused::Closed) => self.writer_gone(),
        }
    }

    /// Queues a payload log row.
    pub(crate) fn payload(&self, row: PayloadRow) {
        self.enqueue(Record::Payload { id: new_id(), row: Box::new(row) });
    }

    /// Queues `response` and serves it from memory until it is committed.
    pub(crate) fn put_response(&self, response: &StoredResponse) -> Result<()> {
        let record = self.behind.put_response(response)?;
        self.enqueue(record);
        Ok(())
    }

    /// Queues a thread turn and serves it from memory until it is committed.
    pub(crate) fn append_turn(&self, thread_id: &str, request_id: &str, message: &Message) -> Result<()> {
        let record = self.behind.append_turn(thread_id, request_id, message)?;
        self.enqueue(record);
        Ok(())
    }

    /// Deletes response `id` of `owner` if it is still pending (queueing the delete);
    /// `None` when it is not, and the store must be asked.
    pub(crate) fn delete_pending_response(&self, owner: &str, id: &str) -> Option<bool> {
        let (deleted, record) = self.behind.delete_response(owner, id)?;
        if let Some(record) = record {
            self.enqueue(record);
        }
        Some(deleted)
    }

    /// The writes not yet committed.
    pub(crate) fn behind(&self) -> &WriteBehind {
        &self.behind
    }

    /// Returns once every row queued before the call is committed, or spilled while the store is
    /// unavailable.
    pub(crate) async fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let (ack, done) = oneshot::channel();
        let sent = queue.flush(ack);
        if sent {
            self.wake_writer();
        }
        // The writer drops the acknowledgement unsent only if it died.
        if !sent || done.await.is_err() {
            self.writer_gone();
        }
    }

    /// Ends the writer's linger (see [`LINGER`]) at once; rows queued during it do not wake it.
    fn wake_writer(&self) {
        if let Some(writer) = &self.writer {
            writer.thread().unpark();
        }
    }

    /// Whether the writer thread is still running.
    pub(crate) fn is_alive(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| !w.is_finished())
    }

    fn writer_gone(&self) {
        tracing::error!("store: the writer thread {} has stopped; telemetry was not persisted", self.name);
    }
}

impl Drop for WriteQueue {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain what is left and exit; joining it makes the end
        // of the drop a point at which every recorded row is committed or spilled.
        drop(self.queue.take());
        self.wake_writer();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store: the writer thread {} panicked", self.name);
        }
    }
}

impl TelemetrySink for WriteQueue {
    fn span(&self, span: SpanRecord) {
        self.enqueue(Record::Span(Box::new(span.into())));
    }

    fn audit(&self, record: AuditRecord) {
        self.enqueue(Record::Audit { id: new_id(), row: Box::new(record) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: &str) -> StoredResponse {
        StoredResponse {
            id: id.into(),
            owner: "alice".into(),
            previous_id: None,
            turns: vec![Message::user("q")],
            body: serde_json::json!({"id": id}),
            created_unix_ms: 1_000,
        }
    }

    /// A queue of one slot whose store is always unavailable and whose spill file takes nothing;
    /// its writer starts only once the returned sender is dropped.
    fn refusing_queue(dir: &std::path::Path) -> (WriteQueue, mpsc::Sender<()>) {
        let (start, gate) = mpsc::channel::<()>();
        let spill = SpillConfig { path: dir.join("spill.jsonl"), max_bytes: 0 };
        let queue = WriteQueue::spawn("test-writer", 1, &spill, move |batches| {
            let _ = gate.recv();
            batches.for_each(|_| Err(Unavailable("the store is down".into())));
        })
        .unwrap();
        (queue, start)
    }

    fn row(id: &str) -> Record {
        Record::DeleteResponse { id: id.into(), owner: "alice".into(), response_id: "r".into() }
    }

    #[test]
    fn the_channel_holds_at_most_its_capacity_in_rows_and_always_takes_a_flush() {
        let (tx, rx) = channel(2);
        assert!(tx.record(row("1")).is_ok());
        assert!(tx.record(row("2")).is_ok());
        match tx.record(row("3")) {
            Err(Refused::Full(Record::DeleteResponse { id, .. })) => {
                assert_eq!(id, "3", "the row comes back")
            }
            _ => panic!("a third row must be refused"),
        }
        let (ack, _done) = oneshot::channel();
        assert!(tx.flush(ack), "a flush does not wait for room");
        assert!(matches!(rx.try_recv(), Ok(Command::Record(_))));
        assert!(tx.record(row("4")).is_ok(), "taking a row makes room for one");
        assert!(matches!(tx.record(row("5")), Err(Refused::Full(_))));
        let order: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|cmd| match cmd {
                Command::Record(Record::DeleteResponse { id, .. }) => id,
                Command::Flush(_) => "flush".into(),
                Command::Record(_) => "other".into(),
            })
            .collect();
        assert_eq!(order, ["2", "flush", "4"]);
        drop(rx);
        assert!(matches!(tx.record(row("6")), Err(Refused::Closed)), "the writer is gone");
    }

    #[tokio::test]
    async fn writes_the_spill_file_refuses_leave_the_write_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, start) = refusing_queue(dir.path());
        queue.put_response(&response("queued")).unwrap();
        // The one slot is taken: this write overflows onto the spill file, which refuses it.
        queue.put_response(&response("overflowed")).unwrap();
        assert_eq!(queue.behind().response("alice", "overflowed"), None, "not served as stored");
        assert!(queue.behind().response("alice", "queued").is_some(), "still on its way");
        drop(start);
        queue.append_turn("t", "r", &Message::user("hi")).unwrap();
        queue.flush().await;
        assert_eq!(queue.behind().response("alice", "queued"), None);
        assert!(queue.behind().turns("t").is_empty());
        assert_eq!(queue.behind().len(), 0, "nothing the store will never get holds memory");
    }
}
