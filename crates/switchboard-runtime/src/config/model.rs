use super::files::{ConfigFile, Files};
use super::{BUILDABLE_KINDS, Problem};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchboard_auth::{AuthConfig, ClientCredentialsConfig, TokenExchangeConfig};
use switchboard_core::{
    AgentKind, AgentSpec, ConnectionSpec, CredentialMode, CredentialSpec, GuardrailConfig, SecretRef,
};
use switchboard_govern::guardrails::Guardrails;
use switchboard_govern::limits::Rate;

/// `switchboard.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The supervisor's name, limits and guards.
    #[serde(default)]
    pub supervisor: SupervisorConfig,
    /// Which router proposes routes.
    #[serde(default)]
    pub router: RouterConfig,
    /// An OpenAI-compatible LLM; when present, agents synthesize with it and `router.kind = "llm"`
    /// becomes available.
    #[serde(default)]
    pub llm: Option<LlmConfig>,
    /// Where audit rows, spans and threads are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// The payload log ("inference table"): off by default.
    #[serde(default)]
    pub payload_log: PayloadLogConfig,
    /// The runtime's service principal and the development identities.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Edge identity: JWT issuers, trusted proxies, federation. When absent, the development
    /// identity provider is on.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Rate limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Retries and circuit breakers for every HTTP hop: on by default (three attempts, a breaker
    /// after five failures in a row); `max_attempts = 1` and `breaker_failures = 0` turn them off.
    #[serde(default)]
    pub resilience: super::resilience::ResilienceConfig,
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Named outbound endpoints (`[[connections]]`) that `mcp`, HTTP `tool` and `endpoint`
    /// agents reach the outside through, each guarded by `USE CONNECTION` grants.
    #[serde(default)]
    pub connections: Vec<ConnectionSpec>,
    /// Built-in demo services.
    #[serde(default)]
    pub demo: DemoConfig,
    /// Data directory, relative to the config file; defaults to `$SWITCHBOARD_HOME` or `.switchboard`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// What `switchboard eval` reads: model prices and the LLM judge.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Endpoint-wide guardrails on what callers send and what they are answered.
    #[serde(default)]
    pub guardrails: GuardrailConfig,
}

impl Config {
    /// The data directory for a config whose relative paths resolve against `base_dir`.
    pub fn resolve_data_dir(&self, base_dir: &Path) -> PathBuf {
        match &self.data_dir {
            Some(dir) => base_dir.join(dir),
            None => std::env::var_os("SWITCHBOARD_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| base_dir.join(".switchboard")),
        }
    }
}

/// `[supervisor]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// Served model name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Most hops one request may make (agent calls, SQL, LLM and HTTP calls together).
    pub max_hops: u32,
    /// Default per-agent timeout.
    pub agent_timeout_ms: u64,
    /// Overall request deadline.
    pub deadline_ms: u64,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            name: "switchboard".into(),
            description: "A governed multi-agent supervisor.".into(),
            max_hops: 32,
            agent_timeout_ms: 15_000,
            deadline_ms: 60_000,
        }
    }
}

/// Router kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterKind {
    /// The offline router: a classifier trained at start-up over each agent's name, description,
    /// examples and data (`classifier` is accepted as another name for it).
    #[default]
    #[serde(alias = "classifier")]
    Lexical,
    /// Tool calling on the configured LLM.
    Llm,
}

/// `[router]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Which router.
    pub kind: RouterKind,
    /// Lexical confidence below which the supervisor asks a clarifying question.
    pub threshold: Option<f32>,
    /// With `kind = "llm"`: the most agents offered to the model when the offline router is
    /// confident about a question (default 5); 0 offers every agent every time.
    pub shortlist: Option<usize>,
    /// With `kind = "llm"`: whether the routing call also proposes the arguments of a tool
    /// agent that would ask the model for them, when the question is most likely for that agent
    /// (default true), which saves the agent's own model call; false leaves them to the agent.
    pub propose_arguments: Option<bool>,
}

