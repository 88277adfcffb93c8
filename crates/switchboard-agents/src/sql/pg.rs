//! The governed PostgreSQL executor: the same contract as the SQLite one, enforced by
//! PostgreSQL itself.
//!
//! Every query runs inside a `sql` hop, in a read-only transaction that first binds the hop's
//! principal with transaction-local settings (`switchboard.user`, `switchboard.groups`,
//! `switchboard.principal_kind`) and, when configured, `SET LOCAL ROLE` to a role that may read
//! only the exposed views. Row-level security policies and masking views read those settings, so
//! PostgreSQL decides which rows and columns come back; nothing here filters rows. Settings and
//! role end with the transaction, so a pooled connection never carries one caller's identity to
//! the next. Before anything is sent, the statement is parsed and confined to the exposed views
//! ([`super::check`]).

use super::check::{Dialect, check_select, parse_one};
use super::{Catalog, Exposed, ObjectSchema, QueryResult, quote_ident};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sqlparser::ast::{Value as SqlValue, ValueWithSpan, VisitMut, VisitorMut};
use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{
    Error, HopKind, Principal, PrincipalKind, Result, RunContext, span_inputs, span_outputs,
};
use switchboard_govern::{Egress, HopTarget};
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Config, NoTls};

/// A governed PostgreSQL space: a pool, the schema holding its views, and its limits.
#[derive(Clone)]
pub struct PgEngine {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: Config,
    schema: String,
    role: Option<String>,
    exposed: Exposed,
    max_rows: usize,
    statement_timeout: Duration,
}

impl std::fmt::Debug for PgEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the connection string: it may hold a password.
        f.debug_struct("PgEngine").field("schema", &self.inner.schema).finish()
    }
}

/// How a [`PgEngine`] is set up.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The schema holding the exposed views.
    pub schema: String,
    /// The role each hop switches to with `SET LOCAL ROLE`, if any.
    pub role: Option<String>,
    /// The exposed views.
    pub exposed: Exposed,
    /// Row cap.
    pub max_rows: usize,
    /// `statement_timeout` for each query.
    pub statement_timeout: Duration,
    /// Most pooled connections.
    pub pool_size: usize,
}

impl PgEngine {
    /// An engine over the server `url` (a `postgres://` URL or key=value string). No connection
    /// is made yet; `field` names the setting in errors, which never repeat the URL.
    pub fn new(field: &str, url: &str, options: PgOptions) -> Result<Self> {
        let config = Config::from_str(url)
            .map_err(|e| Error::config(format!("{field}: not a PostgreSQL connection string ({e})")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::config(format!("{field}: cannot build the connection pool: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                config,
                schema: options.schema,
                role: options.role,
                exposed: options.exposed,
                max_rows: options.max_rows.max(1),
                statement_timeout: options.statement_timeout,
            }),
        })
    }

    /// The exposed views.
    pub fn exposed(&self) -> &Exposed {
        &self.inner.exposed
    }

