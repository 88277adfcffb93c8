//! Logs go to stderr so stdout stays the command's output. `RUST_LOG` filters;
//! `SWITCHBOARD_LOG_FORMAT=json` gives structured JSON lines.
//!
//! Without `RUST_LOG`, only warnings are shown, plus `serve`'s access log: one line per request
//! with method, path, status, latency_ms and request_id (in JSON, also inside the `request` span
//! that every log line of that request carries).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init() {
    let default = format!("warn,{}=info", switchboard_server::ACCESS_LOG_TARGET);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a person at a terminal, never into a file or a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if std::env::var("SWITCHBOARD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().flatten_event(true).with_current_span(true).init();
    } else {
        builder.init();
    }
}
