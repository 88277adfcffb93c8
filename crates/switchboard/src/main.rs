//! The `switchboard` command.

mod allocator;
mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A governed multi-agent supervisor: routes each request across sub-agents as the caller, and
/// records every hop. With no --config, runs the built-in demo.
#[derive(Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ask one question and print the answer, the route and per-step timings.
    Chat {
        /// The question.
        question: String,
        /// The identity to ask as (a development identity from the config).
        #[arg(long = "as", value_name = "EMAIL", env = "SWITCHBOARD_USER")]
        as_user: Option<String>,
        /// switchboard.toml to use instead of the built-in demo.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Continue (and extend) a stored conversation, so follow-ups keep their context.
        #[arg(long, value_name = "ID")]
        thread: Option<String>,
    },
    /// Serve the supervisor as an MCP server over stdio (for Claude Desktop, Cursor, the inspector).
    Mcp {
        /// The identity to serve as (a development identity); otherwise the subject of the
        /// bearer token in SWITCHBOARD_TOKEN.
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: Option<String>,
        /// switchboard.toml to use instead of the built-in demo.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Serve the chat endpoint.
    Serve {
        /// switchboard.toml to use instead of the built-in demo.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "SWITCHBOARD_ADDR")]
        addr: String,
        /// Serve the development identity provider (on whenever there is no [auth] section) on
        /// an address other hosts can reach. Anyone who reaches it can mint identities.
        #[arg(long)]
        dev_idp_on_public_address: bool,
    },
    /// Check a configuration and report every problem with its file and field.
    Validate {
        /// switchboard.toml to check (default: the built-in demo).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Show the spans of one request as a tree with durations.
    Trace {
        /// The request id (printed by `chat`, and in the `x-request-id` header).
        request_id: String,
        /// switchboard.toml whose store to read.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show recent audit rows, optionally filtered.
    Audit {
        /// How many rows at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only the rows of this request.
        #[arg(long, value_name = "REQUEST_ID")]
        request: Option<String>,
        /// Only rows since a duration ago (`15m`, `2h`, `7d`) or a UTC time (`2026-12-01T09:00:00Z`).
        #[arg(long, value_name = "DURATION|TIME")]
        since: Option<String>,
        /// Only this caller's rows (email, any case).
        #[arg(long, value_name = "EMAIL")]
        caller: Option<String>,
        /// Only rows with this status: success, error, access_denied, rate_limited or blocked.
        #[arg(long)]
        status: Option<String>,
        /// Only this agent's rows.
        #[arg(long)]
        agent: Option<String>,
        /// switchboard.toml whose store to read.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// LLM usage totals (requests, calls, prompt and completion tokens), for chargeback.
    Usage {
        /// Only calls since a duration ago (`15m`, `2h`, `7d`) or a UTC time (`2026-12-01T09:00:00Z`).
        #[arg(long, value_name = "DURATION|TIME")]
        since: Option<String>,
        /// Group the totals by `user`, `group`, `agent` or `model`.
        #[arg(long)]
        by: Option<String>,
        /// switchboard.toml whose store to read.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the payload log (`[payload_log]`): requests and responses, masked and capped.
    Payloads {
        /// Only requests since a duration ago (`15m`, `2h`, `7d`) or a UTC time (`2026-12-01T09:00:00Z`).
        #[arg(long, value_name = "DURATION|TIME")]
        since: Option<String>,
        /// Only this request.
        #[arg(long, value_name = "REQUEST_ID")]
        request: Option<String>,
        /// How many rows at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// switchboard.toml whose store to read.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a signed, short-lived token from the development identity provider.
    Token {
        /// The identity (a development identity from the config).
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        /// Scopes, comma-separated (default: all the development provider grants).
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// Lifetime: seconds, or with a unit (`90s`, `15m`, `1h`); at most 24 h.
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// switchboard.toml to use instead of the built-in demo.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Grant a privilege on a connection: `grant use-connection CONN --to PRINCIPAL`. Takes
    /// effect on the next hop of every running server sharing the store.
    Grant {
        /// The privilege.
        privilege: cli::grants::Privilege,
        /// The connection.
        connection: String,
        /// A user's email, a group (role) or a service principal id.
        #[arg(long = "to", value_name = "PRINCIPAL")]
        principal: String,
        /// switchboard.toml whose store to change.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Revoke a privilege on a connection: `revoke use-connection CONN --from PRINCIPAL`. The
    /// next hop of every running server sharing the store is denied.
    Revoke {
        /// The privilege.
        privilege: cli::grants::Privilege,
        /// The connection.
        connection: String,
        /// A user's email, a group (role) or a service principal id.
        #[arg(long = "from", visible_alias = "to", value_name = "PRINCIPAL")]
        principal: String,
        /// switchboard.toml whose store to change.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List USE CONNECTION grants, on one connection or all.
    Grants {
        /// Only this connection.
        connection: Option<String>,
        /// switchboard.toml whose store to read.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a dataset of cases (JSONL) and report routing, trajectories, answers, governance,
    /// retrieval, latency and tokens; with --baseline, fail (exit 4) on a regression.
    Eval {
        /// The dataset: one JSON case per line.
        dataset: PathBuf,
        /// switchboard.toml to use instead of the built-in demo.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Cases in flight at once (default: twice the cores, at least 4).
        #[arg(long, value_name = "N")]
        concurrency: Option<usize>,
        /// Where report.json, report.md, report.html and results.jsonl go.
        #[arg(long = "report", value_name = "DIR", default_value = "eval-report")]
        report_dir: PathBuf,
        /// A report.json to compare with.
        #[arg(long, value_name = "REPORT.json")]
        baseline: Option<PathBuf>,
        /// Largest allowed drop of any metric below the baseline, in percentage points.
        #[arg(long, value_name = "PCT", default_value_t = 0.0)]
        max_regression: f64,
        /// Keep the results already in the report dir and run only the cases missing there.
        #[arg(long)]
        resume: bool,
    },
    /// Write the demo configuration and data to DIR as editable files.
    Init {
        /// An empty or new directory.
        dir: PathBuf,
        /// Also install the sales space into this PostgreSQL server (row-level security and a
        /// masking view) and point the sales agent at it.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// The schema the PostgreSQL sales space goes into.
        #[arg(long, default_value = "sales", requires = "postgres")]
        schema: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Chat { question, as_user, config, json, thread } => {
                cli::chat::run(&question, as_user.as_deref(), config.as_deref(), json, thread).await
            }
            Command::Mcp { as_user, config } => cli::mcp::run(as_user.as_deref(), config.as_deref()).await,
            Command::Serve { config, addr, dev_idp_on_public_address } => {
                cli::serve::run(config.as_deref(), &addr, dev_idp_on_public_address).await
            }
            Command::Validate { config } => cli::validate::run(config.as_deref()),
            Command::Trace { request_id, config, json } => {
                cli::trace::run(&request_id, config.as_deref(), json).await
            }
            Command::Audit { limit, request, since, caller, status, agent, config, json } => {
                let args = cli::audit::AuditArgs {
                    limit,
                    request: request.as_deref(),
                    since: since.as_deref(),
                    caller: caller.as_deref(),
                    status: status.as_deref(),
                    agent: agent.as_deref(),
                };
                cli::audit::run(args, config.as_deref(), json).await
            }
            Command::Usage { since, by, config, json } => {
                cli::usage::run(since.as_deref(), by.as_deref(), config.as_deref(), json).await
            }
            Command::Payloads { since, request, limit, config, json } => {
                cli::payloads::run(since.as_deref(), request.as_deref(), limit, config.as_deref(), json).await
            }
            Command::Init { dir, postgres, schema } => {
                cli::init::run(&dir, postgres.as_deref(), &schema).await
            }
            Command::Eval { dataset, config, concurrency, report_dir, baseline, max_regression, resume } => {
                cli::eval::run(cli::eval::EvalArgs {
                    dataset,
                    config,
                    concurrency,
                    report_dir,
                    baseline,
                    max_regression,
                    resume,
                })
                .await
            }
            Command::Grant { privilege, connection, principal, config } => {
                cli::grants::grant(privilege, &connection, &principal, config.as_deref()).await
            }
            Command::Revoke { privilege, connection, principal, config } => {
                cli::grants::revoke(privilege, &connection, &principal, config.as_deref()).await
            }
            Command::Grants { connection, config, json } => {
                cli::grants::list(connection.as_deref(), config.as_deref(), json).await
            }
            Command::Token { as_user, scopes, ttl, config } => {
                cli::token::run(&as_user, scopes.as_deref(), &ttl, config.as_deref()).await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
