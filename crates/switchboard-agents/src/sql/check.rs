//! Read-only confinement by parsing: a statement is accepted only if it is one query that reads
//! nothing but the space's exposed objects (and its own WITH tables), writes nothing, locks
//! nothing and calls no function that reaches outside the query. Parsed with `sqlparser` in the
//! engine's dialect, so quoting, comments and nesting cannot hide a table from the check.

use super::Exposed;
use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor, Value, ValueWithSpan,
    Visit, Visitor,
};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use std::ops::ControlFlow;

/// The SQL dialect a statement is parsed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Functions that read or change state outside the query, or the session's own settings (which
/// carry the caller's identity for row-level security).
const DENIED_FUNCTIONS: &[&str] = &[
    "set_config",
    "current_setting",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "lo_import",
    "lo_export",
    "lo_get",
    "lo_put",
    "lo_open",
    "lo_unlink",
    "nextval",
    "setval",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_json",
    "table_to_xml",
    "cursor_to_xml",
    "database_to_xml",
    "schema_to_xml",
    "txid_current",
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
];

/// Checks that `sql` is a single read-only query over `exposed` (optionally qualified with
/// `schema`). Returns the statement without trailing semicolons, or why it is refused.
pub fn check_select(
    sql: &str,
    dialect: Dialect,
    exposed: &Exposed,
    schema: Option<&str>,
) -> Result<String, String> {
    let statement = &parse_one(sql, dialect).map_err(|reason| {
        // A statement that is not a query at all says so, rather than how it failed to parse.
        let first = sql.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let query_like = first.is_empty()
            || first.starts_with('(')
            || ["SELECT", "WITH", "VALUES"].contains(&first.as_str());
        if query_like { reason } else { format!("it is not a SELECT query (it starts with `{first}`)") }
    })?;
    if !matches!(statement, Statement::Query(_)) {
        return Err(format!("it is not a SELECT query (it is {})", statement_kind(statement)));
    }
    let mut check = Check { exposed, schema, dialect, scopes: Vec::new() };
    if let ControlFlow::Break(reason) = statement.visit(&mut check) {
        return Err(reason);
    }
    Ok(sql.trim().trim_end_matches(|c: char| c == ';' || c.is_whitespace()).to_string())
}

/// Parses `sql` as exactly one statement (trailing semicolons allowed).
pub fn parse_one(sql: &str, dialect: Dialect) -> Result<Statement, String> {
    let mut parsed = match dialect {
        // sqlparser's SQLite dialect lags SQLite's grammar (e.g. `AS MATERIALIZED` in WITH), so
        // a statement it cannot read gets a second reading in PostgreSQL's. Either way
        // the statement is then checked, and SQLite's authorizer still runs on what executes.
        Dialect::Sqlite => {
            parse(&SQLiteDialect {}, sql).or_else(|e| parse(&PostgreSqlDialect {}, sql).map_err(|_| e))
        }
        Dialect::Postgres => parse(&PostgreSqlDialect {}, sql),
    }?;
    match parsed.len() {
        0 => Err("it contains no SQL".into()),
        1 => Ok(parsed.remove(0)),
        _ => Err("it contains more than one statement".into()),
    }
}

/// Facts about a parsed statement the engines' own guards need.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Every object read in a FROM or JOIN, as written (qualified names joined with `.`).
    pub relations: Vec<String>,
    /// Every WITH table defined anywhere in the statement.
    pub ctes: Vec<String>,
    /// Every parameter placeholder (`:name`, `?`, `$1`…), as written.
    pub placeholders: Vec<String>,
}

/// Collects the [`Shape`] of `statement`.
pub fn shape(statement: &Statement) -> Shape {
    let mut collect = Collect(Shape::default());
    let _ = statement.visit(&mut collect);
    collect.0
}

struct Collect(Shape);

impl Visitor for Collect {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
            self.0.ctes.push(cte.alias.name.value.clone());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, .. } | TableFactor::Function { name, .. } = factor {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| match p {
                    ObjectNamePart::Identifier(ident) => ident.value.clone(),
                    ObjectNamePart::Function(f) => f.to_string(),
                })
                .collect();
            self.0.relations.push(parts.join("."));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<()> {
        if let Value::Placeholder(p) = &value.value {
            self.0.placeholders.push(p.clone());
        }
        ControlFlow::Continue(())
    }
}