/// `[llm]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Server root including `/v1`.
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// How calls to it authenticate (`manual` with `secret = "env:OPENAI_API_KEY"` for a hosted API).
    #[serde(default)]
    pub credential: CredentialSpec,
    /// Up to two alternates, tried in order when the primary answers 429 or 5xx, cannot be
    /// reached, or its circuit is open.
    #[serde(default)]
    pub fallbacks: Vec<super::resilience::LlmFallback>,
    /// An A/B split between models on the primary server by weight; each request id always
    /// lands on the same model. Empty: every request uses `model`.
    #[serde(default)]
    pub split: Vec<super::resilience::LlmSplit>,
    /// Speak HTTP/2 to the model's server (the primary's and the fallbacks') without asking
    /// first, as `curl --http2-prior-knowledge` does: over plain `http://`, concurrent calls then
    /// share one connection instead of holding one each (for gateways and servers that accept
    /// HTTP/2 without TLS). Over `https://` HTTP/2 is negotiated anyway, and this makes it a
    /// requirement. Default false.
    #[serde(default)]
    pub http2_prior_knowledge: bool,
}

/// Store backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// A SQLite file in the data dir (the default; needs nothing).
    #[default]
    Sqlite,
    /// PostgreSQL, shared by several replicas.
    Postgres,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Backend.
    pub kind: StoreKind,
    /// SQLite file, relative to the data dir.
    pub path: PathBuf,
    /// PostgreSQL connection string, or `env:NAME` to read it from the environment.
    pub url: Option<String>,
    /// How long Responses API responses stored with `store: true` (the default) stay readable by
    /// `GET /v1/responses/{id}` and continuable with `previous_response_id` (default 30 days).
    /// Older ones answer 404 and are purged in the background; 0 keeps them until deleted.
    pub responses_retention_days: u32,
    /// Where spans and audit rows spill while the store is unavailable, relative to the data dir
    /// (default: `<path>-spill.jsonl` for SQLite, `postgres-spill.jsonl` for PostgreSQL). They
    /// are replayed, in order and exactly once, when it is back, or at the next start.
    pub spill_path: Option<PathBuf>,
    /// The most disk the spill file may take (default 1 GiB); rows beyond it are refused with an
    /// error in the log.
    pub spill_max_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Sqlite,
            path: PathBuf::from("switchboard.db"),
            url: None,
            responses_retention_days: 30,
            spill_path: None,
            spill_max_bytes: switchboard_store::DEFAULT_SPILL_MAX_BYTES,
        }
    }
}

/// The largest `payload_log.max_bytes` accepted: 16 MiB per body.
pub const MAX_PAYLOAD_LOG_BYTES: usize = 16 * 1024 * 1024;

/// `[payload_log]`: per request to `/v1/chat/completions`, `/v1/responses`, `/invocations` and
/// `/serving-endpoints/{name}/invocations`, the request and response bodies, status, duration and
/// requester, kept in the configured store's `payloads` table. Personal data is masked (payment
/// card numbers, US social security numbers, email addresses and phone numbers, whatever the
/// guardrails are configured to do) and each body is capped, so the table is safe to keep and
/// bounded in size.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayloadLogConfig {
    /// Whether payloads are logged at all (default false).
    pub enabled: bool,
    /// The most bytes kept of each body (default 65536); longer ones are cut and marked
    /// `…[truncated, N bytes in all]`.
    pub max_bytes: usize,
}

impl Default for PayloadLogConfig {
    fn default() -> Self {
        Self { enabled: false, max_bytes: 64 * 1024 }
    }
}

