//! The accept loop: HTTP/1 and HTTP/2 connections with the timeouts and connection caps of
//! `[server]`, and a shutdown that closes what is still open after its deadline.
//!
//! `axum::serve` has none of these knobs, so connections are driven by hyper directly and the
//! router is called per request, with `ConnectInfo<SocketAddr>` inserted as axum's
//! `into_make_service_with_connect_info` would.

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_runtime::config::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connection settings of `[server]`, as durations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    header_read: Duration,
    body_read: Duration,
    keep_alive: Duration,
    max_connections: usize,
    max_per_ip: usize,
    shutdown: Duration,
}

impl Limits {
    pub(crate) fn from_config(server: &ServerConfig) -> Self {
        // Validation rejects zeros; the floors keep a hand-built config from closing everything.
        Self {
            header_read: Duration::from_millis(server.header_read_timeout_ms.max(1)),
            body_read: Duration::from_millis(server.body_read_timeout_ms.max(1)),
            keep_alive: Duration::from_millis(server.keep_alive_timeout_ms.max(1)),
            max_connections: server.max_connections.max(1),
            max_per_ip: server.max_connections_per_ip,
            shutdown: Duration::from_millis(server.shutdown_timeout_ms.max(1)),
        }
    }
}

/// Accepts connections on `listener` and serves `router` on them until `shutdown` resolves; then
/// stops accepting, lets in-flight requests finish and closes whatever is still open once the
/// shutdown deadline has passed.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read).keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = PerIp::new(limits.max_per_ip);
    let refusals = Arc::new(Semaphore::new(MAX_CONCURRENT_REFUSALS));
    let closing = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // The slot is taken before accepting: at the cap, new connections wait in the kernel's
        // accept queue instead of each costing this process a file descriptor.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Most likely out of file descriptors: back off rather than spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(ip_slot) = per_ip.acquire(peer.ip()) else {
            tracing::debug!(peer = %peer.ip(), "connection refused: per-IP connection cap reached");
            // The global slot goes back at once. Refusals are answered by a bounded number of
            // short-lived tasks; past that, a flood is simply closed, so refusing cannot cost
            // more descriptors than serving would.
            drop(slot);
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            builder.clone(),
            stream,
            peer,
            router.clone(),
            limits,
            closing.clone(),
            (slot, ip_slot),
        ));
        // Reap finished connections so the set stays as small as the open ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    closing.cancel();
    let drained =
        tokio::time::timeout(limits.shutdown, async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "shutdown deadline passed; closing the connections still open"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// What a connection over its address's cap is told before it is closed, as the body of an
/// HTTP/1.1 503: an OpenAI-style error object, so a client sees why instead of a reset it may
/// retry at once.
const OVER_IP_CAP: &str = r#"{"error":{"message":"too many open connections from this address","type":"server_error","param":null,"code":"too_many_connections"}}"#;

/// How long a refused connection gets to take its 503 and finish sending.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_millis(250);

/// At most this many refused connections are being answered at once.
const MAX_CONCURRENT_REFUSALS: usize = 256;

/// Answers a refused connection with a 503 carrying [`OVER_IP_CAP`] and closes it, whatever it
/// asked, within [`REFUSAL_WRITE_TIMEOUT`].
async fn refuse(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{OVER_IP_CAP}",
        OVER_IP_CAP.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Closing with the request unread would reset the connection, and a reset can destroy
        // the 503 before the client reads it; so the request is drained (and dropped) first.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// Errors of one connection that was already gone when it was accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until it closes, is idle too long, or shutdown asks it to finish.
async fn serve_connection(
    builder: auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    closing: CancellationToken,
    _slots: (OwnedSemaphorePermit, IpSlot),
) {
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = Busy::start(activity.clone());
            let mut request = request.map(|body| DeadlineBody::new(body, limits.body_read));
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = router.clone().call(request);
            async move {
                let response = response.await;
                drop(busy);
                response
            }
        })
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
    let mut connection = std::pin::pin!(connection);
    let mut finishing = false;
    loop {
        let check_at = activity.next_check(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            // A request started or finished: the deadline moved.
            () = activity.changed.notified(), if !finishing => {}
            () = closing.cancelled(), if !finishing => {
                connection.as_mut().graceful_shutdown();
                finishing = true;
            }
            () = tokio::time::sleep_until(check_at), if !finishing => {
                if activity.expired(&limits) {
                    // Graceful: a request still being answered finishes, then the connection closes.
                    connection.as_mut().graceful_shutdown();
                    finishing = true;
                }
            }
        }
    }
}

/// When a connection last did something, for the header and keep-alive timeouts.
struct Activity {
    opened: Instant,
    served: AtomicBool,
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
    /// Wakes the connection's watchdog to recompute its deadline.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            opened: now,
            served: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(now),
            changed: Notify::new(),
        }
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection would become idle too long if nothing happens before then. Before
    /// its first request the header timeout applies (hyper's own applies only once it knows the
    /// protocol), afterwards the keep-alive timeout.
    fn next_check(&self, limits: &Limits) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Instant::now() + limits.keep_alive;
        }
        if self.served.load(Ordering::Acquire) {
            self.last() + limits.keep_alive
        } else {
            self.opened + limits.header_read
        }
    }

    fn expired(&self, limits: &Limits) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.next_check(limits) <= Instant::now()
    }
}

/// A request in flight on a connection; dropping it marks the connection active now.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        activity.served.store(true, Ordering::Release);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        *activity.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        activity.changed.notify_one();
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// Open connections per peer IP address.
struct PerIp {
    cap: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    fn new(cap: usize) -> Self {
        Self { cap, open: Arc::default() }
    }

    /// A slot for one more connection from `ip`, or `None` at the cap.
    fn acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        if self.cap == 0 {
            return Some(IpSlot { open: None, ip });
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(IpSlot { open: Some(self.open.clone()), ip })
    }
}

/// One connection's share of its IP address's cap, released on drop.
struct IpSlot {
    open: Option<Arc<Mutex<HashMap<IpAddr, usize>>>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = open.get_mut(&self.ip) {
                *count = count.saturating_sub(1);
                // Forget idle addresses, so the map does not grow with every client ever seen.
                if *count == 0 {
                    open.remove(&self.ip);
                }
            }
        }
    }
}

/// A request body that must arrive in full within the body-read timeout of its request.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    timeout: Duration,
    /// Created on the first wait, so bodies that arrive at once (or are never read) cost no timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self { inner, deadline: Instant::now() + timeout, timeout, sleep: None }
    }
}

/// The request body did not arrive within the body-read timeout.
#[derive(Debug)]
struct BodyTimeout(Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {} ms", self.0.as_millis())
    }
}

impl std::error::Error for BodyTimeout {}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
