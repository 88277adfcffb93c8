//! The bounded write queue both stores record through. Spans and audit rows are queued on the
//! request path and written in batches by one writer thread; a full queue applies backpressure
//! rather than dropping rows, and a flush is acknowledged once everything queued before it is
//! committed. Dropping the queue lets the writer drain what is left, and waits for it.

use std::sync::mpsc::{self, Receiver, SendError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use switchboard_core::{AuditRecord, Error, Result, SpanRecord, TelemetrySink};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

/// Rows written in one transaction at most.
const MAX_BATCH: usize = 1024;

/// A row waiting for the writer. Boxed so the preallocated queue slots stay small.
pub(crate) enum Record {
    Span(Box<SpanRecord>),
    Audit(Box<AuditRecord>),
}

/// What travels on the queue.
enum Command {
    Record(Record),
    /// Acknowledged once everything queued before it is committed; the queue is FIFO, so that is
    /// exactly the guarantee `Store::flush` promises.
    Flush(oneshot::Sender<()>),
}

/// The writer's side of the queue.
pub(crate) struct Batches(Receiver<Command>);

impl Batches {
    /// Calls `write` with each batch until the queue is closed and drained, acknowledging the
    /// flushes queued behind each batch once it is written.
    pub(crate) fn for_each(self, mut write: impl FnMut(&[Record])) {
        let mut batch: Vec<Record> = Vec::with_capacity(MAX_BATCH);
        let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
        // `recv` fails only once every sender is gone *and* the queue is empty, so closing the
        // queue drains it rather than discarding rows.
        while let Ok(first) = self.0.recv() {
            let mut next = Some(first);
            while let Some(cmd) = next {
                match cmd {
                    Command::Record(record) => batch.push(record),
                    Command::Flush(ack) => acks.push(ack),
                }
                next = if batch.len() < MAX_BATCH { self.0.try_recv().ok() } else { None };
            }
            if !batch.is_empty() {
                write(&batch);
                batch.clear();
            }
            for ack in acks.drain(..) {
                // The flusher may have been cancelled; nobody left to tell.
                let _ = ack.send(());
            }
        }
    }
}

/// The recording side, owned by a store.
pub(crate) struct WriteQueue {
    /// `None` only while dropping, so the writer sees the queue close before it is joined.
    queue: Option<SyncSender<Command>>,
    writer: Option<JoinHandle<()>>,
    name: &'static str,
}

impl WriteQueue {
    /// A queue of `capacity` rows and a thread named `name` running `writer` over its batches.
    pub(crate) fn spawn(
        name: &'static str,
        capacity: usize,
        writer: impl FnOnce(Batches) + Send + 'static,
    ) -> Result<Self> {
        let (queue, rx) = mpsc::sync_channel(capacity);
        let writer = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || writer(Batches(rx)))
            .map_err(|e| Error::internal(format!("store: cannot start the writer thread: {e}")))?;
        Ok(Self { queue: Some(queue), writer: Some(writer), name })
    }

    /// Queues a row; blocks (backpressure) while the queue is full.
    pub(crate) fn enqueue(&self, record: Record) {
        let Some(queue) = &self.queue else { return };
        let sent = match queue.try_send(Command::Record(record)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(cmd)) => {
                tracing::debug!("store: telemetry queue full, applying backpressure");
                send_blocking(queue, cmd)
            }
            Err(TrySendError::Disconnected(cmd)) => Err(SendError(cmd)),
        };
        if sent.is_err() {
            self.writer_gone();
        }
    }

    /// Returns once every row queued before the call is committed.
    pub(crate) async fn flush(&self) {
        let Some(queue) = self.queue.clone() else { return };
        let (ack, done) = oneshot::channel();
        let sent = match queue.try_send(Command::Flush(ack)) {
            Ok(()) => true,
            // A full queue would block this async task's worker; wait on the blocking pool.
            Err(TrySendError::Full(cmd)) => {
                tokio::task::spawn_blocking(move || queue.send(cmd)).await.is_ok_and(|sent| sent.is_ok())
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        // The writer drops the acknowledgement unsent only if it died.
        if !sent || done.await.is_err() {
            self.writer_gone();
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
        // of the drop a point at which every recorded row is committed (or given up on).
        drop(self.queue.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store: the writer thread {} panicked", self.name);
        }
    }
}

impl TelemetrySink for WriteQueue {
    fn span(&self, span: SpanRecord) {
        self.enqueue(Record::Span(Box::new(span)));
    }

    fn audit(&self, record: AuditRecord) {
        self.enqueue(Record::Audit(Box::new(record)));
    }
}

/// Blocks until `cmd` fits in the queue. On a multi-threaded runtime `block_in_place` hands this
/// worker's other tasks to another thread first, so backpressure slows the caller, not every task
/// sharing its worker.
fn send_blocking(queue: &SyncSender<Command>, cmd: Command) -> std::result::Result<(), SendError<Command>> {
    let multi_thread = Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if multi_thread { tokio::task::block_in_place(|| queue.send(cmd)) } else { queue.send(cmd) }
}
