//! Settlement on a real anvil through the CLI: deploy, post the demo's epoch at settle (after a
//! failed attempt with the RPC down, one refused by a paused contract, and a crash between
//! sending the posting and its receipt), claim, push the rest in a batch with a keystore signer,
//! and balances that match the ledger to the wei.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use tributary_contracts::chain::{ANVIL_KEYS, Anvil, Chain, write_keystore};

use crate::{ALICE, BOB, run_ok, tributary};

/// The demo's protocol account (anvil's fourth development account).
const TREASURY: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
/// The demo's asker.
const CAROL: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn epochs_post_on_chain_once_and_claims_pay_the_ledger_amount() {
    let anvil = Anvil::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let on_chain = |cmd: &mut std::process::Command| {
        cmd.env("TRIBUTARY_RPC_URL", anvil.url()).env("TRIBUTARY_SIGNER_KEY", ANVIL_KEYS[0]);
    };
    run_ok(tributary(&data).arg("demo"));

    let mut deploy = tributary(&data);
    on_chain(deploy.args(["chain", "deploy", "--json"]));
    let deployment = json(&run_ok(&mut deploy));
    let payouts: Address = deployment["payouts"].as_str().unwrap().parse().unwrap();
    let token: Address = deployment["token"].as_str().unwrap().parse().unwrap();

    // Nothing deposited into this contract yet: settle closes nothing new and refuses to post
    // the demo's epoch, which credits more than the contract holds, saying why.
    let mut early = tributary(&data);
    on_chain(early.args(["settle"]));
    let out = early.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("only 0 was deposited"), "{stderr}");
    // A deposit for carol from the signer's tokens, recorded by the sync that follows it; a
    // second sync records nothing again.
    let mut deposit = tributary(&data);
    on_chain(deposit.args(["chain", "deposit", CAROL, "1000000000000000000", "--json"]));
    let deposited = json(&run_ok(&mut deposit));
    assert_eq!(deposited["synced"]["recorded"], 1, "{deposited}");
    let mut sync = tributary(&data);
    on_chain(sync.args(["chain", "sync", "--json"]));
    let synced = json(&run_ok(&mut sync));
    assert_eq!((synced["recorded"].clone(), synced["already_recorded"].clone()), (0.into(), 0.into()), "{synced}");
    let balance = json(&run_ok(tributary(&data).args(["account", "balance", CAROL, "--json"])));
    let deposited_total: u128 = balance["deposited"].as_str().unwrap().parse().unwrap();
    assert!(deposited_total >= 1_000_000_000_000_000_000, "{balance}");
    let mut resync = tributary(&data);
    on_chain(resync.args(["chain", "sync"]));
    run_ok(&mut resync);
    let again = json(&run_ok(tributary(&data).args(["account", "balance", CAROL, "--json"])));
    assert_eq!(again["deposited"], balance["deposited"], "each deposit is recorded once");

    // The registry: the Datanet's contribution root, and a chunk proven against it on chain.
    let mut register = tributary(&data);
    on_chain(register.args(["chain", "register", "--json", "--datanet", "rivers-demo"]));
    assert_eq!(json(&run_ok(&mut register))["version"], 1);
    let found = json(&run_ok(tributary(&data).args(["search", "--json", "--datanet", "rivers-demo", "Missouri"])));
    let (chunk, contributor) = (found[0]["chunk_id"].as_str().unwrap(), found[0]["contributor"].as_str().unwrap());
    let mut prove = tributary(&data);
    on_chain(prove.args(["chain", "prove", "--json", "--datanet", "rivers-demo", "--chunk", chunk]));
    let proven = json(&run_ok(&mut prove));
    assert_eq!((proven["verified"].clone(), proven["contributor"].as_str()), (true.into(), Some(contributor)));

    // The RPC is down: the epoch stays closed in the ledger and pending on chain.
    let mut down = tributary(&data);
    down.args(["settle", "--json"])
        .env("TRIBUTARY_RPC_URL", "http://127.0.0.1:9")
        .env("TRIBUTARY_SIGNER_KEY", ANVIL_KEYS[0]);
    let out = down.output().unwrap();
    assert!(!out.status.success(), "posting to a dead RPC fails");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pending on chain"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut status = tributary(&data);
    on_chain(status.args(["chain", "status", "--json"]));
    let state = json(&run_ok(&mut status));
    assert_eq!(
        (state["chain_latest_epoch"].clone(), state["pending_on_chain"].clone()),
        (0.into(), serde_json::json!([1]))
    );

    // A reverting posting (the contract is paused) is retried with backoff, then left pending.
    let admin = Chain::connect(anvil.url(), ANVIL_KEYS[0]).unwrap();
    admin.payouts(payouts).pause().send().await.unwrap().get_receipt().await.unwrap();
    let mut paused = tributary(&data);
    on_chain(paused.args(["settle"]));
    let out = paused.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("after 3 tries") && stderr.contains("EnforcedPause"), "{stderr}");
    admin.payouts(payouts).unpause().send().await.unwrap().get_receipt().await.unwrap();

    // A crash right after the posting left (the chain not mining: it waits in the mempool).
    let rpc = admin.provider();
    rpc.raw_request::<_, serde_json::Value>("evm_setAutomine".into(), (false,)).await.unwrap();
    let mut crash = tributary(&data);
    on_chain(crash.args(["settle"]).env("TRIBUTARY_FAILPOINT", "post-after-send"));
    let out = crash.output().unwrap();
    assert!(!out.status.success(), "the failpoint aborts");
    let signer = admin.signer();
    let mined = rpc.get_transaction_count(signer).latest().await.unwrap();
    assert_eq!(rpc.get_transaction_count(signer).pending().await.unwrap(), mined + 1, "the posting is in flight");
    // The next start waits for it instead of posting again; it lands meanwhile.
    let mut resumed = tributary(&data);
    on_chain(resumed.args(["settle", "--json"]));
    let resumed = tokio::task::spawn_blocking(move || run_ok(&mut resumed));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    rpc.raw_request::<_, serde_json::Value>("evm_setAutomine".into(), (true,)).await.unwrap();
    rpc.raw_request::<_, serde_json::Value>("evm_mine".into(), ()).await.unwrap();
    assert_eq!(json(&resumed.await.unwrap())["posted_on_chain"], serde_json::json!([]));
    // Posted once: one transaction, one EpochPosted, and the nonce moves on from there.
    assert_eq!(rpc.get_transaction_count(signer).latest().await.unwrap(), mined + 1);
    let filter = alloy::rpc::types::Filter::new().address(payouts).from_block(0u64);
    let posted = rpc.get_logs(&filter).await.unwrap();
    let posted = posted
        .iter()
        .filter(|log| {
            log.topic0()
                == Some(&<tributary_contracts::chain::AttributionPayouts::EpochPosted as alloy::sol_types::SolEvent>::SIGNATURE_HASH)
        })
        .count();
    assert_eq!(posted, 1);
    let mut again = tributary(&data);
    on_chain(again.args(["settle", "--json"]));
    let settled = json(&run_ok(&mut again));
    assert_eq!(settled["posted_on_chain"], serde_json::json!([]));
    let epoch_accounts = settled["epoch"]["accounts"].as_u64().unwrap();

    // alice's claim pays her cumulative total; a second claim is refused.
    let proof = json(&run_ok(tributary(&data).args(["proof", ALICE, "--json"])));
    let cumulative: u128 = proof["cumulative"].as_str().unwrap().parse().unwrap();
    let mut claim = tributary(&data);
    on_chain(claim.args(["claim", ALICE, "--json"]));
    let paid = json(&run_ok(&mut claim));
    assert_eq!(paid["paid"], cumulative.to_string());
    let mut twice = tributary(&data);
    on_chain(twice.args(["claim", ALICE]));
    let out = twice.output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nothing to claim"));

    // Over HTTP: the protocol account's claim, submitted by the server's signer, once.
    let key = crate::serve::api_key(&data, "admin");
    let mut serve = tributary(&data);
    on_chain(&mut serve);
    let server = crate::serve::Serving::spawn(serve, &[]);
    let treasury_proof = json(&run_ok(tributary(&data).args(["proof", TREASURY, "--json"])));
    let client = reqwest::Client::new();
    let claim = || {
        client
            .post(format!("{}/v1/claims", server.url))
            .bearer_auth(&key)
            .json(&serde_json::json!({"address": TREASURY}))
    };
    let claimable = |who: &str| client.get(format!("{}/v1/claims/{who}", server.url)).send();
    let before: serde_json::Value = claimable(TREASURY).await.unwrap().json().await.unwrap();
    assert_eq!((&before["contracts"], &before["epoch"]), (&true.into(), &1.into()), "{before}");
    assert_eq!((&before["claimable"], &before["paid"]), (&treasury_proof["cumulative"], &"0".into()), "{before}");
    let paid: serde_json::Value = claim().send().await.unwrap().json().await.unwrap();
    assert_eq!(paid["paid"], treasury_proof["cumulative"], "{paid}");
    let after: serde_json::Value = claimable(TREASURY).await.unwrap().json().await.unwrap();
    assert_eq!((&after["claimable"], &after["paid"]), (&"0".into(), &treasury_proof["cumulative"]), "{after}");
    let alice: serde_json::Value = claimable(ALICE).await.unwrap().json().await.unwrap();
    assert_eq!(alice["claimable"], "0", "claimed from the command line before: {alice}");
    let refused = claim().send().await.unwrap();
    assert_eq!(refused.status(), 409);
    let refused: serde_json::Value = refused.json().await.unwrap();
    assert!(refused["detail"].as_str().unwrap().contains("nothing to claim"), "{refused}");

    // The chain commands over HTTP: status, a new registry version, a chunk proven, the ledger
    // verified.
    let get = |path: &str| client.get(format!("{}{path}", server.url)).bearer_auth(&key).send();
    let status: serde_json::Value = get("/v1/chain").await.unwrap().json().await.unwrap();
    assert_eq!(
        (status["chain_latest_epoch"].clone(), status["pending_on_chain"].clone()),
        (1.into(), serde_json::json!([]))
    );
    // Issue #24, defect 13: a commit spends the operator's gas, and an owner may ask for one: a
    // root already on chain is refused (409) with no transaction; new data makes a new version.
    let register = || client.post(format!("{}/v1/datanets/rivers-demo/registry", server.url)).bearer_auth(&key).send();
    let unchanged = register().await.unwrap();
    assert_eq!(unchanged.status(), 409);
    let unchanged: serde_json::Value = unchanged.json().await.unwrap();
    assert!(unchanged["detail"].as_str().unwrap().contains("unchanged since version 1"), "{unchanged}");
    let upload = serde_json::json!({
        "documents": [{"name": "yukon.txt", "text": "The Yukon River flows from British Columbia to the Bering Sea."}],
        "contributor": BOB,
    });
    let uploaded =
        client.post(format!("{}/v1/datanets/rivers-demo/documents", server.url)).bearer_auth(&key).json(&upload).send();
    assert_eq!(uploaded.await.unwrap().status(), 200);
    let registered: serde_json::Value = register().await.unwrap().json().await.unwrap();
    assert_eq!(registered["version"], 2, "{registered}");
    let proven: serde_json::Value =
        get(&format!("/v1/datanets/rivers-demo/registry/chunks/{chunk}")).await.unwrap().json().await.unwrap();
    assert_eq!((proven["verified"].clone(), proven["version"].clone()), (true.into(), 2.into()), "{proven}");
    let verified: serde_json::Value = get("/v1/admin/verify").await.unwrap().json().await.unwrap();
    assert_eq!(verified["problems"], serde_json::json!([]), "{verified}");

    // A ledger written before the zero address was refused as a payee (a Datanet without an
    // owner): its leaf sits in the next epoch beside bob's. `chain push` skips and reports it,
    // and pays the others.
    legacy_credits(&data, &[("0x0000000000000000000000000000000000000000", 7), (BOB, 11)]).await;
    let mut settle = tributary(&data);
    on_chain(settle.args(["settle", "--json"]));
    assert_eq!(json(&run_ok(&mut settle))["posted_on_chain"], serde_json::json!([2]));
    let mut push = tributary(&data);
    on_chain(push.args(["chain", "push", "--json", "--batch-size", "1"]));
    let pushed = json(&run_ok(&mut push));
    let skipped = pushed["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{pushed}");
    assert_eq!((skipped[0]["account"].as_str(), skipped[0]["cumulative"].as_str()), (Some(ZERO), Some("7")));
    assert_eq!((pushed["recipients"].clone(), pushed["total"].clone()), (1.into(), "11".into()), "{pushed}");
    let bob: Address = BOB.parse().unwrap();
    assert_eq!(admin.token(token).balanceOf(bob).call().await.unwrap(), U256::from(11));

    // Everyone else is paid by one batch, signed from an encrypted keystore; a second push pays
    // nobody. Over HTTP, a push with nothing owed pays nothing either.
    let keys = tempfile::tempdir().unwrap();
    write_keystore(keys.path(), "settler.json", ANVIL_KEYS[0], "hunter2 hunter2").unwrap();
    std::fs::write(keys.path().join("password"), "hunter2 hunter2\n").unwrap();
    let with_keystore = |cmd: &mut std::process::Command| {
        cmd.env("TRIBUTARY_RPC_URL", anvil.url())
            .env("TRIBUTARY_SIGNER_KEYSTORE", keys.path().join("settler.json"))
            .env("TRIBUTARY_SIGNER_PASSWORD_FILE", keys.path().join("password"));
    };
    let mut push = tributary(&data);
    with_keystore(push.args(["chain", "push", "--json", "--batch-size", "2"]));
    let pushed = json(&run_ok(&mut push));
    assert_eq!(pushed["recipients"].as_u64().unwrap(), epoch_accounts - 2, "all but alice and the treasury: {pushed}");
    assert_eq!(pushed["skipped"].as_array().unwrap().len(), 1, "the zero address, again: {pushed}");
    let mut wrong_password = tributary(&data);
    with_keystore(wrong_password.args(["chain", "push"]).env("TRIBUTARY_SIGNER_PASSWORD", "nope"));
    let out = wrong_password.output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("keystore"));
    // Reads never unlock the signer (issue #24, defect 6: the status decrypted the keystore,
    // scrypt, per request): with the same wrong password, the status still answers.
    let mut status = tributary(&data);
    with_keystore(status.args(["chain", "status", "--json"]).env("TRIBUTARY_SIGNER_PASSWORD", "nope"));
    let status = json(&run_ok(&mut status));
    assert_eq!(status["chain_latest_epoch"], 2, "{status}");
    let pushed: serde_json::Value = client
        .post(format!("{}/v1/admin/chain/push", server.url))
        .bearer_auth(&key)
        .json(&serde_json::json!({"batch_size": 100}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((pushed["recipients"].clone(), pushed["total"].clone()), (0.into(), "0".into()), "{pushed}");

    // Every account's token balance is its ledger total, to the wei (alice also signs: the test
    // token's supply went to her, less what she deposited for carol).
    let reader = Chain::connect(anvil.url(), ANVIL_KEYS[3]).unwrap();
    let alice: Address = ALICE.parse().unwrap();
    let supply = U256::from(10u128.pow(24)) - U256::from(10u128.pow(18));
    assert_eq!(reader.token(token).balanceOf(alice).call().await.unwrap(), supply + U256::from(cumulative));
    let treasury: Address = TREASURY.parse().unwrap();
    let treasury_cumulative: u128 = treasury_proof["cumulative"].as_str().unwrap().parse().unwrap();
    assert_eq!(reader.token(token).balanceOf(treasury).call().await.unwrap(), U256::from(treasury_cumulative));
    let earnings = json(&run_ok(tributary(&data).args(["earnings", "--json", ALICE])));
    assert_eq!(earnings["settled"], cumulative.to_string());
    assert_eq!(reader.payouts(payouts).latestEpoch().call().await.unwrap(), 2);
    // What the contract paid out is within the epoch's total, which is within the deposits.
    let contract = reader.payouts(payouts);
    let (paid, total) = (contract.totalPaid().call().await.unwrap(), contract.epochTotal().call().await.unwrap());
    assert!(paid <= total && U256::from(total) <= contract.totalDeposited().call().await.unwrap());
}

const ZERO: &str = "0x0000000000000000000000000000000000000000";

/// Credits written straight into the ledger, as a ledger from before the zero address was
/// refused holds them (attached to an existing receipt: the CHECK wants one).
async fn legacy_credits(data: &std::path::Path, credits: &[(&str, u128)]) {
    let url = format!("sqlite:{}", data.join("tributary.db").display());
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let receipt: String =
            sqlx::Row::get(&sqlx::query("SELECT id FROM receipts LIMIT 1").fetch_one(&pool).await.unwrap(), "id");
        for (account, amount) in credits {
            sqlx::query(
                "INSERT INTO ledger_entries (kind, receipt_id, account, role, amount, created_at) \
                 VALUES ('credit', $1, $2, 'datanet_owner', $3, 0)",
            )
            .bind(&receipt)
            .bind(account.to_lowercase())
            .bind(amount.to_string())
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
}
