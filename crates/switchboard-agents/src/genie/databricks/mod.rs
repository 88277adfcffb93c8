//! `engine = "databricks"`: a genie space answered by a Databricks Genie space over the Genie
//! Conversation API.
//!
//! The workspace is reached through the agent's connection, so the connection's auth and the
//! agent's credential mode decide whose token Genie sees: the caller's for `obo` (Genie then
//! answers as that person, with their row filters and column masks), the service principal's for
//! `automatic`. One turn is one hop: a `POST` (a new conversation, or a follow-up in the thread's
//! conversation), polls of the message with backoff until it is terminal, and the query result.

pub mod api;
pub mod conversations;
pub mod pacer;

use crate::sql::QueryResult;
use api::{GenieMessage, Reading, Started, Statement, StatementEnvelope, TERMINAL};
use async_trait::async_trait;
use conversations::{CONVERSATION_PREFIX, Conversations};
use pacer::Pacer;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_core::{
    Agent, AgentInput, AgentOutput, AgentSpec, Error, ErrorKind, HopKind, Result, RunContext,
};
use switchboard_govern::reqwest::{self, Method, StatusCode};
use switchboard_govern::{Egress, HopGrant, HopTarget};
use tokio::time::Instant;

/// Largest Genie reply read, in bytes.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// The `[genie]` table with `engine = "databricks"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Always `"databricks"` here.
    pub engine: String,
    /// The Genie space's id.
    pub space_id: String,
    /// Rows shown in an answer; `truncated` and `total_rows` tell the rest.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// How long a new conversation may take, from the first `POST` to the result.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long a follow-up in an existing conversation may take.
    #[serde(default = "default_follow_up_timeout_ms")]
    pub follow_up_timeout_ms: u64,
    /// The first wait between polls; it doubles up to `poll_max_ms`.
    #[serde(default = "default_poll_initial_ms")]
    pub poll_initial_ms: u64,
    /// The longest wait between polls.
    #[serde(default = "default_poll_max_ms")]
    pub poll_max_ms: u64,
    /// `POST`s allowed per `post_window_ms` (Genie allows 5 per minute per workspace).
    #[serde(default = "default_max_posts")]
    pub max_posts: usize,
    /// The window `max_posts` counts over.
    #[serde(default = "default_post_window_ms")]
    pub post_window_ms: u64,
    /// How long a question may queue for a `POST` slot before it is refused with the wait.
    #[serde(default = "default_max_queue_ms")]
    pub max_queue_ms: u64,
}

fn default_max_rows() -> usize {
    50
}
fn default_timeout_ms() -> u64 {
    60_000
}
fn default_follow_up_timeout_ms() -> u64 {
    40_000
}
fn default_poll_initial_ms() -> u64 {
    1_000
}
fn default_poll_max_ms() -> u64 {
    5_000
}
fn default_max_posts() -> usize {
    5
}
fn default_post_window_ms() -> u64 {
    60_000
}
fn default_max_queue_ms() -> u64 {
    10_000
}

impl Settings {
    /// Reads and checks the `[genie]` table; errors name the field.
    pub fn from_spec(spec: &AgentSpec) -> Result<Settings> {
        let s: Settings = crate::kind_settings(spec)?;
        if spec.connection.is_none() {
            return Err(Error::config(
                "connection: engine = \"databricks\" reaches the workspace through a connection; name one (its base_url is the workspace URL)",
            ));
        }
        if s.space_id.is_empty()
            || !s.space_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::config(format!(
                "genie.space_id: `{}` is not a Genie space id (letters, digits, - and _)",
                s.space_id
            )));
        }
        if !(1..=5_000).contains(&s.max_rows) {
            return Err(Error::config(format!("genie.max_rows: {} is out of range (1 to 5000)", s.max_rows)));
        }
        for (field, value) in [
            ("genie.timeout_ms", s.timeout_ms),
            ("genie.follow_up_timeout_ms", s.follow_up_timeout_ms),
            ("genie.poll_initial_ms", s.poll_initial_ms),
            ("genie.poll_max_ms", s.poll_max_ms),
            ("genie.post_window_ms", s.post_window_ms),
        ] {
            if value == 0 {
                return Err(Error::config(format!("{field}: must be greater than 0")));
            }
        }
        if s.poll_max_ms < s.poll_initial_ms {
            return Err(Error::config("genie.poll_max_ms: must be at least genie.poll_initial_ms"));
        }
        if s.max_posts == 0 {
            return Err(Error::config("genie.max_posts: must be at least 1"));
        }
        Ok(s)
    }
}

