//! SQL tools: a parameterized SQL function over a governed SQLite database or PostgreSQL schema.
//!
//! A tool declares one SQL statement with named parameters (`:discount_pct`), the parameters'
//! types, the objects the statement may read, and how to phrase the answer. Arguments come from
//! the question — offline by pattern (`25%`, `$40k`, an email address), or from a model's tool
//! call whose JSON schema is built from the declared parameters — and are validated against the
//! declaration before anything runs. The call is a `tool` hop named after the agent; the query
//! inside it is a `sql` hop through the governed executor, so the database applies the caller's
//! row filters and only the declared objects can be read.

use crate::args::{is_email, number_json, scan_numbers};
use crate::genie::resolve_database;
use crate::sql::check::{Dialect, parse_one, shape};
use crate::sql::pg::PgSettings;
use crate::sql::{DEFAULT_MAX_ROWS, Engine, Exposed, QueryResult, SqlEngine, format_int};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchboard_core::{Agent, AgentInput, AgentOutput, AgentSpec, Error, HopKind, Result, RunContext};
use switchboard_govern::{Egress, HopTarget};
use switchboard_llm::LlmClient;

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// Any number; questions may write `40000`, `40,000`, `$40k`, `1.2 million`.
    Number,
    /// A percentage from 0 to 100; questions write `25%` or `25 percent`.
    Percent,
    /// A whole number.
    Integer,
    /// Free text, or one of `choices`.
    Text,
    /// An email address.
    Email,
}

impl ParamType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Percent => "percent",
            Self::Integer => "integer",
            Self::Text => "text",
            Self::Email => "email",
        }
    }
}

/// One declared parameter, bound as `:name` in the tool's SQL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// Name, as used in the SQL (`:name`) and the answer template (`{name}`).
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// What it means; shown to the model and to a caller who left it out.
    #[serde(default)]
    pub description: String,
    /// Whether the question must supply it; by default, required unless it has a default.
    #[serde(default)]
    pub required: Option<bool>,
    /// The value used when the question does not give one.
    #[serde(default)]
    pub default: Option<Value>,
    /// For text parameters: the allowed values.
    #[serde(default)]
    pub choices: Vec<String>,
    /// Smallest allowed value (numeric types).
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest allowed value (numeric types).
    #[serde(default)]
    pub max: Option<f64>,
}

impl Parameter {
    /// Whether a question must supply it.
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(self.default.is_none())
    }

    /// Checks and normalizes one argument. `Null` means "not given" and is returned as is.
    pub fn coerce(&self, value: &Value) -> Result<Value> {
        let wrong =
            |what: &str| Error::invalid(format!("parameter `{}` must be {what}, got {value}", self.name));
        let v = match (self.kind, value) {
            (_, Value::Null) => return Ok(Value::Null),
            (ParamType::Number | ParamType::Percent | ParamType::Integer, _) => {
                let n = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => match scan_numbers(s).as_slice() {
                        [one] if s.trim().chars().filter(|c| c.is_alphabetic()).count() <= 8 => {
                            Some(one.value)
                        }
                        _ => None,
                    },
                    _ => None,
                };
                let what = match self.kind {
                    ParamType::Percent => "a percentage",
                    ParamType::Integer => "a whole number",
                    _ => "a number",
                };
                let n = n.filter(|n| n.is_finite()).ok_or_else(|| wrong(what))?;
                if self.kind == ParamType::Integer && n.fract() != 0.0 {
                    return Err(wrong(what));
                }
                if self.kind == ParamType::Percent && !(0.0..=100.0).contains(&n) {
                    return Err(Error::invalid(format!(
                        "parameter `{}` must be a percentage between 0 and 100, got {n}",
                        self.name
                    )));
                }
                if self.min.is_some_and(|m| n < m) || self.max.is_some_and(|m| n > m) {
                    return Err(Error::invalid(format!(
                        "parameter `{}` must be between {} and {}, got {n}",
                        self.name,
                        self.min.map_or("-∞".into(), |m| m.to_string()),
                        self.max.map_or("∞".into(), |m| m.to_string()),
                    )));
                }
                number_json(n)
            }
            (ParamType::Text, Value::String(s)) => {
                let s = s.trim();
                if self.choices.is_empty() {
                    Value::String(s.to_string())
                } else {
                    let choice =
                        self.choices.iter().find(|c| c.eq_ignore_ascii_case(s)).ok_or_else(|| {
                            Error::invalid(format!(
                                "parameter `{}` must be one of {}, got {value}",
                                self.name,
                                self.choices.join(", ")
                            ))
                        })?;
                    Value::String(choice.clone())
                }
            }
            (ParamType::Email, Value::String(s)) if is_email(s.trim()) => {
                Value::String(s.trim().to_ascii_lowercase())
            }
            (ParamType::Email, _) => return Err(wrong("an email address")),
            (ParamType::Text, _) => return Err(wrong("text")),
        };
        Ok(v)
    }

    /// The JSON Schema of this parameter, for a model's tool call.
    fn schema(&self) -> Value {
        let mut s = match self.kind {
            ParamType::Number => json!({"type": "number"}),
            ParamType::Percent => json!({"type": "number", "minimum": 0, "maximum": 100}),
            ParamType::Integer => json!({"type": "integer"}),
            ParamType::Text if !self.choices.is_empty() => {
                json!({"type": "string", "enum": self.choices})
            }
            ParamType::Text => json!({"type": "string"}),
            ParamType::Email => json!({"type": "string", "format": "email"}),
        };
        let mut description = self.description.clone();
        if self.kind == ParamType::Percent {
            description.push_str(" (a percentage: 25 means 25%)");
        }
        if !description.trim().is_empty() {
            s["description"] = json!(description.trim());
        }
        if let Some(min) = self.min {
            s["minimum"] = json!(min);
        }
        if let Some(max) = self.max {
            s["maximum"] = json!(max);
        }
        s
    }
}

