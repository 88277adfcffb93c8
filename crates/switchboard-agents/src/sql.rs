//! The governed SQLite executor shared by the `genie` and `tool` kinds.
//!
//! Row filters and column masks live in the database, as views that call `current_user()` and
//! `is_member(group)`. This module makes those functions mean something: every query runs inside
//! a `sql` hop, on a read-only connection opened for the hop's principal, with both functions
//! bound to that principal. An authorizer then confines the query to the objects a space
//! exposes: base tables are readable only through an exposed view (or when explicitly listed),
//! and writes, DDL, `ATTACH` and `PRAGMA` are refused while the statement is prepared, before any
//! row is read. Application code never filters rows itself.

pub mod check;
pub mod pg;

use rusqlite::functions::FunctionFlags;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_core::{
    Error, HopKind, Principal, PrincipalKind, Result, RunContext, span_inputs, span_outputs,
};
use switchboard_govern::{Egress, HopTarget};

/// How many rows a query returns unless configured otherwise.
pub const DEFAULT_MAX_ROWS: usize = 50;

/// The objects a SQL space lets queries read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposed {
    /// Secured views; base tables are readable only through these.
    pub views: Vec<String>,
    /// Tables readable directly, for databases where a view cannot be added (e.g. the audit
    /// log in the store's own file). Empty for governed spaces.
    pub tables: Vec<String>,
}

impl Exposed {
    fn has_view(&self, name: &str) -> bool {
        self.views.iter().any(|v| v.eq_ignore_ascii_case(name))
    }

    fn has_table(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t.eq_ignore_ascii_case(name))
    }

    /// Whether `name` is an exposed view or table.
    pub fn contains(&self, name: &str) -> bool {
        self.has_view(name) || self.has_table(name)
    }

    /// Every exposed name, views first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.views.iter().chain(&self.tables).map(String::as_str)
    }

    /// What a refused query should have read instead, for error messages.
    fn hint(&self) -> String {
        let quoted = |names: &[String]| names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        match (self.views.len(), self.tables.is_empty()) {
            (1, true) => format!("query the {} view", quoted(&self.views)),
            (0, false) => format!("only these tables may be read: {}", quoted(&self.tables)),
            (0, true) => "this space exposes no objects".to_string(),
            _ => {
                let all: Vec<String> = self.names().map(str::to_string).collect();
                format!("query one of the exposed objects: {}", quoted(&all))
            }
        }
    }
}

/// A query result, capped at the engine's `max_rows`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// The first `max_rows` rows, each a JSON array aligned with `columns`.
    pub rows: Vec<Vec<Value>>,
    /// Whether rows were left out.
    pub truncated: bool,
    /// How many rows the full result had.
    pub total_rows: u64,
}

impl QueryResult {
    /// The structured form sub-agents put in `AgentOutput::data`.
    pub fn to_json(&self, sql: &str) -> Value {
        json!({
            "sql": sql,
            "columns": self.columns,
            "rows": self.rows,
            "truncated": self.truncated,
            "total_rows": self.total_rows,
        })
    }

    /// A Markdown table of the rows, with "(showing N of M rows)" when truncated. `NULL`s in a
    /// column named in `masked` are shown as `masked`: that is how the views mask a column, and
    /// the reader must see the difference between "hidden from you" and "empty".
    pub fn markdown(&self, masked: &[String]) -> String {
        if self.columns.is_empty() {
            return "(no columns)".to_string();
        }
        let mut out = String::new();
        out.push_str(&format!("| {} |\n", self.columns.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(self.columns.len())));
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&self.columns)
                .map(|(v, col)| {
                    let is_masked = masked.iter().any(|m| m.eq_ignore_ascii_case(col));
                    format_cell(v, is_masked)
                })
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        if self.rows.is_empty() {
            out.push_str("\n(no rows)");
        } else if self.truncated {
            out.push_str(&format!("\n(showing {} of {} rows)", self.rows.len(), self.total_rows));
        }
        out.trim_end().to_string()
    }
}

/// Renders one value for a Markdown cell.
pub fn format_cell(value: &Value, masked: bool) -> String {
    match value {
        Value::Null if masked => "masked".to_string(),
        Value::Null => "null".to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => format_int(i),
            (None, Some(f)) => format_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.replace('|', "\\|").replace(['\n', '\r'], " "),
        other => other.to_string(),
    }
}

/// Thousands separators from five digits on (so years and small ids stay as they are).
pub fn format_int(i: i64) -> String {
    if i.abs() < 10_000 {
        return i.to_string();
    }
    let digits = i.unsigned_abs().to_string();
    let mut out = String::new();
    for (n, c) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if i < 0 { format!("-{out}") } else { out }
}

fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return format_int(f as i64);
    }
    let rounded = format!("{f:.2}");
    let rounded = rounded.trim_end_matches('0').trim_end_matches('.');
    match rounded.split_once('.') {
        Some((int, frac)) => match int.parse::<i64>() {
            Ok(i) if i.abs() >= 10_000 => format!("{}.{frac}", format_int(i)),
            _ => rounded.to_string(),
        },
        None => rounded.to_string(),
    }
}

