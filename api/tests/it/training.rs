//! Model Factory from the command line: pairs in, a trained, evaluated, registered adapter out,
//! whose training log verifies (and fails once changed), and which answers questions.

use std::path::Path;
use std::process::Command;

use crate::{ALICE, run_ok, tributary};

fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn facts() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/data/facts")
}

#[test]
fn train_show_verify_and_answer_with_a_trained_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    run_ok(tributary(data).args(["datanet", "create", "facts"]));
    let docs = ["varne-river.md", "corran-dam.md"].map(|d| facts().join("documents").join(d));
    run_ok(tributary(data).args(["ingest", "--datanet", "facts", "--contributor", ALICE]).args(&docs));
    let pairs: Vec<serde_json::Value> = std::fs::read_to_string(facts().join("questions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|q| ["varne-river.md", "corran-dam.md"].contains(&q["document"].as_str().unwrap()))
        .take(5)
        .map(|q| serde_json::json!({"question": q["question"], "answer": q["answer"]}))
        .collect();
    assert_eq!(pairs.len(), 5);
    let pairs_path = data.join("pairs.jsonl");
    let lines: Vec<String> = pairs.iter().map(|p| p.to_string()).collect();
    std::fs::write(&pairs_path, lines.join("\n")).unwrap();
    let train = |name: &str, pairs: &Path| {
        let mut cmd = tributary(data);
        cmd.args(["adapter", "train", name, "--datanet", "facts", "--pairs"]).arg(pairs).args([
            "--rank",
            "4",
            "--targets",
            "q_proj,v_proj",
            "--batch",
            "2",
            "--max-steps",
            "2",
            "--lr",
            "1e-3",
        ]);
        cmd
    };

    // A pair naming a chunk the Datanet does not have is refused, and nothing is registered.
    let bad = data.join("bad.jsonl");
    let bogus = serde_json::json!({"question": "q?", "answer": "a", "chunks": ["ab".repeat(32)]});
    std::fs::write(&bad, format!("{}\n{}\n", lines[0], bogus)).unwrap();
    let err = fails(&mut train("bad", &bad));
    assert!(err.contains("pair 2") && err.contains("has no chunk"), "{err}");
    assert!(!run_ok(tributary(data).args(["adapter", "list"])).contains("bad"));

    let out = run_ok(&mut train("facts-lora", &pairs_path));
    assert!(out.contains("trained facts-lora on 4 pairs of facts: 2 steps"), "{out}");
    assert!(out.contains("held out 1 pairs"), "{out}");
    let shown: serde_json::Value =
        serde_json::from_str(&run_ok(tributary(data).args(["adapter", "show", "facts-lora", "--json"]))).unwrap();
    let training = &shown["training"];
    assert_eq!(shown["adapter"]["rank"], 4);
    assert_eq!(training["steps"], 2);
    assert_eq!(training["retrieved_chunks"], 5, "every pair's passage found by retrieval");
    assert_eq!(training["evaluation"]["heldout_pairs"], 1);
    assert_eq!(training["datanets"][0]["name"], "facts");
    assert_eq!(training["datanets"][0]["root"].as_str().unwrap().len(), 64);
    let root = training["log_root"].as_str().unwrap().to_string();
    let verified = run_ok(tributary(data).args(["adapter", "verify", "facts-lora"]));
    assert!(verified.contains(&root) && verified.contains("2 steps over 4 examples"), "{verified}");

    // The log records the chunks each step read: chunks of the Datanet.
    let log_path = data.join("adapters/facts-lora/training_log.jsonl");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let step: serde_json::Value = serde_json::from_str(log.lines().nth(1).unwrap()).unwrap();
    let chunk = step["chunks"][0].as_str().unwrap();
    let found = run_ok(tributary(data).args(["search", "--datanet", "facts", "--json", "--k", "40", "Varne Corran"]));
    assert!(found.contains(chunk), "step 1 read chunk {chunk}, which the Datanet should hold");

    // The trained adapter answers.
    let answer = run_ok(tributary(data).args([
        "ask",
        "--datanet",
        "facts",
        "--adapter",
        "facts-lora",
        "How long is the River Varne from its source to the sea?",
    ]));
    assert!(!answer.trim().is_empty());

    // One changed character in the log and it no longer verifies.
    std::fs::write(&log_path, log.replacen("\"loss\":", "\"loss\":9", 1)).unwrap();
    let err = fails(tributary(data).args(["adapter", "verify", "facts-lora"]));
    assert!(err.contains("does not verify"), "{err}");
    // A second adapter of the same name is refused.
    let err = fails(&mut train("facts-lora", &pairs_path));
    assert!(err.contains("already registered"), "{err}");
}
