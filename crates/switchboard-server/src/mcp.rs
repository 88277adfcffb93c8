//! The supervisor as an MCP server: `ask`, and one tool per sub-agent the caller may use.
//!
//! Served over streamable HTTP at `/mcp` (the caller is the bearer token's subject, verified by
//! the same [`Authenticator`](crate::Authenticator) as every other route; no token is 401) and
//! over stdio by `switchboard mcp` (one caller for the whole process). Every tool call is an
//! ordinary governed run of the supervisor, so it leaves the same spans and audit rows as a chat
//! request. Sub-agent tools are listed by the agents' role allow-lists (`role_allows`) and, for
//! agents behind a connection, the caller's `USE CONNECTION` grant, so the tool list is per
//! caller; policy still decides every hop of the run itself. Each session watches the grants,
//! and the roles and groups its caller's tokens carry, and sends
//! `notifications/tools/list_changed` when its caller's list changes. A session belongs to the
//! subject that opened it.
//!
//! A sub-agent tool asks that agent directly ([`RunRequest::agent`]): the router is skipped, and
//! the run is otherwise the same governed run, with the same spans and audit rows. Arguments that
//! do not fit a tool's input schema are a tool execution error (`isError: true`, as MCP
//! 2025-11-25 asks, so a model can correct itself); an unknown tool is JSON-RPC invalid params.

use crate::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use switchboard_agents::tool::Parameter;
use switchboard_core::AgentKind;
use switchboard_core::{AgentSpec, Caller, CredentialMode};
use switchboard_govern::layers::role_allows;
use switchboard_runtime::{RunRequest, RunResponse, RunStatus, Runtime};

/// The path the MCP endpoint is served at.
pub const MCP_PATH: &str = "/mcp";

/// The name of the general tool.
const ASK: &str = "ask";

/// The MCP server handler. Over HTTP rmcp builds one per session and the caller comes with each
/// request; over stdio the caller is fixed when the process starts.
#[derive(Clone)]
pub struct SupervisorMcp {
    runtime: Arc<Runtime>,
    caller: Option<Caller>,
    /// The server's state when served over HTTP: its metrics count MCP runs like chat runs, and
    /// its task tracker lets shutdown wait for them to unwind before the store is flushed.
    server: Option<AppState>,
    /// Who the session's requests come from (rmcp builds one handler per HTTP session).
    session: Arc<Session>,
}

/// The caller behind one MCP session, as its latest request presented it.
struct Session {
    /// The latest caller; once set, every request must come from the same subject.
    caller: Mutex<Option<Caller>>,
    /// Bumped when a request shows the caller with other roles or groups (a fresh token after a
    /// membership change), which can change the tool list.
    roles_changed: tokio::sync::watch::Sender<u64>,
}

impl Session {
    fn new(caller: Option<Caller>) -> Arc<Self> {
        Arc::new(Self { caller: Mutex::new(caller), roles_changed: tokio::sync::watch::Sender::new(0) })
    }