    /// The schema holding them.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Reads the columns of the exposed views (metadata only, no rows). It runs on a thread and
    /// connection of its own, so it can be called while a space is built, inside or outside a
    /// runtime, without tying a pooled connection to a runtime that ends.
    pub fn catalog(&self) -> Result<Catalog> {
        let engine = self.clone();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| Error::internal(format!("cannot start a runtime: {e}")))?;
                    runtime.block_on(engine.read_catalog())
                })
                .join()
                .map_err(|_| Error::internal("reading the PostgreSQL catalog panicked"))?
        })
    }

    async fn read_catalog(&self) -> Result<Catalog> {
        let (client, connection) =
            tokio::time::timeout(Duration::from_secs(10), self.inner.config.connect(NoTls))
                .await
                .map_err(|_| Error::config("PostgreSQL did not accept a connection within 10 s"))?
                .map_err(|e| Error::config(format!("cannot connect to PostgreSQL: {e}")))?;
        let driver = tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
                &[&self.inner.schema],
            )
            .await
            .map_err(|e| Error::config(format!("cannot read schema `{}`: {e}", self.inner.schema)))?;
        drop(client);
        driver.abort();
        let mut objects = Vec::new();
        for name in self.exposed().names() {
            let columns: Vec<String> = rows
                .iter()
                .filter(|r| r.get::<_, String>(0).eq_ignore_ascii_case(name))
                .map(|r| r.get::<_, String>(1))
                .collect();
            if columns.is_empty() {
                return Err(Error::config(format!(
                    "`{name}` is not a view in schema `{}` (or this user may not see it)",
                    self.inner.schema
                )));
            }
            objects.push(ObjectSchema { name: name.to_string(), columns });
        }
        let mut hidden: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        hidden.dedup();
        hidden.retain(|n| !self.exposed().contains(n));
        Ok(Catalog { objects, hidden })
    }

    /// Runs `sql` with named `params` (`:name` → JSON scalar) as a governed `sql` hop to
    /// `target`, for the hop's principal. A statement that is not a read-only query over the
    /// exposed views is a `Denied` error before anything is sent; SQL errors are `InvalidInput`;
    /// a query past `statement_timeout` is a `Timeout`.
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
                    for (key, value) in span_inputs(json!({"sql": &*sql}), None) {
                        grant.record(key, value);
                    }
                    let checked =
                        check_select(&sql, Dialect::Postgres, engine.exposed(), Some(engine.schema()))
                            .map_err(|reason| {
                                Error::denied(format!("{} may not run this query: {reason}", principal.name))
                            })?;
                    let (checked, values) = if params.is_empty() {
                        (checked, Vec::new())
                    } else {
                        positional(&checked, &params)?
                    };
                    let result = engine.execute(&principal, &checked, &values).await?;
                    grant.record("switchboard.sql.rows", result.total_rows);
                    grant.record("switchboard.sql.truncated", result.truncated);
                    let outputs = json!({"rows": result.total_rows, "truncated": result.truncated});
                    for (key, value) in span_outputs(outputs, None) {
                        grant.record(key, value);
                    }
                    Ok(result)
                }
            })
            .await
    }

    async fn execute(&self, principal: &Principal, sql: &str, params: &[Value]) -> Result<QueryResult> {
        let client = self
            .inner
            .pool
            .get()
            .await
            .map_err(|e| Error::upstream(format!("PostgreSQL is unavailable: {e}")))?;
        let token = client.cancel_token();
        let mut lease = Lease { client: Some(client), token: Some(token) };
        let Some(client) = lease.client.as_mut() else {
            return Err(Error::internal("a pooled PostgreSQL connection went missing"));
        };
        let result = self.run(client, principal, sql, params).await;
        // Finished, with rows or an error: nothing is left running, the connection goes back.
        lease.token = None;
        result
    }

    async fn run(
        &self,
        client: &mut deadpool_postgres::Object,
        principal: &Principal,
        sql: &str,
        params: &[Value],
    ) -> Result<QueryResult> {
        let inner = &self.inner;
        let fail = |e: tokio_postgres::Error| sql_error(&e);
        let tx = client.build_transaction().read_only(true).start().await.map_err(fail)?;
        let kind = match principal.kind {
            PrincipalKind::User => "user",
            PrincipalKind::ServicePrincipal => "service_principal",
            PrincipalKind::Secret => "secret",
        };
        // Transaction-local (`true`): gone at COMMIT or ROLLBACK, so the pool stays clean.
        tx.execute(
            "SELECT set_config('switchboard.user', $1, true), set_config('switchboard.groups', $2, true), \
             set_config('switchboard.principal_kind', $3, true), set_config('statement_timeout', $4, true), \
             set_config('search_path', $5, true)",
            &[
                &principal.name,
                &principal.groups.join(","),
                &kind,
                &inner.statement_timeout.as_millis().to_string(),
                &quote_ident(&inner.schema),
            ],
        )
        .await
        .map_err(fail)?;
        if let Some(role) = &inner.role {
            tx.batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(role))).await.map_err(fail)?;
        }
        // Parameters are typed from their values (a float binds as double precision, which
        // PostgreSQL compares with NUMERIC columns), so nothing depends on inference guessing.
        let types: Vec<Type> = params.iter().map(param_type).collect();
        let statement = tx.prepare_typed(sql, &types).await.map_err(fail)?;
        let bound: Vec<Box<dyn ToSql + Sync + Send>> = params.iter().map(param_value).collect();
        let columns: Vec<String> = statement.columns().iter().map(|c| c.name().to_string()).collect();
        let types: Vec<Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
        let stream = tx
            .query_raw(&statement, bound.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)))
            .await
            .map_err(fail)?;
        futures::pin_mut!(stream);
        let mut rows = Vec::new();
        let mut total: u64 = 0;
        while let Some(row) = stream.try_next().await.map_err(fail)? {
            total += 1;
            if rows.len() < inner.max_rows {
                rows.push((0..columns.len()).map(|i| cell(&row, i, &types[i])).collect::<Vec<Value>>());
            }
        }
        tx.rollback().await.map_err(fail)?;
        Ok(QueryResult { truncated: total > rows.len() as u64, columns, rows, total_rows: total })
    }
}