/// `[server]`: request limits, connection hardening and access to the probe endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Largest accepted request body; larger ones get 413.
    pub body_limit_bytes: usize,
    /// How long a client has to send a request's headers (default 10 s). A new connection must
    /// deliver its first request's headers within it, or it is closed; on HTTP/1 it also bounds
    /// the wait for the next request on a kept-alive connection.
    pub header_read_timeout_ms: u64,
    /// How long a client has to send a whole request body, counted from the end of its headers
    /// (default 30 s); a body still arriving then fails the request.
    pub body_read_timeout_ms: u64,
    /// How long a connection with no request in flight is kept open for the next one (default
    /// 60 s); then it is closed.
    pub keep_alive_timeout_ms: u64,
    /// Most connections open at once (default 1024). Beyond it new connections wait in the
    /// kernel's accept queue until one closes, rather than taking file descriptors the process
    /// needs; keep it below the process's file-descriptor limit.
    pub max_connections: usize,
    /// Most connections open at once from one IP address (default 256), so one client cannot
    /// take them all; more are closed as soon as they are accepted. 0 turns the cap off, which
    /// is what a server behind a reverse proxy (every connection from the proxy's address) needs.
    pub max_connections_per_ip: usize,
    /// How long shutdown waits for in-flight requests after it stops accepting connections
    /// (default 30 s); connections still open then are closed.
    pub shutdown_timeout_ms: u64,
    /// A bearer token `GET /health` requires (`env:NAME` or `file:PATH`, read at every request);
    /// without it the endpoint is open.
    pub health_token: Option<SecretRef>,
    /// A bearer token `GET /metrics` requires (`env:NAME` or `file:PATH`, read at every request);
    /// without it the endpoint is open.
    pub metrics_token: Option<SecretRef>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            keep_alive_timeout_ms: 60_000,
            max_connections: 1024,
            max_connections_per_ip: 256,
            shutdown_timeout_ms: 30_000,
            health_token: None,
            metrics_token: None,
        }
    }
}

/// `[demo]`: services the built-in demo runs in-process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Starts the bundled tickets MCP server (`examples/tickets-mcp`) on a free loopback port,
    /// trusting the development identity provider, and points this connection at it.
    pub tickets_connection: Option<String>,
}

/// `[eval]`: settings of the evaluation harness (`switchboard eval`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Prices per model name (as the LLM spans record it), so reports can show a cost.
    pub prices: std::collections::BTreeMap<String, ModelPrice>,
    /// An LLM that grades free-text answers against a case's rubric (`expect.answer.judge`).
    pub judge: Option<JudgeConfig>,
    /// How many cited documents retrieval recall is measured over (default 5).
    pub recall_k: Option<usize>,
}

/// `[eval.prices.MODEL]`: what a model's tokens cost, in any one currency.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Price of a million prompt tokens.
    pub input_per_million: f64,
    /// Price of a million completion tokens.
    pub output_per_million: f64,
}

/// `[eval.judge]`: the model that grades answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// Model name.
    pub model: String,
    /// Server root including `/v1`; defaults to `[llm] base_url`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// How calls to it authenticate; defaults to `[llm.credential]`.
    #[serde(default)]
    pub credential: Option<CredentialSpec>,
}

/// A development identity (demo and tests only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevUser {
    /// Email, also the subject.
    pub email: String,
    /// Groups (roles).
    pub roles: Vec<String>,
}

/// A client the development identity provider's token endpoint accepts (client credentials).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevClient {
    /// Client id.
    pub id: String,
    /// Client secret source (`env:NAME` or `file:PATH`).
    pub secret: SecretRef,
    /// Scopes it may request.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[identity]`: the runtime's own identity, and the development identity provider (which is on
/// exactly when there is no `[auth]` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The id downstream systems see on `automatic` hops.
    pub service_principal: String,
    /// Where `automatic` hops get the service principal's token (OAuth2 client credentials).
    /// Without it, the development identity provider mints one, or hops carry none.
    pub client_credentials: Option<ClientCredentialsConfig>,
    /// Exchange the caller's token per `obo` hop for one restricted to the agent's scopes and
    /// audience (RFC 8693).
    pub token_exchange: Option<TokenExchangeConfig>,
    /// Scopes the development identity provider grants.
    pub dev_scopes: Vec<String>,
    /// Development identities.
    pub dev_users: Vec<DevUser>,
    /// Clients the development token endpoint accepts.
    pub dev_clients: Vec<DevClient>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            service_principal: "switchboard-sp".into(),
            client_credentials: None,
            token_exchange: None,
            dev_scopes: Vec::new(),
            dev_users: Vec::new(),
            dev_clients: Vec::new(),
        }
    }
}

