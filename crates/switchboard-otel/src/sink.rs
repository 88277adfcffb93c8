//! [`OtlpSink`]: a [`TelemetrySink`] that passes everything to an inner sink and also exports
//! spans over OTLP/HTTP from a background worker.

use crate::config::{OtlpConfig, OtlpProtocol, redact_endpoint};
use crate::convert::span_data;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanExporter as _;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchboard_core::{AuditRecord, Error, Result, SpanRecord, TelemetrySink};
use tokio::sync::{mpsc, oneshot};

/// The least time between two warnings about the same kind of export trouble.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// What travels to the export worker.
enum Command {
    Span(Box<SpanRecord>),
    /// Acknowledged once every span queued before it has been exported (or failed to be).
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then the worker stops.
    Shutdown(oneshot::Sender<()>),
}

/// Export counters, shared with the worker.
struct Stats {
    started: Instant,
    dropped: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    /// Milliseconds after `started` of the last warning, plus one; zero means never.
    last_drop_warning: AtomicU64,
    last_failure_warning: AtomicU64,
}

impl Stats {
    /// True at most once per [`WARN_INTERVAL`] per `slot`, without locking: this runs on the
    /// request path.
    fn should_warn(&self, slot: &AtomicU64) -> bool {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1);
        let last = slot.load(Ordering::Relaxed);
        let interval = u64::try_from(WARN_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < interval {
            return false;
        }
        slot.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

/// A [`TelemetrySink`] that records every span and audit row in an inner sink (normally the
/// store) unchanged, and additionally exports spans over OTLP/HTTP (protobuf or JSON) to a
/// collector, MLflow, Phoenix or any OTLP backend.
///
/// Recording never blocks on export: a span is queued for a background worker (a thread driving
/// its own Tokio runtime, so export keeps going whatever the caller's runtime does) that sends
/// batches through `opentelemetry-otlp`'s exporter. When the queue is full the span is still
/// recorded by the inner sink but dropped from export, counted ([`OtlpSink::dropped`]) and
/// warned about at most once a minute. Export failures are counted ([`OtlpSink::failed`]) and
/// warned about likewise; header values are never logged.
///
/// [`OtlpSink::shutdown`] exports what is queued and stops the worker; dropping the sink does the
/// same, waiting at most the export timeout plus a second.
pub struct OtlpSink {
    inner: Arc<dyn TelemetrySink>,
    /// `None` only while dropping, so the worker sees the queue close.
    queue: Option<mpsc::Sender<Command>>,
    stats: Arc<Stats>,
    endpoint: String,
    worker: Option<JoinHandle<()>>,
    /// Signals the end of the worker, so dropping can wait for it with a deadline. In a mutex
    /// only because receivers are not `Sync`; it is used once, by `drop`.
    worker_done: Mutex<std::sync::mpsc::Receiver<()>>,
    drop_grace: Duration,
}

impl fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSink")
            .field("endpoint", &self.endpoint)
            .field("dropped", &self.dropped())
            .field("exported", &self.exported())
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

impl OtlpSink {
    /// Exports spans as `config` says, recording everything in `inner` as well. Fails with a
    /// configuration error if the exporter cannot be built.
    pub fn new(inner: Arc<dyn TelemetrySink>, config: OtlpConfig) -> Result<Self> {
        config.validate()?;
        let endpoint = redact_endpoint(&config.endpoint);
        let exporter = build_exporter(&config, &endpoint)?;
        let stats = Arc::new(Stats {
            started: Instant::now(),
            dropped: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_drop_warning: AtomicU64::new(0),
            last_failure_warning: AtomicU64::new(0),
        });
        let (queue, rx) = mpsc::channel(config.queue_capacity);
        let (done_tx, worker_done) = std::sync::mpsc::channel();
        let worker = Worker {
            exporter,
            stats: Arc::clone(&stats),
            endpoint: endpoint.clone(),
            raw_endpoint: config.endpoint.clone(),
            scope: InstrumentationScope::builder("switchboard")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            max_batch: config.max_batch,
            batch_delay: config.batch_delay,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("OTLP export: cannot start the export runtime: {e}")))?;
        let handle = std::thread::Builder::new()
            .name("switchboard-otlp".into())
            .spawn(move || {
                runtime.block_on(worker.run(rx));
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::internal(format!("OTLP export: cannot start the export thread: {e}")))?;

        let header_names: Vec<&str> = config.headers.iter().map(|(name, _)| name.as_str()).collect();
        tracing::info!(
            endpoint = %endpoint,
            protocol = config.protocol.as_str(),
            service_name = %config.service_name,
            headers = ?header_names,
            "otel: exporting spans over OTLP/HTTP"
        );
        Ok(Self {
            inner,
            queue: Some(queue),
            stats,
            endpoint,
            worker: Some(handle),
            worker_done: Mutex::new(worker_done),
            drop_grace: config.timeout + Duration::from_secs(1),
        })
    }

    /// An exporting sink if the standard `OTEL_*` variables enable export (see
    /// [`OtlpConfig::from_vars`] for the list), `None` if they do not, or a configuration error.
    pub fn from_env(inner: Arc<dyn TelemetrySink>) -> Result<Option<Self>> {
        OtlpConfig::from_env()?.map(|config| Self::new(inner, config)).transpose()
    }

    /// Where spans go (any credentials in the URL removed).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Spans not exported because the queue was full, the id was malformed, or the sink was
    /// shut down. The inner sink recorded them all the same.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// Spans the backend accepted.
    pub fn exported(&self) -> u64 {
        self.stats.exported.load(Ordering::Relaxed)
    }

    /// Spans whose export request failed (after the exporter's retries).
    pub fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// Returns once every span recorded before the call has been exported or has failed to be.
    pub async fn flush(&self) {
        self.control(Command::Flush).await;
    }

    /// Exports everything queued, then stops exporting: later spans still reach the inner sink
    /// but are counted as dropped. Idempotent. Graceful shutdown calls this before the process
    /// exits.
    pub async fn shutdown(&self) {
        self.control(Command::Shutdown).await;
    }

    async fn control(&self, command: fn(oneshot::Sender<()>) -> Command) {
        let Some(queue) = &self.queue else {
            return;
        };
        let (ack, done) = oneshot::channel();
        // A closed queue means the worker already stopped: nothing left to wait for.
        if queue.send(command(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    fn drop_export(&self, why: &'static str) {
        let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if self.stats.should_warn(&self.stats.last_drop_warning) {
            tracing::warn!(
                dropped,
                reason = why,
                endpoint = %self.endpoint,
                "otel: dropped spans from OTLP export (they are still stored)"
            );
        }
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        // Closing the queue makes the worker export what is left and stop.
        drop(self.queue.take());
        let Some(worker) = self.worker.take() else {
            return;
        };
        let done = self.worker_done.get_mut().unwrap_or_else(PoisonError::into_inner);
        match done.recv_timeout(self.drop_grace) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if worker.join().is_err() {
                    tracing::error!("otel: the OTLP export thread panicked");
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(endpoint = %self.endpoint, "otel: gave up waiting for the final OTLP export");
            }
        }
    }
}

impl TelemetrySink for OtlpSink {
    fn span(&self, span: SpanRecord) {
        // Reserve first, so a full queue costs no clone.
        match self.queue.as_ref().map(mpsc::Sender::try_reserve) {
            Some(Ok(permit)) => permit.send(Command::Span(Box::new(span.clone()))),
            Some(Err(mpsc::error::TrySendError::Full(()))) => self.drop_export("export queue full"),
            Some(Err(mpsc::error::TrySendError::Closed(()))) | None => self.drop_export("exporter shut down"),
        }
        self.inner.span(span);
    }

    fn audit(&self, record: AuditRecord) {
        self.inner.audit(record);
    }
}

fn build_exporter(config: &OtlpConfig, endpoint: &str) -> Result<opentelemetry_otlp::SpanExporter> {
    let protocol = match config.protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(config.endpoint.clone())
        .with_protocol(protocol)
        .with_timeout(config.timeout)
        .with_headers(config.headers.iter().cloned().collect());
    if config.gzip {
        builder = builder.with_compression(Compression::Gzip);
    }
    let mut exporter = builder.build().map_err(|e| {
        // The builder's messages may quote the endpoint; never with its credentials.
        let message = e.to_string().replace(&config.endpoint, endpoint);
        Error::config(format!("OTLP export: cannot build the exporter for {endpoint}: {message}"))
    })?;
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attributes(config.resource_attributes.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
        .build();
    exporter.set_resource(&resource);
    Ok(exporter)
}

/// The background half: batches queued spans and exports them.
struct Worker {
    exporter: opentelemetry_otlp::SpanExporter,
    stats: Arc<Stats>,
    /// For messages: credentials removed.
    endpoint: String,
    /// As configured, only to find and replace it in the exporter's error messages.
    raw_endpoint: String,
    scope: InstrumentationScope,
    max_batch: usize,
    batch_delay: Duration,
}

impl Worker {
    async fn run(self, mut queue: mpsc::Receiver<Command>) {
        let mut batch: Vec<SpanRecord> = Vec::with_capacity(self.max_batch);
        // When the oldest span of a partial batch must go out at the latest.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = match deadline {
                Some(at) => match tokio::time::timeout_at(at, queue.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.export(&mut batch).await;
                        deadline = None;
                        continue;
                    }
                },
                None => queue.recv().await,
            };
            match next {
                Some(Command::Span(span)) => {
                    batch.push(*span);
                    if batch.len() >= self.max_batch {
                        self.export(&mut batch).await;
                        deadline = None;
                    } else if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + self.batch_delay);
                    }
                }
                Some(Command::Flush(ack)) => {
                    self.export(&mut batch).await;
                    deadline = None;
                    let _ = ack.send(());
                }
                Some(Command::Shutdown(ack)) => {
                    self.export(&mut batch).await;
                    self.stop();
                    let _ = ack.send(());
                    // Dropping the receiver on return closes the queue: later spans count as dropped.
                    return;
                }
                // Every sender is gone (the sink was dropped) and the queue is drained.
                None => {
                    self.export(&mut batch).await;
                    self.stop();
                    return;
                }
            }
        }
    }

