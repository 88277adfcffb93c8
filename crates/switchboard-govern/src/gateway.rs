use crate::connection::{Connection, Connections};
use crate::layers;
use crate::retry::{Judged, Resilience, Tried};
use crate::transport::Transport;
use async_trait::async_trait;
use futures::future::BoxFuture;
use opentelemetry::trace::SpanId;
use std::future::Future;
use std::sync::{Arc, Mutex};
use switchboard_core::{
    AgentSpec, Credential, Error, HopKind, Principal, Result, RunContext, TelemetrySink, TraceContext,
};

/// Headers every outbound call carries, named once: a name given as text is parsed, and one that
/// is not a standard header copied, on every call.
static TRACEPARENT: reqwest::header::HeaderName = reqwest::header::HeaderName::from_static("traceparent");
static X_REQUEST_ID: reqwest::header::HeaderName = reqwest::header::HeaderName::from_static("x-request-id");

/// What a hop calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopTarget {
    /// The kind of call.
    pub kind: HopKind,
    /// The agent, tool, SQL object, model or URL called.
    pub name: String,
}

impl HopTarget {
    /// A hop of `kind` to `name`.
    pub fn new(kind: HopKind, name: impl Into<String>) -> Self {
        Self { kind, name: name.into() }
    }
}

/// The state of one hop as it passes through the layers.
#[derive(Debug)]
pub struct HopCall {
    /// The request context the hop was made in (its parent span is the caller of the hop).
    pub ctx: RunContext,
    /// The sub-agent the hop is made for; its declaration drives policy and credentials.
    pub agent: Arc<AgentSpec>,
    /// What is called.
    pub target: HopTarget,
    /// This hop's span id, fixed up front so every layer can refer to it.
    pub span_id: SpanId,
    /// The agent's named connection, if it has one.
    pub connection: Option<Arc<Connection>>,
    /// Set by the credential layer.
    pub credential: Option<Credential>,
    /// Extra span attributes recorded by layers and by the call (token counts, row counts…).
    pub attributes: Arc<Mutex<HopAttributes>>,
}

impl HopCall {
    /// Records a span attribute.
    pub fn record(&self, key: &str, value: impl Into<serde_json::Value>) {
        if let Ok(mut attrs) = self.attributes.lock() {
            attrs.insert(key, value.into());
        }
    }
}

/// The span attributes a hop collects while it runs: a few, each set once or overwritten. A list
/// rather than a map, as a map's first node costs about 600 bytes, held for as long as the hop
/// lasts (a streamed answer: minutes).
#[derive(Debug, Default)]
pub struct HopAttributes(Vec<(String, serde_json::Value)>);

