//! `switchboard init DIR [--postgres URL [--schema NAME]]`.

use std::path::Path;
use std::process::ExitCode;
use switchboard_agents::sql::pg::{install_demo, url_has_password};
use switchboard_core::{Error, Result};
use switchboard_runtime::demo;

/// The variable the sales space reads its connection string from when the URL holds a password,
/// so the password never lands in a config file.
const URL_VARIABLE: &str = "SWITCHBOARD_SALES_POSTGRES_URL";

/// Writes the demo as editable files into `dir`. With `postgres`, also installs the sales space
/// into schema `schema` on that server (tables, row-level security policy, masking view) and
/// points `agents/sales.toml` at it, so PostgreSQL enforces the access table.
pub async fn run(dir: &Path, postgres: Option<&str>, schema: &str) -> Result<ExitCode> {
    if let Some(url) = postgres {
        if !schema.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::invalid(format!("--schema: `{schema}` must be letters, digits and _")));
        }
        // Checked before anything is written, so a bad URL leaves no half-made directory.
        url_has_password("--postgres", url)?;
    }
    demo::write_to(dir)?;
    println!("wrote the demo configuration to {}", dir.display());
    if let Some(url) = postgres {
        install_demo(url, schema).await?;
        let has_password = url_has_password("--postgres", url)?;
        let configured = if has_password { format!("env:{URL_VARIABLE}") } else { url.to_string() };
        point_sales_at_postgres(dir, &configured, schema)?;
        println!(
            "installed the sales space into PostgreSQL schema `{schema}` (row-level security by region, masked margin_pct)"
        );
        if has_password {
            println!(
                "the URL holds a password, so agents/sales.toml reads it from {URL_VARIABLE}: export it before running"
            );
        }
    }
    println!(
        "try: switchboard chat --config {}/switchboard.toml --as alice@example.com \"total revenue by region\"",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Swaps the sales space's SQLite file for the PostgreSQL schema.
fn point_sales_at_postgres(dir: &Path, url: &str, schema: &str) -> Result<()> {
    let path = dir.join("agents/sales.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
    let sqlite = "database = \"sales.db\"\n";
    if !text.contains(sqlite) {
        return Err(Error::config(format!("{}: no `{}` line to replace", path.display(), sqlite.trim())));
    }
    let quoted = |v: &str| toml_string(v);
    let postgres = format!(
        "# PostgreSQL enforces the access table: a row-level security policy on deals_base and the\n\
         # masking `deals` view, for the principal each query binds (switchboard.user/groups).\n\
         engine = \"postgres\"\nurl = {}\nschema = {}\nrole = \"switchboard_reader\"\n",
        quoted(url),
        quoted(schema)
    );
    std::fs::write(&path, text.replacen(sqlite, &postgres, 1))
        .map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))
}

/// `value` as a TOML basic string (a JSON string is one: same quotes and escapes).
fn toml_string(value: &str) -> String {
    serde_json::Value::String(value.to_string()).to_string()
}
