//! The `genie` kind: natural-language questions over a governed SQLite space.
//!
//! Questions become SQL in one of two ways. With a model configured, text-to-SQL: the model sees
//! the schema of the exposed views and proposes one statement, which is accepted only if it is a
//! single read-only `SELECT` over those views ([`validate`]); otherwise, or without a model, the
//! space's semantic layer ([`semantic`]) plans the query from declared measures, dimensions and
//! synonyms. Either way the query runs through the governed executor ([`crate::sql`]) as the
//! caller, so the views' row filters and column masks decide what comes back.
//!
//! With `engine = "postgres"` the same happens over a PostgreSQL schema ([`crate::sql::pg`]):
//! each query runs in a transaction bound to the hop's principal, and PostgreSQL's row-level
//! security policies and masking views decide. With `engine = "databricks"` the space is a
//! Databricks Genie space instead ([`databricks`]): Genie writes and runs the SQL, as whoever the
//! connection's credential says.

pub mod databricks;
pub mod semantic;
pub mod validate;

#[cfg(test)]
mod tests;

use crate::sql::check::{Dialect, check_select};
use crate::sql::pg::PgSettings;
use crate::sql::{Catalog, DEFAULT_MAX_ROWS, Engine as Backend, Exposed, QueryResult, SqlEngine};
use async_trait::async_trait;
use semantic::{Dimension, Entity, Measure, Planner};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchboard_core::{
    Agent, AgentInput, AgentOutput, AgentSpec, Error, ErrorKind, Message, Result, Role, RunContext,
};
use switchboard_govern::Egress;
use switchboard_llm::{ChatRequest, LlmClient};

/// The line of an answer that carries its plan, so follow-ups can refine it.
const PLAN_PREFIX: &str = "Interpreted as: ";

/// The `[genie]` table of an agent's TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `"sqlite"` (the default) or `"postgres"`; `"databricks"` is read by
    /// [`databricks::Settings`].
    #[serde(default)]
    pub engine: Option<String>,
    /// The SQLite file, as configured; relative paths resolve against the config's base dir.
    /// SQLite only.
    #[serde(default)]
    pub database: Option<PathBuf>,
    /// PostgreSQL: the connection string, or `env:NAME` to read it from the environment.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL: the schema holding the views.
    #[serde(default)]
    pub schema: Option<String>,
    /// PostgreSQL: the role each query switches to with `SET LOCAL ROLE` (one that may read
    /// only the exposed views).
    #[serde(default)]
    pub role: Option<String>,
    /// PostgreSQL: `statement_timeout` for each query.
    #[serde(default = "crate::sql::pg::default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// PostgreSQL: most pooled connections.
    #[serde(default = "crate::sql::pg::default_pool_size")]
    pub pool_size: usize,
    /// The secured views the space exposes; nothing else may be read.
    pub views: Vec<String>,
    /// Row cap for answers.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Result columns whose `NULL`s mean "masked for you" (the views mask by returning `NULL`).
    #[serde(default)]
    pub masked_columns: Vec<String>,
    /// Extra guidance for the model (business definitions, conventions).
    #[serde(default)]
    pub instructions: Option<String>,
    /// The semantic layer's entity; without it only a model can answer.
    #[serde(default)]
    pub entity: Option<Entity>,
    /// Measures of the semantic layer.
    #[serde(default)]
    pub measures: Vec<Measure>,
    /// Dimensions of the semantic layer.
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    /// `database` resolved against the base dir.
    #[serde(skip)]
    pub database_path: PathBuf,
}

fn default_max_rows() -> usize {
    DEFAULT_MAX_ROWS
}