/// A Databricks Genie space.
pub struct DatabricksGenie {
    spec: Arc<AgentSpec>,
    egress: Egress,
    settings: Settings,
    pacer: Pacer,
    conversations: Conversations,
    host: String,
}

/// Where a turn got to, for the timeout message.
type Progress = Mutex<String>;

impl DatabricksGenie {
    /// Builds the agent; no network I/O happens here.
    pub fn new(spec: Arc<AgentSpec>, egress: Egress) -> Result<Self> {
        let settings = Settings::from_spec(&spec)?;
        let connection = egress.connection().ok_or_else(|| {
            Error::config(format!(
                "connection: `{}` is not declared",
                spec.connection.as_deref().unwrap_or_default()
            ))
        })?;
        // Checked now so a connection that cannot reach the workspace fails at start-up.
        let url =
            connection.url(&format!("/api/2.0/genie/spaces/{}/start-conversation", settings.space_id))?;
        let host = url.host_str().unwrap_or_default().to_string();
        let pacer = Pacer::new(
            settings.max_posts,
            Duration::from_millis(settings.post_window_ms),
            Duration::from_millis(settings.max_queue_ms),
        );
        Ok(Self { spec, egress, settings, pacer, conversations: Conversations::default(), host })
    }

    fn space_path(&self, rest: &str) -> String {
        format!("/api/2.0/genie/spaces/{}/{rest}", self.settings.space_id)
    }