/// `[limits]`: rate limits over sliding one-minute windows (see `switchboard_govern::limits`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Calls per minute per caller and agent; 0 is unlimited.
    pub requests_per_minute: u32,
    /// Share the counters between replicas through Redis: `redis://host:6379[/db]` or
    /// `env:NAME`. Without it each process counts alone. A Redis outage degrades to local counts.
    pub redis: Option<String>,
    /// The prefix of every Redis key (default `switchboard`); deployments sharing one Redis
    /// keep their limits apart with their own.
    pub redis_prefix: Option<String>,
    /// The whole endpoint: every request of every caller.
    pub endpoint: Rate,
    /// Each user or service principal, by default.
    pub user: Rate,
    /// Overrides for named users and service principals (by email or subject).
    pub users: std::collections::BTreeMap<String, Rate>,
    /// Each group: all its members' requests together.
    pub groups: std::collections::BTreeMap<String, Rate>,
    /// Each agent: all callers' calls to it together.
    pub agents: std::collections::BTreeMap<String, Rate>,
    /// Each connection: every call made through it.
    pub connections: std::collections::BTreeMap<String, Rate>,
}

/// An agent file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// Unique name.
    pub name: String,
    /// Kind.
    pub kind: AgentKind,
    /// What it does.
    pub description: String,
    /// Example questions.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Roles allowed; omit for everyone.
    #[serde(default)]
    pub allowed_roles: Option<Vec<String>>,
    /// Per-call timeout.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Named connection.
    #[serde(default)]
    pub connection: Option<String>,
    /// Credential.
    #[serde(default)]
    pub credential: CredentialSpec,
    /// `[knowledge]` settings.
    #[serde(default)]
    pub knowledge: Option<toml::Table>,
    /// `[genie]` settings.
    #[serde(default)]
    pub genie: Option<toml::Table>,
    /// `[tool]` settings.
    #[serde(default)]
    pub tool: Option<toml::Table>,
    /// `[mcp]` settings.
    #[serde(default)]
    pub mcp: Option<toml::Table>,
    /// `[endpoint]` settings.
    #[serde(default)]
    pub endpoint: Option<toml::Table>,
    /// `[supervisor]` settings (nested supervisor).
    #[serde(default)]
    pub supervisor: Option<toml::Table>,
    /// `[tool_roles]`: roles allowed per tool inside the agent; tools it does not name are denied.
    #[serde(default)]
    pub tool_roles: Option<BTreeMap<String, Vec<String>>>,
    /// `[guardrails]`: the agent's own, applied to what it is sent and what it answers.
    #[serde(default)]
    pub guardrails: Option<GuardrailConfig>,
}

/// Converts a TOML parse error into a problem naming the line and, when it can, the field.
fn toml_problem(file: &ConfigFile, e: &toml::de::Error) -> Problem {
    let (line, field) = match e.span() {
        Some(span) => locate(&file.text, span.start),
        None => (0, String::new()),
    };
    let message = if line > 0 {
        format!("{} (line {line})", e.message().trim())
    } else {
        e.message().trim().to_string()
    };
    Problem { file: file.label.clone(), field, message }
}

/// The 1-based line of `offset` and the dotted key written there (`table.key`), if any.
fn locate(text: &str, offset: usize) -> (usize, String) {
    let before = &text[..offset.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = if line.starts_with('[') {
        String::new()
    } else {
        line.split('=').next().unwrap_or("").trim().trim_matches('"').to_string()
    };
    let field = match (table, key.is_empty()) {
        (Some(t), false) if !line.starts_with('[') => format!("{t}.{key}"),
        (Some(t), _) => t,
        (None, _) => key,
    };
    (line_no, field)
}

pub(super) fn parse_main(file: &ConfigFile, problems: &mut Vec<Problem>) -> Option<Config> {
    match toml::from_str::<Config>(&file.text) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(toml_problem(file, &e));
            None
        }
    }
}

pub(super) fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub(super) fn check_credential(file: &str, field: &str, spec: &CredentialSpec, problems: &mut Vec<Problem>) {
    match (spec.mode, &spec.secret) {
        (CredentialMode::Manual, None) => problems.push(Problem {
            file: file.into(),
            field: format!("{field}.secret"),
            message: "manual credentials need a secret source: `env:NAME` or `file:PATH`".into(),
        }),
        (CredentialMode::Automatic | CredentialMode::Obo, Some(_)) => problems.push(Problem {
            file: file.into(),
            field: format!("{field}.secret"),
            message: format!("a secret is only used with mode = \"manual\", not \"{}\"", spec.mode.as_str()),
        }),
        _ => {}
    }
}