/// A pooled connection for one hop. A hop abandoned mid-query (caller gone, deadline passed)
/// drops its future with the lease still armed: the connection is then taken out of the pool,
/// so it can never serve another caller, and the server is asked to stop the statement rather
/// than run it to its timeout.
struct Lease {
    client: Option<deadpool_postgres::Object>,
    token: Option<tokio_postgres::CancelToken>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (Some(token), Some(client)) = (self.token.take(), self.client.take()) else { return };
        let detached = deadpool_postgres::Object::take(client);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = token.cancel_query(NoTls).await;
                drop(detached);
            });
        }
    }
}

/// `sql` with its `:name` placeholders as `$1`, `$2`… (one number per distinct name, in order
/// of first use) and the values in that order. Every placeholder must be a `:name` with a value.
fn positional(sql: &str, params: &[(String, Value)]) -> Result<(String, Vec<Value>)> {
    let mut statement = parse_one(sql, Dialect::Postgres).map_err(Error::invalid)?;
    let mut renumber = Renumber { params, names: Vec::new(), missing: None };
    let _ = statement.visit(&mut renumber);
    if let Some(missing) = renumber.missing {
        return Err(Error::invalid(format!(
            "SQL parameter {missing} has no value (use :name for a declared parameter)"
        )));
    }
    let values = renumber
        .names
        .iter()
        .map(|n| {
            params
                .iter()
                .find(|(k, _)| k.trim_start_matches(':') == n)
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Null)
        })
        .collect();
    Ok((statement.to_string(), values))
}

struct Renumber<'a> {
    params: &'a [(String, Value)],
    names: Vec<String>,
    missing: Option<String>,
}

impl VisitorMut for Renumber<'_> {
    type Break = ();

    fn post_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        let SqlValue::Placeholder(p) = &value.value else { return ControlFlow::Continue(()) };
        let Some(name) =
            p.strip_prefix(':').filter(|n| self.params.iter().any(|(k, _)| k.trim_start_matches(':') == *n))
        else {
            self.missing = Some(p.clone());
            return ControlFlow::Break(());
        };
        let index = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        };
        value.value = SqlValue::Placeholder(format!("${}", index + 1));
        ControlFlow::Continue(())
    }
}

fn param_type(value: &Value) -> Type {
    match value {
        Value::Bool(_) => Type::BOOL,
        Value::Number(n) if n.is_i64() || n.is_u64() => Type::INT8,
        Value::Number(_) => Type::FLOAT8,
        _ => Type::TEXT,
    }
}