/// Where the switchboard store lives, for SQL tools with `engine = "store"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// The store's SQLite file.
    Sqlite(PathBuf),
    /// The store's PostgreSQL database: the URL as configured (`env:NAME` stays a reference, so
    /// no password is copied into the agent's settings) and the schema its tables are in.
    Postgres {
        /// The connection string or `env:NAME`.
        url: String,
        /// The schema holding the store's tables.
        schema: String,
    },
}

/// `spec` pointed at the configured store when it is a SQL tool with `engine = "store"` (with
/// `postgres_sql` as its statement on PostgreSQL); `None` for every other agent. This is what
/// keeps the demo's `audit` agent reading the store in use rather than a stale SQLite file.
pub fn resolve_store_engine(spec: &AgentSpec, store: &StoreTarget) -> Option<AgentSpec> {
    let table = spec.settings.as_object()?;
    if spec.kind != switchboard_core::AgentKind::Tool || table.get("engine")?.as_str()? != "store" {
        return None;
    }
    let mut table = table.clone();
    match store {
        StoreTarget::Sqlite(path) => {
            table.insert("engine".into(), json!("sqlite"));
            table.insert("database".into(), json!(path));
            table.remove("postgres_sql");
        }
        StoreTarget::Postgres { url, schema } => {
            table.insert("engine".into(), json!("postgres"));
            table.insert("url".into(), json!(url));
            table.insert("schema".into(), json!(schema));
            if let Some(sql) = table.remove("postgres_sql") {
                table.insert("sql".into(), sql);
            }
        }
    }
    let mut resolved = spec.clone();
    resolved.settings = Value::Object(table);
    Some(resolved)
}

/// The `[tool]` table of a SQL tool.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSettings {
    /// `"sqlite"` (the default), `"postgres"`, or `"store"`: the switchboard store itself,
    /// whichever backend is configured (the runtime points the tool at it with
    /// [`resolve_store_engine`]).
    #[serde(default)]
    pub engine: Option<String>,
    /// The SQLite file; relative paths resolve against the config's base dir. SQLite only.
    #[serde(default)]
    pub database: Option<PathBuf>,
    /// PostgreSQL: the connection string, or `env:NAME`.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL: the schema holding the views.
    #[serde(default)]
    pub schema: Option<String>,
    /// PostgreSQL: the role each query switches to with `SET LOCAL ROLE`.
    #[serde(default)]
    pub role: Option<String>,
    /// PostgreSQL: `statement_timeout` for each query.
    #[serde(default = "crate::sql::pg::default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// PostgreSQL: most pooled connections.
    #[serde(default = "crate::sql::pg::default_pool_size")]
    pub pool_size: usize,
    /// One read-only statement with `:name` parameters.
    pub sql: String,
    /// With `engine = "store"`: the statement to run instead of `sql` when the store is
    /// PostgreSQL (`sql` is then SQLite's dialect; the two differ in date functions).
    #[serde(default)]
    pub postgres_sql: Option<String>,
    /// The parameters the statement uses.
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    /// Secured views the statement may read (and base tables only through them).
    #[serde(default)]
    pub views: Vec<String>,
    /// Tables the statement may read directly, for files where no view can be added.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Row cap.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Answer template for the first row: `{param}` and `{column}` are replaced. Without it,
    /// the answer is a table.
    #[serde(default)]
    pub answer: Option<String>,
    /// Answer when no row comes back (`{param}` replaced).
    #[serde(default)]
    pub empty_answer: Option<String>,
    /// `database` resolved against the base dir.
    #[serde(skip)]
    pub database_path: PathBuf,
}