pub(super) fn parse_agent(file: &ConfigFile, problems: &mut Vec<Problem>) -> Option<AgentSpec> {
    let parsed = match toml::from_str::<AgentFile>(&file.text) {
        Ok(a) => a,
        Err(e) => {
            problems.push(toml_problem(file, &e));
            return None;
        }
    };
    let before = problems.len();
    let problem =
        |field: &str, message: String| Problem { file: file.label.clone(), field: field.into(), message };
    if !valid_name(&parsed.name) {
        problems.push(problem(
            "name",
            format!(
                "`{}` is not a valid agent name: use 1-64 of a-z, 0-9, _ and -, starting with a letter",
                parsed.name
            ),
        ));
    }
    if parsed.description.trim().is_empty() {
        problems.push(problem("description", "must describe what the agent does; routers read it".into()));
    }
    if parsed.allowed_roles.as_ref().is_some_and(Vec::is_empty) {
        problems.push(problem(
            "allowed_roles",
            "an empty list lets nobody in; omit the field to allow every caller".into(),
        ));
    }
    if parsed.timeout_ms == Some(0) {
        problems.push(problem("timeout_ms", "must be greater than 0".into()));
    }
    for (tool, roles) in parsed.tool_roles.iter().flatten() {
        if roles.is_empty() {
            problems.push(problem(
                &format!("tool_roles.{tool}"),
                "an empty list lets nobody use the tool; leave the tool out to deny it".into(),
            ));
        }
    }
    if let Some(guardrails) = &parsed.guardrails
        && let Err(e) = Guardrails::new(guardrails)
    {
        problems.push(problem(&e.field(), e.reason));
    }
    check_credential(&file.label, "credential", &parsed.credential, problems);
    if !BUILDABLE_KINDS.contains(&parsed.kind) {
        problems.push(problem(
            "kind",
            format!(
                "kind `{}` is not available in this build (available: knowledge, genie, tool, mcp, endpoint, supervisor)",
                parsed.kind.as_str()
            ),
        ));
    }
    let tables = [
        (AgentKind::Knowledge, &parsed.knowledge),
        (AgentKind::Genie, &parsed.genie),
        (AgentKind::Tool, &parsed.tool),
        (AgentKind::Mcp, &parsed.mcp),
        (AgentKind::Endpoint, &parsed.endpoint),
        (AgentKind::Supervisor, &parsed.supervisor),
    ];
    let mut settings = serde_json::Value::Object(Default::default());
    for (kind, table) in tables {
        let Some(table) = table else { continue };
        if kind == parsed.kind {
            match serde_json::to_value(table) {
                Ok(v) => settings = v,
                Err(e) => problems.push(problem(kind.as_str(), format!("cannot be read: {e}"))),
            }
        } else {
            problems.push(problem(
                kind.as_str(),
                format!(
                    "a `[{}]` table does not belong to a `{}` agent",
                    kind.as_str(),
                    parsed.kind.as_str()
                ),
            ));
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(AgentSpec {
        name: parsed.name,
        kind: parsed.kind,
        description: parsed.description,
        examples: parsed.examples,
        credential: parsed.credential,
        allowed_roles: parsed.allowed_roles,
        timeout_ms: parsed.timeout_ms,
        connection: parsed.connection,
        settings,
        tool_roles: parsed.tool_roles,
        guardrails: parsed.guardrails,
    })
}

pub(super) fn check_cross(
    config: &Config,
    files: &Files,
    agents: &[Arc<AgentSpec>],
    problems: &mut Vec<Problem>,
) {
    super::connections::check_connections(config, files, problems);
    super::limits::check_limits(config, files, agents, problems);
    super::resilience::check_resilience(config, files, problems);
    let file = files.main.label.as_str();
    let problem = |field: &str, message: &str| Problem {
        file: file.into(),
        field: field.into(),
        message: message.into(),
    };
    if let Err(e) = Guardrails::new(&config.guardrails) {
        problems.push(problem(&e.field(), &e.reason));
    }
    let server = &config.server;
    for (field, value) in [
        ("server.header_read_timeout_ms", server.header_read_timeout_ms),
        ("server.body_read_timeout_ms", server.body_read_timeout_ms),
        ("server.keep_alive_timeout_ms", server.keep_alive_timeout_ms),
        ("server.shutdown_timeout_ms", server.shutdown_timeout_ms),
    ] {
        if value == 0 {
            problems
                .push(problem(field, "must be greater than 0 (a timeout of 0 would close every connection)"));
        }
    }
    if server.max_connections == 0 {
        problems.push(problem("server.max_connections", "must be at least 1"));
    }
    if server.max_connections_per_ip > server.max_connections {
        problems.push(problem(
            "server.max_connections_per_ip",
            &format!(
                "must not exceed server.max_connections ({}); use 0 for no per-IP cap",
                server.max_connections
            ),
        ));
    }
    let s = &config.supervisor;
    if s.max_hops == 0 {
        problems.push(problem("supervisor.max_hops", "must be at least 1"));
    }
    if s.agent_timeout_ms == 0 {
        problems.push(problem("supervisor.agent_timeout_ms", "must be greater than 0"));
    }
    if s.deadline_ms == 0 {
        problems.push(problem("supervisor.deadline_ms", "must be greater than 0"));
    }
    if !valid_name(&s.name) {
        problems.push(problem("supervisor.name", "use 1-64 of a-z, 0-9, _ and -, starting with a letter"));
    }
    if let Some(t) = config.router.threshold
        && !(t > 0.0 && t <= 1.0)
    {
        problems.push(problem("router.threshold", "must be in (0, 1]"));
    }
    if config.router.shortlist.is_some() && config.router.kind != RouterKind::Llm {
        problems.push(problem(
            "router.shortlist",
            "only the llm router offers a model a shortlist; set router.kind = \"llm\" or remove it",
        ));
    }
    match &config.llm {
        None if config.router.kind == RouterKind::Llm => {
            problems.push(problem("router.kind", "the llm router needs an [llm] section (base_url, model)"))
        }
        None => {}
        Some(llm) => {
            if !(llm.base_url.starts_with("http://") || llm.base_url.starts_with("https://")) {
                problems.push(problem(
                    "llm.base_url",
                    "must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1",
                ));
            }
            if llm.model.trim().is_empty() {
                problems.push(problem("llm.model", "must name a model"));
            }
            check_credential(file, "llm.credential", &llm.credential, problems);
        }
    }
    if config.store.kind == StoreKind::Postgres
        && config.store.url.as_deref().is_none_or(|u| u.trim().is_empty())
    {
        problems.push(problem("store.url", "a postgres store needs url = \"postgres://…\" or \"env:NAME\""));
    }
    if config.store.spill_max_bytes == 0 {
        problems.push(problem(
            "store.spill_max_bytes",
            "must be at least 1 (the spill file keeps audit rows through a store outage)",
        ));
    }
    if config.store.spill_path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        problems.push(problem("store.spill_path", "must not be empty; omit it for the default"));
    }
    if config.server.body_limit_bytes == 0 {
        problems.push(problem("server.body_limit_bytes", "must be greater than 0"));
    }
    if !(1..=MAX_PAYLOAD_LOG_BYTES).contains(&config.payload_log.max_bytes) {
        problems.push(problem(
            "payload_log.max_bytes",
            &format!("must be between 1 and {MAX_PAYLOAD_LOG_BYTES} (16 MiB)"),
        ));
    }
    if let Some(auth) = &config.auth {
        if !config.identity.dev_users.is_empty() {
            problems.push(problem(
                "identity.dev_users",
                "development identities are unused when [auth] is configured (the development identity provider is off)",
            ));
        }
        if let Err(e) =
            switchboard_auth::EdgeAuth::new(auth.clone(), switchboard_govern::reqwest::Client::new())
        {
            problems.push(problem("auth", &e.message));
        }
    }
    if config.identity.service_principal.trim().is_empty() {
        problems.push(problem("identity.service_principal", "must not be empty"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_names_table_and_key() {
        let text = "name = \"x\"\n[genie]\ndatabase = 3\n";
        let offset = text.find("3").unwrap();
        assert_eq!(locate(text, offset), (3, "genie.database".into()));
    }
}