fn parse(dialect: &dyn SqlDialect, sql: &str) -> Result<Vec<Statement>, String> {
    Parser::parse_sql(dialect, sql).map_err(|e| format!("it is not valid SQL ({e})"))
}

/// The first word of a statement's kind, for messages.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let word = text.split_whitespace().next().unwrap_or("?").to_ascii_uppercase();
    format!("`{word}`")
}

/// A name as the engine resolves it: unquoted identifiers fold to lower case.
fn folded(part: &ObjectNamePart) -> String {
    match part {
        ObjectNamePart::Identifier(ident) if ident.quote_style.is_some() => ident.value.clone(),
        ObjectNamePart::Identifier(ident) => ident.value.to_lowercase(),
        ObjectNamePart::Function(f) => f.to_string().to_lowercase(),
    }
}

struct Check<'a> {
    exposed: &'a Exposed,
    schema: Option<&'a str>,
    dialect: Dialect,
    // WITH table names in scope, one entry per enclosing query.
    scopes: Vec<Vec<String>>,
}

impl Check<'_> {
    fn exposed_list(&self) -> String {
        self.exposed.names().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    }

    /// Whether `name` (folded) is an exposed object. PostgreSQL tells `"DEALS"` from `deals`;
    /// SQLite does not.
    fn is_exposed(&self, name: &str) -> bool {
        match self.dialect {
            Dialect::Postgres => self.exposed.names().any(|n| n == name),
            Dialect::Sqlite => self.exposed.contains(name),
        }
    }

    fn relation(&self, name: &ObjectName) -> ControlFlow<String> {
        let parts: Vec<String> = name.0.iter().map(folded).collect();
        let allowed = match parts.as_slice() {
            [object] => self.is_exposed(object) || self.scopes.iter().flatten().any(|cte| cte == object),
            [schema, object] => self.schema == Some(schema.as_str()) && self.is_exposed(object),
            _ => false,
        };
        if allowed {
            return ControlFlow::Continue(());
        }
        ControlFlow::Break(format!(
            "it reads `{name}`, which is not exposed (only {} may be queried)",
            self.exposed_list()
        ))
    }
}

