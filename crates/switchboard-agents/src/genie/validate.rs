//! The first line of defence for model-written SQL: one read-only `SELECT` (or `WITH … SELECT`)
//! over the space's exposed objects, or nothing. The engine's authorizer is the second line; this
//! check exists so a bad proposal is refused with a reason before it reaches the database.

use crate::sql::{Exposed, Token, cte_names, tokenize};

/// Keywords that never appear in a read-only query.
const FORBIDDEN: &[&str] = &[
    "INSERT",
    "UPDATE",
    "DELETE",
    "UPSERT",
    "DROP",
    "CREATE",
    "ALTER",
    "ATTACH",
    "DETACH",
    "PRAGMA",
    "VACUUM",
    "REINDEX",
    "ANALYZE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "LOAD_EXTENSION",
];

/// Keywords that end a FROM clause at its own nesting depth.
const CLAUSE_ENDS: &[&str] =
    &["WHERE", "GROUP", "ORDER", "LIMIT", "HAVING", "UNION", "EXCEPT", "INTERSECT", "WINDOW", "ON", "USING"];

/// Pulls the SQL out of a model reply: the first fenced block if there is one, else the reply.
pub fn extract_sql(reply: &str) -> String {
    if let Some(start) = reply.find("```") {
        let after = &reply[start + 3..];
        let body = after
            .split_once('\n')
            .map(|(first, rest)| {
                // The fence's info string ("sql") is not part of the statement.
                if first.trim().chars().all(|c| c.is_ascii_alphanumeric()) { rest } else { after }
            })
            .unwrap_or(after);
        let end = body.find("```").unwrap_or(body.len());
        return body[..end].trim().to_string();
    }
    reply.trim().to_string()
}

/// Checks `sql` and returns it without trailing semicolons, or the reason it is refused.
/// `hidden` names every table and view in the database that is not exposed.
pub fn validate_select(sql: &str, exposed: &Exposed, hidden: &[String]) -> Result<String, String> {
    let tokens = tokenize(sql).map_err(|e| e.message)?;
    let mut end = tokens.len();
    while end > 0 && tokens[end - 1] == Token::Punct(';') {
        end -= 1;
    }
    let tokens = &tokens[..end];
    let Some(first) = tokens.first() else {
        return Err("the reply contains no SQL".into());
    };
    if tokens.contains(&Token::Punct(';')) {
        return Err("it contains more than one statement".into());
    }
    if !(first.is_kw("SELECT") || first.is_kw("WITH")) {
        return Err(format!("it is not a SELECT query (it starts with `{}`)", first.ident().unwrap_or("?")));
    }
    for (i, t) in tokens.iter().enumerate() {
        if let Token::Word(w) = t {
            let upper = w.to_ascii_uppercase();
            let replace_call = upper == "REPLACE" && tokens.get(i + 1) == Some(&Token::Punct('('));
            if (FORBIDDEN.contains(&upper.as_str()) || upper == "REPLACE") && !replace_call {
                return Err(format!("it is not read-only (`{upper}`)"));
            }
        }
    }
    let exposed_list = exposed.names().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    let ctes = cte_names(tokens);
    if let Some(c) = ctes.iter().find(|c| exposed.contains(c)) {
        return Err(format!("it redefines the exposed object `{c}` in a WITH clause"));
    }
    for t in tokens {
        let name = match t {
            Token::Word(w) | Token::Quoted(w) | Token::Literal(w) => w,
            _ => continue,
        };
        let lower = name.to_ascii_lowercase();
        if hidden.iter().any(|h| h.eq_ignore_ascii_case(name))
            || lower.starts_with("sqlite_")
            || lower.starts_with("pragma_")
        {
            return Err(format!(
                "it reads `{name}`, which is not exposed (only {exposed_list} may be queried)"
            ));
        }
    }
    for name in from_targets(tokens) {
        if !exposed.contains(&name) && !ctes.iter().any(|c| c.eq_ignore_ascii_case(&name)) {
            return Err(format!(
                "it reads `{name}`, which is not exposed (only {exposed_list} may be queried)"
            ));
        }
    }
    Ok(sql.trim().trim_end_matches(|c: char| c == ';' || c.is_whitespace()).to_string())
}