fn default_max_rows() -> usize {
    DEFAULT_MAX_ROWS
}

impl SqlSettings {
    /// The PostgreSQL part of the table.
    fn postgres(&self) -> PgSettings<'_> {
        PgSettings {
            url: self.url.as_deref(),
            schema: self.schema.as_deref(),
            role: self.role.as_deref(),
            statement_timeout_ms: self.statement_timeout_ms,
            pool_size: self.pool_size,
        }
    }

    /// Reads and validates `spec.settings` (the `[tool]` table). Errors name the field.
    pub fn from_spec(spec: &AgentSpec, base_dir: &Path) -> Result<SqlSettings> {
        let mut s: SqlSettings = crate::kind_settings(spec)?;
        if s.postgres_sql.is_some() && s.engine.as_deref() != Some("store") {
            return Err(Error::config("tool.postgres_sql: is only for engine = \"store\""));
        }
        match s.engine.as_deref() {
            Some("postgres") => {
                if s.database.is_some() {
                    return Err(Error::config(
                        "tool.database: is for engine = \"sqlite\"; PostgreSQL tools use url and schema",
                    ));
                }
                s.postgres().check("tool")?;
            }
            Some("store") => {
                if s.database.is_some() || s.url.is_some() || s.schema.is_some() || s.role.is_some() {
                    return Err(Error::config(
                        "tool.engine: \"store\" reads the configured store; leave out database, url, schema and role",
                    ));
                }
                if let Some(pg) = &s.postgres_sql {
                    parse_one(pg, Dialect::Postgres)
                        .map_err(|e| Error::config(format!("tool.postgres_sql: {e}")))?;
                }
            }
            None | Some("sqlite") => {
                if s.url.is_some() || s.schema.is_some() || s.role.is_some() {
                    return Err(Error::config(
                        "tool.url, tool.schema and tool.role are for engine = \"postgres\"",
                    ));
                }
                let database =
                    s.database.clone().ok_or_else(|| Error::config("tool: missing field `database`"))?;
                s.database_path = resolve_database("tool.database", &database, base_dir)?;
            }
            Some(other) => {
                return Err(Error::config(format!(
                    "tool.engine: `{other}` is not an engine (use \"sqlite\", \"postgres\" or \"store\")"
                )));
            }
        }
        if s.views.is_empty() && s.tables.is_empty() {
            return Err(Error::config("tool.views: list the views (or tool.tables) the SQL may read"));
        }
        if !(1..=10_000).contains(&s.max_rows) {
            return Err(Error::config(format!("tool.max_rows: {} is out of range (1 to 10000)", s.max_rows)));
        }
        let statement =
            parse_one(&s.sql, Dialect::Sqlite).map_err(|e| Error::config(format!("tool.sql: {e}")))?;
        if !matches!(statement, sqlparser::ast::Statement::Query(_)) {
            return Err(Error::config("tool.sql: must be one SELECT statement"));
        }
        let placeholders = shape(&statement).placeholders;
        let used: Vec<&str> = placeholders.iter().map(String::as_str).collect();
        for p in &used {
            let name = p.trim_start_matches([':', '@', '$']);
            if !p.starts_with(':') || !s.parameters.iter().any(|d| d.name == name) {
                return Err(Error::config(format!(
                    "tool.sql: parameter {p} is not declared in tool.parameters (use :name)"
                )));
            }
        }
        for (i, p) in s.parameters.iter().enumerate() {
            let valid = p.name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Error::config(format!(
                    "tool.parameters[{i}].name: `{}` must be letters, digits and _",
                    p.name
                )));
            }
            if s.parameters[..i].iter().any(|o| o.name == p.name) {
                return Err(Error::config(format!(
                    "tool.parameters[{i}].name: `{}` is declared twice",
                    p.name
                )));
            }
            if !used.iter().any(|u| u[1..] == *p.name) {
                return Err(Error::config(format!(
                    "tool.parameters[{i}].name: `{}` is not used in tool.sql",
                    p.name
                )));
            }
            if !p.choices.is_empty() && p.kind != ParamType::Text {
                return Err(Error::config(format!(
                    "tool.parameters[{i}].choices: only text parameters take choices"
                )));
            }
            if let Some(default) = &p.default {
                p.coerce(default)
                    .map_err(|e| Error::config(format!("tool.parameters[{i}].default: {}", e.message)))?;
            }
        }
        Ok(s)
    }
}