/// Where a space's SQL runs: a governed SQLite file or a governed PostgreSQL schema.
#[derive(Debug, Clone)]
pub enum Engine {
    /// A SQLite file with secured views.
    Sqlite(SqlEngine),
    /// A PostgreSQL schema with row-level security and masking views.
    Postgres(pg::PgEngine),
}

impl Engine {
    /// The exposed objects.
    pub fn exposed(&self) -> &Exposed {
        match self {
            Self::Sqlite(engine) => engine.exposed(),
            Self::Postgres(engine) => engine.exposed(),
        }
    }

    /// The exposed objects' columns and the names of everything else (metadata only).
    pub fn catalog(&self) -> Result<Catalog> {
        match self {
            Self::Sqlite(engine) => engine.catalog(),
            Self::Postgres(engine) => engine.catalog(),
        }
    }

    /// The SQL dialect, as a model should be told.
    pub fn dialect_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
        }
    }

    /// Runs `sql` with named `params` as a governed `sql` hop; see [`SqlEngine::query`] and
    /// [`pg::PgEngine::query`].
    pub async fn query(
        &self,
        egress: &Egress,
        ctx: &RunContext,
        target: &str,
        sql: &str,
        params: &[(String, Value)],
    ) -> Result<QueryResult> {
        match self {
            Self::Sqlite(engine) => engine.query(egress, ctx, target, sql, params).await,
            Self::Postgres(engine) => engine.query(egress, ctx, target, sql, params).await,
        }
    }
}

/// A governed SQLite database: one file, the objects it exposes, and a row cap.
#[derive(Debug, Clone)]
pub struct SqlEngine {
    inner: Arc<EngineInner>,
}

#[derive(Debug)]
struct EngineInner {
    database: PathBuf,
    exposed: Exposed,
    max_rows: usize,
}

/// What an exposed object looks like, for prompts and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSchema {
    /// View or table name.
    pub name: String,
    /// Its column names.
    pub columns: Vec<String>,
}

/// The shape of a database as a space sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// The exposed objects and their columns.
    pub objects: Vec<ObjectSchema>,
    /// Every other table and view in the file; queries naming one are refused up front.
    pub hidden: Vec<String>,
}

/// Stops a running statement when the hop is over: deadline passed, request cancelled, or the
/// hop future dropped (e.g. by the per-agent timeout) while the blocking worker still runs.
#[derive(Clone)]
struct Interrupt {
    deadline: Instant,
    cancelled: Arc<dyn Fn() -> bool + Send + Sync>,
    abandoned: Arc<AtomicBool>,
}

impl Interrupt {
    fn stop_requested(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed) || (self.cancelled)()
    }
}