fn param_value(value: &Value) -> Box<dyn ToSql + Sync + Send> {
    match value {
        Value::Bool(b) => Box::new(*b),
        Value::Number(n) if n.is_i64() || n.is_u64() => Box::new(n.as_i64().unwrap_or(i64::MAX)),
        Value::Number(n) => Box::new(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Box::new(s.clone()),
        Value::Null => Box::new(None::<String>),
        other => Box::new(other.to_string()),
    }
}

/// A PostgreSQL error as ours: permission and RLS refusals are denials, a cancelled statement
/// is a timeout, the rest is a SQL error the caller can read.
fn sql_error(e: &tokio_postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        return Error::upstream(format!("PostgreSQL failed: {e}"));
    };
    match db.code().code() {
        "42501" => Error::denied(format!("PostgreSQL refused: {}", db.message())),
        "57014" => Error::timeout(format!("the query ran past its statement timeout: {}", db.message())),
        "25006" => Error::denied(format!("only read-only queries may be run: {}", db.message())),
        _ => Error::invalid(format!("SQL error: {}", db.message())),
    }
}

/// One cell as JSON: integers and floats as numbers (NUMERIC as a float, as SQLite's REAL),
/// text as strings, anything else as its text form when the driver can give one.
fn cell(row: &tokio_postgres::Row, i: usize, ty: &Type) -> Value {
    let got = match *ty {
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map(|v| v.map(Value::Bool)),
        Type::INT2 => row.try_get::<_, Option<i16>>(i).map(|v| v.map(Value::from)),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map(|v| v.map(Value::from)),
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::from)),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map(|v| v.map(|f| float(f64::from(f)))),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map(|v| v.map(float)),
        Type::NUMERIC => row.try_get::<_, Option<Numeric>>(i).map(|v| v.map(|n| n.0)),
        _ => row.try_get::<_, Option<String>>(i).map(|v| v.map(Value::String)),
    };
    match got {
        Ok(v) => v.unwrap_or(Value::Null),
        Err(_) => Value::String(format!("({ty})")),
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
}

/// A NUMERIC read from its binary form (base-10000 digits) into a float.
struct Numeric(Value);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let word = |at: usize| -> std::result::Result<i16, Box<dyn std::error::Error + Sync + Send>> {
            raw.get(at..at + 2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "short NUMERIC".into())
        };
        let ndigits = word(0)?.max(0) as usize;
        let weight = i32::from(word(2)?);
        let sign = word(4)? as u16;
        if sign == 0xC000 {
            return Ok(Numeric(Value::Null));
        }
        // Digit i is worth 10000^(weight - i); digits outside the stored ones are zero.
        let digit = |i: i32| -> i16 {
            if i >= 0 && (i as usize) < ndigits { word(8 + 2 * i as usize).unwrap_or(0) } else { 0 }
        };
        let mut text = String::from(if sign == 0x4000 { "-0" } else { "0" });
        for i in 0..=weight {
            text.push_str(&format!("{:04}", digit(i)));
        }
        text.push('.');
        for i in weight + 1..ndigits as i32 {
            text.push_str(&format!("{:04}", digit(i)));
        }
        text.push('0');
        let f: f64 = text.parse().map_err(|e| format!("NUMERIC `{text}`: {e}"))?;
        Ok(Numeric(float(f)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// The demo sales space's PostgreSQL script (`{schema}` stands for the quoted schema name).
pub const DEMO_SCRIPT: &str = include_str!("../../../../data/sales_postgres.sql");

/// Installs the demo sales space into schema `schema` (created if missing) on the server `url`: tables, the
/// row-level security policy, the masking view and the roles hops switch to. One transaction:
/// on failure nothing is left behind. Errors never repeat the URL.
pub async fn install_demo(url: &str, schema: &str) -> Result<()> {
    let config = Config::from_str(url)
        .map_err(|e| Error::config(format!("--postgres: not a PostgreSQL connection string ({e})")))?;
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| Error::upstream(format!("cannot connect to PostgreSQL: {e}")))?;
    let driver = tokio::spawn(connection);
    let quoted = quote_ident(schema);
    let script = format!(
        "BEGIN;\nCREATE SCHEMA IF NOT EXISTS {quoted};\nSET LOCAL search_path TO {quoted};\n{}\nCOMMIT;",
        DEMO_SCRIPT.replace("{schema}", &quoted)
    );
    let outcome = client.batch_execute(&script).await;
    drop(client);
    let _ = driver.await;
    outcome.map_err(|e| match e.as_db_error() {
        Some(db) if db.code().code() == "42P07" => Error::config(format!(
            "schema `{schema}` already holds the demo ({}); choose another schema or drop it",
            db.message()
        )),
        Some(db) => Error::upstream(format!("installing the demo schema failed: {}", db.message())),
        None => Error::upstream(format!("installing the demo schema failed: {e}")),
    })
}

/// Checks that `url` is a PostgreSQL connection string, and tells whether it holds a password
/// (which then belongs in the environment, not in a config file). `field` names the setting.
pub fn url_has_password(field: &str, url: &str) -> Result<bool> {
    let config = Config::from_str(url)
        .map_err(|e| Error::invalid(format!("{field}: not a PostgreSQL connection string ({e})")))?;
    Ok(config.get_password().is_some())
}

/// The PostgreSQL settings a `[genie]` or `[tool]` table shares.
#[derive(Debug, Clone, PartialEq)]
pub struct PgSettings<'a> {
    /// The connection string, or `env:NAME`.
    pub url: Option<&'a str>,
    /// The schema holding the views.
    pub schema: Option<&'a str>,
    /// The role each query switches to.
    pub role: Option<&'a str>,
    /// `statement_timeout`, in milliseconds.
    pub statement_timeout_ms: u64,
    /// Most pooled connections.
    pub pool_size: usize,
}

