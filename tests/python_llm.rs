//! The served endpoint with an `[llm]`, as the official `openai` Python client meets it: starts
//! the `scripted-llm` binary (the scripted OpenAI-compatible model, script in
//! tests/python/scripted_llm.toml), writes the demo configuration with an `[llm]` pointing at it,
//! starts `switchboard serve` on it, and runs tests/python/test_structured_output.py: the client's
//! `.parse()` helpers for chat completions and Responses, real usage, and the Responses
//! parameters that are echoed or refused.
//!
//! `scripted-llm` is a binary of switchboard-testkit: `cargo test --workspace` (scripts/test)
//! builds it; alone, build it first with `cargo build -p switchboard-testkit --bin scripted-llm`.

use std::path::Path;
use switchboard_testkit::llm::{binary_next_to, spawn_binary};
use switchboard_testkit::{Serve, pytest, repo_root};

#[tokio::test]
async fn the_openai_clients_parse_helpers_work_with_an_llm_configured() {
    let root = repo_root();
    let switchboard = Path::new(env!("CARGO_BIN_EXE_switchboard"));
    let (_llm, llm_url) =
        spawn_binary(&binary_next_to(switchboard), &root.join("tests/python/scripted_llm.toml")).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let init =
        std::process::Command::new(switchboard).arg("init").arg(dir.path()).output().expect("init runs");
    assert!(init.status.success(), "switchboard init failed: {}", String::from_utf8_lossy(&init.stderr));
    let config = dir.path().join("switchboard.toml");
    let mut text = std::fs::read_to_string(&config).expect("the written configuration");
    text.push_str(&format!("\n[llm]\nbase_url = \"{llm_url}\"\nmodel = \"scripted\"\n"));
    std::fs::write(&config, text).expect("the configuration with [llm]");

    let home = dir.path().to_str().expect("utf-8 path");
    let server = Serve::start(switchboard, Some(&config), &[("SWITCHBOARD_HOME", home)]).await;
    let url = format!("{}/v1", server.url());
    let run = pytest(
        "tests/python/test_structured_output.py",
        &[
            ("SWITCHBOARD_BASE_URL", url.as_ref()),
            ("SWITCHBOARD_BIN", switchboard.as_os_str()),
            ("SWITCHBOARD_CONFIG", config.as_os_str()),
            ("SWITCHBOARD_HOME", dir.path().as_os_str()),
            ("SWITCHBOARD_WITH_LLM", "1".as_ref()),
        ],
    );
    let report = run.report;
    assert!(run.passed, "pytest failed:\n{report}\nserver log:\n{}", server.log());
    assert!(report.contains("6 passed"), "every test ran:\n{report}");
    println!("{report}");
}