impl SqlSettings {
    /// The parameters as a JSON Schema object, in declaration order of `required`.
    pub fn schema(&self) -> Value {
        let properties: Map<String, Value> =
            self.parameters.iter().map(|p| (p.name.clone(), p.schema())).collect();
        let required: Vec<&str> =
            self.parameters.iter().filter(|p| p.is_required()).map(|p| p.name.as_str()).collect();
        json!({"type": "object", "properties": properties, "required": required})
    }
}

/// The outcome of reading a question's arguments.
enum Arguments<'a> {
    /// Every parameter has a valid value (or NULL when optional), in declaration order.
    Ready(Vec<(String, Value)>),
    /// Required parameters the question did not give.
    Missing(Vec<&'a Parameter>),
}

/// A parameterized SQL function.
pub struct SqlToolAgent {
    spec: Arc<AgentSpec>,
    egress: Egress,
    settings: SqlSettings,
    engine: Engine,
    /// The parameters as a JSON Schema: what a model's tool call is offered and what the
    /// offline extractor reads.
    schema: Arc<Value>,
    llm: Option<LlmClient>,
}

impl SqlToolAgent {
    /// Builds the tool from its spec; `llm`, when given, extracts arguments by tool call.
    pub fn new(
        spec: Arc<AgentSpec>,
        egress: Egress,
        base_dir: &Path,
        llm: Option<LlmClient>,
    ) -> Result<Self> {
        let settings = match super::Settings::from_spec(&spec, base_dir)? {
            super::Settings::Sql(settings) => settings,
            super::Settings::Http(_) | super::Settings::Function(_) => {
                return Err(Error::config(format!(
                    "tool `{}` is not a SQL tool; build it with tool::build_with",
                    spec.name
                )));
            }
        };
        if settings.engine.as_deref() == Some("store") {
            return Err(Error::config(format!(
                "tool `{}`: engine = \"store\" must be resolved to the configured store first \
                 (tool::resolve_store_engine)",
                spec.name
            )));
        }
        let exposed = Exposed { views: settings.views.clone(), tables: settings.tables.clone() };
        let engine = if settings.engine.as_deref() == Some("postgres") {
            Engine::Postgres(settings.postgres().engine("tool", exposed, settings.max_rows)?)
        } else {
            Engine::Sqlite(SqlEngine::new(settings.database_path.clone(), exposed, settings.max_rows))
        };
        let schema = Arc::new(settings.schema());
        Ok(Self { spec, egress, settings, engine, schema, llm })
    }

