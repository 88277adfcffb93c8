//! `switchboard eval` through the real binary: the bundled datasets, the three reports, the HTML
//! report rendered by a real headless Chromium, the regression gate, resuming an interrupted run,
//! and bad datasets.

use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use switchboard_testkit::{Child, repo_root};

/// Exit code of a failed regression gate.
const GATE_FAILED: i32 = 4;

/// A fresh data dir and report dirs for one test.
struct Eval {
    home: tempfile::TempDir,
}

impl Eval {
    fn new() -> Self {
        Self { home: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(args)
            .current_dir(repo_root())
            .env("SWITCHBOARD_HOME", self.path("data"))
            .env_remove("RUST_LOG");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the switchboard binary runs")
    }

    /// Runs `eval` and insists it succeeded; returns stdout.
    fn eval_ok(&self, args: &[&str]) -> String {
        let out = self.run(&[&["eval"], args].concat());
        assert!(out.status.success(), "eval {args:?} failed: {}\n{}", text(&out.stderr), text(&out.stdout));
        text(&out.stdout)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn report(dir: &Path) -> Value {
    let raw = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&raw).expect("report.json is JSON")
}

/// Every `step`-th case of a bundled dataset, written to `into`: a deterministic subset.
fn subset(dataset: &str, step: usize, into: &Path) -> usize {
    let raw = std::fs::read_to_string(repo_root().join(dataset)).expect("bundled dataset");
    let lines: Vec<&str> = raw.lines().step_by(step).collect();
    std::fs::write(into, lines.join("\n") + "\n").expect("subset written");
    lines.len()
}

fn smoke() -> String {
    repo_root().join("crates/switchboard-eval/tests/data/demo-smoke.jsonl").display().to_string()
}

fn assert_three_reports(dir: &Path) {
    for f in ["report.json", "report.md", "report.html", "results.jsonl"] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(md.starts_with("# Evaluation") && md.contains("| routing accuracy |"), "{md}");
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    for external in ["<link", " src=", "url(", "@import", "fetch(", "XMLHttpRequest"] {
        assert!(!html.contains(external), "the HTML report must load nothing ({external} found)");
    }
}

#[test]
fn a_demo_dataset_prints_a_summary_and_writes_three_reports() {
    let env = Eval::new();
    let dir = env.path("report");
    let stdout = env.eval_ok(&[&smoke(), "--report", dir.to_str().expect("utf-8")]);
    assert_three_reports(&dir);
    let r = report(&dir);
    // The printed summary is the report's: the router is scored elsewhere, the harness here.
    let routing = &r["summary"]["overall"]["routing"];
    let line = format!(
        "routing accuracy             {:.1}% ({}/10)",
        routing["pct"].as_f64().unwrap_or(-1.0),
        routing["met"]
    );
    assert!(stdout.contains(&line), "{line} not in {stdout}");
    assert_eq!(r["summary"]["overall"]["trajectory"]["total"], 4);
    assert!(stdout.contains("router: lexical"), "{stdout}");
    assert_eq!(r["cases"].as_array().map(Vec::len), Some(10));
    assert_eq!(r["config"], "built-in demo");
    let by_id = |id: &str| r["cases"].as_array().and_then(|c| c.iter().find(|c| c["id"] == id)).cloned();
    let denied = by_id("audit-denied").expect("case");
    assert_eq!((denied["routed"][0].as_str(), denied["outcome"].as_str()), (Some("audit"), Some("denied")));
    let desk = by_id("deal-desk").expect("case");
    assert_eq!(desk["tools"], serde_json::json!(["deal_desk", "discount_policy"]));
    assert_eq!(
        by_id("policies-hotel").expect("case")["cited"][0].as_str().map(|c| c.starts_with("travel")),
        Some(true)
    );
    // Results come in dataset order, whatever order they finished in.
    let lines: Vec<u64> =
        r["cases"].as_array().expect("cases").iter().filter_map(|c| c["line"].as_u64()).collect();
    assert_eq!(lines, (1..=10).collect::<Vec<_>>());
}

#[test]
fn the_bundled_demo_eval_set_runs_against_the_built_in_demo() {
    let env = Eval::new();
    let dataset = repo_root().join("eval/demo/cases.jsonl");
    let raw = std::fs::read_to_string(&dataset).expect("eval/demo/cases.jsonl is bundled");
    let cases = raw.lines().filter(|l| !l.trim().is_empty() && !l.trim().starts_with("//")).count();
    assert!(cases >= 80, "the demo eval set has {cases} cases; the issue asks for at least 80");
    let dir = env.path("report");
    let stdout = env.eval_ok(&[dataset.to_str().expect("utf-8"), "--report", dir.to_str().expect("utf-8")]);
    assert!(stdout.contains("routing accuracy"), "{stdout}");
    assert_three_reports(&dir);
    assert_eq!(report(&dir)["cases"].as_array().map(Vec::len), Some(cases));
}

#[test]
fn clinc150_reports_in_scope_accuracy_and_out_of_scope_recall_separately() {
    let env = Eval::new();
    // Every fifth case keeps a debug-build test short; the README runs all 5,500.
    let dataset = env.path("clinc-subset.jsonl");
    let n = subset("eval/clinc150/cases.jsonl", 5, &dataset);
    let dir = env.path("report");
    let stdout = env.eval_ok(&[
        dataset.to_str().expect("utf-8"),
        "--config",
        "eval/clinc150/switchboard.toml",
        "--report",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(stdout.contains("in_scope") && stdout.contains("out_of_scope"), "{stdout}");
    assert_three_reports(&dir);
    let r = report(&dir);
    assert_eq!(r["cases"].as_array().map(Vec::len), Some(n));
    assert_eq!(r["summary"]["tags"]["in_scope"]["cases"], 900);
    assert_eq!(r["summary"]["tags"]["out_of_scope"]["cases"], 200);
    let rows = r["summary"]["confusion"]["rows"].as_array().expect("rows").clone();
    for domain in ["banking", "credit_cards", "travel", "utility", "(clarify)"] {
        assert!(rows.iter().any(|x| x == domain), "{domain} missing from the confusion rows {rows:?}");
    }
}

#[test]
fn tau2_banking_reports_retrieval_recall_at_5() {
    let env = Eval::new();
    let dir = env.path("report");
    let stdout = env.eval_ok(&[
        "eval/tau2-banking/cases.jsonl",
        "--config",
        "eval/tau2-banking/switchboard.toml",
        "--report",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(stdout.contains("retrieval recall@5"), "{stdout}");
    assert_three_reports(&dir);
    let r = report(&dir);
    assert_eq!(r["summary"]["overall"]["recall"]["cases"], 97);
    let cited: usize =
        r["cases"].as_array().expect("cases").iter().filter(|c| c["cited"][0].is_string()).count();
    assert!(cited > 0, "no case cited a document");
}

#[test]
fn the_html_report_renders_its_heatmap_and_histogram_in_headless_chromium() {
    let env = Eval::new();
    let dir = env.path("report");
    env.eval_ok(&[&smoke(), "--report", dir.to_str().expect("utf-8")]);
    let r = report(&dir);
    let confusion = &r["summary"]["confusion"];
    let cells = confusion["rows"].as_array().map_or(0, Vec::len)
        * confusion["columns"].as_array().map_or(0, Vec::len);
    assert!(cells > 0);

    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("Chromium is installed (Debian: apt-get install chromium; .ci/run installs it)");
    let url = format!("file://{}", dir.join("report.html").display());
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", env.path("chromium-profile").display()))
        .args(["--dump-dom", &url])
        .output()
        .expect("chromium runs");
    let dom = text(&out.stdout);
    assert!(out.status.success() && dom.contains("</html>"), "chromium failed: {}", text(&out.stderr));
    // The SVG is built by the page's inline script, so it is in the DOM only if the script ran.
    assert!(dom.contains("id=\"heatmap-svg\""), "no heatmap in the rendered DOM");
    assert_eq!(dom.matches("class=\"cell\"").count(), cells, "one heatmap cell per matrix entry");
    for (i, row) in confusion["rows"].as_array().expect("rows").iter().enumerate() {
        for (j, col) in confusion["columns"].as_array().expect("columns").iter().enumerate() {
            let cell = format!(
                "data-row=\"{}\" data-col=\"{}\" data-count=\"{}\"",
                row.as_str().unwrap_or_default(),
                col.as_str().unwrap_or_default(),
                confusion["counts"][i][j]
            );
            assert!(dom.contains(&cell), "the heatmap lacks {cell}");
        }
    }
    assert!(dom.contains("id=\"latency-svg\""), "no latency histogram in the rendered DOM");
    assert_eq!(dom.matches("class=\"bar\"").count(), 30, "thirty histogram bars");
}

/// Rewrites an agent file's description and examples to be about something else entirely.
fn break_description(agent_file: &Path) {
    let raw = std::fs::read_to_string(agent_file).expect("agent file");
    let mut out = Vec::new();
    let mut in_examples = false;
    for line in raw.lines() {
        if in_examples {
            in_examples = line.trim() != "]";
            continue;
        }
        if line.starts_with("description") {
            out.push("description = \"Sourdough baking: starters, hydration, proofing times and oven temperatures.\"");
        } else if line.starts_with("examples") {
            out.push("examples = [\"how long should my sourdough proof overnight?\"]");
            in_examples = !line.trim_end().ends_with(']');
        } else {
            out.push(line);
        }
    }
    std::fs::write(agent_file, out.join("\n") + "\n").expect("agent file rewritten");
}

#[test]
fn the_regression_gate_fails_on_a_broken_agent_description() {
    let env = Eval::new();
    let base = env.path("baseline");
    env.eval_ok(&[&smoke(), "--report", base.to_str().expect("utf-8")]);
    let baseline = base.join("report.json");

    // The same configuration passes the gate.
    let again = env.path("again");
    let stdout = env.eval_ok(&[
        &smoke(),
        "--report",
        again.to_str().expect("utf-8"),
        "--baseline",
        baseline.to_str().expect("utf-8"),
        "--max-regression",
        "5",
    ]);
    assert!(stdout.contains("regression gate passed"), "{stdout}");

    // A copy of the demo whose `deal_desk` agent describes something else fails it.
    let config = env.path("broken");
    let init = env.run(&["init", config.to_str().expect("utf-8")]);
    assert!(init.status.success(), "init failed: {}", text(&init.stderr));
    break_description(&config.join("agents/deal_desk.toml"));
    let out = env.run(&[
        "eval",
        &smoke(),
        "--config",
        config.join("switchboard.toml").to_str().expect("utf-8"),
        "--report",
        env.path("broken-report").to_str().expect("utf-8"),
        "--baseline",
        baseline.to_str().expect("utf-8"),
        "--max-regression",
        "5",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(GATE_FAILED), "stderr: {stderr}\nstdout: {}", text(&out.stdout));
    assert!(stderr.contains("regression gate failed"), "{stderr}");
    assert!(stderr.lines().any(|l| l.trim_start().starts_with("routing accuracy: ")), "{stderr}");
    assert!(stderr.contains("recall of agent deal_desk: 100.0% → 0.0%"), "{stderr}");
}

#[test]
fn an_interrupted_run_resumes_where_it_stopped() {
    let env = Eval::new();
    let dataset = env.path("clinc-subset.jsonl");
    let n = subset("eval/clinc150/cases.jsonl", 10, &dataset);
    let dir = env.path("report");
    let results = dir.join("results.jsonl");
    let args = [
        "eval",
        dataset.to_str().expect("utf-8"),
        "--config",
        "eval/clinc150/switchboard.toml",
        "--report",
        dir.to_str().expect("utf-8"),
    ];
    // One case at a time, so the run is still going when the test interrupts it.
    let first = [&args[..], &["--concurrency", "1"]].concat();
    let mut child = Child::spawn(&mut env.command(&first), env.path("first-run.log"));
    let started = Instant::now();
    let done = loop {
        let lines = std::fs::read_to_string(&results).map_or(0, |t| t.lines().count());
        if lines >= 30 {
            break lines;
        }
        assert!(child.try_wait().is_none(), "the run ended before it could be interrupted:\n{}", child.log());
        assert!(started.elapsed() < Duration::from_secs(180), "no progress:\n{}", child.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill();
    assert!(done < n, "the run finished before it was interrupted");
    assert!(!dir.join("report.json").exists(), "an interrupted run writes no report");

    let out = env.run(&[&args[..], &["--resume"]].concat());
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let resumed = stderr
        .lines()
        .find_map(|l| l.strip_prefix("resuming: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|d| d.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no resuming line: {stderr}"));
    assert!(resumed >= 30 && resumed < n, "resumed with {resumed} of {n} done");
    assert!(stderr.contains(&format!("running {}", n - resumed)), "{stderr}");
    let r = report(&dir);
    let ids: HashSet<&str> =
        r["cases"].as_array().expect("cases").iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), n, "every case exactly once");
    let lines = std::fs::read_to_string(&results).expect("results").lines().count();
    assert_eq!(lines, n, "results.jsonl holds each case once");
}

#[test]
fn bad_datasets_are_refused_naming_each_line_and_field() {
    let env = Eval::new();
    let dataset = env.path("bad.jsonl");
    std::fs::write(
        &dataset,
        [
            r#"{"id": "ok", "question": "total revenue by region", "expect": {"agents": ["sales"]}}"#,
            r#"{"id": "no-agents", "question": "q", "expect": {"outcome": "ok"}}"#,
            r#"{"id": "typo", "question": "q", "expect": {"agents": ["sales"], "answr": {}}}"#,
            "{not json",
        ]
        .join("\n"),
    )
    .expect("write");
    let out = env.run(&[
        "eval",
        dataset.to_str().expect("utf-8"),
        "--report",
        env.path("r").to_str().expect("utf-8"),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("3 bad lines"), "{stderr}");
    assert!(stderr.contains("line 2: expect.agents:"), "{stderr}");
    assert!(stderr.contains("line 3: expect: unknown field `answr`"), "{stderr}");
    assert!(stderr.contains("line 4: is not valid JSON"), "{stderr}");

    std::fs::write(
        &dataset,
        r#"{"id": "who", "question": "q", "as": "zed@example.com", "expect": {"agents": ["nope"]}}"#,
    )
    .expect("write");
    let out = env.run(&[
        "eval",
        dataset.to_str().expect("utf-8"),
        "--report",
        env.path("r").to_str().expect("utf-8"),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 1: as: `zed@example.com` is not a development identity"), "{stderr}");
    assert!(
        stderr.contains("line 1: expect.agents: `nope` is not an agent of this configuration"),
        "{stderr}"
    );
}
