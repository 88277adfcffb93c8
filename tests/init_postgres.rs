//! `switchboard init DIR --postgres URL` with the real binary and the real PostgreSQL server:
//! the demo's sales space installed into a schema of its own, and the access table enforced by
//! PostgreSQL (row-level security by region, masked margins) for every demo user.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use switchboard_testkit::pg::TestSchema;

fn run(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("SWITCHBOARD_HOME", home)
        .env_remove("SWITCHBOARD_USER")
        .output()
        .expect("the switchboard binary runs")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sales step's `(regions seen, margins)` for `who` asking the average margin by region.
fn margins_by_region(config: &str, home: &Path, who: &str) -> Vec<(String, Value)> {
    let out = ok(run(&["chat", "--json", "--config", config, "--as", who, "average margin by region"], home));
    let reply: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON ({e}): {out}"));
    let step = reply["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["agent"] == "sales"))
        .unwrap_or_else(|| panic!("a sales step: {reply}"));
    let data = &step["output"]["data"];
    assert!(data["sql"].as_str().unwrap_or_default().contains("FROM \"deals\""), "{data}");
    let mut rows: Vec<(String, Value)> = data["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r[0].as_str().unwrap_or_default().to_string(), r[1].clone()))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_with_postgres_installs_a_space_postgresql_governs() {
    // A schema name of our own, created by `init` (TestSchema drops it, with everything in it,
    // when the test ends).
    let schema = TestSchema::new().await;
    schema.admin().batch_execute(&format!("DROP SCHEMA {}", schema.name())).await.expect("make room");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let dir_str = dir.to_str().expect("utf-8 path");
    let out =
        ok(run(&["init", dir_str, "--postgres", schema.base_url(), "--schema", schema.name()], tmp.path()));
    assert!(
        out.contains(&format!("installed the sales space into PostgreSQL schema `{}`", schema.name())),
        "{out}"
    );
    let agent = std::fs::read_to_string(dir.join("agents/sales.toml")).expect("sales.toml");
    assert!(agent.contains("engine = \"postgres\"") && !agent.contains("database = \"sales.db\""), "{agent}");

    // Installing twice into the same schema is refused with a clear error, nothing half-done.
    let again = run(
        &[
            "init",
            tmp.path().join("again").to_str().unwrap(),
            "--postgres",
            schema.base_url(),
            "--schema",
            schema.name(),
        ],
        tmp.path(),
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds the demo"), "{again:?}");

    let config = dir.join("switchboard.toml");
    let config = config.to_str().expect("utf-8 path");
    let all = ["Central", "East", "West"];
    for (who, regions, real) in [
        ("alice@example.com", &["West"][..], false),
        ("bob@example.com", &["East"][..], false),
        ("carol@example.com", &all[..], false),
        ("dave@example.com", &all[..], true),
        ("erin@example.com", &all[..], true),
        ("frank@example.com", &all[..], true),
    ] {
        let rows = margins_by_region(config, tmp.path(), who);
        let seen: Vec<&str> = rows.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(seen, regions, "{who}");
        assert!(rows.iter().all(|(_, m)| m.is_null() != real), "{who}: {rows:?}");
    }

    // A malformed URL is refused before anything is written.
    let bad = run(
        &["init", tmp.path().join("bad").to_str().unwrap(), "--postgres", "postgres://x:y@[bad"],
        tmp.path(),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--postgres"), "{bad:?}");
    assert!(!tmp.path().join("bad").exists());
}