    /// One request to Genie, with `429`s retried after the wait Databricks advertises while the
    /// turn's deadline allows, and `POST`s paced to the space's quota.
    async fn send<T: DeserializeOwned>(
        &self,
        grant: &HopGrant,
        method: Method,
        path: &str,
        body: Option<&Value>,
        deadline: Instant,
        what: &str,
    ) -> Result<T> {
        let connection = grant
            .connection()
            .ok_or_else(|| Error::internal("a databricks genie hop went out without its connection"))?;
        let url = connection.url(path)?;
        loop {
            if method == Method::POST {
                self.pace().await?;
            }
            let mut request = grant.request_url(method.clone(), url.clone())?;
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| {
                Error::upstream(format!(
                    "Genie ({}) is unreachable for {what}: {}",
                    self.host,
                    e.without_url()
                ))
            })?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                // At least a second, so a `Retry-After: 0` cannot turn this into a busy loop.
                let wait = retry_after(response.headers()).unwrap_or_default().max(Duration::from_secs(1));
                if Instant::now() + wait < deadline {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(Error::rate_limited(
                    format!(
                        "Databricks Genie is rate limiting this workspace; try again in {} s",
                        wait.as_secs().max(1)
                    ),
                    wait,
                ));
            }
            if response.content_length().is_some_and(|n| n as usize > MAX_REPLY_BYTES) {
                return Err(Error::upstream(format!("Genie's reply to {what} is too large")));
            }
            let bytes = response.bytes().await.map_err(|e| {
                Error::upstream(format!("Genie's reply to {what} could not be read: {}", e.without_url()))
            })?;
            if bytes.len() > MAX_REPLY_BYTES {
                return Err(Error::upstream(format!("Genie's reply to {what} is too large")));
            }
            if !status.is_success() {
                return Err(self.http_error(status, &bytes, what));
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                Error::upstream(if e.is_syntax() || e.is_eof() {
                    format!("Genie's reply to {what} is not valid JSON: {e}")
                } else {
                    format!("Genie's reply to {what} does not have the documented shape: {e}")
                })
            });
        }
    }

    /// Waits for a `POST` slot, or refuses with the wait when the space's quota is used up.
    async fn pace(&self) -> Result<()> {
        self.pacer.acquire().await.map_err(|wait| {
            let (max, window) = self.pacer.quota();
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            Error::rate_limited(
                format!(
                    "Genie space `{}` accepts {max} questions per {} s and that many are already under way; try again in {secs} s",
                    self.spec.name,
                    window.as_secs_f64().ceil() as u64
                ),
                wait,
            )
        })
    }

    /// An error for a non-success reply, with Genie's message.
    fn http_error(&self, status: StatusCode, body: &[u8], what: &str) -> Error {
        let text = String::from_utf8_lossy(body);
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect());
        match status.as_u16() {
            401 => Error::upstream(format!(
                "Databricks rejected the credential for Genie ({what}, 401): {detail}"
            )),
            403 => Error::denied(format!(
                "Databricks denied access to Genie space `{}`: {detail}",
                self.spec.name
            )),
            404 => Error::new(ErrorKind::NotFound, format!("Genie found nothing for {what} (404): {detail}")),
            _ => Error::upstream(format!("Genie answered {status} to {what}: {detail}")),
        }
    }

    /// One turn, bounded by its deadline; the timeout names the last status seen.
    async fn turn(
        &self,
        grant: &HopGrant,
        question: &str,
        continued: Option<String>,
        caller: &str,
    ) -> Result<AgentOutput> {
        let budget = Duration::from_millis(if continued.is_some() {
            self.settings.follow_up_timeout_ms
        } else {
            self.settings.timeout_ms
        });
        let deadline = Instant::now() + budget;
        let progress: Progress = Mutex::new("not sent yet".into());
        let work = self.converse(grant, question, continued, caller, deadline, &progress);
        match tokio::time::timeout_at(deadline, work).await {
            Ok(result) => result.map_err(|e| redact(grant, e)),
            Err(_) => {
                let last = progress.lock().map(|p| p.clone()).unwrap_or_default();
                Err(Error::timeout(format!(
                    "Genie space `{}` did not answer within {} s (last status: {last}); try again later or ask a narrower question",
                    self.spec.name,
                    budget.as_secs_f64().ceil() as u64
                )))
            }
        }
    }

    async fn converse(
        &self,
        grant: &HopGrant,
        question: &str,
        continued: Option<String>,
        caller: &str,
        deadline: Instant,
        progress: &Progress,
    ) -> Result<AgentOutput> {
        let content = json!({"content": question});
        let mut started = None;
        if let Some(conversation_id) = continued {
            let path = self.space_path(&format!("conversations/{conversation_id}/messages"));
            match self
                .send::<GenieMessage>(grant, Method::POST, &path, Some(&content), deadline, "a follow-up")
                .await
            {
                Ok(message) => {
                    let id = message
                        .id()
                        .ok_or_else(|| Error::upstream("Genie's reply to a follow-up names no message_id"))?;
                    started = Some((conversation_id, id.to_string()));
                }
                // The conversation was deleted at Databricks: start afresh rather than fail.
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let (conversation_id, message_id) = match started {
            Some(ids) => ids,
            None => {
                let path = self.space_path("start-conversation");
                let s: Started = self
                    .send(grant, Method::POST, &path, Some(&content), deadline, "start-conversation")
                    .await?;
                (s.conversation_id, s.message_id)
            }
        };
        self.conversations.remember(&conversation_id, caller);
        grant.record("genie.space_id", self.settings.space_id.clone());
        grant.record("genie.conversation_id", conversation_id.clone());
        grant.record("genie.message_id", message_id.clone());
        let message_path = self.space_path(&format!("conversations/{conversation_id}/messages/{message_id}"));
        let mut delay = Duration::from_millis(self.settings.poll_initial_ms);
        let max_delay = Duration::from_millis(self.settings.poll_max_ms);
        let message = loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(max_delay);
            let message: GenieMessage =
                self.send(grant, Method::GET, &message_path, None, deadline, "a status poll").await?;
            if let Ok(mut p) = progress.lock() {
                p.clone_from(&message.status);
            }
            grant.record("genie.status", message.status.clone());
            if TERMINAL.contains(&message.status.as_str()) {
                break message;
            }
        };
        let ids = Ids { conversation: conversation_id, message: message_id };
        match message.status.as_str() {
            "FAILED" => Err(failed(&message)),
            "CANCELLED" => Err(Error::upstream(format!(
                "Genie cancelled the message before answering (conversation {})",
                ids.conversation
            ))),
            _ => match api::read(&message.attachments) {
                Reading::Query { attachment_id, sql, title, notes } => {
                    let attachment = format!("{message_path}/attachments/{attachment_id}");
                    let expired = message.status == "QUERY_RESULT_EXPIRED";
                    let statement = self.result(grant, &attachment, expired, deadline).await?;
                    let table = statement.table(self.settings.max_rows);
                    grant.record("genie.rows", table.rows.len() as u64);
                    grant.record("genie.total_rows", table.total_rows);
                    Ok(render(&ids, title.as_deref().unwrap_or("Result"), &notes, &sql, &table))
                }
                Reading::Text(text) => {
                    grant.record("genie.answer", "clarify");
                    Ok(clarify(&ids, &text))
                }
                Reading::Empty => Err(Error::upstream(format!(
                    "Genie completed the message without a query or any text (conversation {})",
                    ids.conversation
                ))),
            },
        }
    }

    /// The query's result: read, or re-run with `execute-query` when it has expired, and waited
    /// for while the warehouse is still running it.
    async fn result(
        &self,
        grant: &HopGrant,
        attachment: &str,
        expired: bool,
        deadline: Instant,
    ) -> Result<Statement> {
        let read = format!("{attachment}/query-result");
        let rerun = format!("{attachment}/execute-query");
        let mut statement = if expired {
            self.send::<StatementEnvelope>(grant, Method::POST, &rerun, None, deadline, "execute-query")
                .await?
        } else {
            self.send::<StatementEnvelope>(grant, Method::GET, &read, None, deadline, "query-result").await?
        }
        .statement_response;
        // A result the warehouse has closed is gone; re-running it is the documented way back.
        if !expired && statement.state() == "CLOSED" {
            statement = self
                .send::<StatementEnvelope>(grant, Method::POST, &rerun, None, deadline, "execute-query")
                .await?
                .statement_response;
        }
        let mut delay = Duration::from_millis(self.settings.poll_initial_ms);
        while matches!(statement.state().as_str(), "PENDING" | "RUNNING") {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(self.settings.poll_max_ms));
            statement = self
                .send::<StatementEnvelope>(grant, Method::GET, &read, None, deadline, "query-result")
                .await?
                .statement_response;
        }
        match statement.state().as_str() {
            "FAILED" | "CANCELED" | "CLOSED" => Err(Error::upstream(format!(
                "Genie's query did not run ({}): {}",
                statement.state(),
                statement.error_message().unwrap_or_else(|| "no reason given".into())
            ))),
            _ => Ok(statement),
        }
    }
}

