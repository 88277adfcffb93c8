//! `scripted-llm`: the scripted OpenAI-compatible LLM server as a process, for benchmarks and
//! the Python tests (see `switchboard_testkit::llm` for the script format).
//!
//! ```text
//! scripted-llm [--host 127.0.0.1] [--port 0] [--script FILE] [--latency-ms N] [--token-delay-ms N]
//! ```
//!
//! Prints `{"event":"listening","url":"http://HOST:PORT/v1"}` once it accepts connections. Without
//! `--script` every request gets the last user message back.
//!
//! For benchmarks: `GET /stats` gives the calls, the seconds spent inside completion handlers and
//! each call's prompt tokens; `POST /reset` zeroes them; `GET /echo?…` answers with what it was
//! sent, a tool endpoint that costs next to nothing.

use std::process::ExitCode;
use switchboard_testkit::llm::{Script, serve};

/// mimalloc, as `switchboard` itself uses: in a benchmark this server shares the machine with
/// what it serves, and with glibc's allocator its `malloc` and `free` took a sixth of its CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    host: String,
    port: u16,
    script: Option<String>,
    latency_ms: Option<u64>,
    token_delay_ms: Option<u64>,
}

fn options() -> Result<Options, String> {
    let mut o =
        Options { host: "127.0.0.1".into(), port: 0, script: None, latency_ms: None, token_delay_ms: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number =
            |name: &str, v: String| v.parse::<u64>().map_err(|_| format!("{name}: `{v}` is not a number"));
        match arg.as_str() {
            "--host" => o.host = value("--host")?,
            "--port" => {
                let v = value("--port")?;
                o.port = v.parse().map_err(|_| format!("--port: `{v}` is not a port number"))?;
            }
            "--script" => o.script = Some(value("--script")?),
            "--latency-ms" => o.latency_ms = Some(number("--latency-ms", value("--latency-ms")?)?),
            "--token-delay-ms" => {
                o.token_delay_ms = Some(number("--token-delay-ms", value("--token-delay-ms")?)?)
            }
            "--help" | "-h" => {
                return Err("usage: scripted-llm [--host H] [--port P] [--script FILE] [--latency-ms N] [--token-delay-ms N]".into());
            }
            other => return Err(format!("unknown argument `{other}`; see --help")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("scripted-llm: {e}");
            return ExitCode::from(2);
        }
    };
    let mut script = match &o.script {
        Some(path) => match Script::load(std::path::Path::new(path)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("scripted-llm: {e}");
                return ExitCode::from(2);
            }
        },
        None => Script::default(),
    };
    if let Some(ms) = o.latency_ms {
        script = script.with_latency_ms(ms);
    }
    if let Some(ms) = o.token_delay_ms {
        script = script.with_token_delay_ms(ms);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scripted-llm: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind((o.host.as_str(), o.port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("scripted-llm: cannot listen on {}:{}: {e}", o.host, o.port);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("{{\"event\":\"listening\",\"url\":\"http://{addr}/v1\"}}"),
            Err(e) => eprintln!("scripted-llm: the listening address is unknown: {e}"),
        }
        let stopped = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let sigterm = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = serve(listener, script) => ExitCode::SUCCESS,
            () = stopped => ExitCode::SUCCESS,
            () = sigterm => ExitCode::SUCCESS,
        }
    })
}
