//! Runs the example binary as a user would and checks what it prints: the tool's answer, and the
//! tool call as its own `execute_tool` span under the agent's span.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_embed-example")).args(args).output().expect("the example runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    eprintln!("stdout:\n{stdout}\nstderr:\n{stderr}");
    (output.status.success(), stdout, stderr)
}

#[test]
fn the_example_answers_through_its_native_tool_and_prints_the_spans() {
    let (ok, stdout, _) = run(&[]);
    assert!(ok, "the example failed");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("Shipping 3 kg to zone 2 costs $13.25."));
    assert!(stdout.contains("status ok"), "{stdout}");

    let span = |prefix: &str| lines.iter().find(|l| l.trim_start().starts_with(prefix)).copied();
    let root = span("invoke_agent embedded [AGENT]").expect("the supervisor's span");
    let agent = span("invoke_agent shipping [AGENT]").expect("the agent's span");
    let tool = span("execute_tool shipping_rate [TOOL]").expect("the tool call's own span");
    let indent = |l: &str| l.len() - l.trim_start().len();
    assert!(
        indent(root) < indent(agent) && indent(agent) < indent(tool),
        "tool under agent under root:\n{stdout}"
    );
    assert!(tool.ends_with(" ok"), "{tool}");
}

#[test]
fn the_example_exits_non_zero_when_the_run_fails() {
    // Routed to the agent, but zone 9 does not exist: the tool hop fails, so does the run.
    let (ok, stdout, stderr) = run(&["How much to ship a 3 kg parcel to zone 9?"]);
    assert!(!ok, "a failed run exited 0:\n{stdout}");
    assert!(stdout.contains("there is no zone 9"), "{stdout}");
    assert!(stderr.contains("status error"), "{stderr}");
    assert!(stdout.contains("execute_tool shipping_rate [TOOL]"), "the failed hop is traced too:\n{stdout}");
}
