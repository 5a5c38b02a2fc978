//! Model Factory from the command line: pairs in, a trained and evaluated adapter out, tried
//! beside its base, published only when it beats the base (or forced), whose training log
//! verifies (and fails once changed), and which then answers questions.

use std::path::Path;
use std::process::Command;

use crate::{ALICE, BOB, run_ok, tributary};

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
        ]);
        cmd
    };

    // A pair naming a chunk the Datanet does not have is refused, and nothing is registered.
    let bad = data.join("bad.jsonl");
    let bogus = serde_json::json!({"question": "q?", "answer": "a", "chunks": ["ab".repeat(32)]});
    std::fs::write(&bad, format!("{}\n{}\n", lines[0], bogus)).unwrap();
    let err = fails(train("bad", &bad).args(["--lr", "1e-3"]));
    assert!(err.contains("pair 2") && err.contains("has no chunk"), "{err}");
    assert!(!run_ok(tributary(data).args(["adapter", "list"])).contains("bad"));
    assert!(!data.join("adapters/bad").exists());

    // Without pairs: questions written by the base model from the Datanet's chunks, each
    // answered by its chunk's own sentence, and the pair naming that chunk.
    let out = run_ok(tributary(data).args([
        "adapter",
        "train",
        "written",
        "--datanet",
        "facts",
        "--synthesize",
        "4",
        "--rank",
        "2",
        "--targets",
        "v_proj",
        "--max-steps",
        "1",
        "--holdout",
        "0",
    ]));
    assert!(out.contains("of the pairs were written from the Datanet's chunks"), "{out}");
    let written = std::fs::read_to_string(data.join("training/written/synthesized-4-0.jsonl")).unwrap();
    let documents: String = docs.iter().map(|d| std::fs::read_to_string(d).unwrap()).collect::<Vec<_>>().join(" ");
    let documents = documents.split_whitespace().collect::<Vec<_>>().join(" ");
    let written: Vec<serde_json::Value> = written.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!written.is_empty());
    for pair in &written {
        assert!(pair["question"].as_str().unwrap().ends_with('?'), "{pair}");
        assert!(documents.contains(pair["answer"].as_str().unwrap()), "the answer is a document's sentence: {pair}");
        assert_eq!(pair["chunks"].as_array().unwrap().len(), 1, "{pair}");
    }
    let shown: serde_json::Value =
        serde_json::from_str(&run_ok(tributary(data).args(["adapter", "show", "written", "--json"]))).unwrap();
    assert_eq!(shown["training"]["synthesized_pairs"].as_u64(), Some(written.len() as u64), "{shown}");
    assert_eq!(shown["training"]["retrieved_chunks"], 0, "the pairs name their chunks");

    let out = run_ok(train("facts-lora", &pairs_path).args(["--lr", "1e-3"]));
    assert!(out.contains("trained facts-lora on 4 pairs of facts: 2 steps"), "{out}");
    assert!(out.contains("held out 1 pairs"), "{out}");
    let show = || -> serde_json::Value {
        serde_json::from_str(&run_ok(tributary(data).args(["adapter", "show", "facts-lora", "--json"]))).unwrap()
    };
    let shown = show();
    let training = &shown["training"];
    assert!(shown["adapter"].is_null(), "trained, not yet published: {shown}");
    assert!(training["published_at"].is_null());
    assert_eq!(training["lora"]["rank"], 4);
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

    // Unpublished, questions cannot name it; `adapter try` runs it beside the base.
    let question = "How long is the River Varne from its source to the sea?";
    let ask = || {
        let mut cmd = tributary(data);
        cmd.args(["ask", "--datanet", "facts", "--adapter", "facts-lora", question]);
        cmd
    };
    fails(&mut ask());
    let trial: serde_json::Value = serde_json::from_str(&run_ok(tributary(data).args([
        "adapter",
        "try",
        "facts-lora",
        "--datanet",
        "facts",
        "--json",
        question,
    ])))
    .unwrap();
    assert!(!trial["base"].as_str().unwrap().trim().is_empty() && !trial["adapter"].as_str().unwrap().is_empty());
    assert!(trial["passages"][0][1].as_str().unwrap().contains("Varne"), "{trial}");

    // Training-data attribution: the answer's most influential training examples, from the
    // examples listed beside the adapter (their hashes are the log's).
    let found: serde_json::Value = serde_json::from_str(&run_ok(tributary(data).args([
        "adapter",
        "influence",
        "facts-lora",
        "--datanet",
        "facts",
        "--top",
        "2",
        "--json",
        question,
    ])))
    .unwrap();
    let influential = found["examples"].as_array().unwrap();
    assert_eq!(influential.len(), 2, "{found}");
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(data.join("adapters/facts-lora/training_log.jsonl")).unwrap().lines().next().unwrap(),
    )
    .unwrap();
    for e in influential {
        assert!(e["score"].as_f64().unwrap().abs() <= 1.0 + 1e-9);
        let hash = e["example"]["hash"].as_str().unwrap();
        assert!(header["examples"].as_array().unwrap().iter().any(|h| h == hash), "{hash} is not a training example");
    }
    assert!(influential[0]["score"].as_f64() >= influential[1]["score"].as_f64());
    let check: serde_json::Value = serde_json::from_str(&run_ok(tributary(data).args([
        "adapter",
        "influence",
        "facts-lora",
        "--datanet",
        "facts",
        "--check",
        "--limit",
        "2",
        "--json",
    ])))
    .unwrap();
    assert_eq!(check["questions"], 2);
    assert!(shown["training"]["influence_seconds"].as_f64().unwrap() > 0.0);

    // Published (forced where two steps did not beat the base), it answers questions.
    let beats = {
        let e = &training["evaluation"];
        e["adapter_loss"].as_f64() < e["base_loss"].as_f64()
            && e["adapter_answer_f1"].as_f64() >= e["base_answer_f1"].as_f64()
    };
    let mut publish = tributary(data);
    publish.args(["adapter", "publish", "facts-lora"]);
    if !beats {
        publish.arg("--force");
    }
    let published = run_ok(&mut publish);
    assert!(published.contains("published facts-lora"), "{published}");
    let registered: std::collections::BTreeSet<String> = log
        .lines()
        .skip(1)
        .flat_map(|l| {
            let step: serde_json::Value = serde_json::from_str(l).unwrap();
            step["chunks"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect::<Vec<_>>()
        })
        .collect();
    assert!(published.contains(&format!("{} chunks of facts", registered.len())), "{published}");
    assert_eq!(show()["adapter"]["rank"], 4);
    assert!(show()["training"]["published_at"].as_u64().is_some());
    assert!(!run_ok(&mut ask()).trim().is_empty());

    // A paid answer of the published adapter credits, beside the passages it cites, the
    // chunks of its most influential training examples under the training share (10% by
    // default): chunks its log trained on, paid to their first contributor (ALICE), and the
    // credits still sum to the fee the payer paid; the ledger verifies.
    const TREASURY: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
    const CAROL: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
    run_ok(tributary(data).args(["pricing", "set", "--protocol-account", TREASURY]));
    run_ok(tributary(data).args(["account", "fund", CAROL, "1000000000000000000"]));
    let paid: serde_json::Value = serde_json::from_str(&run_ok(ask().args(["--json", "--payer", CAROL]))).unwrap();
    let amount = |v: &serde_json::Value| v.as_str().unwrap().parse::<u128>().unwrap();
    let fee = amount(&paid["fee"]);
    let credits = paid["credits"].as_array().unwrap();
    assert_eq!(credits.iter().map(|c| amount(&c["amount"])).sum::<u128>(), fee, "{paid}");
    let trained = paid["trained"].as_array().unwrap();
    assert!(!trained.is_empty(), "{paid}");
    for t in trained {
        assert_eq!(t["adapter"], "facts-lora");
        assert_eq!(t["training_root"].as_str(), Some(root.as_str()));
        assert_eq!(t["contributor"], ALICE);
        assert!(registered.contains(t["chunk_id"].as_str().unwrap()), "{t} was not trained on");
        assert!(t["weight"].as_u64().unwrap() > 0);
    }
    let to_training: u128 =
        credits.iter().filter(|c| c["role"] == "training_contributor").map(|c| amount(&c["amount"])).sum();
    assert!(to_training <= fee / 10 && to_training + trained.len() as u128 >= fee / 10, "{to_training} of {fee}");
    assert!(credits.iter().filter(|c| c["role"] == "training_contributor").all(|c| c["account"] == ALICE));
    run_ok(tributary(data).arg("verify"));
    let err = fails(tributary(data).args(["adapter", "publish", "facts-lora"]));
    assert!(err.contains("already published"), "{err}");

    // An adapter trained into the ground (a learning rate of 0.5) is worse than its base: not
    // published unless forced.
    let mut wreck = train("wrecked", &pairs_path);
    wreck.args(["--lr", "0.5", "--seed", "1"]);
    let out = run_ok(&mut wreck);
    assert!(out.contains("NOT better than the base"), "{out}");
    let err = fails(tributary(data).args(["adapter", "publish", "wrecked"]));
    assert!(err.contains("does not beat its base"), "{err}");
    assert!(!run_ok(tributary(data).args(["adapter", "list"])).contains("wrecked"));
    assert!(run_ok(tributary(data).args(["adapter", "publish", "wrecked", "--force"])).contains("forced"));

    // Replaced under its name by another adapter (removed, then another added as
    // facts-lora), its answers no longer credit the first one's training data, nor pay the
    // first one's owner (its pricing went with it).
    run_ok(tributary(data).args(["pricing", "adapter", "facts-lora", "--fee", "0", "--owner", BOB]));
    run_ok(tributary(data).args(["adapter", "remove", "facts-lora"]));
    run_ok(tributary(data).args(["adapter", "add", "facts-lora"]).arg(data.join("adapters/wrecked")));
    let replaced: serde_json::Value = serde_json::from_str(&run_ok(ask().args(["--json", "--payer", CAROL]))).unwrap();
    assert_eq!(replaced["trained"], serde_json::json!([]), "{replaced}");
    let roles: Vec<&str> =
        replaced["credits"].as_array().unwrap().iter().map(|c| c["role"].as_str().unwrap()).collect();
    assert!(!roles.contains(&"training_contributor") && !roles.contains(&"adapter_owner"), "{replaced}");

    // One changed character in the log and it no longer verifies.
    std::fs::write(&log_path, log.replacen("\"loss\":", "\"loss\":9", 1)).unwrap();
    let err = fails(tributary(data).args(["adapter", "verify", "facts-lora"]));
    assert!(err.contains("does not verify"), "{err}");
    // A second adapter of the same name is refused.
    let err = fails(&mut train("facts-lora", &pairs_path));
    assert!(err.contains("already exists"), "{err}");
}