/// `name` can be a PostgreSQL identifier without quoting surprises.
fn plain_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl PgSettings<'_> {
    /// Checks the settings; errors name `table.field`.
    pub fn check(&self, table: &str) -> Result<()> {
        if self.url.is_none_or(|u| u.trim().is_empty()) {
            return Err(Error::config(format!(
                "{table}.url: a PostgreSQL space needs a connection string (or env:NAME)"
            )));
        }
        if self.schema.is_none_or(|x| !plain_name(x)) {
            return Err(Error::config(format!(
                "{table}.schema: name the schema holding the views (letters, digits and _)"
            )));
        }
        if self.role.is_some_and(|r| !plain_name(r)) {
            return Err(Error::config(format!("{table}.role: must be letters, digits and _")));
        }
        if self.statement_timeout_ms == 0 {
            return Err(Error::config(format!("{table}.statement_timeout_ms: must be greater than 0")));
        }
        if !(1..=256).contains(&self.pool_size) {
            return Err(Error::config(format!(
                "{table}.pool_size: {} is out of range (1 to 256)",
                self.pool_size
            )));
        }
        Ok(())
    }

    /// The engine these settings describe, exposing `exposed` with `max_rows`. Reads `env:`
    /// URLs now; errors name the variable, never a value.
    pub fn engine(&self, table: &str, exposed: Exposed, max_rows: usize) -> Result<PgEngine> {
        self.check(table)?;
        let configured = self.url.unwrap_or_default();
        let url = match configured.strip_prefix("env:") {
            Some(name) => std::env::var(name.trim()).map_err(|_| {
                Error::config(format!("{table}.url: environment variable `{}` is not set", name.trim()))
            })?,
            None => configured.to_string(),
        };
        PgEngine::new(
            &format!("{table}.url"),
            &url,
            PgOptions {
                schema: self.schema.unwrap_or_default().to_string(),
                role: self.role.map(str::to_string),
                exposed,
                max_rows,
                statement_timeout: Duration::from_millis(self.statement_timeout_ms),
                pool_size: self.pool_size,
            },
        )
    }
}

/// The default `statement_timeout_ms`.
pub fn default_statement_timeout_ms() -> u64 {
    10_000
}

/// The default `pool_size`.
pub fn default_pool_size() -> usize {
    8
}
