//! Runs the example as a user would, against a fresh demo data dir, and checks the structured
//! results it prints and the reports it writes.

use serde_json::Value;
use std::process::Command;

#[test]
fn the_example_scores_its_cases_and_writes_a_report() {
    let home = tempfile::tempdir().expect("tempdir");
    let reports = home.path().join("reports");
    let output = Command::new(env!("CARGO_BIN_EXE_eval-example"))
        .arg(&reports)
        .env("SWITCHBOARD_HOME", home.path().join("data"))
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let results: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(results.len(), 5, "one line for the single case, four for the set:\n{stdout}");
    let denied = results.iter().find(|r| r["id"] == "denied").expect("the denied case");
    assert_eq!((&denied["routed"][0], &denied["outcome"]), (&Value::from("audit"), &Value::from("denied")));
    let approval = results.iter().rfind(|r| r["id"] == "approval").expect("the approval case");
    assert_eq!(approval["tools"][0], "deal_desk");
    assert!(stdout.contains("routing accuracy"), "{stdout}");
    for f in ["report.json", "report.md", "report.html"] {
        assert!(reports.join(f).is_file(), "{f} not written");
    }
}
