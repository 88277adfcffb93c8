//! The server against hostile or careless clients, over real loopback sockets: slow headers and
//! bodies, connection floods from one address, half-open connections at shutdown, and the optional
//! tokens in front of `/health` and `/metrics`.

mod common;

use common::Server;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_core::SecretRef;
use switchboard_runtime::config::LoadedConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn addr(server: &Server) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().expect("the server's address")
}

/// Reads until the peer closes (or resets) the connection; `None` if it is still open after
/// `bound`.
async fn read_until_closed(stream: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status line of a one-shot `GET path` on `stream`.
async fn get_status(stream: &mut TcpStream, path: &str, bound: Duration) -> Option<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: switchboard\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let response = read_until_closed(stream, bound).await?;
    let text = String::from_utf8_lossy(&response);
    text.lines().next().filter(|l| l.starts_with("HTTP/")).map(str::to_string)
}

#[tokio::test]
async fn half_sent_headers_are_closed_within_the_header_timeout() {
    let server = Server::demo_with(|c: &mut LoadedConfig| {
        c.config.server.header_read_timeout_ms = 1_000;
    })
    .await;
    // Half the headers, then silence; and a connection that sends nothing at all (before the
    // protocol is even known).
    let mut half = TcpStream::connect(addr(&server)).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: switchboard\r\n").await.unwrap();
    let mut silent = TcpStream::connect(addr(&server)).await.unwrap();
    let started = Instant::now();
    assert!(
        read_until_closed(&mut half, Duration::from_secs(10)).await.is_some(),
        "a connection with half its headers was still open after 10 s"
    );
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(10)).await.is_some(),
        "a silent connection was still open after 10 s"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "closed only after {:?}", started.elapsed());

    // The server itself is fine.
    let mut fresh = TcpStream::connect(addr(&server)).await.unwrap();
    let status = get_status(&mut fresh, "/health", Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| s.starts_with("HTTP/1.1 200")));
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let server = Server::demo_with(|c: &mut LoadedConfig| {
        c.config.server.keep_alive_timeout_ms = 1_000;
        // Longer than the test, so only the keep-alive timeout can close the connection.
        c.config.server.header_read_timeout_ms = 120_000;
    })
    .await;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    stream.write_all(b"GET /v1/models HTTP/1.1\r\nHost: switchboard\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 401");
    let started = Instant::now();
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(10)).await.is_some(),
        "an idle kept-alive connection was still open after 10 s"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "closed only after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_body_that_never_finishes_fails_within_the_body_timeout() {
    let server = Server::demo_with(|c: &mut LoadedConfig| {
        c.config.server.body_read_timeout_ms = 1_000;
    })
    .await;
    let token = server.token("alice@example.com");
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: switchboard\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let response = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let response = response.expect("the request was still waiting for its body after 10 s");
    assert!(started.elapsed() < Duration::from_secs(5), "ended only after {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("did not arrive within 1000 ms"), "{text}");
}

/// Makes room for `needed` open descriptors in this process, within the hard limit, as
/// `switchboard serve` does for itself.
fn ensure_fd_limit(needed: u64) {
    let soft =
        switchboard_server::raise_fd_limit().expect("raising the soft descriptor limit to the hard one");
    // `None` is unlimited.
    if let Some(limit) = soft {
        assert!(limit >= needed, "this test needs {needed} file descriptors; the hard limit is {limit}");
    }
}

#[tokio::test]
async fn five_thousand_idle_connections_from_one_client_do_not_starve_another() {
    const FLOOD: usize = 5_000;
    // The flood's sockets, the server's side of the admitted ones, the store and the runtime.
    ensure_fd_limit(FLOOD as u64 + 1_024);
    let server = Server::demo_with(|c: &mut LoadedConfig| {
        c.config.server.max_connections = 256;
        c.config.server.max_connections_per_ip = 64;
        // Long enough that the admitted idle connections stay open for the whole test.
        c.config.server.header_read_timeout_ms = 120_000;
        c.config.server.keep_alive_timeout_ms = 120_000;
    })
    .await;
    let target = addr(&server);

    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(TcpStream::connect(target).await.expect("a loopback connection"));
    }

    // The flooding address is at its cap: one more connection from it is told so, and closed.
    // (Refusals are answered a bounded number at a time, so past the flood's own refusals.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut more = TcpStream::connect(target).await.unwrap();
    let status = get_status(&mut more, "/health", Duration::from_secs(10)).await;
    assert!(
        status.as_deref().is_some_and(|s| s.starts_with("HTTP/1.1 503")),
        "the flooding client got past its per-IP cap: {status:?}"
    );

    // Another client (another loopback address) is served as usual.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(target).await.unwrap();
    let status = get_status(&mut other, "/health", Duration::from_secs(30)).await;
    assert!(status.as_deref().is_some_and(|s| s.starts_with("HTTP/1.1 200")), "{status:?}");
    drop(flood);
}