    /// Validated arguments in declaration order, or the missing required parameters.
    fn arguments(&self, from_model: Option<Map<String, Value>>, question: &str) -> Result<Arguments<'_>> {
        let offline = crate::args::extract(&self.spec.name, &self.schema, question);
        let mut args = Vec::new();
        let mut missing = Vec::new();
        for p in &self.settings.parameters {
            let given = from_model
                .as_ref()
                .and_then(|m| m.get(&p.name))
                .filter(|v| !v.is_null())
                .or_else(|| offline.get(&p.name));
            let value = match given {
                Some(v) => p.coerce(v)?,
                None => match &p.default {
                    Some(d) => p.coerce(d)?,
                    None if p.is_required() => {
                        missing.push(p);
                        continue;
                    }
                    None => Value::Null,
                },
            };
            args.push((p.name.clone(), value));
        }
        Ok(if missing.is_empty() { Arguments::Ready(args) } else { Arguments::Missing(missing) })
    }

    fn ask_for(&self, missing: &[&Parameter]) -> AgentOutput {
        let mut text = format!(
            "To answer this, `{}` needs {}:\n",
            self.spec.name,
            if missing.len() == 1 { "one more value" } else { "more values" }
        );
        for p in missing {
            let hint = match p.kind {
                ParamType::Percent => " (e.g. 25%)",
                ParamType::Number => " (e.g. 40,000)",
                ParamType::Integer => " (a whole number)",
                ParamType::Email => " (an email address)",
                ParamType::Text if !p.choices.is_empty() => "",
                ParamType::Text => "",
            };
            let choices = if p.choices.is_empty() {
                String::new()
            } else {
                format!(" (one of {})", p.choices.join(", "))
            };
            text.push_str(&format!(
                "- {} — {}{hint}{choices}\n",
                p.name,
                if p.description.is_empty() { p.kind.as_str() } else { p.description.trim() }
            ));
        }
        if let Some(example) = self.spec.examples.first() {
            text.push_str(&format!("For example: \"{example}\""));
        }
        let names: Vec<&str> = missing.iter().map(|p| p.name.as_str()).collect();
        AgentOutput {
            text: text.trim_end().to_string(),
            citations: Vec::new(),
            data: Some(json!({"missing": names})),
        }
    }

    fn render(&self, args: &[(String, Value)], result: &QueryResult) -> AgentOutput {
        let sql = self.settings.sql.trim();
        let mut data = result.to_json(sql);
        data["arguments"] = Value::Object(args.iter().cloned().collect());
        let text = match (&self.settings.answer, result.rows.first()) {
            (Some(template), Some(row)) => {
                let mut values: Vec<(&str, &Value)> = args.iter().map(|(k, v)| (k.as_str(), v)).collect();
                values.extend(result.columns.iter().map(String::as_str).zip(row));
                let mut text = fill(template, &values);
                if result.total_rows > 1 {
                    text.push_str("\n\n");
                    text.push_str(&result.markdown(&[]));
                }
                text
            }
            (_, None) => {
                let values: Vec<(&str, &Value)> = args.iter().map(|(k, v)| (k.as_str(), v)).collect();
                match &self.settings.empty_answer {
                    Some(template) => fill(template, &values),
                    None => "No results for these arguments.".to_string(),
                }
            }
            (None, Some(_)) => result.markdown(&[]),
        };
        AgentOutput { text, citations: Vec::new(), data: Some(data) }
    }
}

#[async_trait]
impl Agent for SqlToolAgent {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    fn arguments_schema(&self) -> Option<Arc<Value>> {
        self.llm.as_ref().map(|_| self.schema.clone())
    }

    async fn invoke(&self, ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        let question = input.question.trim();
        let from_model =
            super::proposed_arguments(&self.spec, &self.schema, self.llm.as_ref(), ctx, input).await?;
        let args = match self.arguments(from_model, question)? {
            Arguments::Ready(args) => args,
            Arguments::Missing(missing) => return Ok(self.ask_for(&missing)),
        };
        let sql_target = self.engine.exposed().names().next().unwrap_or(&self.spec.name).to_string();
        let result = self
            .egress
            .hop(ctx, HopTarget::new(HopKind::Tool, &self.spec.name), |grant| {
                let args = args.clone();
                let sql_target = sql_target.clone();
                async move {
                    self.engine.query(&self.egress, grant.ctx(), &sql_target, &self.settings.sql, &args).await
                }
            })
            .await?;
        Ok(self.render(&args, &result))
    }
}

/// Replaces `{name}` in `template` with the formatted value; unknown names stay as written.
fn fill(template: &str, values: &[(&str, &Value)]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let key = &after[..close];
                match values.iter().find(|(k, _)| *k == key) {
                    Some((_, v)) => out.push_str(&display(v)),
                    None => out.push_str(&rest[open..open + close + 2]),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn display(v: &Value) -> String {
    match v {
        Value::Null => "none".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => format_int_always(i),
            None => n.as_f64().map_or(n.to_string(), |f| {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format_int_always(f as i64)
                } else {
                    let s = format!("{f:.2}");
                    s.trim_end_matches('0').trim_end_matches('.').to_string()
                }
            }),
        },
        other => other.to_string(),
    }
}