impl HopAttributes {
    /// Sets `key`, replacing its earlier value.
    pub fn insert(&mut self, key: &str, value: serde_json::Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    /// The value of `key`, if recorded.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl IntoIterator for HopAttributes {
    type Item = (String, serde_json::Value);
    type IntoIter = std::vec::IntoIter<Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// What the call inside a hop receives: who it acts as, the token to present, and the context
/// for anything it calls in turn (whose parent span is this hop).
#[derive(Clone)]
pub struct HopGrant {
    ctx: RunContext,
    credential: Credential,
    http: reqwest::Client,
    connection: Option<Arc<Connection>>,
    attributes: Arc<Mutex<HopAttributes>>,
    resilience: Resilience,
    /// When the hop's time is up (agent timeout or request deadline); retries never wait past it.
    deadline: std::time::Instant,
    /// Answers requests in process instead of the network, when the gateway has one.
    transport: Option<Arc<dyn Transport>>,
}

impl HopGrant {
    /// The context for nested work: same request and caller, parent span = this hop.
    pub fn ctx(&self) -> &RunContext {
        &self.ctx
    }
    /// Who the downstream sees; for SQL, `current_user()`.
    pub fn principal(&self) -> &Principal {
        &self.credential.principal
    }
    /// The resolved credential.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }
    /// The connection this hop goes through, if the agent names one.
    pub fn connection(&self) -> Option<&Arc<Connection>> {
        self.connection.as_ref()
    }
    /// A request carrying this hop's bearer token, `traceparent` and `x-request-id`. Through a
    /// connection, the URL must pass the connection's egress rules (the error names the
    /// connection and the host, and nothing is sent) and the connection's own client is used.
    pub fn request(&self, method: reqwest::Method, url: &str) -> Result<reqwest::RequestBuilder> {
        self.request_via(&self.http, method, parse_url(url)?)
    }
    /// [`request`](Self::request) to a URL already parsed.
    pub fn request_url(&self, method: reqwest::Method, url: reqwest::Url) -> Result<reqwest::RequestBuilder> {
        self.request_via(&self.http, method, url)
    }
    /// [`request_url`](Self::request_url) made with `http` instead of the gateway's client, for a
    /// target spoken to with settings of its own (an LLM server reached over HTTP/2 without TLS).
    /// A hop through a connection still uses the connection's client, fenced by its egress rules.
    pub fn request_via(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        url: reqwest::Url,
    ) -> Result<reqwest::RequestBuilder> {
        let http = match &self.connection {
            Some(connection) => {
                connection.check_url(&url)?;
                connection.http()
            }
            None => http,
        };
        let mut rb = http
            .request(method, url)
            .header(&TRACEPARENT, self.ctx.trace.traceparent(self.ctx.trace.parent_span_id))
            .header(&X_REQUEST_ID, self.ctx.request_id.as_str());
        if let Some(token) = &self.credential.token {
            rb = rb.bearer_auth(token.expose());
        }
        Ok(rb)
    }
    /// Sends a request made by [`HopGrant::request`] with the gateway's retries and the
    /// upstream's circuit breaker (see [`crate::retry`]), and records the attempts on the hop's
    /// span as `switchboard.http.attempts`. `post_is_safe` lets a `POST` be retried: pass `true`
    /// only when sending it twice is harmless. The upstream is the connection, or the URL's
    /// origin without one.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        post_is_safe: bool,
    ) -> Result<reqwest::Response> {
        if let Some(transport) = &self.transport {
            let request = request.build().map_err(|e| {
                Error::invalid(format!("the request could not be built: {}", e.without_url()))
            })?;
            self.record("switchboard.http.attempts", 1u32);
            return transport.send(request).await;
        }
        let request = request.build_split();
        let upstream = match (&self.connection, &request.1) {
            (Some(connection), _) => connection.name().to_string(),
            (None, Ok(built)) => crate::retry::origin(built.url()),
            (None, Err(_)) => "unknown".to_string(),
        };
        // Boxed: the retry loop and the request in flight are over once the headers are in, while
        // the caller may go on reading the body for minutes (a streamed answer); inline, their
        // space would stay reserved in every future that awaits this one.
        let sent =
            Box::pin(self.resilience.send(&self.ctx, self.deadline, &upstream, request, post_is_safe)).await;
        self.record("switchboard.http.attempts", sent.attempts);
        sent.result
    }
    /// The retry loop of [`send`](Self::send) for requests sent another way (MCP over
    /// streamable HTTP): under this hop's deadline and cancellation, on its connection's circuit.
    pub async fn resilient<O, F, Fut>(
        &self,
        retryable: bool,
        attempt: F,
        judge: impl Fn(&O) -> Judged,
    ) -> Tried<O>
    where
        F: FnMut(bool) -> Fut,
        Fut: Future<Output = Result<O>>,
    {
        let upstream = self.connection.as_ref().map_or("unknown", |c| c.name());
        self.resilience.run(&self.ctx, self.deadline, upstream, retryable, attempt, judge).await
    }
    /// Records a span attribute on this hop's span (token counts, row counts…).
    pub fn record(&self, key: &str, value: impl Into<serde_json::Value>) {
        if let Ok(mut attrs) = self.attributes.lock() {
            attrs.insert(key, value.into());
        }
    }
}

/// The rest of the stack, handed to each layer.
pub struct Next<'a> {
    layers: &'a [Arc<dyn HopLayer>],
    end: &'a End<'a>,
}

/// What the last layer hands the hop to: the call, and what its grant is made with. One per hop,
/// shared by reference so a [`Next`], which every layer's future holds, stays two words.
struct End<'a> {
    call: &'a (dyn Fn(HopGrant) -> BoxFuture<'a, Result<()>> + Send + Sync),
    http: &'a reqwest::Client,
    resilience: &'a Resilience,
    transport: Option<&'a Arc<dyn Transport>>,
}