/// The conversation and message a turn produced.
struct Ids {
    conversation: String,
    message: String,
}

impl Ids {
    fn json(&self) -> Value {
        json!({"engine": "databricks", "conversation_id": self.conversation, "message_id": self.message})
    }
}

/// `e` without the hop's token: Genie's error texts are quoted in answers, and a careless far
/// side may echo the credential it was sent.
fn redact(grant: &HopGrant, mut e: Error) -> Error {
    if let Some(token) = grant.credential().token.as_ref().map(|t| t.expose()).filter(|t| !t.is_empty()) {
        e.message = e.message.replace(token, "[redacted]");
    }
    e
}

/// `Retry-After` in seconds (the form Databricks sends).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: f64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// A `FAILED` message as an error carrying Genie's error type.
fn failed(message: &GenieMessage) -> Error {
    let (kind, text) = message
        .error
        .as_ref()
        .map(|e| (e.kind.clone().unwrap_or_default(), e.error.clone().unwrap_or_default()))
        .unwrap_or_default();
    let kind = if kind.is_empty() { "no error type given".to_string() } else { kind };
    let text = if text.is_empty() { "no explanation given".to_string() } else { text };
    if kind.starts_with("RATE_LIMIT_EXCEEDED") {
        return Error::rate_limited(
            format!("Genie is over its rate limit ({kind}): {text}; try again in 60 s"),
            Duration::from_secs(60),
        );
    }
    Error::upstream(format!("Genie could not answer ({kind}): {text}"))
}

/// The answer for a query: heading, table, Genie's notes, the SQL and the conversation line.
fn render(ids: &Ids, title: &str, notes: &[String], sql: &str, table: &QueryResult) -> AgentOutput {
    let mut text = format!("{title}:\n\n{}", table.markdown(&[]));
    if table.total_rows == 0 {
        text.push_str("\n\nNo rows are visible to you for this question.");
    }
    for note in notes {
        text.push_str(&format!("\n\n{note}"));
    }
    text.push_str(&format!("\n\n```sql\n{}\n```", sql.trim()));
    text.push_str(&format!("\n\n{CONVERSATION_PREFIX}`{}`", ids.conversation));
    let mut data = table.to_json(sql);
    data["status"] = json!("answered");
    data["genie"] = ids.json();
    AgentOutput { text, citations: Vec::new(), data: Some(data) }
}

/// Genie asking for clarification: its question, and the conversation the answer continues.
fn clarify(ids: &Ids, question: &str) -> AgentOutput {
    let text = format!("{question}\n\n{CONVERSATION_PREFIX}`{}`", ids.conversation);
    AgentOutput { text, citations: Vec::new(), data: Some(json!({"status": "clarify", "genie": ids.json()})) }
}

#[async_trait]
impl Agent for DatabricksGenie {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    async fn invoke(&self, ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        let question = input.question.trim();
        if question.is_empty() {
            return Err(Error::invalid(format!("ask `{}` a question about its data", self.spec.name)));
        }
        let caller = ctx.caller.subject().to_string();
        let continued = self.conversations.continued(&input.history, &self.spec.name, &caller);
        let target = HopTarget::new(HopKind::Http, format!("genie:{}", self.settings.space_id));
        self.egress
            .hop(ctx, target, |grant| {
                let continued = continued.clone();
                let caller = caller.clone();
                async move { self.turn(&grant, question, continued, &caller).await }
            })
            .await
    }
}