/// Sets its flag when dropped, so the blocking worker notices an abandoned hop.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl SqlEngine {
    /// An engine over `database` exposing `exposed`, returning at most `max_rows` rows (at
    /// least one).
    pub fn new(database: impl Into<PathBuf>, exposed: Exposed, max_rows: usize) -> Self {
        Self {
            inner: Arc::new(EngineInner { database: database.into(), exposed, max_rows: max_rows.max(1) }),
        }
    }

    /// The database file.
    pub fn database(&self) -> &Path {
        &self.inner.database
    }

    /// The exposed objects.
    pub fn exposed(&self) -> &Exposed {
        &self.inner.exposed
    }

    /// The row cap.
    pub fn max_rows(&self) -> usize {
        self.inner.max_rows
    }

    /// Runs `sql` with named `params` (`:name` → JSON scalar) as a governed `sql` hop to
    /// `target`, for the hop's principal. Denied reads and writes are `Denied` errors naming what
    /// to query instead; SQL errors are `InvalidInput`.
    pub async fn query(
        &self,
        egress: &Egress,
        ctx: &RunContext,
        target: &str,
        sql: &str,
        params: &[(String, Value)],
    ) -> Result<QueryResult> {
        let sql: Arc<str> = sql.into();
        let params: Arc<[(String, Value)]> = params.into();
        egress
            .hop(ctx, HopTarget::new(HopKind::Sql, target), |grant| {
                let engine = self.clone();
                let sql = sql.clone();
                let params = params.clone();
                async move {
                    let principal = grant.principal().clone();
                    // Recorded before running, so a failing statement's span shows it too.
                    for (key, value) in span_inputs(json!({"sql": &*sql}), None) {
                        grant.record(key, value);
                    }
                    let abandoned = Arc::new(AtomicBool::new(false));
                    let _guard = AbandonOnDrop(abandoned.clone());
                    let cancel = grant.ctx().cancel.clone();
                    let interrupt = Interrupt {
                        deadline: grant.ctx().deadline,
                        cancelled: Arc::new(move || cancel.is_cancelled()),
                        abandoned,
                    };
                    let result = tokio::task::spawn_blocking(move || {
                        engine.execute(&principal, &sql, &params, &interrupt)
                    })
                    .await
                    .map_err(|e| Error::internal(format!("the SQL worker failed: {e}")))??;
                    grant.record("switchboard.sql.rows", result.total_rows);
                    grant.record("switchboard.sql.truncated", result.truncated);
                    // The statement and the row count, not the rows: rows can be large and
                    // carry the very data the caller's filters and masks were protecting.
                    let outputs = json!({"rows": result.total_rows, "truncated": result.truncated});
                    for (key, value) in span_outputs(outputs, None) {
                        grant.record(key, value);
                    }
                    Ok(result)
                }
            })
            .await
    }

    /// Reads the columns of the exposed objects and the names of everything else in the file.
    /// Done once when a space is built (schema metadata only, no rows), to validate the
    /// configuration and to describe the space to a model.
    pub fn catalog(&self) -> Result<Catalog> {
        let db = self.database().display().to_string();
        let conn = open_read_only(self.database())?;
        let nobody =
            Principal { kind: PrincipalKind::ServicePrincipal, name: String::new(), groups: Vec::new() };
        register_functions(&conn, &nobody)?;
        let mut names_stmt = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .map_err(|e| Error::config(format!("cannot read the schema of {db}: {e}")))?;
        let all: Vec<String> = names_stmt
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| Error::config(format!("cannot read the schema of {db}: {e}")))?;
        let mut objects = Vec::new();
        for name in self.exposed().names() {
            if !all.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err(Error::config(format!("`{name}` is not a table or view in {db}")));
            }
            let stmt = conn
                .prepare(&format!("SELECT * FROM {}", quote_ident(name)))
                .map_err(|e| Error::config(format!("cannot describe `{name}` in {db}: {e}")))?;
            objects.push(ObjectSchema {
                name: name.to_string(),
                columns: stmt.column_names().map(str::to_string).collect(),
            });
        }
        let hidden = all.into_iter().filter(|n| !self.exposed().contains(n)).collect();
        Ok(Catalog { objects, hidden })
    }

    /// Runs one statement for `principal`. Blocking: call from a blocking worker.
    fn execute(
        &self,
        principal: &Principal,
        sql: &str,
        params: &[(String, Value)],
        interrupt: &Interrupt,
    ) -> Result<QueryResult> {
        let mut conn = open_read_only(self.database())?;
        register_functions(&conn, principal)?;
        let ctes = guard(&conn, sql, self.exposed(), &principal.name)?;
        let denial: Arc<Mutex<Option<String>>> = Arc::default();
        conn.authorizer(Some(authorizer(
            self.exposed().clone(),
            ctes,
            principal.name.clone(),
            denial.clone(),
        )))
        .map_err(|e| Error::internal(format!("cannot install the SQL authorizer: {e}")))?;
        let watch = interrupt.clone();
        conn.progress_handler(
            1_000,
            Some(move || Instant::now() >= watch.deadline || watch.stop_requested()),
        )
        .map_err(|e| Error::internal(format!("cannot install the SQL progress handler: {e}")))?;

        let fail = |e: rusqlite::Error| -> Error {
            if let Some(reason) = denial.lock().ok().and_then(|mut d| d.take()) {
                return Error::denied(reason);
            }
            if interrupt.stop_requested() {
                return Error::cancelled();
            }
            if Instant::now() >= interrupt.deadline {
                return Error::timeout("the SQL query ran past the request deadline");
            }
            match e {
                rusqlite::Error::MultipleStatement => {
                    Error::invalid("only one SQL statement may be run at a time")
                }
                other => Error::invalid(format!("SQL error: {other}")),
            }
        };

        let mut stmt = conn.prepare(sql).map_err(fail)?;
        if !stmt.readonly() {
            return Err(Error::denied("only read-only SELECT statements may be run"));
        }
        bind_params(&mut stmt, params)?;
        let columns: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let width = columns.len();
        let mut rows = Vec::new();
        let mut total: u64 = 0;
        let mut cursor = stmt.raw_query();
        while let Some(row) = cursor.next().map_err(fail)? {
            total += 1;
            if rows.len() < self.max_rows() {
                let mut values = Vec::with_capacity(width);
                for i in 0..width {
                    values.push(to_json(row.get_ref(i).map_err(fail)?));
                }
                rows.push(values);
            }
        }
        Ok(QueryResult { truncated: total > rows.len() as u64, columns, rows, total_rows: total })
    }
}

fn open_read_only(path: &Path) -> Result<Connection> {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| Error::internal(format!("cannot open {}: {e}", path.display())))?;
    // A writer (the store's audit queue) may hold the file for a moment.
    conn.busy_timeout(Duration::from_secs(2))
        .map_err(|e| Error::internal(format!("cannot configure {}: {e}", path.display())))?;
    Ok(conn)
}