impl<'a> Next<'a> {
    /// Runs the remaining layers and then the call. A plain function returning the next
    /// layer's (or the call's) future, not an `async fn`: a state machine of its own here would
    /// be held, nested, by every layer for as long as the call lasts.
    pub fn run<'h>(self, hop: &'h mut HopCall) -> BoxFuture<'h, Result<()>>
    where
        'a: 'h,
    {
        match self.layers.split_first() {
            Some((layer, rest)) => layer.handle(hop, Next { layers: rest, end: self.end }),
            None => {
                let Some(credential) = hop.credential.clone() else {
                    let e = Error::internal("hop reached its call without a credential");
                    return Box::pin(std::future::ready(Err(e)));
                };
                let end = self.end;
                let grant = HopGrant {
                    ctx: hop.ctx.child(hop.span_id),
                    credential,
                    http: end.http.clone(),
                    connection: hop.connection.clone(),
                    attributes: hop.attributes.clone(),
                    resilience: end.resilience.clone(),
                    transport: end.transport.cloned(),
                    // What the timeout layer allows, give or take the time the layers took.
                    deadline: std::time::Instant::now()
                        + hop
                            .agent
                            .timeout_ms
                            .map(std::time::Duration::from_millis)
                            .map_or(hop.ctx.remaining(), |t| t.min(hop.ctx.remaining())),
                };
                (end.call)(grant)
            }
        }
    }
}

/// One stage of the hop pipeline. Layers see every hop and may refuse it, decorate it, or observe
/// its outcome; the typed result of the call stays out of their sight.
#[async_trait]
pub trait HopLayer: Send + Sync {
    /// Handles `hop`, usually by doing something and then `next.run(hop).await`.
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()>;
}

/// The governed way out. Built once at start-up and shared.
pub struct Gateway {
    layers: Vec<Arc<dyn HopLayer>>,
    http: reqwest::Client,
    connections: Connections,
    resilience: Resilience,
    transport: Option<Arc<dyn Transport>>,
}

impl Gateway {
    /// Starts a gateway with the standard stack.
    pub fn builder(
        sink: Arc<dyn TelemetrySink>,
        credentials: Arc<dyn layers::CredentialProvider>,
    ) -> GatewayBuilder {
        GatewayBuilder {
            sink,
            credentials,
            policy: Arc::new(layers::RolePolicy),
            limits: None,
            extra: Vec::new(),
            http: None,
            connections: None,
            resilience: Resilience::default(),
            transport: None,
        }
    }

    /// Makes one governed call for `agent` to `target`. `call` runs only if every layer lets the
    /// hop through, and receives the grant it must use for anything it sends.
    pub async fn hop<T, F, Fut>(
        &self,
        ctx: &RunContext,
        agent: &Arc<AgentSpec>,
        target: HopTarget,
        call: F,
    ) -> Result<T>
    where
        T: Send,
        F: Fn(HopGrant) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T>> + Send,
    {
        let slot: Mutex<Option<T>> = Mutex::new(None);
        let terminal = |grant: HopGrant| -> BoxFuture<'_, Result<()>> {
            let (call, slot) = (&call, &slot);
            // The call's future is made where it is awaited: made outside and moved in, it
            // would take its space in the box twice (rust-lang/rust#62958), for as long as the
            // call lasts.
            Box::pin(async move {
                let value = call(grant).await?;
                if let Ok(mut s) = slot.lock() {
                    *s = Some(value);
                }
                Ok(())
            })
        };
        let mut hop = HopCall {
            ctx: ctx.clone(),
            agent: agent.clone(),
            target,
            span_id: TraceContext::new_span_id(),
            connection: None,
            credential: None,
            attributes: Arc::default(),
        };
        if let Some(name) = &agent.connection {
            let connection = self.connections.get(name).ok_or_else(|| {
                Error::config(format!(
                    "agent `{}` names connection `{name}`, which is not declared",
                    agent.name
                ))
            })?;
            hop.connection = Some(connection.clone());
        }
        let end = End {
            call: &terminal,
            http: &self.http,
            resilience: &self.resilience,
            transport: self.transport.as_ref(),
        };
        Next { layers: &self.layers, end: &end }.run(&mut hop).await?;
        slot.into_inner()
            .ok()
            .flatten()
            .ok_or_else(|| Error::internal("a hop layer returned success without running the call"))
    }

    /// A handle that makes hops for one sub-agent; what a sub-agent is built with.
    pub fn egress(self: &Arc<Self>, agent: Arc<AgentSpec>) -> Egress {
        let connection = agent.connection.as_ref().and_then(|name| self.connections.get(name).cloned());
        Egress { gateway: self.clone(), agent, connection }
    }

    /// A declared connection, by name.
    pub fn connection(&self, name: &str) -> Option<&Arc<Connection>> {
        self.connections.get(name)
    }

    /// The retries and circuit breakers every hop's requests go through (for `/health`).
    pub fn resilience(&self) -> &Resilience {
        &self.resilience
    }
}