    /// Records the caller of a request: the first one owns the session; a later one must be the
    /// same subject, and its roles and groups replace the earlier ones.
    fn observe(&self, caller: &Caller) -> Result<(), ErrorData> {
        let mut current = self.caller.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let regrouped = match current.as_ref() {
            Some(owner) if owner.subject() != caller.subject() => {
                return Err(ErrorData::invalid_request(
                    "this MCP session belongs to another caller; initialize a session of your own",
                    None,
                ));
            }
            Some(owner) => owner.groups() != caller.groups(),
            None => false,
        };
        *current = Some(caller.clone());
        drop(current);
        if regrouped {
            self.roles_changed.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// The session's latest caller.
    fn caller(&self) -> Option<Caller> {
        self.caller.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl SupervisorMcp {
    /// A handler whose caller is fixed (stdio: one process, one identity).
    pub fn for_caller(runtime: Arc<Runtime>, caller: Caller) -> Self {
        Self { runtime, session: Session::new(Some(caller.clone())), caller: Some(caller), server: None }
    }

    /// A handler that takes the caller from each HTTP request, as verified by [`authenticate`].
    fn per_request(state: AppState) -> Self {
        Self {
            runtime: state.runtime.clone(),
            caller: None,
            server: Some(state),
            session: Session::new(None),
        }
    }

    /// The caller of this request. Over HTTP it is the one the authentication middleware
    /// attached to the request that carried the message (with that request's token), and it
    /// must be the subject the session belongs to.
    fn caller(&self, extensions: &rmcp::model::Extensions) -> Result<Caller, ErrorData> {
        if let Some(caller) = &self.caller {
            return Ok(caller.clone());
        }
        let caller = extensions
            .get::<Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .cloned()
            .ok_or_else(|| ErrorData::internal_error("the request carries no verified caller", None))?;
        self.session.observe(&caller)?;
        Ok(caller)
    }

    /// Whether `caller` may use `agent` right now: its role allow-list, and, for an agent behind a
    /// connection, a `USE CONNECTION` grant for the principal its hops would present (as the hop
    /// pipeline's connection layer checks it; that layer still decides every actual call).
    fn may_use(&self, agent: &AgentSpec, caller: &Caller) -> bool {
        if !role_allows(agent, caller) {
            return false;
        }
        let Some(name) = agent.connection.as_deref() else { return true };
        let service_principal = self.runtime.config.config.identity.service_principal.as_str();
        let principals: Vec<&str> = match agent.credential.mode {
            CredentialMode::Obo => {
                let mut p = vec![caller.email(), caller.subject()];
                p.extend(caller.groups().iter().map(String::as_str));
                p
            }
            CredentialMode::Automatic | CredentialMode::Manual => vec![service_principal],
        };
        let grants = &self.runtime.grants;
        let owner = grants.connection(name).ok().and_then(|c| c.owner.as_deref());
        owner.is_some_and(|o| principals.contains(&o)) || grants.checker().is_granted(name, &principals)
    }

    /// The tools `caller` may use: `ask`, and one per sub-agent its roles allow.
    fn tools(&self, caller: &Caller) -> Vec<Tool> {
        let mut tools = vec![Tool::new(
            ASK,
            format!(
                "Ask the {} supervisor a question. It routes the question to the sub-agents you may \
                     use and answers with citations; every call is governed and audited.",
                self.runtime.supervisor.name()
            ),
            schema(true, true),
        )];
        for spec in self.runtime.supervisor.agent_specs() {
            if spec.name == ASK || !self.may_use(spec, caller) {
                continue;
            }
            tools.push(Tool::new(
                spec.name.clone(),
                format!("Ask the `{}` sub-agent: {}", spec.name, spec.description),
                schema(false, needs_question(spec)),
            ));
        }
        let output = Arc::new(output_schema());
        for tool in &mut tools {
            tool.output_schema = Some(output.clone());
        }
        tools
    }

    /// Runs `question` through the supervisor for `caller`. Cancelling the MCP request (or the
    /// client going away) cancels the run, which still unwinds through the hop pipeline.
    async fn run(
        &self,
        caller: Caller,
        request: RunRequest,
        ctx: &RequestContext<RoleServer>,
    ) -> RunResponse {
        let run_ctx = self.runtime.context(caller);
        let cancel = run_ctx.cancel.clone();
        let mcp_cancel = ctx.ct.clone();
        let _guard = cancel.clone().drop_guard();
        let run = self.runtime.supervisor.run(&run_ctx, request);
        let run = match &self.server {
            Some(server) => futures::future::Either::Left(server.tasks.track_future(run)),
            None => futures::future::Either::Right(run),
        };
        tokio::pin!(run);
        let response = tokio::select! {
            response = &mut run => response,
            _ = mcp_cancel.cancelled() => {
                // Let the run unwind, so its cancelled calls still get their spans and audit rows.
                cancel.cancel();
                run.await
            }
        };
        if let Some(server) = &self.server {
            server.metrics.run(&response);
        }
        response
    }
}

/// Whether `agent` must be asked something: every agent but a SQL tool whose parameters all have
/// defaults or are optional, which runs with its defaults when asked nothing.
fn needs_question(agent: &AgentSpec) -> bool {
    let settings = &agent.settings;
    if agent.kind != AgentKind::Tool || settings.get("http").is_some() || settings.get("sql").is_none() {
        return true;
    }
    // Read as the SQL tool reads them; parameters it could not read would fail its start-up, so
    // they are taken as needing a question.
    settings.get("parameters").is_some_and(|parameters| {
        Vec::<Parameter>::deserialize(parameters).map_or(true, |ps| ps.iter().any(Parameter::is_required))
    })
}

/// The input schema: `{question}` (required unless `question_required` is false), and for `ask`
/// an optional `thread_id`.
fn schema(with_thread: bool, question_required: bool) -> JsonObject {
    let mut properties = json!({
        "question": {"type": "string", "description": "The question, in plain language."}
    });
    if with_thread {
        properties["thread_id"] = json!({
            "type": "string",
            "description": "A conversation to continue; its earlier turns are the context, and this turn is saved to it."
        });
    }
    let required: &[&str] = if question_required { &["question"] } else { &[] };
    let value = json!({"type": "object", "properties": properties, "required": required});
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// The structured result of every tool.
fn output_schema() -> JsonObject {
    let value = json!({
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "status": {"type": "string", "enum": ["ok", "clarify", "denied", "blocked", "error"]},
            "request_id": {"type": "string"},
            "agents": {"type": "array", "items": {"type": "string"}},
            "citations": {"type": "array", "items": {"type": "object"}}
        },
        "required": ["answer", "status", "request_id", "agents", "citations"]
    });
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// The arguments of a tool call, or why they do not fit its input schema. A tool that needs no
/// question is asked the empty one when given none.
fn arguments(
    args: Option<&JsonObject>,
    with_thread: bool,
    question_required: bool,
) -> Result<(String, Option<String>), String> {
    let empty = JsonObject::new();
    let args = args.unwrap_or(&empty);
    let question = match args.get("question") {
        Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
        Some(Value::String(_)) if question_required => return Err("`question` is empty".into()),
        Some(Value::String(_)) | None if !question_required => String::new(),
        Some(Value::String(_)) | None => return Err("`question` is required".into()),
        Some(_) => return Err("`question` must be a string".into()),
    };
    let thread = match args.get("thread_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if with_thread => Some(t.clone()),
        Some(_) if with_thread => return Err("`thread_id` must be a string".into()),
        Some(_) => return Err("this tool takes no `thread_id`; use `ask`".into()),
    };
    if let Some(unknown) = args.keys().find(|k| *k != "question" && *k != "thread_id") {
        return Err(format!("unknown argument `{unknown}`"));
    }
    Ok((question, thread))
}

/// The tool execution error for arguments that do not fit the tool's input schema: no run
/// starts, and the message says what to change.
fn invalid_arguments(tool: &str, why: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("invalid arguments for `{tool}`: {why}"))])
}

/// The tool result of a run: the answer text with its citations and request id, and the same as
/// structured content. A run that did not succeed is `isError: true` with its message.
fn result(response: &RunResponse) -> CallToolResult {
    // Document and section only, as the chat surface sends them: a snippet never passed the
    // output guardrails.
    let citations = crate::chat::citations(response);
    let structured = json!({
        "answer": response.answer,
        "status": response.status.as_str(),
        "request_id": response.request_id,
        "agents": response.agents,
        "citations": citations,
    });
    let failed = !matches!(response.status, RunStatus::Ok | RunStatus::Clarify);
    let message = if failed {
        // The denial or failure as the HTTP surface words it (e.g. the policy's denial message).
        crate::run::outcome_error(response, std::time::Duration::ZERO)
            .map(|e| e.error.message)
            .unwrap_or_else(|| response.answer.clone())
    } else {
        response.answer.clone()
    };
    let mut text = message.trim_end().to_string();
    // The supervisor's own answer usually lists its sources already; list them only if not.
    if !citations.is_empty() && !message.contains("Sources:") {
        text.push_str("\n\nSources:");
        for (i, c) in citations.iter().enumerate() {
            text.push_str(&format!("\n[{}] {}", i + 1, c.title));
        }
    }
    text.push_str(&format!("\n\n(status {} · request {})", response.status.as_str(), response.request_id));
    let mut result = if failed {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    result.structured_content = Some(structured);
    result
}

impl ServerHandler for SupervisorMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
            .with_server_info(Implementation::new("switchboard", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "A governed multi-agent supervisor. `ask` routes a question to the sub-agents you may use; \
                 each other tool asks one sub-agent. Every call runs as you and is audited.",
            )
    }

    /// Watches the caller's tool list for the life of the session: when a grant or revoke, or a
    /// request showing the caller with other roles or groups, changes which tools it has, the
    /// client is sent `notifications/tools/list_changed`.
    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        if self.caller(&ctx.extensions).is_err() {
            return;
        }
        let (server, peer) = (self.clone(), ctx.peer);
        let mut grants = self.runtime.grants.subscribe();
        let mut roles = self.session.roles_changed.subscribe();
        // The session's caller is set now (by `caller` above) and is only ever replaced after.
        let names = |server: &Self| -> Vec<String> {
            let Some(caller) = server.session.caller() else { return Vec::new() };
            server.tools(&caller).into_iter().map(|t| t.name.into_owned()).collect()
        };
        let mut listed = names(&server);
        tokio::spawn(async move {
            // Ends with the session (the send fails once its transport is gone) or the runtime.
            loop {
                let changed = tokio::select! {
                    changed = grants.changed() => changed,
                    changed = roles.changed() => changed,
                };
                if changed.is_err() || peer.is_transport_closed() {
                    return;
                }
                let now = names(&server);
                if now != listed {
                    listed = now;
                    if peer.notify_tool_list_changed().await.is_err() {
                        return;
                    }
                }
            }
        });
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller(&ctx.extensions)?;
        Ok(ListToolsResult::with_all_items(self.tools(&caller)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&ctx.extensions)?;
        let name = request.name.as_ref();
        let args = request.arguments.as_ref();
        let run = if name == ASK {
            match arguments(args, true, true) {
                Ok((question, thread_id)) => RunRequest { question, thread_id, ..Default::default() },
                Err(why) => return Ok(invalid_arguments(name, &why).into()),
            }
        } else {
            // Only the caller's own tools: an agent it may not use is as unknown as a made-up name.
            let Some(spec) =
                self.runtime.supervisor.agent_specs().find(|s| s.name == name && self.may_use(s, &caller))
            else {
                return Err(ErrorData::invalid_params(format!("unknown tool `{name}`"), None));
            };
            match arguments(args, false, needs_question(spec)) {
                Ok((question, _)) => {
                    RunRequest { question, agent: Some(spec.name.clone()), ..Default::default() }
                }
                Err(why) => return Ok(invalid_arguments(name, &why).into()),
            }
        };
        let response = self.run(caller, run, &ctx).await;
        Ok(result(&response).into())
    }
}

/// The `/mcp` route: rmcp's streamable HTTP service behind bearer authentication.
pub(crate) fn router(state: AppState) -> axum::Router {
    let for_sessions = state.clone();
    // Host checks are the listener's and the proxy's business; the bearer token is checked below.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_cancellation_token(state.mcp_stop.child_token());
    let service = StreamableHttpService::new(
        move || Ok(SupervisorMcp::per_request(for_sessions.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .route_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn_with_state(state, authenticate))
}

/// Verifies the bearer token of every MCP request like any other route (401 without one) and
/// attaches the caller, which rmcp hands to the handler with the request's parts.
async fn authenticate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    match state.auth.authenticate(request.headers(), peer).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => crate::ApiError::new(e).into_response(),
    }
}

/// Serves the supervisor over stdio for one `caller` until the client closes its end.
pub async fn serve_stdio(runtime: Arc<Runtime>, caller: Caller) -> switchboard_core::Result<()> {
    use rmcp::ServiceExt;
    let service = SupervisorMcp::for_caller(runtime, caller)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| switchboard_core::Error::internal(format!("MCP over stdio failed to start: {e}")))?;
    service
        .waiting()
        .await
        .map_err(|e| switchboard_core::Error::internal(format!("MCP over stdio ended abnormally: {e}")))?;
    Ok(())
}

/// The caller a bearer `token` stands for, verified exactly as an HTTP request carrying it
/// would be (stdio has no request, so the token arrives by environment instead). The peer is
/// loopback: a local process, not a trusted proxy's forwarded identity.
pub async fn caller_for_token(runtime: &Runtime, token: &str) -> switchboard_core::Result<Caller> {
    let mut headers = axum::http::HeaderMap::new();
    let value = axum::http::HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
        switchboard_core::Error::new(
            switchboard_core::ErrorKind::Unauthenticated,
            "the token contains characters a bearer token cannot have",
        )
    })?;
    headers.insert(axum::http::header::AUTHORIZATION, value);
    runtime.identity.authenticate(&headers, std::net::IpAddr::from([127, 0, 0, 1])).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::AuthMethod;

    fn sql_tool(parameters: Value) -> AgentSpec {
        AgentSpec {
            settings: json!({"database": "x.db", "sql": "SELECT 1", "parameters": parameters}),
            ..AgentSpec::new("t", AgentKind::Tool, "a tool")
        }
    }

    #[test]
    fn only_a_sql_tool_with_nothing_required_needs_no_question() {
        assert!(!needs_question(&sql_tool(json!([]))));
        assert!(!needs_question(&sql_tool(json!([{"name": "n", "type": "integer", "default": 20}]))));
        assert!(!needs_question(&sql_tool(json!([{"name": "e", "type": "email", "required": false}]))));
        assert!(needs_question(&sql_tool(json!([{"name": "p", "type": "percent"}]))));
        let http = AgentSpec {
            settings: json!({"http": {"method": "GET", "path": "/x"}}),
            ..AgentSpec::new("h", AgentKind::Tool, "an HTTP tool")
        };
        assert!(needs_question(&http));
        assert!(needs_question(&AgentSpec::new("k", AgentKind::Knowledge, "documents")));
    }

    #[test]
    fn arguments_fit_the_schema_or_say_why_not() {
        let args = |v: Value| match v {
            Value::Object(map) => map,
            _ => JsonObject::new(),
        };
        let asked = arguments(Some(&args(json!({"question": "hi", "thread_id": "t"}))), true, true);
        assert_eq!(asked, Ok(("hi".to_string(), Some("t".to_string()))));
        assert_eq!(arguments(None, false, false), Ok((String::new(), None)));
        assert_eq!(arguments(None, true, true), Err("`question` is required".to_string()));
        let blank = arguments(Some(&args(json!({"question": " "}))), false, true);
        assert_eq!(blank, Err("`question` is empty".to_string()));
        let extra = arguments(Some(&args(json!({"question": "hi", "x": 1}))), true, true);
        assert_eq!(extra, Err("unknown argument `x`".to_string()));
        let thread = arguments(Some(&args(json!({"question": "hi", "thread_id": "t"}))), false, true);
        assert!(thread.is_err_and(|why| why.contains("use `ask`")));
    }

    #[test]
    fn a_session_follows_its_subjects_roles_and_refuses_other_subjects() {
        let caller = |subject: &str, groups: &[&str]| {
            let groups = groups.iter().map(|g| g.to_string()).collect();
            Caller::new(subject, format!("{subject}@example.com"), groups, AuthMethod::Development)
        };
        let session = Session::new(None);
        let changed = session.roles_changed.subscribe();
        assert!(session.observe(&caller("alice", &["west_sales"])).is_ok());
        assert!(session.observe(&caller("alice", &["west_sales"])).is_ok());
        assert!(!changed.has_changed().unwrap_or(true), "the same roles are no change");
        assert!(session.observe(&caller("alice", &["west_sales", "admin"])).is_ok());
        assert!(changed.has_changed().unwrap_or(false), "new roles wake the watcher");
        assert_eq!(session.caller().map(|c| c.groups().len()), Some(2));
        assert!(session.observe(&caller("bob", &["admin"])).is_err());
        assert_eq!(session.caller().map(|c| c.subject().to_string()), Some("alice".to_string()));
    }
}