/// Binds `current_user()` and `is_member(group)` to `principal` on `conn`. Deterministic within
/// the connection (one connection serves one principal) and innocuous, so views may use them
/// even where the schema is not trusted.
fn register_functions(conn: &Connection, principal: &Principal) -> Result<()> {
    let flags =
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS;
    let name = principal.name.clone();
    conn.create_scalar_function("current_user", 0, flags, move |_| Ok(name.clone()))
        .map_err(|e| Error::internal(format!("cannot register current_user(): {e}")))?;
    let groups = principal.groups.clone();
    conn.create_scalar_function("is_member", 1, flags, move |ctx| {
        let group: Option<String> = ctx.get(0)?;
        Ok(group.is_some_and(|g| groups.contains(&g)))
    })
    .map_err(|e| Error::internal(format!("cannot register is_member(): {e}")))?;
    Ok(())
}

/// The authorizer: SELECT and functions are allowed; a table may be read only through an
/// exposed view (SQLite names the view as the accessor) or when the table itself is exposed;
/// everything else is refused, with the reason kept for the error message.
fn authorizer(
    exposed: Exposed,
    ctes: Vec<String>,
    who: String,
    denial: Arc<Mutex<Option<String>>>,
) -> impl for<'r> FnMut(AuthContext<'r>) -> Authorization + Send + 'static {
    let is_cte = move |name: &str| ctes.iter().any(|c| c.eq_ignore_ascii_case(name));
    move |ctx: AuthContext<'_>| {
        let refusal = match ctx.action {
            AuthAction::Select | AuthAction::Function { .. } | AuthAction::Recursive => None,
            AuthAction::Read { table_name, .. } => match ctx.accessor {
                // SQLite names the view (or WITH table) a read happens through. The statement
                // guard has already refused WITH tables that shadow an exposed view or name a
                // hidden object, so either accessor means the read goes through exposed views.
                Some(via) if exposed.has_view(via) || is_cte(via) => None,
                _ if exposed.contains(table_name) || is_cte(table_name) => None,
                _ => Some(format!("{who} may not read table {table_name}; {}", exposed.hint())),
            },
            AuthAction::Insert { table_name }
            | AuthAction::Delete { table_name }
            | AuthAction::Update { table_name, .. } => {
                Some(format!("writes are not allowed: {who} may not modify {table_name}"))
            }
            AuthAction::Pragma { pragma_name, .. } => Some(format!("PRAGMA {pragma_name} is not allowed")),
            AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
                Some("ATTACH and DETACH are not allowed".to_string())
            }
            _ => Some(
                "only SELECT queries are allowed: writes, schema changes and transactions are \
                 refused"
                    .to_string(),
            ),
        };
        match refusal {
            None => Authorization::Allow,
            Some(reason) => {
                if let Ok(mut slot) = denial.lock() {
                    slot.get_or_insert(reason);
                }
                Authorization::Deny
            }
        }
    }
}

/// The statement guard, run before the authorizer is installed. SQLite reports reads inside a
/// WITH table with the WITH table as the accessor, exactly as it does for views, so the
/// authorizer alone cannot tell a WITH table named `deals` from the view `deals`. When a
/// statement defines WITH tables, this refuses any that shadow an exposed object, and any read
/// of a hidden table or view (or SQLite's internal objects) anywhere in the statement, found by
/// parsing it ([`check`]); what remains can only reach data through the exposed objects. A
/// statement that does not parse is refused. Returns the WITH table names.
fn guard(conn: &Connection, sql: &str, exposed: &Exposed, who: &str) -> Result<Vec<String>> {
    let statement = check::parse_one(sql, check::Dialect::Sqlite)
        .map_err(|reason| Error::invalid(format!("SQL error: {reason}")))?;
    let shape = check::shape(&statement);
    let ctes = shape.ctes;
    if ctes.is_empty() {
        return Ok(ctes);
    }
    if let Some(name) = ctes.iter().find(|c| exposed.contains(c)) {
        return Err(Error::denied(format!(
            "a WITH table may not be named `{name}`: it would shadow the exposed object"
        )));
    }
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')")
        .map_err(|e| Error::internal(format!("cannot read the schema: {e}")))?;
    let hidden: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
        .map_err(|e| Error::internal(format!("cannot read the schema: {e}")))?
        .into_iter()
        .filter(|n| !exposed.contains(n))
        .collect();
    for relation in &shape.relations {
        // `main.deals_base` reads `deals_base`; SQLite names are case-insensitive.
        let name = relation.rsplit('.').next().unwrap_or(relation);
        let lower = name.to_ascii_lowercase();
        if hidden.iter().any(|h| h.eq_ignore_ascii_case(name))
            || lower.starts_with("sqlite_")
            || lower.starts_with("pragma_")
        {
            return Err(Error::denied(format!("{who} may not read table {name}; {}", exposed.hint())));
        }
    }
    Ok(ctes)
}

