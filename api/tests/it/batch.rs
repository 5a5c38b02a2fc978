//! The ledger's group commit (`app::batch`): concurrent answers share hold and record
//! transactions, each keeps its own outcome, and the books still balance.

use std::sync::Arc;

use tributary::app::batch::LedgerBatcher;
use tributary::app::{App, Settings};
use tributary_attribution::{Error, NewReceipt, PaidBy, Payer, Payment, Policy, Quote, Weighting};
use tributary_indexer::Address;

const TREASURY: &str = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc";

fn receipt(payer: Payer, hold: String, fee: u128) -> NewReceipt {
    NewReceipt {
        question: "q".into(),
        keep_question: true,
        datanets: Vec::new(),
        model: "m".into(),
        adapters: Vec::new(),
        answer: "a".into(),
        retrieved: Vec::new(),
        cited: Vec::new(),
        trained: Vec::new(),
        quote: Quote { fee, weighting: Weighting::Citation, adapter_owners: Vec::new() },
        payment: Payment::Charge { payer, hold: Some(hold) },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_answers_share_commits_and_keep_their_own_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings { data_dir: dir.path().to_path_buf(), ..Default::default() };
    let app = Arc::new(App::open(&settings).await.unwrap());
    let ledger = app.ledger();
    let treasury: Address = TREASURY.parse().unwrap();
    ledger.set_policy(&Policy { protocol_account: treasury, slash_sink: treasury, ..Policy::default() }).await.unwrap();
    let rich: Address = "0x976EA74026E726554dB657fA54763abd0C3a0aa9".parse().unwrap();
    let poor: Address = "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955".parse().unwrap();
    ledger.grant(&rich, 1_000, None).await.unwrap();
    ledger.grant(&poor, 20, None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..45 {
        let app = app.clone();
        let payer = Payer::Address(if i % 9 == 0 { poor } else { rich });
        tasks.push(tokio::spawn(async move {
            let hold = app.batcher().hold(payer, 10).await?;
            app.batcher().record(receipt(payer, hold.hold.id.clone(), 10)).await
        }));
    }
    let (mut paid, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(receipt) => {
                assert_eq!(receipt.payment.map(|p| p.paid_by), Some(PaidBy::Payer));
                paid += 1;
            }
            Err(Error::InsufficientBalance { needed: 10, .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    // The rich payer's 40 answers, and two of the poor one's five.
    assert_eq!((paid, refused), (42, 3));
    let rich_balance = ledger.balance(&Payer::Address(rich)).await.unwrap();
    assert_eq!((rich_balance.balance, rich_balance.spent, rich_balance.held), (600, 400, 0));
    assert_eq!(ledger.balance(&Payer::Address(poor)).await.unwrap().balance, 0);
    let report = ledger.verify().await.unwrap();
    assert!(report.ok() && report.receipts == 42, "{report:?}");
}

/// Holds are leases (issue #24, crash injection): renewed while their answer is in progress;
/// abandoned (or placed by a process that was killed, which renews nothing), they lapse within
/// the lease and their money is the payer's again. Before, a hold kept it for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_are_renewed_while_in_progress_and_lapse_when_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings { data_dir: dir.path().to_path_buf(), ..Default::default() };
    let app = App::open(&settings).await.unwrap();
    let ledger = app.ledger();
    let treasury: Address = TREASURY.parse().unwrap();
    ledger.set_policy(&Policy { protocol_account: treasury, slash_sink: treasury, ..Policy::default() }).await.unwrap();
    let payer = Payer::Address("0x976EA74026E726554dB657fA54763abd0C3a0aa9".parse().unwrap());
    ledger.grant(&"0x976EA74026E726554dB657fA54763abd0C3a0aa9".parse().unwrap(), 100, None).await.unwrap();
    let lease = std::time::Duration::from_millis(900);
    let batcher = LedgerBatcher::with_lease(ledger.clone(), lease);
    let in_progress = batcher.hold(payer, 30).await.unwrap();
    let abandoned = batcher.hold(payer, 50).await.unwrap();
    assert_eq!(ledger.balance(&payer).await.unwrap().held, 80);
    let lapsed = abandoned.hold.id.clone();
    drop(abandoned);
    tokio::time::sleep(lease * 2).await;
    // Two leases later: the answer in progress still holds its 30, the abandoned 50 are back.
    assert_eq!(ledger.balance(&payer).await.unwrap().held, 30);
    let rest = batcher.hold(payer, 70).await.unwrap();
    assert!(matches!(batcher.hold(payer, 1).await, Err(Error::InsufficientBalance { available: 0, .. })));
    // A lapsed hold is not a claim on money: its answer, recorded late, cannot take what other
    // answers now hold (the payer would pay 150 out of 100), and nothing is charged or credited.
    let late = batcher.record(receipt(payer, lapsed, 50)).await;
    assert!(matches!(late, Err(Error::InsufficientBalance { needed: 50, .. })), "{late:?}");
    // Charged, a renewed hold is spent once: 30 from the balance, and 70 still held.
    batcher.record(receipt(payer, in_progress.hold.id.clone(), 30)).await.unwrap();
    drop(in_progress);
    let balance = ledger.balance(&payer).await.unwrap();
    assert_eq!((balance.balance, balance.spent, balance.held), (70, 30, 70));
    drop(rest);
}