/// The object names a statement reads: the name after each FROM or JOIN, and after each comma
/// of a FROM list at the same depth. Subqueries (`FROM (`) are skipped; their own FROMs count.
fn from_targets(tokens: &[Token]) -> Vec<String> {
    let mut targets = Vec::new();
    let mut depth = 0usize;
    let mut from_depth: Option<usize> = None;
    let mut expect_target = false;
    for t in tokens {
        match t {
            Token::Punct('(') => {
                depth += 1;
                expect_target = false;
            }
            Token::Punct(')') => {
                depth = depth.saturating_sub(1);
                if from_depth.is_some_and(|d| depth < d) {
                    from_depth = None;
                }
            }
            Token::Punct(',') if from_depth == Some(depth) => expect_target = true,
            Token::Word(w) if w.eq_ignore_ascii_case("FROM") || w.eq_ignore_ascii_case("JOIN") => {
                from_depth = Some(depth);
                expect_target = true;
            }
            Token::Word(w)
                if from_depth == Some(depth) && CLAUSE_ENDS.iter().any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                from_depth = None;
                expect_target = false;
            }
            _ if expect_target => {
                if let Some(name) = t.ident() {
                    targets.push(name.to_string());
                }
                expect_target = false;
            }
            _ => {}
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposed() -> Exposed {
        Exposed { views: vec!["deals".into()], tables: Vec::new() }
    }

    fn check(sql: &str) -> Result<String, String> {
        validate_select(sql, &exposed(), &["deals_base".into(), "accounts".into()])
    }

    #[test]
    fn accepts_single_selects_over_exposed_views() {
        for sql in [
            "SELECT region, SUM(amount) FROM deals GROUP BY region;",
            "select * from deals d where d.region = 'West' limit 5",
            "WITH w AS (SELECT * FROM deals WHERE stage = 'won') SELECT COUNT(*) FROM w",
            "SELECT a.rep FROM deals a JOIN deals b ON a.id = b.id",
            "SELECT replace(account, 'a', 'b') FROM (SELECT account FROM deals)",
            "SELECT 'delete me' AS note FROM deals",
        ] {
            assert!(check(sql).is_ok(), "{sql}: {:?}", check(sql));
        }
        assert_eq!(check("SELECT 1 FROM deals ;  ").unwrap(), "SELECT 1 FROM deals");
    }

    #[test]
    fn refuses_writes_multiple_statements_and_hidden_objects() {
        for (sql, why) in [
            ("DELETE FROM deals", "not a SELECT"),
            ("SELECT 1; DROP TABLE deals", "more than one statement"),
            ("WITH x AS (SELECT 1) DELETE FROM deals", "not read-only"),
            ("PRAGMA table_info(deals)", "not a SELECT"),
            ("SELECT * FROM deals_base", "deals_base"),
            ("SELECT * FROM \"DEALS_BASE\"", "DEALS_BASE"),
            ("SELECT * FROM deals, accounts", "accounts"),
            ("SELECT * FROM sqlite_schema", "sqlite_schema"),
            ("SELECT * FROM other_table", "other_table"),
            ("WITH deals AS (SELECT 1) SELECT * FROM deals", "redefines"),
            ("INSERT INTO deals VALUES (1)", "not a SELECT"),
            ("SELECT * FROM deals WHERE id IN (SELECT id FROM payroll)", "payroll"),
            ("", "no SQL"),
        ] {
            let err = check(sql).unwrap_err();
            assert!(err.contains(why), "{sql}: {err}");
        }
    }

    #[test]
    fn extracts_fenced_sql() {
        assert_eq!(
            extract_sql("Here you go:\n```sql\nSELECT 1 FROM deals\n```\nThanks"),
            "SELECT 1 FROM deals"
        );
        assert_eq!(extract_sql("  SELECT 2  "), "SELECT 2");
        assert_eq!(extract_sql("```\nSELECT 3\n```"), "SELECT 3");
    }
}