fn bind_params(stmt: &mut rusqlite::Statement<'_>, params: &[(String, Value)]) -> Result<()> {
    for (name, value) in params {
        let key = if name.starts_with([':', '@', '$']) { name.clone() } else { format!(":{name}") };
        let Some(index) =
            stmt.parameter_index(&key).map_err(|e| Error::internal(format!("cannot bind {key}: {e}")))?
        else {
            // The statement does not use it (e.g. an optional parameter); nothing to bind.
            continue;
        };
        let bound = match value {
            Value::Null => stmt.raw_bind_parameter(index, rusqlite::types::Null),
            Value::Bool(b) => stmt.raw_bind_parameter(index, *b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => stmt.raw_bind_parameter(index, i),
                (None, Some(f)) => stmt.raw_bind_parameter(index, f),
                _ => stmt.raw_bind_parameter(index, n.to_string()),
            },
            Value::String(s) => stmt.raw_bind_parameter(index, s.as_str()),
            other => {
                return Err(Error::invalid(format!("parameter `{name}` must be a scalar, got {other}")));
            }
        };
        bound.map_err(|e| Error::invalid(format!("cannot bind parameter `{name}`: {e}")))?;
    }
    Ok(())
}

fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(format!("<{} bytes>", b.len())),
    }
}