/// Builds a [`Gateway`].
pub struct GatewayBuilder {
    sink: Arc<dyn TelemetrySink>,
    credentials: Arc<dyn layers::CredentialProvider>,
    policy: Arc<dyn layers::Policy>,
    limits: Option<layers::RateLimit>,
    extra: Vec<Arc<dyn HopLayer>>,
    http: Option<reqwest::Client>,
    connections: Option<(Connections, Arc<dyn layers::ConnectionGrants>, String)>,
    resilience: Resilience,
    transport: Option<Arc<dyn Transport>>,
}

impl GatewayBuilder {
    /// Retries and circuit breakers for the requests hops send with [`HopGrant::send`]; without
    /// this, one attempt and no breaker.
    pub fn resilience(mut self, resilience: Resilience) -> Self {
        self.resilience = resilience;
        self
    }
    /// Replaces the default role allow-list policy.
    pub fn policy(mut self, policy: Arc<dyn layers::Policy>) -> Self {
        self.policy = policy;
        self
    }
    /// Adds the rate-limit layer: the configured limits (see [`crate::limits`]) over sliding
    /// one-minute windows, in memory or shared through Redis.
    pub fn rate_limit(mut self, limit: layers::RateLimit) -> Self {
        self.limits = Some(limit);
        self
    }
    /// Adds a layer just before the call (inside the limit and timeout), e.g. a guardrail.
    pub fn layer(mut self, layer: Arc<dyn HopLayer>) -> Self {
        self.extra.push(layer);
        self
    }
    /// Answers the requests hops send in process with `transport` instead of the network (see
    /// [`Transport`]).
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }
    /// Uses this HTTP client (one pool for the process) instead of a default one.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }
    /// Declares the connections agents may name, the `USE CONNECTION` grants that decide who
    /// may use them, and the service principal whose grants `automatic` hops need.
    pub fn connections(
        mut self,
        connections: impl IntoIterator<Item = Arc<Connection>>,
        grants: Arc<dyn layers::ConnectionGrants>,
        service_principal: impl Into<String>,
    ) -> Self {
        let map = connections.into_iter().map(|c| (c.name().to_string(), c)).collect();
        self.connections = Some((map, grants, service_principal.into()));
        self
    }
    /// Assembles the stack: span → audit → budget → authorize → connection grant → credential →
    /// connection auth → limit → timeout → extras → call.
    pub fn build(self) -> Gateway {
        let mut layers: Vec<Arc<dyn HopLayer>> = vec![
            Arc::new(layers::SpanLayer::new(self.sink.clone())),
            Arc::new(layers::AuditLayer::new(self.sink)),
            Arc::new(layers::HopBudget),
            Arc::new(layers::Authorize::new(self.policy)),
        ];
        let connections = match self.connections {
            Some((connections, grants, service_principal)) => {
                layers.push(Arc::new(layers::ConnectionGrant::new(grants, service_principal)));
                connections
            }
            None => Connections::new(),
        };
        layers.push(Arc::new(layers::CredentialLayer::new(self.credentials)));
        if !connections.is_empty() {
            layers.push(Arc::new(layers::ConnectionAuthLayer));
        }
        if let Some(limit) = self.limits {
            layers.push(Arc::new(limit));
        }
        layers.push(Arc::new(layers::Timeout));
        layers.extend(self.extra);
        Gateway {
            layers,
            http: self.http.unwrap_or_default(),
            connections,
            resilience: self.resilience,
            transport: self.transport,
        }
    }
}

/// Hops for one sub-agent. The only outbound capability a sub-agent is given.
#[derive(Clone)]
pub struct Egress {
    gateway: Arc<Gateway>,
    agent: Arc<AgentSpec>,
    connection: Option<Arc<Connection>>,
}

impl Egress {
    /// The sub-agent this egress belongs to.
    pub fn agent(&self) -> &Arc<AgentSpec> {
        &self.agent
    }
    /// The agent's named connection, if it has one (and it is declared).
    pub fn connection(&self) -> Option<&Arc<Connection>> {
        self.connection.as_ref()
    }
    /// Makes a governed call; see [`Gateway::hop`].
    pub async fn hop<T, F, Fut>(&self, ctx: &RunContext, target: HopTarget, call: F) -> Result<T>
    where
        T: Send,
        F: Fn(HopGrant) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T>> + Send,
    {
        self.gateway.hop(ctx, &self.agent, target, call).await
    }
}

/// `url` parsed, or an error naming it.
fn parse_url(url: &str) -> Result<reqwest::Url> {
    reqwest::Url::parse(url).map_err(|e| Error::invalid(format!("`{url}` is not a URL: {e}")))
}