/// `name` is usable as a SQL alias and a config key.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Resolves `configured` against `base_dir` and checks the file exists; `field` names the
/// setting in the error (`genie.database`).
pub(crate) fn resolve_database(field: &str, configured: &Path, base_dir: &Path) -> Result<PathBuf> {
    let path = if configured.is_absolute() { configured.to_path_buf() } else { base_dir.join(configured) };
    if path.is_file() {
        return Ok(path);
    }
    let mut message = format!("{field}: file {} does not exist", configured.display());
    if path != configured {
        message.push_str(&format!(" (looked for {})", path.display()));
    }
    Err(Error::config(message))
}

impl Settings {
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

    /// Reads and validates `spec.settings` (the `[genie]` table). Errors name the field.
    pub fn from_spec(spec: &AgentSpec, base_dir: &Path) -> Result<Settings> {
        let mut s: Settings = crate::kind_settings(spec)?;
        if s.engine.as_deref() == Some("postgres") {
            let postgres_only = |v: bool, field: &str| -> Result<()> {
                if v {
                    Err(Error::config(format!(
                        "genie.{field}: is for engine = \"sqlite\"; PostgreSQL spaces use url and schema"
                    )))
                } else {
                    Ok(())
                }
            };
            postgres_only(s.database.is_some(), "database")?;
            s.postgres().check("genie")?;
        } else {
            if s.url.is_some() || s.schema.is_some() || s.role.is_some() {
                return Err(Error::config(
                    "genie.url, genie.schema and genie.role are for engine = \"postgres\"",
                ));
            }
            let database =
                s.database.clone().ok_or_else(|| Error::config("genie: missing field `database`"))?;
            s.database_path = resolve_database("genie.database", &database, base_dir)?;
        }
        if s.views.is_empty() {
            return Err(Error::config("genie.views: list at least one secured view to expose"));
        }
        if !(1..=10_000).contains(&s.max_rows) {
            return Err(Error::config(format!(
                "genie.max_rows: {} is out of range (1 to 10000)",
                s.max_rows
            )));
        }
        for (i, m) in s.measures.iter().enumerate() {
            if !valid_name(&m.name) {
                return Err(Error::config(format!(
                    "genie.measures[{i}].name: `{}` must be letters, digits and _",
                    m.name
                )));
            }
            if m.sql.trim().is_empty() {
                return Err(Error::config(format!("genie.measures[{i}].sql is empty")));
            }
            if s.measures[..i].iter().any(|o| o.name == m.name) {
                return Err(Error::config(format!(
                    "genie.measures[{i}].name: `{}` is declared twice",
                    m.name
                )));
            }
        }
        for (i, d) in s.dimensions.iter().enumerate() {
            if !valid_name(&d.name) {
                return Err(Error::config(format!(
                    "genie.dimensions[{i}].name: `{}` must be letters, digits and _",
                    d.name
                )));
            }
            if s.dimensions[..i].iter().any(|o| o.name == d.name) {
                return Err(Error::config(format!(
                    "genie.dimensions[{i}].name: `{}` is declared twice",
                    d.name
                )));
            }
        }
        if let Some(entity) = &s.entity {
            if !s.views.contains(&entity.view) {
                return Err(Error::config(format!(
                    "genie.entity.view: `{}` is not one of genie.views",
                    entity.view
                )));
            }
            if entity.names.is_empty() || entity.key_columns.is_empty() || entity.columns.is_empty() {
                return Err(Error::config(
                    "genie.entity: names, key_columns and columns must each list at least one entry",
                ));
            }
            if s.measures.is_empty() {
                return Err(Error::config("genie.measures: a semantic layer needs at least one measure"));
            }
        }
        Ok(s)
    }
}

/// The engines a `[genie]` table can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQL run here over secured views: a local SQLite file or a PostgreSQL schema.
    Sqlite,
    /// A Databricks Genie space over the Genie Conversation API.
    Databricks,
}

