//! Receipts, earnings, flags and epochs through the CLI, after the demo's cited answer.

use std::process::Stdio;

use crate::{ALICE, run_ok, tributary};

/// The asker the demo funds.
const CAROL: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn amount(value: &serde_json::Value) -> u128 {
    value.as_str().unwrap_or_else(|| panic!("{value} is not a decimal string")).parse().unwrap()
}

#[test]
fn answers_pay_their_sources_and_epochs_settle_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = run_ok(tributary(&data).arg("demo"));
    assert!(demo.contains("closed") || demo.contains("epoch 1"), "{demo}");

    // ask --json carries the receipt: fee and credits that sum to it, charged to the payer the
    // demo funded.
    let question = "Which river is the longest tributary in North America?";
    let before = json(&run_ok(tributary(&data).args(["account", "balance", CAROL, "--json"])));
    let answer =
        json(&run_ok(tributary(&data).args(["ask", "--json", "--payer", CAROL, "--datanet", "rivers-demo", question])));
    let id = answer["receipt_id"].as_str().expect("receipt_id").to_string();
    let fee = amount(&answer["fee"]);
    assert_eq!(fee, 1_000_000_000_000_000, "the default price of one Datanet");
    let credits = answer["credits"].as_array().unwrap();
    assert_eq!(credits.iter().map(|c| amount(&c["amount"])).sum::<u128>(), fee);
    assert!(credits.iter().any(|c| c["role"] == "contributor" && c["account"] == ALICE), "{answer}");
    assert_eq!(
        (answer["payment"]["paid_by"].as_str(), answer["payment"]["payer"].as_str()),
        (Some("payer"), Some(CAROL))
    );
    let after = json(&run_ok(tributary(&data).args(["account", "balance", CAROL, "--json"])));
    assert_eq!(amount(&before["balance"]) - amount(&after["balance"]), fee, "the payer paid the fee");
    // Without a payer the answer is free and credits no one.
    let free = json(&run_ok(tributary(&data).args(["ask", "--json", "--datanet", "rivers-demo", question])));
    assert_eq!((amount(&free["fee"]), free["payment"]["paid_by"].as_str()), (0, Some("unpaid")));
    assert!(free["credits"].as_array().unwrap().is_empty());
    // A payer without the money is refused before anything is generated.
    let out = tributary(&data).args(["ask", "--payer", ALICE, "--datanet", "rivers-demo", question]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("available"), "{stderr}");

    let receipt = json(&run_ok(tributary(&data).args(["receipt", &id, "--json"])));
    assert_eq!(amount(&receipt["fee"]), fee);
    assert_eq!(receipt["credits"], answer["credits"]);
    assert_eq!(receipt["question"], question);
    assert_eq!(receipt["weighting"], "citation");

    // A question the Datanet cannot answer is free and credits no one.
    let none = json(&run_ok(tributary(&data).args([
        "ask",
        "--json",
        "--payer",
        CAROL,
        "--datanet",
        "rivers-demo",
        "How do I bake sourdough bread?",
    ])));
    assert_eq!(amount(&none["fee"]), 0);
    assert!(none["credits"].as_array().unwrap().is_empty());

    // Ablation weighting: influence measured by leaving each cited passage out.
    run_ok(tributary(&data).args(["pricing", "datanet", "rivers-demo", "--weighting", "ablation"]));
    let ablated = json(&run_ok(tributary(&data).args([
        "ask",
        "--json",
        "--payer",
        CAROL,
        "--private-question",
        "--datanet",
        "rivers-demo",
        question,
    ])));
    let influence = ablated["influence"].as_array().unwrap_or_else(|| panic!("no influence: {ablated}"));
    assert_eq!(influence.len(), ablated["citations"].as_array().unwrap().len());
    let receipt = json(&run_ok(tributary(&data).args(["receipt", ablated["receipt_id"].as_str().unwrap(), "--json"])));
    assert!(receipt["question"].is_null(), "--private-question keeps only the hash");
    assert_eq!(receipt["question_hash"].as_str().unwrap().len(), 64);
    let drops: Vec<f64> = influence.iter().map(|i| i["log_likelihood_drop"].as_f64().unwrap()).collect();
    let expected = if drops.iter().any(|d| *d > 0.0) { "ablation" } else { "citation" };
    assert_eq!(receipt["weighting"], expected, "{receipt}");

    let earnings = json(&run_ok(tributary(&data).args(["earnings", ALICE, "--json"])));
    let total = amount(&earnings["total"]);
    assert!(total > 0);
    assert!(earnings["entries"].as_array().unwrap().iter().any(|e| e["receipt_id"] == id.as_str()));
    run_ok(tributary(&data).arg("verify"));

    // kill -9 in the middle of settling (a failpoint aborts just before the commit), then again.
    let copy = dir.path().join("copy");
    copy_dir(&data, &copy);
    let status = tributary(&data)
        .args(["settle", "--json"])
        .env("TRIBUTARY_FAILPOINT", "settle-before-commit")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the failpoint aborts");
    let settled = json(&run_ok(tributary(&data).args(["settle", "--json"])));
    assert_eq!(settled["closed_now"], true);
    assert_eq!(settled["epoch"]["number"], 2, "the demo closed epoch 1; the aborted run closed nothing");
    let uninterrupted = json(&run_ok(tributary(&copy).args(["settle", "--json"])));
    assert_eq!(settled["epoch"]["root"], uninterrupted["epoch"]["root"], "same root as a run that never crashed");
    let again = json(&run_ok(tributary(&data).args(["settle", "--json"])));
    assert_eq!((again["closed_now"].clone(), again["epoch"]["number"].clone()), (false.into(), 2.into()));

    let proof = json(&run_ok(tributary(&data).args(["proof", ALICE, "--json"])));
    assert_eq!(amount(&proof["cumulative"]), total);
    let root = tributary_attribution::merkle::from_hex(proof["root"].as_str().unwrap()).unwrap();
    let path: Vec<_> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| tributary_attribution::merkle::from_hex(p.as_str().unwrap()).unwrap())
        .collect();
    let alice = ALICE.parse().unwrap();
    assert!(tributary_attribution::merkle::verify(
        &root,
        &tributary_attribution::merkle::leaf_hash(proof["index"].as_u64().unwrap(), &alice, total),
        &path
    ));

    // Flag the document the answer came from: it leaves retrieval.
    let cited_doc = answer["citations"][0]["document"].as_str().unwrap().to_string();
    let flag = json(&run_ok(tributary(&data).args([
        "flag",
        "--json",
        "--datanet",
        "rivers-demo",
        "--document",
        &cited_doc,
        "--reason",
        "license withdrawn",
    ])));
    assert_eq!(flag["already_flagged"], false);
    assert_eq!(flag["slashed_credits"], 0, "everything was settled");
    let found = json(&run_ok(tributary(&data).args(["search", "--json", "--datanet", "rivers-demo", question])));
    assert!(found.as_array().unwrap().iter().all(|p| p["document"] != cited_doc.as_str()), "{found}");
    let flags = json(&run_ok(tributary(&data).args(["flags", "--json", "--datanet", "rivers-demo"])));
    assert_eq!(flags[0]["active"], true);
    run_ok(tributary(&data).args(["unflag", &flags[0]["id"].to_string(), "--reason", "resolved"]));
    let found = json(&run_ok(tributary(&data).args(["search", "--json", "--datanet", "rivers-demo", question])));
    assert!(found.as_array().unwrap().iter().any(|p| p["document"] == cited_doc.as_str()));

    // Whoever holds a copy of the data can check the operator: a receipt altered after the
    // fact (here, the model it names) makes `verify` fail.
    tamper(&data, &id);
    let out = tributary(&data).arg("verify").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains(&id) && stdout.contains("hash"), "{stdout}");

    // Bad input is refused with a clear error.
    let out = tributary(&data).args(["receipt", "nope"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = tributary(&data).args(["pricing", "set", "--shares", "1,2,3,4"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("10000"));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn tamper(data: &std::path::Path, receipt: &str) {
    let url = format!("sqlite:{}", data.join("tributary.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let done =
            sqlx::query("UPDATE receipts SET body = REPLACE(body, '\"model\":\"', '\"model\":\"other ') WHERE id = $1")
                .bind(receipt)
                .execute(&pool)
                .await
                .unwrap();
        assert_eq!(done.rows_affected(), 1);
        pool.close().await;
    });
}