/// `name` as a double-quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a single-quoted SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Creates a database from a SQL script (e.g. the bundled `data/sales.sql`) in one transaction.
/// `current_user()` and `is_member()` are registered (for nobody) while the script runs, so
/// scripts may create views that use them.
pub fn create_database(path: &Path, script: &str) -> Result<()> {
    let fail =
        |e: rusqlite::Error| Error::config(format!("cannot create the database {}: {e}", path.display()));
    let mut conn = Connection::open(path).map_err(fail)?;
    let nobody = Principal { kind: PrincipalKind::ServicePrincipal, name: String::new(), groups: Vec::new() };
    register_functions(&conn, &nobody)?;
    let tx = conn.transaction().map_err(fail)?;
    tx.execute_batch(script).map_err(fail)?;
    tx.commit().map_err(fail)
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Shared fixtures for the genie, tool and sql tests: a recording telemetry sink, a gateway
    //! with the standard stack, demo callers, the demo database and a fake OpenAI server.

    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use switchboard_core::{
        AgentKind, AgentSpec, AuditRecord, AuthMethod, Caller, CredentialMode, CredentialSpec, RunContext,
        SpanRecord, TelemetrySink,
    };
    use switchboard_govern::{Egress, Gateway, layers::StandardCredentials};

    /// The demo data script.
    pub const SALES_SQL: &str = include_str!("../../../data/sales.sql");

    /// Records everything.
    #[derive(Default)]
    pub struct Recorder {
        pub spans: Mutex<Vec<SpanRecord>>,
        pub audit: Mutex<Vec<AuditRecord>>,
    }

    impl TelemetrySink for Recorder {
        fn span(&self, span: SpanRecord) {
            self.spans.lock().unwrap().push(span);
        }
        fn audit(&self, record: AuditRecord) {
            self.audit.lock().unwrap().push(record);
        }
    }

    /// A temp dir holding `sales.db` built from the bundled script.
    pub fn sales_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sales.db");
        super::create_database(&db, SALES_SQL).unwrap();
        (dir, db)
    }

    /// The spec of an agent.
    pub fn spec(
        name: &str,
        kind: AgentKind,
        mode: CredentialMode,
        allowed_roles: Option<Vec<&str>>,
        settings: serde_json::Value,
    ) -> Arc<AgentSpec> {
        Arc::new(AgentSpec {
            name: name.into(),
            kind,
            description: format!("{name} test agent"),
            examples: vec!["total revenue by region".into()],
            credential: CredentialSpec {
                mode,
                scopes: if mode == CredentialMode::Obo { vec!["sql".into()] } else { Vec::new() },
                audience: None,
                secret: None,
            },
            allowed_roles: allowed_roles.map(|r| r.into_iter().map(String::from).collect()),
            timeout_ms: None,
            connection: None,
            settings,
            tool_roles: None,
            guardrails: None,
        })
    }

    /// An egress for `spec` through a gateway with the standard stack.
    pub fn egress(spec: Arc<AgentSpec>) -> (Egress, Arc<Recorder>) {
        let sink = Arc::new(Recorder::default());
        let gateway = Arc::new(
            Gateway::builder(sink.clone(), Arc::new(StandardCredentials::new("switchboard-sp"))).build(),
        );
        (gateway.egress(spec), sink)
    }

    /// A demo caller with one role and the `sql` scope.
    pub fn ctx(email: &str, role: &str) -> RunContext {
        let caller = Caller::new(
            email.split('@').next().unwrap_or(email),
            email,
            vec![role.into()],
            AuthMethod::Development,
        )
        .with_scopes(vec!["sql".into()]);
        RunContext::new(caller, Duration::from_secs(10))
    }

    /// Parses an `agents/NAME.toml` of the repository into a spec, settings included.
    pub fn shipped_spec(file: &str) -> Arc<AgentSpec> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let json = serde_json::to_value(&doc).unwrap();
        let kind: AgentKind = serde_json::from_value(json["kind"].clone()).unwrap();
        let credential: CredentialSpec = serde_json::from_value(json["credential"].clone()).unwrap();
        let strings = |key: &str| -> Option<Vec<String>> {
            json.get(key).map(|v| serde_json::from_value(v.clone()).unwrap())
        };
        Arc::new(AgentSpec {
            name: json["name"].as_str().unwrap().into(),
            kind,
            description: json["description"].as_str().unwrap().into(),
            examples: strings("examples").unwrap_or_default(),
            credential,
            allowed_roles: strings("allowed_roles"),
            timeout_ms: None,
            connection: None,
            settings: json[kind.as_str()].clone(),
            tool_roles: None,
            guardrails: None,
        })
    }

    /// The scripted model (`switchboard_testkit::llm`) answering every chat completion with
    /// `message` (the `choices[0].message` object); it records the request bodies it saw.
    pub async fn fake_llm(message: serde_json::Value) -> switchboard_testkit::llm::ScriptedLlm {
        use switchboard_testkit::llm::{Script, ScriptedLlm};
        ScriptedLlm::start(Script::answering(&message)).await
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use switchboard_core::{AgentKind, AuditDecision, CredentialMode, ErrorKind};

    fn engine(db: &Path, max_rows: usize) -> SqlEngine {
        SqlEngine::new(db, Exposed { views: vec!["deals".into()], tables: Vec::new() }, max_rows)
    }

    fn sales_egress() -> (Egress, Arc<Recorder>) {
        egress(spec("sales", AgentKind::Genie, CredentialMode::Obo, None, json!({})))
    }

    #[tokio::test]
    async fn the_view_filters_rows_per_caller() {
        let (_dir, db) = sales_dir();
        let engine = engine(&db, 50);
        let (egress, sink) = sales_egress();
        let sql = "SELECT region, COUNT(*) FROM deals GROUP BY region ORDER BY region";
        let west =
            engine.query(&egress, &ctx("alice@example.com", "west_sales"), "deals", sql, &[]).await.unwrap();
        assert_eq!(west.rows, vec![vec![json!("West"), json!(40)]]);
        let all =
            engine.query(&egress, &ctx("carol@example.com", "managers"), "deals", sql, &[]).await.unwrap();
        assert_eq!(all.total_rows, 3);
        let sp = engine.query(&egress, &ctx("x@example.com", "nobody"), "deals", sql, &[]).await.unwrap();
        assert_eq!(sp.total_rows, 0);
        let spans = sink.spans.lock().unwrap();
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].attributes["switchboard.sql.rows"], json!(1));
        assert_eq!(spans[0].attributes["switchboard.principal"], json!("alice@example.com"));
    }

    #[tokio::test]
    async fn current_user_is_the_principal_and_automatic_hops_see_nothing() {
        let (_dir, db) = sales_dir();
        let engine = engine(&db, 50);
        let (egress, _) = sales_egress();
        let r = engine
            .query(
                &egress,
                &ctx("erin@example.com", "finance"),
                "deals",
                "SELECT current_user(), is_member('finance'), is_member('admin'), \
                 (SELECT COUNT(*) FROM deals)",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(r.rows[0], vec![json!("erin@example.com"), json!(1), json!(0), json!(120)]);

        let (auto, _) = super::testkit::egress(spec(
            "sales",
            AgentKind::Genie,
            CredentialMode::Automatic,
            None,
            json!({}),
        ));
        let r = engine
            .query(
                &auto,
                &ctx("erin@example.com", "finance"),
                "deals",
                "SELECT current_user(), (SELECT COUNT(*) FROM deals)",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(r.rows[0], vec![json!("switchboard-sp"), json!(0)]);
    }

    #[tokio::test]
    async fn margins_are_masked_except_for_finance_executive_and_admin() {
        let (_dir, db) = sales_dir();
        let engine = engine(&db, 50);
        let (egress, _) = sales_egress();
        let sql = "SELECT COUNT(margin_pct), COUNT(*) FROM deals";
        for (email, role, visible) in [
            ("carol@example.com", "managers", 0),
            ("alice@example.com", "west_sales", 0),
            ("erin@example.com", "finance", 120),
            ("dave@example.com", "executive", 120),
            ("frank@example.com", "admin", 120),
        ] {
            let r = engine.query(&egress, &ctx(email, role), "deals", sql, &[]).await.unwrap();
            assert_eq!(r.rows[0][0], json!(visible), "{role}");
        }
    }

    #[tokio::test]
    async fn base_tables_are_denied_by_the_authorizer() {
        let (_dir, db) = sales_dir();
        let engine = engine(&db, 50);
        let (egress, sink) = sales_egress();
        let c = ctx("carol@example.com", "managers");
        for sql in [
            "SELECT * FROM deals_base",
            "SELECT d.id FROM deals d JOIN deals_base b ON b.id = d.id",
            "WITH x AS (SELECT margin_pct FROM deals_base) SELECT * FROM x",
            "SELECT (SELECT MAX(margin_pct) FROM deals_base)",
            "SELECT name FROM sqlite_schema",
            // A WITH table reports its reads like a view does: it must not pass for one.
            "WITH x AS (SELECT * FROM 'deals_base') SELECT COUNT(*) FROM x",
            "WITH x AS (SELECT * FROM deals) SELECT COUNT(*) FROM x JOIN deals_base USING (id)",
        ] {
            let err = engine.query(&egress, &c, "deals", sql, &[]).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Denied, "{sql}: {err}");
            assert!(err.message.contains("may not read table"), "{err}");
            assert!(err.message.contains("query the `deals` view"), "{err}");
        }
        let err = engine.query(&egress, &c, "deals", "SELECT * FROM deals_base", &[]).await.unwrap_err();
        assert_eq!(err.message, "carol@example.com may not read table deals_base; query the `deals` view");
        for sql in [
            "WITH deals AS (SELECT * FROM deals_base) SELECT COUNT(*) FROM deals",
            "WITH \"DEALS\"(a) AS MATERIALIZED (SELECT id FROM deals_base) SELECT COUNT(*) FROM DEALS",
        ] {
            let err = engine.query(&egress, &c, "deals", sql, &[]).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Denied, "{sql}");
            assert!(err.message.contains("shadow"), "{err}");
        }
        let audit = sink.audit.lock().unwrap();
        assert!(audit.iter().all(|a| a.decision != AuditDecision::Allowed));
    }

    #[tokio::test]
    async fn with_tables_and_subqueries_over_the_view_keep_the_row_filter() {
        let (_dir, db) = sales_dir();
        let engine = engine(&db, 50);
        let (egress, _) = sales_egress();
        let c = ctx("alice@example.com", "west_sales");
        for sql in [
            "WITH x AS MATERIALIZED (SELECT * FROM deals) SELECT COUNT(*) FROM x",
            "WITH x AS (SELECT region, COUNT(*) n FROM deals GROUP BY 1) SELECT SUM(n) FROM x",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1) \
             SELECT COUNT(*) FROM n, deals",
            "SELECT COUNT(*) FROM (SELECT region FROM deals WHERE amount > 0) AS deals",
        ] {
            let r = engine.query(&egress, &c, "deals", sql, &[]).await.unwrap();
            assert_eq!(r.rows[0][0], json!(40), "{sql}");
        }
    }

    #[tokio::test]
    async fn writes_ddl_pragma_and_attach_are_denied() {
        let (dir, db) = sales_dir();
        let engine = engine(&db, 50);
        let (egress, _) = sales_egress();
        let c = ctx("frank@example.com", "admin");
        let attach = format!("ATTACH DATABASE '{}' AS other", dir.path().join("x.db").display());
        for sql in [
            "DELETE FROM deals_base",
            "DELETE FROM deals",
            "UPDATE deals_base SET amount = 0",
            "INSERT INTO deals_base (id) VALUES (999)",
            "DROP VIEW deals",
            "CREATE TABLE t (x)",
            "PRAGMA table_info(deals_base)",
            "PRAGMA writable_schema = 1",
            attach.as_str(),
            "SELECT 1; DELETE FROM deals_base",
        ] {
            let err = engine.query(&egress, &c, "deals", sql, &[]).await.unwrap_err();
            assert!(matches!(err.kind, ErrorKind::Denied | ErrorKind::InvalidInput), "{sql}: {err:?}");
        }
        let r = engine.query(&egress, &c, "deals", "SELECT COUNT(*) FROM deals", &[]).await.unwrap();
        assert_eq!(r.rows[0][0], json!(120));
        assert!(!dir.path().join("x.db").exists());
    }

    #[tokio::test]
    async fn results_are_capped_and_counted() {
        let (_dir, db) = sales_dir();
        let (egress, _) = sales_egress();
        let c = ctx("carol@example.com", "managers");
        let r = engine(&db, 50)
            .query(&egress, &c, "deals", "SELECT id FROM deals ORDER BY id", &[])
            .await
            .unwrap();
        assert_eq!(r.rows.len(), 50);
        assert_eq!(r.total_rows, 120);
        assert!(r.truncated);
        assert_eq!(r.rows[49], vec![json!(50)]);
        assert!(r.markdown(&[]).ends_with("(showing 50 of 120 rows)"));
        let r = engine(&db, 200).query(&egress, &c, "deals", "SELECT id FROM deals", &[]).await.unwrap();
        assert_eq!((r.rows.len(), r.truncated), (120, false));
    }

    #[tokio::test]
    async fn named_parameters_bind_and_exposed_tables_are_readable() {
        let (_dir, db) = sales_dir();
        let engine = SqlEngine::new(
            &db,
            Exposed { views: vec!["discount_policy".into()], tables: vec!["accounts".into()] },
            50,
        );
        let (egress, _) = sales_egress();
        let c = ctx("alice@example.com", "west_sales");
        let r = engine
            .query(
                &egress,
                &c,
                "discount_policy",
                "SELECT approver FROM discount_policy WHERE :pct <= max_pct \
                 AND (max_amount IS NULL OR :amount <= max_amount) \
                 ORDER BY max_pct, max_amount IS NULL, max_amount LIMIT 1",
                &[("pct".into(), json!(25)), ("amount".into(), json!(40000))],
            )
            .await
            .unwrap();
        assert_eq!(r.rows, vec![vec![json!("VP of Sales")]]);
        let r = engine.query(&egress, &c, "accounts", "SELECT COUNT(*) FROM accounts", &[]).await.unwrap();
        assert_eq!(r.rows[0][0], json!(24));
        let err = engine.query(&egress, &c, "x", "SELECT * FROM deals", &[]).await.unwrap_err();
        assert!(err.message.contains("may not read"), "{err}");
    }

    #[tokio::test]
    async fn sql_errors_are_invalid_input() {
        let (_dir, db) = sales_dir();
        let (egress, _) = sales_egress();
        let err = engine(&db, 50)
            .query(&egress, &ctx("carol@example.com", "managers"), "deals", "SELEC nonsense", &[])
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.starts_with("SQL error"), "{err}");
    }

    #[tokio::test]
    async fn runaway_queries_stop_at_the_deadline() {
        let (_dir, db) = sales_dir();
        let engine = engine(&db, 50);
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                       SELECT COUNT(*) FROM n, deals";
        let (egress, _) = sales_egress();
        let mut c = ctx("carol@example.com", "managers");
        c.deadline = Instant::now() + Duration::from_millis(200);
        let started = Instant::now();
        let err = engine.query(&egress, &c, "deals", endless, &[]).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));

        // The blocking worker itself is interrupted, not just abandoned.
        let principal = Principal {
            kind: PrincipalKind::User,
            name: "carol@example.com".into(),
            groups: vec!["managers".into()],
        };
        let interrupt = Interrupt {
            deadline: Instant::now() + Duration::from_millis(100),
            cancelled: Arc::new(|| false),
            abandoned: Arc::default(),
        };
        let err = engine.execute(&principal, endless, &[], &interrupt).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
        let abandoned = Interrupt {
            deadline: Instant::now() + Duration::from_secs(60),
            cancelled: Arc::new(|| false),
            abandoned: Arc::new(AtomicBool::new(true)),
        };
        let err = engine.execute(&principal, endless, &[], &abandoned).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    }

    #[test]
    fn catalog_lists_exposed_columns_and_hidden_objects() {
        let (_dir, db) = sales_dir();
        let cat = engine(&db, 50).catalog().unwrap();
        assert_eq!(cat.objects[0].name, "deals");
        assert_eq!(
            cat.objects[0].columns,
            ["id", "region", "rep", "account", "stage", "amount", "margin_pct", "close_date"]
        );
        assert!(cat.hidden.contains(&"deals_base".to_string()));
        assert!(!cat.hidden.contains(&"deals".to_string()));
        let missing = SqlEngine::new(&db, Exposed { views: vec!["nope".into()], tables: Vec::new() }, 50);
        assert!(missing.catalog().unwrap_err().message.contains("`nope`"));
    }

    #[test]
    fn demo_data_is_deterministic_and_realistic() {
        let (_dir, db) = sales_dir();
        let conn = Connection::open(&db).unwrap();
        let (n, min, max, regions, reps): (i64, i64, i64, i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), MIN(amount), MAX(amount), COUNT(DISTINCT region), \
                 COUNT(DISTINCT rep) FROM deals_base",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!((n, regions, reps), (120, 3, 9));
        assert_eq!((min, max), (6_000, 151_300));
        let stages: i64 =
            conn.query_row("SELECT COUNT(DISTINCT stage) FROM deals_base", [], |r| r.get(0)).unwrap();
        assert_eq!(stages, 5);
        // Same file twice → same content.
        let (_dir2, db2) = sales_dir();
        let sum = |p: &Path| -> f64 {
            Connection::open(p)
                .unwrap()
                .query_row("SELECT SUM(amount * id + margin_pct) FROM deals_base", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(sum(&db), sum(&db2));
    }

    #[test]
    fn cells_format_numbers_and_masks() {
        assert_eq!(format_cell(&json!(1234567), false), "1,234,567");
        assert_eq!(format_cell(&json!(2025), false), "2025");
        assert_eq!(format_cell(&json!(27.456), false), "27.46");
        assert_eq!(format_cell(&json!(12345.5), false), "12,345.5");
        assert_eq!(format_cell(&json!(21.5), false), "21.5");
        assert_eq!(format_cell(&Value::Null, true), "masked");
        assert_eq!(format_cell(&json!("a|b"), false), "a\\|b");
    }
}