impl Visitor for Check<'_> {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if !query.locks.is_empty() {
            return ControlFlow::Break(
                "it locks rows (FOR UPDATE/SHARE), which a read-only query may not".into(),
            );
        }
        if matches!(
            query.body.as_ref(),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        ) {
            return ControlFlow::Break("it is not read-only (it modifies data)".into());
        }
        let mut names = Vec::new();
        for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
            let name = folded(&ObjectNamePart::Identifier(cte.alias.name.clone()));
            if self.exposed.contains(&name) {
                return ControlFlow::Break(format!(
                    "it redefines the exposed object `{name}` in a WITH clause"
                ));
            }
            names.push(name);
        }
        self.scopes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<String> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        if matches!(statement, Statement::Query(_)) {
            return ControlFlow::Continue(());
        }
        ControlFlow::Break(format!("it is not read-only (it contains {})", statement_kind(statement)))
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
        if select.into.is_some() {
            return ControlFlow::Break("it is not read-only (SELECT INTO creates a table)".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        match factor {
            TableFactor::Table { name, args: None, .. } => self.relation(name),
            TableFactor::Table { name, .. } | TableFactor::Function { name, .. } => ControlFlow::Break(
                format!("it calls the table function `{name}`; only {} may be queried", self.exposed_list()),
            ),
            TableFactor::TableFunction { .. } => ControlFlow::Break(format!(
                "it calls a table function; only {} may be queried",
                self.exposed_list()
            )),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        let Expr::Function(function) = expr else { return ControlFlow::Continue(()) };
        let parts: Vec<String> = function.name.0.iter().map(folded).collect();
        let Some(last) = parts.last() else { return ControlFlow::Continue(()) };
        let qualified_elsewhere = parts.len() > 1 && self.schema != Some(parts[0].as_str());
        if qualified_elsewhere
            || last.starts_with("pg_")
            || last.starts_with("sqlite_")
            || last.starts_with("dblink")
            || DENIED_FUNCTIONS.contains(&last.as_str())
        {
            return ControlFlow::Break(format!(
                "it calls `{}`, which a query over this space may not",
                function.name
            ));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposed() -> Exposed {
        Exposed { views: vec!["deals".into()], tables: Vec::new() }
    }

    fn check(sql: &str, dialect: Dialect) -> Result<String, String> {
        check_select(sql, dialect, &exposed(), Some("sales"))
    }

    #[test]
    fn reads_of_exposed_views_pass_in_both_dialects() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for sql in [
                "SELECT region, SUM(amount) FROM deals GROUP BY region;",
                "SELECT * FROM sales.deals WHERE amount > 10 ORDER BY amount DESC LIMIT 5",
                "WITH w AS (SELECT * FROM deals WHERE region = 'West') SELECT COUNT(*) FROM w",
                "SELECT d.id FROM deals d JOIN (SELECT id FROM deals) x ON x.id = d.id",
                "SELECT substr(close_date, 1, 7) AS m, ROUND(AVG(margin_pct), 1) FROM \"deals\" GROUP BY 1",
            ] {
                assert!(check(sql, dialect).is_ok(), "{dialect:?}: {sql}: {:?}", check(sql, dialect));
            }
        }
        assert_eq!(check("SELECT 1 FROM deals ; ", Dialect::Postgres).unwrap(), "SELECT 1 FROM deals");
    }

    #[test]
    fn shape_lists_relations_ctes_and_placeholders() {
        let statement = parse_one(
            "WITH w AS (SELECT * FROM deals) SELECT * FROM w JOIN main.rules r ON r.x = :pct WHERE 'a' = ?;",
            Dialect::Sqlite,
        )
        .unwrap();
        let shape = shape(&statement);
        assert_eq!(shape.relations, ["deals", "w", "main.rules"]);
        assert_eq!(shape.ctes, ["w"]);
        assert_eq!(shape.placeholders, [":pct", "?"]);
    }

    #[test]
    fn other_objects_writes_and_escapes_are_refused() {
        let refused = [
            ("SELECT * FROM deals_base", "deals_base"),
            ("SELECT * FROM deals WHERE id IN (SELECT id FROM deals_base)", "deals_base"),
            ("SELECT * FROM other.deals", "other.deals"),
            ("SELECT * FROM pg_catalog.pg_roles", "pg_catalog.pg_roles"),
            ("SELECT * FROM pg_user", "pg_user"),
            ("SELECT * FROM information_schema.tables", "information_schema.tables"),
            ("SELECT * FROM \"DEALS\"", "DEALS"),
            ("WITH deals AS (SELECT * FROM deals_base) SELECT * FROM deals", "redefines"),
            ("DELETE FROM deals", "not a SELECT"),
            ("UPDATE deals SET amount = 0", "not a SELECT"),
            ("DROP TABLE deals", "not a SELECT"),
            ("SELECT 1; DELETE FROM deals", "more than one statement"),
            ("WITH x AS (DELETE FROM deals RETURNING *) SELECT * FROM x", "not read-only"),
            ("SELECT * INTO copy FROM deals", "SELECT INTO"),
            ("SELECT * FROM deals FOR UPDATE", "locks rows"),
            ("SELECT set_config('switchboard.groups', 'admin', true)", "set_config"),
            ("SELECT current_setting('switchboard.user')", "current_setting"),
            ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
            ("SELECT * FROM generate_series(1, 3)", "table function"),
            ("SELECT pg_catalog.upper(region) FROM deals", "pg_catalog.upper"),
            ("SELECT FROM WHERE", "not valid SQL"),
            ("", "no SQL"),
        ];
        for (sql, why) in refused {
            let e = check(sql, Dialect::Postgres).expect_err(sql);
            assert!(e.contains(why), "{sql}: {e}");
        }
        let e = check("SELECT * FROM sqlite_schema", Dialect::Sqlite).unwrap_err();
        assert!(e.contains("sqlite_schema"), "{e}");
        let e = check("ATTACH DATABASE 'x.db' AS x", Dialect::Sqlite).unwrap_err();
        assert!(e.contains("not a SELECT"), "{e}");
    }
}