    async fn export(&self, batch: &mut Vec<SpanRecord>) {
        if batch.is_empty() {
            return;
        }
        let mut spans = Vec::with_capacity(batch.len());
        for record in batch.drain(..) {
            match span_data(&record, &self.scope) {
                Ok(span) => spans.push(span),
                Err(why) => {
                    let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if self.stats.should_warn(&self.stats.last_drop_warning) {
                        tracing::warn!(dropped, reason = why.as_str(), "otel: span not exportable");
                    }
                }
            }
        }
        let count = spans.len() as u64;
        if count == 0 {
            return;
        }
        match self.exporter.export(spans).await {
            Ok(()) => {
                self.stats.exported.fetch_add(count, Ordering::Relaxed);
            }
            Err(e) => {
                let failed = self.stats.failed.fetch_add(count, Ordering::Relaxed) + count;
                if self.stats.should_warn(&self.stats.last_failure_warning) {
                    tracing::warn!(
                        failed,
                        endpoint = %self.endpoint,
                        error = %e.to_string().replace(&self.raw_endpoint, &self.endpoint),
                        "otel: OTLP span export failed"
                    );
                }
            }
        }
    }

    fn stop(&self) {
        if let Err(e) = self.exporter.shutdown() {
            tracing::debug!(error = %e, "otel: exporter shutdown reported an error");
        }
    }
}
