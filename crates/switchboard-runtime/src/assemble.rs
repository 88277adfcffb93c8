//! Turning a validated configuration into a running supervisor. Everything expensive (indexes,
//! HTTP pools, tokenizers, templates) is built here, once, never on the request path.

use crate::config::{self, ConfigErrors, ConfigSource, LoadedConfig, RouterKind, StoreKind};
use crate::grants::Grants;
use crate::guard::RunGuards;
use crate::identity::Identity;
use crate::supervisor::Supervisor;
use crate::synthesis::{DEFAULT_SYNTHESIS_PROMPT, Synthesizer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard_agents::{endpoint, genie, knowledge, mcp, tool};
use switchboard_auth::{ClientCredentials, ClientCredentialsConfig};
use switchboard_core::{
    Agent, AgentKind, AgentSpec, Caller, ConnectionAuth, ConnectionSpec, CredentialSpec, Error, Result,
    RunContext, TelemetrySink,
};
use switchboard_govern::layers::TokenSource;
use switchboard_govern::{Connection, Gateway, Transport, layers, reqwest};
use switchboard_llm::LlmClient;
use switchboard_otel::OtlpSink;
use switchboard_router::{LexicalRouter, LlmRouter};
use switchboard_store::{PostgresStore, SpillConfig, SqliteStore, Store};

/// The built-in router prompt, used when `prompts/router.j2` is absent.
pub const DEFAULT_ROUTER_PROMPT: &str = "You are {{ name }}, a supervisor that routes each request to the right specialist agents.\n\
Call one tool per agent that is needed; call several when the request has several parts, passing each agent only its part of the request as `question`, and its other arguments only values the request states.\n\
If no agent fits, do not call a tool: ask a short clarifying question instead.";

/// A loaded configuration with its supervisor, store and identities.
pub struct Runtime {
    /// The supervisor.
    pub supervisor: Arc<Supervisor>,
    /// Audit rows, spans and threads.
    pub store: Arc<dyn Store>,
    /// The configuration it was built from.
    pub config: LoadedConfig,
    /// Edge identity and the runtime's own credentials.
    pub identity: Identity,
    /// `USE CONNECTION` grants on the declared connections.
    pub grants: Arc<Grants>,
    /// The clients of the per-user OAuth connections, by name (`/oauth/…` routes use them).
    pub user_oauth: crate::user_oauth::UserOAuth,
    /// Retries and circuit breakers of every HTTP hop (`/health` shows the circuits).
    pub resilience: switchboard_govern::retry::Resilience,
    /// The OTLP exporter, when the environment configures one.
    otlp: Option<Arc<OtlpSink>>,
    /// The demo's in-process tickets server, stopped with the runtime.
    _tickets: Option<crate::demo::TicketsServer>,
}

/// Validates each agent's kind-specific settings.
pub fn check_settings(spec: &AgentSpec, base_dir: &Path) -> Result<()> {
    match spec.kind {
        AgentKind::Knowledge => knowledge::Settings::from_spec(spec, base_dir).map(drop),
        AgentKind::Genie => genie::check(spec, base_dir),
        AgentKind::Tool => tool::Settings::from_spec(spec, base_dir).map(drop),
        AgentKind::Mcp => mcp::Settings::from_spec(spec, base_dir).map(drop),
        AgentKind::Endpoint | AgentKind::Supervisor => {
            endpoint::Settings::from_spec(spec, base_dir).map(drop)
        }
    }
}

impl Runtime {
    /// Loads and validates a configuration, reporting every problem.
    pub fn validate(source: &ConfigSource) -> std::result::Result<LoadedConfig, ConfigErrors> {
        config::load(source, check_settings)
    }

    /// Loads, validates and builds.
    pub async fn load(source: &ConfigSource) -> std::result::Result<Self, Error> {
        Self::load_with_functions(source, tool::Functions::default()).await
    }

    /// [`load`](Self::load), with the functions the configuration's function tools
    /// (`[tool.function]`) name, registered by the program embedding Switchboard.
    pub async fn load_with_functions(
        source: &ConfigSource,
        functions: tool::Functions,
    ) -> std::result::Result<Self, Error> {
        let loaded = Self::validate(source).map_err(|e| Error::config(e.to_string()))?;
        Self::build_with(loaded, None, &functions).await
    }

    /// Opens the configured store.
    pub async fn open_store(loaded: &LoadedConfig) -> Result<Arc<dyn Store>> {
        let cfg = &loaded.config.store;
        match cfg.kind {
            StoreKind::Sqlite => {
                let path = loaded.data_dir.join(&cfg.path);
                let mut default_spill = cfg.path.clone().into_os_string();
                default_spill.push("-spill.jsonl");
                let spill = spill_config(loaded, &default_spill.to_string_lossy());
                let store = tokio::task::spawn_blocking(move || SqliteStore::open_with_spill(&path, &spill))
                    .await
                    .map_err(|e| Error::internal(format!("opening the store panicked: {e}")))??;
                Ok(Arc::new(store))
            }
            StoreKind::Postgres => {
                let url = match cfg.url.as_deref().unwrap_or_default() {
                    reference if reference.starts_with("env:") => {
                        let name = &reference[4..];
                        std::env::var(name)
                            .map_err(|_| Error::config(format!("store.url: env:{name} is not set")))?
                    }
                    url => url.to_string(),
                };
                let spill = spill_config(loaded, "postgres-spill.jsonl");
                Ok(Arc::new(
                    PostgresStore::connect_with(&url, switchboard_store::QUEUE_CAPACITY, &spill).await?,
                ))
            }
        }
    }

    /// Builds the supervisor from a validated configuration.
    pub async fn build(loaded: LoadedConfig) -> Result<Self> {
        Self::build_with(loaded, None, &tool::Functions::default()).await
    }

    /// [`build`](Self::build), with the HTTP requests hops send (the LLM's, HTTP tools',
    /// endpoint agents') answered in process by `transport` instead of the network, and the
    /// functions its function tools name: for benchmarks and embedders that serve a backend
    /// themselves.
    pub async fn build_in_process(
        loaded: LoadedConfig,
        transport: Arc<dyn Transport>,
        functions: &tool::Functions,
    ) -> Result<Self> {
        Self::build_with(loaded, Some(transport), functions).await
    }

    async fn build_with(
        mut loaded: LoadedConfig,
        transport: Option<Arc<dyn Transport>>,
        functions: &tool::Functions,
    ) -> Result<Self> {
        let store = Self::open_store(&loaded).await?;
        point_tools_at_store(&mut loaded, store.as_ref()).await?;
        // One HTTP connection pool for the process: every hop and every token request shares it
        // (connections have their own, fenced in by their egress rules).
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        let identity = Identity::build(&loaded.config, &loaded.data_dir, http.clone())?;
        let tickets = start_demo_tickets(&mut loaded, &identity).await?;
        let cfg = &loaded.config;
        // With the standard OTEL_EXPORTER_OTLP_* variables set, spans are also exported over OTLP.
        let otlp = OtlpSink::from_env(store.clone())?.map(Arc::new);
        let sink: Arc<dyn TelemetrySink> = match &otlp {
            Some(otlp) => otlp.clone(),
            None => store.clone(),
        };

        let grants = Grants::start(store.clone(), sink.clone(), &cfg.connections).await?;
        let user_oauth = crate::user_oauth::build(&cfg.connections, &store)?;
        let connections = cfg
            .connections
            .iter()
            .map(|spec| {
                let connection = build_connection(spec, &http)?;
                Ok(Arc::new(match user_oauth.get(&spec.name) {
                    Some(client) => connection.with_user_tokens(client.clone()),
                    None => connection,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut gateway = Gateway::builder(sink.clone(), identity.credentials())
            .http_client(http)
            .connections(connections, grants.checker(), cfg.identity.service_principal.clone());
        if let Some(limit) = rate_limit(cfg)? {
            gateway = gateway.rate_limit(limit);
        }
        gateway = gateway.resilience(cfg.resilience.build());
        if let Some(transport) = transport {
            gateway = gateway.transport(transport);
        }
        let gateway = Arc::new(gateway.build());
        let resilience = gateway.resilience().clone();

        let llm = cfg.llm.as_ref().map(|llm| -> Result<LlmClient> {
            let spec = Arc::new(internal_spec("llm", "The configured LLM endpoint.", llm.credential.clone()));
            // Each fallback is called with its own credential, hence an egress of its own.
            let fallbacks = llm
                .fallbacks
                .iter()
                .map(|f| {
                    let credential = f.credential.clone().unwrap_or_else(|| llm.credential.clone());
                    let spec = Arc::new(internal_spec("llm", "A fallback LLM endpoint.", credential));
                    let base_url = f.base_url.as_deref().unwrap_or(&llm.base_url);
                    switchboard_llm::Target::new(gateway.egress(spec), base_url, f.model.clone())
                })
                .collect();
            let split = llm.split.iter().map(|s| (s.model.clone(), s.weight)).collect();
            let client = LlmClient::new(gateway.egress(spec), &llm.base_url, llm.model.clone())
                .with_fallbacks(fallbacks)
                .with_split(split);
            if !llm.http2_prior_knowledge {
                return Ok(client);
            }
            let http = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .http2_prior_knowledge()
                .build()
                .map_err(|e| Error::internal(format!("cannot build the LLM's HTTP/2 client: {e}")))?;
            Ok(client.with_http(http))
        });
        let llm = llm.transpose()?;

        // Building agents reads files and builds indexes: blocking work, kept off the async threads.
        let agents = {
            let (specs, gateway, base, llm, functions) = (
                loaded.agents.clone(),
                gateway.clone(),
                loaded.base_dir.clone(),
                llm.clone(),
                functions.clone(),
            );
            tokio::task::spawn_blocking(move || {
                build_agents(&specs, &gateway, &base, llm.as_ref(), &functions)
            })
            .await
            .map_err(|e| Error::internal(format!("building agents panicked: {e}")))??
        };

        let supervisor_spec = Arc::new(internal_spec(
            &cfg.supervisor.name,
            &cfg.supervisor.description,
            cfg.llm.as_ref().map(|l| l.credential.clone()).unwrap_or_default(),
        ));
        let threshold = cfg.router.threshold.unwrap_or(LexicalRouter::DEFAULT_THRESHOLD);
        // Trained once here (blocking: it reads documents), shared by routing and attribution:
        // one copy, not a clone each (about 350 kB for the demo's agents).
        let lexical = Arc::new({
            let (specs, base) = (loaded.agents.clone(), loaded.base_dir.clone());
            tokio::task::spawn_blocking(move || -> Result<LexicalRouter> {
                let topics = crate::routing::topics(&specs, &base)?;
                Ok(LexicalRouter::with_topics(&specs, &topics, threshold))
            })
            .await
            .map_err(|e| Error::internal(format!("building the router panicked: {e}")))??
        });
        let router: Arc<dyn switchboard_core::Router> = match (cfg.router.kind, &llm) {
            (RouterKind::Llm, Some(client)) => {
                let template = prompt(&loaded, "router.j2", DEFAULT_ROUTER_PROMPT);
                let system = minijinja::Environment::new()
                    .render_str(&template, minijinja::context! { name => cfg.supervisor.name.clone() })
                    .map_err(|e| Error::config(format!("prompts/router.j2 failed to render: {e}")))?;
                let shortlist = cfg.router.shortlist.unwrap_or(LlmRouter::DEFAULT_SHORTLIST);
                let propose_arguments = cfg.router.propose_arguments.unwrap_or(true);
                let schemas = agents
                    .iter()
                    .filter(|_| propose_arguments)
                    .filter_map(|a| a.arguments_schema().map(|schema| (a.spec().name.clone(), schema)));
                Arc::new(
                    LlmRouter::new(client.clone(), &loaded.agents, system, lexical.clone())
                        .with_shortlist(shortlist)
                        .with_arguments(schemas),
                )
            }
            _ => lexical.clone(),
        };
        let synthesizer = match &llm {
            Some(client) => Some(Synthesizer::new(
                client.clone(),
                prompt(&loaded, "synthesis.j2", DEFAULT_SYNTHESIS_PROMPT),
            )?),
            None => None,
        };
        let guards = RunGuards::new(&loaded.config.guardrails, &loaded.agents)?;
        let supervisor = Arc::new(
            Supervisor::new(supervisor_spec, agents, router, gateway, sink, store.clone(), synthesizer)
                .with_attributor(lexical)
                .with_guardrails(guards),
        );
        Ok(Self {
            supervisor,
            store,
            config: loaded,
            identity,
            grants,
            user_oauth,
            resilience,
            otlp,
            _tickets: tickets,
        })
    }

    /// A development caller for `email` from `[identity] dev_users`: a token is minted by the
    /// development identity provider and verified at the edge, as over HTTP.
    pub async fn dev_caller(&self, email: &str) -> Result<Caller> {
        self.identity.dev_caller(email).await
    }

    /// Drains what is queued for the store and the OTLP exporter; call once requests have
    /// finished (graceful shutdown, the end of a CLI command).
    pub async fn shutdown(&self) {
        self.store.flush().await;
        if let Some(otlp) = &self.otlp {
            otlp.shutdown().await;
        }
    }

    /// A fresh request context for `caller`, with the configured deadline and hop budget.
    pub fn context(&self, caller: Caller) -> RunContext {
        let s = &self.config.config.supervisor;
        let mut ctx = RunContext::new(caller, Duration::from_millis(s.deadline_ms));
        ctx.max_hops = s.max_hops;
        ctx
    }
}

/// Points SQL tools declared with `engine = "store"` (the demo's `audit` agent) at the store
/// actually configured: its SQLite file, or its PostgreSQL database and schema.
async fn point_tools_at_store(loaded: &mut LoadedConfig, store: &dyn Store) -> Result<()> {
    let wants_store = |s: &AgentSpec| s.settings.get("engine").and_then(|e| e.as_str()) == Some("store");
    if !loaded.agents.iter().any(|s| wants_store(s)) {
        return Ok(());
    }
    let cfg = &loaded.config.store;
    let target = match cfg.kind {
        StoreKind::Sqlite => {
            // Absolute: the tool resolves a relative `database` against the configuration's
            // folder, while this path is already relative to the working directory (the demo's
            // `.switchboard`), so joined again it would name a file that does not exist.
            let path = loaded.data_dir.join(&cfg.path);
            tool::StoreTarget::Sqlite(std::path::absolute(&path).unwrap_or(path))
        }
        StoreKind::Postgres => tool::StoreTarget::Postgres {
            url: cfg.url.clone().unwrap_or_default(),
            schema: store.postgres_schema().await?.unwrap_or_else(|| "public".to_string()),
        },
    };
    for spec in &mut loaded.agents {
        if let Some(resolved) = tool::resolve_store_engine(spec, &target) {
            *spec = Arc::new(resolved);
        }
    }
    Ok(())
}

fn build_agents(
    specs: &[Arc<AgentSpec>],
    gateway: &Arc<Gateway>,
    base: &Path,
    llm: Option<&LlmClient>,
    functions: &tool::Functions,
) -> Result<Vec<Arc<dyn Agent>>> {
    specs
        .iter()
        .map(|spec| {
            let egress = gateway.egress(spec.clone());
            let llm = llm.cloned();
            let agent: Arc<dyn Agent> = match spec.kind {
                AgentKind::Knowledge => {
                    Arc::new(knowledge::KnowledgeAgent::new(spec.clone(), egress, base, llm)?)
                }
                AgentKind::Genie => genie::build(spec.clone(), egress, base, llm)?,
                AgentKind::Tool => tool::build_with(spec.clone(), egress, base, llm, functions)?,
                AgentKind::Mcp => Arc::new(mcp::McpAgent::new(spec.clone(), egress, base, llm)?),
                AgentKind::Endpoint | AgentKind::Supervisor => {
                    Arc::new(endpoint::EndpointAgent::new(spec.clone(), egress, base)?)
                }
            };
            Ok(agent)
        })
        .collect()
}

/// Starts the demo's tickets server when `[demo] tickets_connection` asks for it, and points that
/// connection at it. The server trusts the issuer the edge trusts: the development identity
/// provider's keys, or else the first `[[auth.issuers]]` entry with a `jwks_url`.
async fn start_demo_tickets(
    loaded: &mut LoadedConfig,
    identity: &Identity,
) -> Result<Option<crate::demo::TicketsServer>> {
    let Some(name) = loaded.config.demo.tickets_connection.clone() else { return Ok(None) };
    let cannot =
        |e: tickets_mcp::AuthSetupError| Error::config(format!("the demo tickets server cannot start: {e}"));
    let auth = match (identity.dev(), &loaded.config.auth) {
        (Some(dev), _) => {
            let keys = serde_json::from_value(dev.jwks())
                .map_err(|e| Error::internal(format!("the development JWKS does not parse: {e}")))?;
            tickets_mcp::TicketsAuth::from_jwks(keys, Some(dev.issuer().to_string()), None).map_err(cannot)?
        }
        (None, Some(auth)) => {
            let issuer = auth.issuers.iter().find(|i| i.jwks_url.is_some()).ok_or_else(|| {
                Error::config("demo.tickets_connection: no [[auth.issuers]] entry has a jwks_url for the tickets server to trust")
            })?;
            let url = issuer.jwks_url.clone().unwrap_or_default();
            tickets_mcp::TicketsAuth::from_jwks_url(url, Some(issuer.issuer.clone()), None).map_err(cannot)?
        }
        (None, None) => return Err(Error::config("demo.tickets_connection: no identity provider to trust")),
    };
    let server = crate::demo::start_tickets(auth).await?;
    if let Some(connection) = loaded.config.connections.iter_mut().find(|c| c.name == name) {
        connection.base_url = Some(server.url.clone());
    }
    Ok(Some(server))
}

/// A connection with its egress-restricted client and, for `oauth_m2m`, its own cached
/// client-credentials token source.
fn build_connection(spec: &ConnectionSpec, http: &reqwest::Client) -> Result<Connection> {
    let token_source: Option<Arc<dyn TokenSource>> =
        match (spec.auth, &spec.token_url, &spec.client_id, &spec.client_secret) {
            (ConnectionAuth::OauthM2m, Some(url), Some(id), Some(secret)) => {
                let mut cc = ClientCredentialsConfig::new(url.clone(), id.clone(), secret.clone());
                cc.scopes = spec.scopes.clone();
                Some(Arc::new(ClientCredentials::new(cc, http.clone())))
            }
            _ => None,
        };
    Connection::new(spec.clone(), token_source)
}

fn prompt(loaded: &LoadedConfig, name: &str, default: &str) -> String {
    loaded
        .prompts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| default.to_string())
}

/// A spec for the runtime's own hops (the LLM, the supervisor itself), which no policy restricts.
fn internal_spec(name: &str, description: &str, credential: CredentialSpec) -> AgentSpec {
    AgentSpec { credential, ..AgentSpec::new(name, AgentKind::Endpoint, description) }
}

/// The store's spill file: `[store] spill_path`, or `default` (both relative to the data dir),
/// with its disk budget.
fn spill_config(loaded: &LoadedConfig, default: &str) -> SpillConfig {
    let cfg = &loaded.config.store;
    let path = cfg.spill_path.clone().unwrap_or_else(|| default.into());
    SpillConfig { path: loaded.data_dir.join(path), max_bytes: cfg.spill_max_bytes }
}

/// The `[limits]` layer, counting in Redis when `redis` is set and in this process otherwise;
/// `None` when no limit is configured.
fn rate_limit(cfg: &config::Config) -> Result<Option<layers::RateLimit>> {
    let rules = config::limit_rules(cfg);
    if rules.is_empty() {
        return Ok(None);
    }
    let windows: Arc<dyn switchboard_govern::limits::Windows> = match cfg.limits.redis.as_deref() {
        None => Arc::new(switchboard_govern::limits::MemoryWindows::new()),
        Some(reference) => {
            let url = match reference.strip_prefix("env:") {
                Some(name) => std::env::var(name)
                    .map_err(|_| Error::config(format!("limits.redis: env:{name} is not set")))?,
                None => reference.to_string(),
            };
            let prefix = cfg.limits.redis_prefix.as_deref().unwrap_or(config::DEFAULT_REDIS_PREFIX);
            let windows = switchboard_govern::limits::RedisWindows::new(&url, prefix)?;
            tracing::info!(redis = %windows.target(), prefix, "limits: counting in Redis, shared by every replica");
            Arc::new(windows)
        }
    };
    Ok(Some(layers::RateLimit::new(rules, windows)))
}
