//! The audit trail through a PostgreSQL outage, against real processes: `switchboard serve` on a
//! database of the test's own, under load, while the database refuses connections for a while
//! (`ALTER DATABASE … ALLOW_CONNECTIONS false` and its sessions terminated), then comes back.
//!
//! Every request must be answered, and afterwards the audit table must hold exactly one row per
//! hop: none lost, none doubled. Latency before and during the outage is printed, not asserted.
//! `SWITCHBOARD_OUTAGE_SECS` sets the outage (default 15 s; the README's figure is from 60 s).

#[path = "common/durable.rs"]
mod durable;

use durable::{Load, Sample, describe_phase, settled, token, unaudited_requests};
use std::time::Duration;
use switchboard_testkit::Serve;
use switchboard_testkit::pg::TestDatabase;

const BEFORE: Duration = Duration::from_secs(8);
const AFTER: Duration = Duration::from_secs(5);
const WORKERS: usize = 8;

fn outage() -> Duration {
    let secs = std::env::var("SWITCHBOARD_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_under_load_loses_no_audit_row_and_stalls_no_request() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = durable::demo_config(dir.path(), db.url(), "");
    let carol = token(&config, "carol@example.com");
    let mut server = Serve::start(durable::bin(), Some(&config), &[]).await;

    let load = Load::start(server.url(), &carol, WORKERS);
    tokio::time::sleep(BEFORE).await;
    let outage = outage();
    load.enter(1);
    db.set_available(false).await;
    tokio::time::sleep(outage).await;
    db.set_available(true).await;
    load.enter(2);
    tokio::time::sleep(AFTER).await;
    let samples: Vec<Sample> = load.finish().await;

    let (p99_before, before) = describe_phase(&samples, 0, "before the outage");
    let (p99_during, during) =
        describe_phase(&samples, 1, &format!("during a {} s outage", outage.as_secs()));
    let (_, after) = describe_phase(&samples, 2, "after it");
    println!("{before}\n{during}\n{after}\np99 during / before: {:.2}x", p99_during / p99_before);

    let unanswered = samples.iter().filter(|s| s.status.is_none()).count();
    assert_eq!(unanswered, 0, "every request is answered; log:\n{}", server.log());
    let not_ok: Vec<_> = samples.iter().filter(|s| s.status != Some(200)).map(|s| s.status).collect();
    assert!(not_ok.is_empty(), "every request succeeds (the store is not on the answer's path): {not_ok:?}");
    assert!(samples.iter().any(|s| s.phase == 1), "requests were made during the outage");

    // The tally alone can look settled while a long replay is between two batches: wait for the
    // spill file to be emptied first.
    let spill = dir.path().join("postgres-spill.jsonl");
    let replay = std::time::Instant::now();
    while std::fs::metadata(&spill).map(|m| m.len()).unwrap_or(0) > 0 {
        assert!(replay.elapsed() < Duration::from_secs(180), "the spill file was never replayed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("the spill file was empty {:.1} s after the load stopped", replay.elapsed().as_secs_f64());
    let client = db.client().await;
    let tally = settled(&client, Duration::from_secs(90)).await;
    println!("after recovery: {tally:?}");
    let ids: Vec<String> = samples.iter().map(|s| s.request_id.clone()).collect();
    let missing = unaudited_requests(&client, &ids).await;
    assert!(
        missing.is_empty(),
        "{} answered requests have no audit row, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(tally.doubled, 0, "no audit row is doubled: {tally:?}");
    assert_eq!(tally.unaudited, 0, "every hop has its audit row: {tally:?}");
    assert_eq!(tally.audit_rows, tally.hop_spans, "exactly one audit row per hop: {tally:?}");
    let log = server.log();
    assert!(!log.contains("gave up writing"), "no batch was given up on; log:\n{log}");
    let status = server.stop();
    assert!(status.success(), "graceful shutdown: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_spilled_by_a_killed_server_are_replayed_after_restart() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = durable::demo_config(dir.path(), db.url(), "");
    let spill = dir.path().join("postgres-spill.jsonl");
    let carol = token(&config, "carol@example.com");
    let mut server = Serve::start(durable::bin(), Some(&config), &[]).await;

    db.set_available(false).await;
    let load = Load::start(server.url(), &carol, 4);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samples = load.finish().await;
    assert!(samples.iter().all(|s| s.status == Some(200)), "answered while the store is away");
    let ids: Vec<String> = samples.iter().map(|s| s.request_id.clone()).collect();
    // Wait until every answered request's audit row is on disk, then kill: no drain, no flush.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&spill).unwrap_or_default();
        if ids.iter().all(|id| text.contains(id.as_str())) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the rows never reached {}", spill.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill();
    println!("{} requests answered during the outage, then SIGKILL", ids.len());

    db.set_available(true).await;
    let mut restarted = Serve::start(durable::bin(), Some(&config), &[]).await;
    let client = db.client().await;
    let tally = settled(&client, Duration::from_secs(60)).await;
    println!("after restart: {tally:?}");
    let missing = unaudited_requests(&client, &ids).await;
    assert!(
        missing.is_empty(),
        "{} requests lost their audit rows; log:\n{}",
        missing.len(),
        restarted.log()
    );
    assert_eq!(tally.doubled, 0, "{tally:?}");
    assert_eq!(tally.unaudited, 0, "{tally:?}");
    assert_eq!(tally.audit_rows, tally.hop_spans, "{tally:?}");
    assert!(
        restarted.log().contains("replaying it"),
        "the restart says it replays; log:\n{}",
        restarted.log()
    );
    assert!(restarted.stop().success());
}
