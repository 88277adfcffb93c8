//! `tickets-mcp --listen 127.0.0.1:8765 --jwks-url URL [--issuer ISS] [--audience AUD]`: serves
//! the tickets MCP server until Ctrl-C. Prints `tickets-mcp listening on http://ADDR/mcp` once
//! bound (so `--listen 127.0.0.1:0` tells the chosen port).

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use tickets_mcp::{MCP_PATH, TicketsAuth};

/// A small MCP server of per-caller support tickets, behind JWT bearer authentication.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: String,
    /// Where Switchboard publishes its signing keys, e.g. http://127.0.0.1:8080/.well-known/jwks.json.
    #[arg(long, env = "TICKETS_MCP_JWKS_URL")]
    jwks_url: String,
    /// Accept only tokens with this `iss`.
    #[arg(long, env = "TICKETS_MCP_ISSUER")]
    issuer: Option<String>,
    /// Accept only tokens with this `aud`.
    #[arg(long, env = "TICKETS_MCP_AUDIENCE")]
    audience: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tickets_mcp=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tickets-mcp: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let auth = TicketsAuth::from_jwks_url(args.jwks_url, args.issuer, args.audience)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    // Stdout is how a parent process learns the port, so it is flushed at once.
    let mut out = std::io::stdout().lock();
    writeln!(out, "tickets-mcp listening on http://{addr}{MCP_PATH}")?;
    out.flush()?;
    drop(out);
    let shutdown = async {
        // If the signal handler cannot be installed, run until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tickets_mcp::serve(listener, auth, shutdown).await?;
    Ok(())
}