/// The engine `spec`'s `[genie]` table names; an unknown one is a config error naming the field.
pub fn engine(spec: &AgentSpec) -> Result<Engine> {
    match spec.settings.get("engine") {
        None => Ok(Engine::Sqlite),
        Some(serde_json::Value::String(e)) if e == "sqlite" || e == "postgres" => Ok(Engine::Sqlite),
        Some(serde_json::Value::String(e)) if e == "databricks" => Ok(Engine::Databricks),
        Some(other) => Err(Error::config(format!(
            "genie.engine: {other} is not an engine (use \"sqlite\", \"postgres\" or \"databricks\")"
        ))),
    }
}

/// Checks `spec`'s `[genie]` table for its engine without building anything.
pub fn check(spec: &AgentSpec, base_dir: &Path) -> Result<()> {
    match engine(spec)? {
        Engine::Sqlite => Settings::from_spec(spec, base_dir).map(drop),
        Engine::Databricks => databricks::Settings::from_spec(spec).map(drop),
    }
}

/// Builds the space on the engine its `[genie]` table names.
pub fn build(
    spec: Arc<AgentSpec>,
    egress: Egress,
    base_dir: &Path,
    llm: Option<LlmClient>,
) -> Result<Arc<dyn Agent>> {
    Ok(match engine(&spec)? {
        Engine::Sqlite => Arc::new(GenieAgent::new(spec, egress, base_dir, llm)?),
        Engine::Databricks => Arc::new(databricks::DatabricksGenie::new(spec, egress)?),
    })
}

/// A genie space.
pub struct GenieAgent {
    spec: Arc<AgentSpec>,
    egress: Egress,
    settings: Settings,
    engine: Backend,
    catalog: Catalog,
    planner: Option<Planner>,
    llm: Option<LlmClient>,
}

/// What the model proposed.
enum Proposal {
    /// SQL that passed validation.
    Sql(String),
    /// SQL that did not, and why.
    Refused(String),
    /// The model said the question cannot be answered from the space.
    Cannot(String),
}

impl GenieAgent {
    /// Builds the space: validates settings, checks the exposed views exist and the semantic
    /// layer names real columns (schema metadata only; no rows are read), and keeps `llm` for
    /// text-to-SQL when given.
    pub fn new(
        spec: Arc<AgentSpec>,
        egress: Egress,
        base_dir: &Path,
        llm: Option<LlmClient>,
    ) -> Result<Self> {
        let settings = Settings::from_spec(&spec, base_dir)?;
        let exposed = Exposed { views: settings.views.clone(), tables: Vec::new() };
        let engine = if settings.engine.as_deref() == Some("postgres") {
            Backend::Postgres(settings.postgres().engine("genie", exposed, settings.max_rows)?)
        } else {
            Backend::Sqlite(SqlEngine::new(settings.database_path.clone(), exposed, settings.max_rows))
        };
        let catalog = engine.catalog().map_err(|e| Error::config(format!("genie.views: {}", e.message)))?;
        let planner = match &settings.entity {
            Some(entity) => {
                let columns = catalog
                    .objects
                    .iter()
                    .find(|o| o.name == entity.view)
                    .map(|o| o.columns.clone())
                    .unwrap_or_default();
                let known = |c: &String| columns.iter().any(|k| k.eq_ignore_ascii_case(c));
                let referenced = entity
                    .key_columns
                    .iter()
                    .map(|c| ("genie.entity.key_columns", c))
                    .chain(entity.columns.iter().map(|c| ("genie.entity.columns", c)))
                    .chain(
                        settings
                            .measures
                            .iter()
                            .filter_map(|m| m.column.as_ref().map(|c| ("genie.measures.column", c))),
                    );
                for (field, column) in referenced {
                    if !known(column) {
                        return Err(Error::config(format!(
                            "{field}: `{column}` is not a column of `{}` (it has {})",
                            entity.view,
                            columns.join(", ")
                        )));
                    }
                }
                Some(
                    Planner::new(entity.clone(), settings.measures.clone(), settings.dimensions.clone())
                        .map_err(Error::config)?,
                )
            }
            None => None,
        };
        Ok(Self { spec, egress, settings, engine, catalog, planner, llm })
    }

