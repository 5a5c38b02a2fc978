//! The command line as a user meets it.

use std::process::Command;

use crate::{ALICE, BOB, run_ok, tributary, write_corpus};

fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ingest_search_and_trec_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let corpus = dir.path().join("corpus.jsonl");
    write_corpus(&corpus, 30);
    run_ok(tributary(&data).args(["datanet", "create", "geo", "--owner", &ALICE.to_lowercase(), "--private"]));
    let listed = run_ok(tributary(&data).args(["datanet", "list", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["owner"], ALICE, "owner printed EIP-55");
    assert_eq!(listed[0]["visibility"], "private");
    // A private Datanet is named with its owner, and only so: no short form is guessed, so
    // what a name searches (and an answer over it pays) cannot change when someone creates a
    // public Datanet of the short name later.
    let geo = format!("geo~{}", ALICE.to_lowercase());
    assert_eq!(listed[0]["name"], geo.as_str());

    let report =
        run_ok(tributary(&data).args(["ingest", "--datanet", &geo, "--contributor", BOB, "--json"]).arg(&corpus));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["documents_stored"], 30);
    // The operator's ingest is an accepted contribution, review or not; a decision is once.
    run_ok(tributary(&data).args(["datanet", "set-review", &geo, "true"]));
    let listed: serde_json::Value =
        serde_json::from_str(&run_ok(tributary(&data).args(["datanet", "list", "--json"]))).unwrap();
    assert_eq!(listed[0]["review"], true);
    let contributions = run_ok(tributary(&data).args(["contribution", "list", "--datanet", &geo, "--json"]));
    let contributions: serde_json::Value = serde_json::from_str(&contributions).unwrap();
    assert_eq!(
        (contributions[0]["status"].as_str(), contributions[0]["contributor"].as_str()),
        (Some("accepted"), Some(BOB))
    );
    let id = contributions[0]["id"].to_string();
    assert!(
        fails(tributary(&data).args(["contribution", "reject", "--datanet", &geo, &id, "--reason", "x"]))
            .contains("already accepted")
    );

    let out =
        run_ok(tributary(&data).args(["search", "--datanet", &geo, "--k", "3", "--json", "glacier number 7 erodes"]));
    let passages: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(passages.as_array().unwrap().len(), 3);
    assert_eq!(passages[0]["contributor"], BOB);
    assert_eq!(passages[0]["datanet"], geo.as_str(), "a private Datanet's stored name");
    let short = ["search", "--datanet", "geo", "--k", "3", "--json", "glacier number 7 erodes"];
    assert!(fails(tributary(&data).args(short)).contains("does not exist"));
    run_ok(tributary(&data).args(["datanet", "create", "geo", "--owner", BOB]));
    let public: serde_json::Value = serde_json::from_str(&run_ok(tributary(&data).args(short))).unwrap();
    assert_eq!(public, serde_json::json!([]), "the short name is the new public Datanet, not Alice's");

    let queries = dir.path().join("queries.jsonl");
    std::fs::write(
        &queries,
        "{\"_id\":\"q1\",\"text\":\"delta number 12\"}\n{\"_id\":2,\"text\":\"wetland season 5\"}\n",
    )
    .unwrap();
    let run = dir.path().join("out.trec");
    run_ok(
        tributary(&data)
            .args(["search", "--datanet", &geo, "--k", "10", "--mode", "bm25", "--queries"])
            .arg(&queries)
            .arg("--run")
            .arg(&run),
    );
    let lines: Vec<String> = std::fs::read_to_string(&run).unwrap().lines().map(String::from).collect();
    assert_eq!(lines.len(), 20, "10 documents for each of 2 queries");
    let first: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!((first[0], first[1], first[3], first[5]), ("q1", "Q0", "1", "tributary-bm25"));
    assert!(first[2].starts_with("doc"));
    let docs_q1: std::collections::HashSet<&str> = lines[..10].iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
    assert_eq!(docs_q1.len(), 10, "one line per document");
}

#[test]
fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run_ok(tributary(&data).args(["datanet", "create", "geo"]));
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"_id\":\"1\",\"text\":\"fine\"}\nnot json\n").unwrap();
    let err = fails(tributary(&data).args(["ingest", "--datanet", "geo", "--contributor", ALICE]).arg(&bad));
    assert!(err.contains("bad.jsonl:2"), "{err}");
    let state: serde_json::Value =
        serde_json::from_str(&run_ok(tributary(&data).args(["verify", "--datanet", "geo"]))).unwrap();
    assert_eq!(state["catalog_chunks"], 0);
    assert_eq!(state["vector_points"], 0);

    let err = fails(tributary(&data).args(["ingest", "--datanet", "geo", "--contributor", "0x123"]).arg(&bad));
    assert!(err.contains("invalid EVM address"), "{err}");
    let err = fails(tributary(&data).args(["ingest", "--datanet", "nope", "--contributor", ALICE]).arg(&bad));
    assert!(err.contains("\"nope\" does not exist"), "{err}");
    let err = fails(tributary(&data).args(["datanet", "create", "geo"]));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(tributary(&data).args(["search", "--datanet", "geo", "--mode", "fuzzy", "x"]));
    assert!(err.contains("mode"), "{err}");
}

#[test]
fn demo_runs_twice() {
    let dir = tempfile::tempdir().unwrap();
    let first = run_ok(tributary(dir.path()).arg("demo"));
    assert!(first.contains("Stores agree: true"), "{first}");
    assert!(first.contains("3 documents (3 new"), "{first}");
    // Bob's re-typed copy of alice's watershed notes is a duplicate, credited to alice.
    assert!(first.contains("1 duplicates"), "{first}");
    // It ends on chain: alice's claim, then one batch paying everyone else.
    assert!(first.contains("alice claimed her cumulative"), "{first}");
    assert!(first.contains("one pushBatch paid the other"), "{first}");
    let second = run_ok(tributary(dir.path()).arg("demo"));
    assert!(second.contains("already exists"), "{second}");
    assert!(second.contains("0 new, 3 already present"), "{second}");
}