/// Thousands separators from four digits on: amounts in sentences read "40,000" and "1,500".
fn format_int_always(i: i64) -> String {
    if i.abs() >= 1_000 && i.abs() < 10_000 {
        let s = i.unsigned_abs().to_string();
        let sign = if i < 0 { "-" } else { "" };
        format!("{sign}{},{}", &s[..1], &s[1..])
    } else {
        format_int(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::testkit::*;
    use switchboard_core::{AgentKind, CredentialMode, ErrorKind, HopKind};
    use switchboard_core::{AuditRecord, SpanKind};

    fn deal_desk(llm_url: Option<&str>) -> (tempfile::TempDir, SqlToolAgent, Arc<Recorder>) {
        let (dir, _) = sales_dir();
        let spec = shipped_spec("deal_desk.toml");
        let (egress, sink) = egress(spec.clone());
        let llm = llm_url.map(|url| LlmClient::new(egress.clone(), url, "fake-model"));
        let agent = SqlToolAgent::new(spec, egress, dir.path(), llm).unwrap();
        (dir, agent, sink)
    }

    async fn ask(agent: &SqlToolAgent, email: &str, role: &str, q: &str) -> Result<AgentOutput> {
        let input = AgentInput::new(q);
        agent.invoke(&ctx(email, role), &input).await
    }

    #[tokio::test]
    async fn deal_desk_names_the_approver() {
        let (_dir, agent, sink) = deal_desk(None);
        let out = ask(
            &agent,
            "alice@example.com",
            "west_sales",
            "who must approve a 25% discount on a 40000 deal?",
        )
        .await
        .unwrap();
        assert!(out.text.contains("must be approved by the VP of Sales"), "{}", out.text);
        assert!(out.text.starts_with("A 25% discount on a $40,000 deal"), "{}", out.text);
        let data = out.data.unwrap();
        assert_eq!(data["arguments"], json!({"discount_pct": 25, "amount": 40000}));

        for (q, approver) in [
            ("approval for 5 percent on $20k", "the account rep"),
            ("10% discount, 100,000 deal", "the account rep"),
            ("10% discount, 100,001 deal", "the sales manager"),
            ("15% on a 40,000 deal", "the sales manager"),
            ("15% on a $120k deal", "the VP of Sales"),
            ("25% off 150000", "the CFO"),
            ("35% on a 10000 deal", "the CFO"),
        ] {
            let out = ask(&agent, "carol@example.com", "managers", q).await.unwrap();
            assert!(out.text.contains(&format!("approved by {approver} ")), "{q}: {}", out.text);
        }

        // A tool hop wrapping a sql hop, both audited as the caller.
        let audit: Vec<AuditRecord> = sink.audit.lock().unwrap().clone();
        assert_eq!(audit[0].hop, HopKind::Sql);
        assert_eq!(audit[0].target, "discount_policy");
        assert_eq!(audit[1].hop, HopKind::Tool);
        assert_eq!(audit[1].target, "deal_desk");
        assert_eq!(audit[1].principal, "alice@example.com");
        let spans = sink.spans.lock().unwrap();
        assert_eq!(spans[1].kind, SpanKind::Tool);
        assert_eq!(spans[0].parent_id.as_deref(), Some(spans[1].span_id.as_str()));
    }

    #[tokio::test]
    async fn missing_arguments_are_asked_for_and_bad_ones_refused() {
        let (_dir, agent, sink) = deal_desk(None);
        let out = ask(&agent, "alice@example.com", "west_sales", "who must approve a discount on this deal?")
            .await
            .unwrap();
        assert!(out.text.contains("discount_pct"), "{}", out.text);
        assert!(out.text.contains("amount"), "{}", out.text);
        assert_eq!(out.data.unwrap()["missing"], json!(["discount_pct", "amount"]));
        let out = ask(&agent, "alice@example.com", "west_sales", "approve 20% please").await.unwrap();
        assert_eq!(out.data.unwrap()["missing"], json!(["amount"]));
        assert!(sink.audit.lock().unwrap().is_empty(), "nothing ran");

        let err =
            ask(&agent, "alice@example.com", "west_sales", "a 150% discount on 40000").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("`discount_pct`"), "{err}");
    }

    #[tokio::test]
    async fn roles_outside_the_allow_list_are_denied() {
        let (_dir, agent, sink) = deal_desk(None);
        let err = ask(&agent, "dave@example.com", "executive", "25% on a 40000 deal").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Denied);
        let audit = sink.audit.lock().unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].hop, HopKind::Tool);
    }

    #[tokio::test]
    async fn model_arguments_come_from_a_tool_call_and_are_validated() {
        let call = |args: &str| {
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "c1", "type": "function",
                "function": {"name": "deal_desk", "arguments": args}
            }]})
        };
        let llm = fake_llm(call(r#"{"discount_pct": 25, "amount": 40000}"#)).await;
        let (_dir, agent, _) = deal_desk(Some(llm.base_url()));
        let out = ask(
            &agent,
            "bob@example.com",
            "east_sales",
            "who signs off on twenty-five percent off a forty thousand dollar deal?",
        )
        .await
        .unwrap();
        assert!(out.text.contains("VP of Sales"), "{}", out.text);
        let body = llm.requests()[0].clone();
        let schema = &body["tools"][0]["function"]["parameters"];
        assert_eq!(schema["properties"]["discount_pct"]["type"], json!("number"));
        assert_eq!(schema["properties"]["discount_pct"]["maximum"], json!(100));
        assert_eq!(schema["required"], json!(["discount_pct", "amount"]));

        let llm = fake_llm(call(r#"{"discount_pct": "lots", "amount": 40000}"#)).await;
        let (_dir, agent, _) = deal_desk(Some(llm.base_url()));
        let err = ask(&agent, "bob@example.com", "east_sales", "big discount, big deal").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(err.message, "parameter `discount_pct` must be a percentage, got \"lots\"");
    }

    #[tokio::test]
    async fn audit_reads_the_store_table_as_the_service_principal() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("switchboard.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL,
                span_id TEXT NOT NULL, ts_unix_ms INTEGER NOT NULL, caller_email TEXT NOT NULL,
                caller_roles TEXT NOT NULL, acting_for TEXT, principal TEXT NOT NULL,
                credential_mode TEXT NOT NULL, agent TEXT NOT NULL, hop TEXT NOT NULL,
                target TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT,
                duration_ms INTEGER NOT NULL);
             CREATE TABLE thread_turns (thread_id TEXT, content TEXT);",
        )
        .unwrap();
        for i in 0..30 {
            let (who, decision) = match i % 3 {
                0 => ("alice@example.com", "allowed"),
                1 => ("bob@example.com", "access_denied"),
                _ => ("carol@example.com", "allowed"),
            };
            conn.execute(
                "INSERT INTO audit (request_id, span_id, ts_unix_ms, caller_email, caller_roles,
                 principal, credential_mode, agent, hop, target, decision, duration_ms)
                 VALUES (?1, 's', ?2, ?3, 'r', ?3, 'obo', 'sales', 'sql', 'deals', ?4, 3)",
                rusqlite::params![format!("req{i}"), 1_767_000_000_000i64 + i, who, decision],
            )
            .unwrap();
        }
        drop(conn);
        let shipped = shipped_spec("audit.toml");
        assert!(SqlToolAgent::new(shipped.clone(), egress(shipped.clone()).0, dir.path(), None).is_err());
        let spec = Arc::new(resolve_store_engine(&shipped, &StoreTarget::Sqlite(db.clone())).unwrap());
        let (egress, sink) = egress(spec.clone());
        let agent = SqlToolAgent::new(spec, egress, dir.path(), None).unwrap();

        let frank = |q: &'static str| ask(&agent, "frank@example.com", "admin", q);
        let out = frank("who did what recently?").await.unwrap();
        let data = out.data.unwrap();
        assert_eq!(data["total_rows"], json!(20));
        assert_eq!(data["rows"][0][1], json!("carol@example.com"), "newest first");
        assert!(out.text.starts_with("| time | caller |"), "{}", out.text);

        let out = frank("what did Bob@Example.com do?").await.unwrap();
        let data = out.data.unwrap();
        assert_eq!(data["arguments"]["email"], json!("bob@example.com"));
        assert_eq!(data["total_rows"], json!(10));
        let out = frank("last 3 access denied events").await.unwrap();
        let data = out.data.unwrap();
        assert_eq!(data["total_rows"], json!(3));
        assert_eq!(data["arguments"]["decision"], json!("access_denied"));
        assert!(out.text.contains("access_denied"));

        let principals: Vec<String> =
            sink.audit.lock().unwrap().iter().map(|a| a.principal.clone()).collect();
        assert!(principals.iter().all(|p| p == "switchboard-sp"), "{principals:?}");

        let err = ask(&agent, "alice@example.com", "west_sales", "who did what?").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Denied);
    }

    #[test]
    fn the_store_engine_is_validated_and_resolved_per_backend() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |settings: Value| spec("t", AgentKind::Tool, CredentialMode::Automatic, None, settings);
        let base = json!({"engine": "store", "tables": ["audit"], "sql": "SELECT agent FROM audit",
            "postgres_sql": "SELECT agent FROM audit LIMIT 1"});
        assert!(SqlSettings::from_spec(&mk(base.clone()), dir.path()).is_ok());
        let mut with_db = base.clone();
        with_db["database"] = json!("x.db");
        let e = SqlSettings::from_spec(&mk(with_db), dir.path()).unwrap_err();
        assert!(e.message.starts_with("tool.engine: \"store\""), "{}", e.message);
        let mut sqlite = base.clone();
        sqlite["engine"] = json!("sqlite");
        sqlite["database"] = json!("x.db");
        let e = SqlSettings::from_spec(&mk(sqlite), dir.path()).unwrap_err();
        assert!(e.message.starts_with("tool.postgres_sql:"), "{}", e.message);

        let pg = StoreTarget::Postgres { url: "env:DATABASE_URL".into(), schema: "sb".into() };
        let resolved = resolve_store_engine(&mk(base.clone()), &pg).unwrap();
        assert_eq!(resolved.settings["engine"], "postgres");
        assert_eq!(resolved.settings["url"], "env:DATABASE_URL", "the reference, never the secret");
        assert_eq!(resolved.settings["schema"], "sb");
        assert_eq!(resolved.settings["sql"], "SELECT agent FROM audit LIMIT 1");
        let lite = StoreTarget::Sqlite(dir.path().join("s.db"));
        let resolved = resolve_store_engine(&mk(base), &lite).unwrap();
        assert_eq!(
            (resolved.settings["engine"].as_str(), resolved.settings["sql"].as_str()),
            (Some("sqlite"), Some("SELECT agent FROM audit"))
        );
        assert!(resolved.settings.get("postgres_sql").is_none());
        let other = mk(json!({"database": "x.db", "tables": ["t"], "sql": "SELECT 1 FROM t"}));
        assert!(resolve_store_engine(&other, &lite).is_none());
    }

    #[test]
    fn settings_errors_name_the_field() {
        let (dir, _) = sales_dir();
        let mk = |settings: Value| spec("t", AgentKind::Tool, CredentialMode::Obo, None, settings);
        let base = json!({"database": "sales.db", "views": ["discount_policy"],
            "sql": "SELECT approver FROM discount_policy WHERE :pct <= max_pct",
            "parameters": [{"name": "pct", "type": "percent"}]});
        assert!(SqlSettings::from_spec(&mk(base.clone()), dir.path()).is_ok());
        let with = |key: &str, value: Value| {
            let mut s = base.clone();
            s[key] = value;
            SqlSettings::from_spec(&mk(s), dir.path()).unwrap_err().message
        };
        assert!(with("database", json!("nope.db")).starts_with("tool.database: file nope.db"));
        assert!(with("sql", json!("DELETE FROM x")).contains("one SELECT"));
        assert!(with("sql", json!("SELECT :other")).contains(":other is not declared"));
        assert!(
            with("parameters", json!([{"name": "pct", "type": "percent"}, {"name": "x", "type": "text"}]))
                .contains("`x` is not used in tool.sql")
        );
        assert!(with("parameters", json!([{"name": "pct", "type": "fraction"}])).contains("unknown variant"));
        assert!(
            with("parameters", json!([{"name": "pct", "type": "percent", "default": 250}]))
                .starts_with("tool.parameters[0].default")
        );
        assert!(with("colour", json!(1)).contains("unknown field `colour`"));
    }
}