    fn target(&self) -> String {
        self.settings.views.join(",")
    }

    /// Asks the model for SQL and validates what it proposes.
    async fn propose(&self, llm: &LlmClient, ctx: &RunContext, input: &AgentInput) -> Result<Proposal> {
        let mut messages = vec![Message::system(self.prompt())];
        messages
            .extend(input.history.iter().filter(|m| matches!(m.role, Role::User | Role::Assistant)).cloned());
        messages.push(Message::user(input.question.clone()));
        let reply =
            llm.chat(ctx, &ChatRequest { messages, tools: Vec::new(), temperature: Some(0.0) }).await?;
        let content = reply.content.trim();
        if let Some(reason) = content.strip_prefix("CANNOT") {
            let reason = reason.trim_start_matches(':').trim();
            return Ok(Proposal::Cannot(if reason.is_empty() {
                "no reason given".to_string()
            } else {
                reason.to_string()
            }));
        }
        let sql = validate::extract_sql(content);
        let checked = match &self.engine {
            Backend::Sqlite(engine) => validate::validate_select(&sql, engine.exposed()),
            Backend::Postgres(engine) => {
                check_select(&sql, Dialect::Postgres, engine.exposed(), Some(engine.schema()))
            }
        };
        Ok(match checked {
            Ok(sql) => Proposal::Sql(sql),
            Err(reason) => Proposal::Refused(reason),
        })
    }

    /// The system prompt: the exposed schema, the semantic definitions and the rules.
    fn prompt(&self) -> String {
        let mut p = format!(
            "You translate questions into SQL for a {} database. You may read only these \
             objects:\n",
            self.engine.dialect_name()
        );
        for o in &self.catalog.objects {
            p.push_str(&format!("- {}({})\n", o.name, o.columns.join(", ")));
        }
        if !self.settings.measures.is_empty() {
            p.push_str("Business definitions:\n");
            for m in &self.settings.measures {
                p.push_str(&format!("- {} = {}\n", m.name, m.sql));
            }
        }
        for d in self.settings.dimensions.iter().filter(|d| !d.values.is_empty()) {
            p.push_str(&format!("- {} takes values: {}\n", d.name, d.values.join(", ")));
        }
        if let Some(extra) = &self.settings.instructions {
            p.push_str(extra.trim());
            p.push('\n');
        }
        p.push_str(
            "Rules: reply with exactly one read-only SELECT statement (WITH ... SELECT is fine) \
             in a ```sql block and nothing else. Never modify data and never read any other \
             table. Row filters and column masks are applied by the database for the caller; do \
             not try to work around them (a masked column reads as NULL). If the question cannot \
             be answered from these objects, reply `CANNOT: <reason>`.",
        );
        p
    }