#[tokio::test]
async fn beyond_the_connection_cap_new_connections_wait_for_a_free_slot() {
    let server = Server::demo_with(|c: &mut LoadedConfig| {
        c.config.server.max_connections = 4;
        c.config.server.max_connections_per_ip = 0;
        c.config.server.header_read_timeout_ms = 120_000;
        c.config.server.keep_alive_timeout_ms = 120_000;
    })
    .await;
    let target = addr(&server);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(target).await.unwrap());
    }
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut queued = socket.connect(target).await.unwrap();
    let waiting =
        tokio::spawn(async move { get_status(&mut queued, "/health", Duration::from_secs(60)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "a connection beyond the cap was served while all slots were taken");
    // One slot frees up: the queued connection is accepted and served.
    drop(held.remove(0));
    let status = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("still queued").unwrap();
    assert!(status.as_deref().is_some_and(|s| s.starts_with("HTTP/1.1 200")), "{status:?}");
}

#[tokio::test]
async fn shutdown_with_half_open_connections_returns_within_the_deadline() {
    let server = Server::demo_with(|c: &mut LoadedConfig| {
        c.config.server.shutdown_timeout_ms = 2_000;
        // Longer than the test, so only the shutdown deadline can close these connections.
        c.config.server.header_read_timeout_ms = 120_000;
        c.config.server.body_read_timeout_ms = 120_000;
        c.config.server.keep_alive_timeout_ms = 120_000;
    })
    .await;
    let token = server.token("alice@example.com");
    let mut half_headers = TcpStream::connect(addr(&server)).await.unwrap();
    half_headers.write_all(b"GET /health HTTP/1.1\r\nHost: switchboard\r\n").await.unwrap();
    // A request in flight that never finishes: its body stops half way.
    let mut half_body = TcpStream::connect(addr(&server)).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: switchboard\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\":"
    );
    half_body.write_all(head.as_bytes()).await.unwrap();
    // A keep-alive connection idle between requests.
    let mut idle = TcpStream::connect(addr(&server)).await.unwrap();
    idle.write_all(b"GET /v1/models HTTP/1.1\r\nHost: switchboard\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 401");
    // Give the server a moment to be reading both half-sent requests.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(30), server.stop()).await;
    assert!(stopped.is_ok(), "serve was still running 30 s after shutdown was asked for");
    assert!(started.elapsed() < Duration::from_secs(15), "serve returned only after {:?}", started.elapsed());
    for stream in [&mut half_headers, &mut half_body, &mut idle] {
        assert!(read_until_closed(stream, Duration::from_secs(5)).await.is_some());
    }
}

#[tokio::test]
async fn health_and_metrics_can_require_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let health_file = dir.path().join("health-token");
    let metrics_file = dir.path().join("metrics-token");
    std::fs::write(&health_file, "health-s3cret\n").unwrap();
    std::fs::write(&metrics_file, "metrics-s3cret").unwrap();
    let (h, m) = (health_file.display().to_string(), metrics_file.display().to_string());
    let server = Server::demo_with(move |c: &mut LoadedConfig| {
        c.config.server.health_token = Some(SecretRef::File(h));
        c.config.server.metrics_token = Some(SecretRef::File(m));
    })
    .await;
    let http = reqwest::Client::new();
    for (path, token, other) in
        [("/health", "health-s3cret", "metrics-s3cret"), ("/metrics", "metrics-s3cret", "health-s3cret")]
    {
        let r = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
        let r = http.get(server.url(path)).bearer_auth(other).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} with the other endpoint's token");
        let r = http.get(server.url(path)).bearer_auth(format!("{token}x")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} with a longer token");
        let r = http.get(server.url(path)).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} with its token");
    }
    // A caller's own bearer token is not the probe token.
    let r =
        http.get(server.url("/health")).bearer_auth(server.token("alice@example.com")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Rotation needs no restart: the file is read at every request.
    std::fs::write(&health_file, "rotated").unwrap();
    let r = http.get(server.url("/health")).bearer_auth("health-s3cret").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(server.url("/health")).bearer_auth("rotated").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Without the settings both stay open.
    let open = Server::demo().await;
    for path in ["/health", "/metrics"] {
        assert_eq!(http.get(open.url(path)).send().await.unwrap().status(), 200, "{path}");
    }
}
