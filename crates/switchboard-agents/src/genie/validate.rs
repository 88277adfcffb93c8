//! The first line of defence for model-written SQL: one read-only `SELECT` (or `WITH … SELECT`)
//! over the space's exposed objects, or nothing. The engine's authorizer is the second line; this
//! check exists so a bad proposal is refused with a reason before it reaches the database.

use crate::sql::Exposed;
use crate::sql::check::{Dialect, check_select};

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

/// Checks `sql` and returns it without trailing semicolons, or the reason it is refused: it must
/// parse (SQLite dialect) as one query that reads only `exposed` objects and its own WITH tables,
/// writes nothing and calls nothing that reaches outside the query ([`check_select`]).
pub fn validate_select(sql: &str, exposed: &Exposed) -> Result<String, String> {
    check_select(sql, Dialect::Sqlite, exposed, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposed() -> Exposed {
        Exposed { views: vec!["deals".into()], tables: Vec::new() }
    }

    fn check(sql: &str) -> Result<String, String> {
        validate_select(sql, &exposed())
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