    /// The semantic layer's answer, or what it can answer instead.
    async fn semantic_answer(
        &self,
        ctx: &RunContext,
        input: &AgentInput,
        notes: Vec<String>,
    ) -> Result<AgentOutput> {
        let Some(planner) = &self.planner else {
            let mut text = notes.join("\n");
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(
                "This space has no semantic layer configured and no model could answer, so I \
                 cannot turn this question into a query.",
            );
            return Ok(AgentOutput { text, ..AgentOutput::default() });
        };
        let question = input.question.trim();
        let parsed = planner.parse(question);
        let previous = previous_plan(&input.history, &self.spec.name).map(|t| planner.parse(&t));
        let merged = match previous {
            Some(prev) if !parsed.has_subject() || semantic::is_follow_up(question) => prev.refine(parsed),
            _ => parsed,
        };
        let Some(plan) = planner.resolve(&merged) else {
            let mut text = notes.join("\n");
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&format!(
                "I could not match \"{question}\" to this space. {}",
                planner.capabilities()
            ));
            let examples: Vec<String> =
                self.spec.examples.iter().take(5).map(|e| format!("\"{e}\"")).collect();
            if !examples.is_empty() {
                text.push_str(&format!(" For example: {}.", examples.join(", ")));
            }
            return Ok(AgentOutput { text, ..AgentOutput::default() });
        };
        let sql = planner.sql(&plan);
        let result = self.engine.query(&self.egress, ctx, &self.target(), &sql, &[]).await?;
        Ok(self.render(&notes, &planner.title(&plan), Some(&planner.describe(&plan)), &sql, &result))
    }

    /// The answer: notes, a heading, the table, the plan line (for follow-ups) and the SQL.
    fn render(
        &self,
        notes: &[String],
        title: &str,
        plan: Option<&str>,
        sql: &str,
        result: &QueryResult,
    ) -> AgentOutput {
        let mut text = String::new();
        for n in notes {
            text.push_str(n);
            text.push('\n');
        }
        if !notes.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{title}:\n\n"));
        let masked: Vec<String> = result
            .columns
            .iter()
            .filter(|c| {
                self.settings
                    .masked_columns
                    .iter()
                    .any(|m| c.to_ascii_lowercase().contains(&m.to_ascii_lowercase()))
            })
            .cloned()
            .collect();
        text.push_str(&result.markdown(&masked));
        let any_masked = result
            .rows
            .iter()
            .any(|row| row.iter().zip(&result.columns).any(|(v, c)| v.is_null() && masked.contains(c)));
        if any_masked {
            text.push_str(
                "\n\nValues shown as \"masked\" are hidden from your role by the data's column \
                 mask.",
            );
        }
        if result.total_rows == 0 {
            text.push_str("\n\nNo rows are visible to you for this question.");
        }
        if let Some(plan) = plan {
            text.push_str(&format!("\n\n{PLAN_PREFIX}{plan}"));
        }
        text.push_str(&format!("\n\n```sql\n{sql}\n```"));
        AgentOutput { text, citations: Vec::new(), data: Some(result.to_json(sql)) }
    }
}

/// The plan line of this agent's most recent answer in `history`, if it has one.
fn previous_plan(history: &[Message], agent: &str) -> Option<String> {
    let last = history
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant && m.agent.as_deref().is_none_or(|a| a == agent))?;
    last.content.lines().rev().find_map(|l| l.trim().strip_prefix(PLAN_PREFIX)).map(str::to_string)
}

#[async_trait]
impl Agent for GenieAgent {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    async fn invoke(&self, ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        if input.question.trim().is_empty() {
            return Err(Error::invalid(format!("ask `{}` a question about its data", self.spec.name)));
        }
        let mut notes = Vec::new();
        if let Some(llm) = &self.llm {
            match self.propose(llm, ctx, input).await {
                Ok(Proposal::Sql(sql)) => {
                    match self.engine.query(&self.egress, ctx, &self.target(), &sql, &[]).await {
                        Ok(result) => return Ok(self.render(&[], "Result", None, &sql, &result)),
                        Err(e) if matches!(e.kind, ErrorKind::Denied | ErrorKind::InvalidInput) => {
                            notes.push(format!(
                                "The model's SQL was refused by the database: {}. Answered from \
                                 the semantic layer instead.",
                                e.message
                            ));
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(Proposal::Refused(reason)) => notes.push(format!(
                    "The model's SQL was refused: {reason}. Answered from the semantic layer \
                     instead."
                )),
                Ok(Proposal::Cannot(reason)) => {
                    notes.push(format!("The model could not write SQL for this ({reason})."))
                }
                Err(e) if matches!(e.kind, ErrorKind::Cancelled | ErrorKind::Timeout) => {
                    return Err(e);
                }
                Err(e) => notes.push(format!(
                    "The model was unavailable ({}); answered from the semantic layer.",
                    e.message
                )),
            }
        }
        self.semantic_answer(ctx, input, notes).await
    }
}