/// `kill -9` during training, then the same command again: the run resumes from its last
/// checkpoint and ends with the factors an uninterrupted run ends with, to the bit.
#[test]
fn a_killed_training_run_resumes_to_the_same_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    run_ok(tributary(data).args(["datanet", "create", "facts"]));
    run_ok(
        tributary(data)
            .args(["ingest", "--datanet", "facts", "--contributor", ALICE])
            .arg(facts().join("documents/varne-river.md")),
    );
    let pairs: Vec<String> = std::fs::read_to_string(facts().join("questions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|q| q["document"] == "varne-river.md")
        .take(3)
        .map(|q| serde_json::json!({"question": q["question"], "answer": q["answer"]}).to_string())
        .collect();
    let pairs_path = data.join("pairs.jsonl");
    std::fs::write(&pairs_path, pairs.join("\n")).unwrap();
    let train = |name: &str| {
        let mut cmd = tributary(data);
        cmd.args(["adapter", "train", name, "--datanet", "facts", "--pairs"]).arg(&pairs_path).args([
            "--rank",
            "2",
            "--targets",
            "v_proj",
            "--batch",
            "1",
            "--epochs",
            "2",
            "--holdout",
            "0",
            "--lr",
            "1e-3",
            "--checkpoint-every",
            "1",
        ]);
        cmd
    };
    let straight = run_ok(&mut train("straight"));
    assert!(straight.contains("trained straight on 3 pairs of facts: 6 steps"), "{straight}");

    let pointer = data.join("training/killed/checkpoint.json");
    let mut child =
        train("killed").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let step = std::fs::read(&pointer)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|p| p["step"].as_u64());
        if step.is_some_and(|s| s >= 2) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(std::time::Instant::now() < deadline, "no checkpoint after 300 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!data.join("adapters/killed/training.json").exists(), "killed before it finished");
    let resumed = run_ok(&mut train("killed"));
    assert!(resumed.contains("resumed from the checkpoint of step"), "{resumed}");
    assert!(resumed.contains("6 steps"), "{resumed}");
    let weights = |name: &str| std::fs::read(data.join(format!("adapters/{name}/adapter_model.safetensors"))).unwrap();
    assert_eq!(weights("killed"), weights("straight"), "the resumed run's factors differ");
    run_ok(tributary(data).args(["adapter", "verify", "killed"]));

    // Killed after the last checkpoint, before training.json: the rerun trains no step and
    // writes the adapter again, with the last step's loss from the log.
    std::fs::remove_file(data.join("adapters/killed/training.json")).unwrap();
    let again = run_ok(&mut train("killed"));
    assert!(again.contains("resumed from the checkpoint of step 6") && !again.contains("NaN"), "{again}");
    let shown: serde_json::Value =
        serde_json::from_str(&run_ok(tributary(data).args(["adapter", "show", "killed", "--json"]))).unwrap();
    assert!(shown["training"]["final_loss"].as_f64().is_some_and(|l| l > 0.0), "{shown}");
    assert_eq!(weights("killed"), weights("straight"));
}

/// A published adapter's training root committed in the registry contract on anvil: once,
/// and `adapter verify` then checks the log against the chain's root too.
#[tokio::test]
async fn a_training_root_is_committed_on_chain_once() {
    use tributary_contracts::chain::{ANVIL_KEYS, Anvil};
    let anvil = Anvil::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let on_chain = |cmd: &mut Command| {
        cmd.env("TRIBUTARY_RPC_URL", anvil.url()).env("TRIBUTARY_SIGNER_KEY", ANVIL_KEYS[0]);
    };
    run_ok(tributary(data).args(["datanet", "create", "facts"]));
    run_ok(
        tributary(data)
            .args(["ingest", "--datanet", "facts", "--contributor", ALICE])
            .arg(facts().join("documents/varne-river.md")),
    );
    let pair = serde_json::json!({"question": "How long is the River Varne?", "answer": "212 kilometres"});
    let pairs_path = data.join("pairs.jsonl");
    std::fs::write(&pairs_path, pair.to_string()).unwrap();
    run_ok(
        tributary(data).args(["adapter", "train", "varne", "--datanet", "facts", "--pairs"]).arg(&pairs_path).args([
            "--rank",
            "2",
            "--targets",
            "v_proj",
            "--max-steps",
            "1",
            "--holdout",
            "0",
        ]),
    );
    let commit = || {
        let mut cmd = tributary(data);
        on_chain(cmd.args(["adapter", "commit", "varne"]));
        cmd
    };
    // Not published yet; then published (no held-out pairs: forced), but no contracts yet.
    assert!(fails(&mut commit()).contains("not published"));
    run_ok(tributary(data).args(["adapter", "publish", "varne", "--force"]));
    fails(&mut commit());
    let mut deploy = tributary(data);
    on_chain(deploy.args(["chain", "deploy", "--json"]));
    run_ok(&mut deploy);
    let out = run_ok(&mut commit());
    let root =
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(data.join("adapters/varne/training.json")).unwrap())
            .unwrap()["log_root"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(out.contains(&root), "{out}");
    assert!(fails(&mut commit()).contains("already on chain"));
    let mut verify = tributary(data);
    on_chain(verify.args(["adapter", "verify", "varne"]));
    let verified = run_ok(&mut verify);
    assert!(verified.contains("the registry contract holds the same root"), "{verified}");
}
