//! kill -9 in the middle of an ingest, then the same ingest again: the catalog, the vectors and
//! the keywords must agree, and hold exactly what an uninterrupted ingest holds.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{ALICE, run_ok, tributary, write_corpus};

fn verify(data_dir: &std::path::Path) -> serde_json::Value {
    let out = run_ok(tributary(data_dir).args(["verify", "--datanet", "crash"]));
    serde_json::from_str(&out).expect("verify prints JSON")
}

#[test]
fn kill_9_mid_ingest_then_rerun_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    write_corpus(&corpus, 400);
    let data = dir.path().join("data");
    run_ok(tributary(&data).args(["datanet", "create", "crash"]));
    let ingest_args = ["ingest", "--datanet", "crash", "--contributor", ALICE, "--batch-chunks", "16"];

    let mut killed_mid_run = 0;
    for delay_ms in [1200u64, 2500, 4000, 6000] {
        let mut child = tributary(&data)
            .args(ingest_args)
            .arg(&corpus)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(delay_ms) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed_mid_run += 1;
        }
        child.wait().unwrap();
        // Whatever the kill interrupted, the next open recovers to an agreeing state.
        let state = verify(&data);
        assert_eq!(state["missing_from_vectors"], serde_json::json!([]), "{state}");
        assert_eq!(state["orphan_vectors"], serde_json::json!([]), "{state}");
        assert_eq!(state["orphan_keywords"], serde_json::json!([]), "{state}");
        assert_eq!(state["missing_from_keywords"], serde_json::json!([]), "{state}");
    }
    assert!(killed_mid_run >= 1, "no run was interrupted: the corpus is too small to test anything");

    run_ok(tributary(&data).args(ingest_args).arg(&corpus));
    let resumed = verify(&data);

    let clean = dir.path().join("clean");
    run_ok(tributary(&clean).args(["datanet", "create", "crash"]));
    run_ok(tributary(&clean).args(ingest_args).arg(&corpus));
    let expected = verify(&clean);
    assert_eq!(resumed, expected, "resumed ingest differs from an uninterrupted one");
    assert!(expected["catalog_chunks"].as_u64().unwrap() >= 400);
}
