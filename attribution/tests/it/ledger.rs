//! Receipts, credits, flags and epochs against a real catalog.

use std::collections::BTreeMap;

use tributary_attribution::{
    Amount, CitedChunk, FlagTarget, Ledger, NewReceipt, Payer, Payment, Policy, Quote, RetrievedChunk, Role, Shares,
    Weighting, merkle,
};
use tributary_indexer::{Address, ChunkRecord};

use crate::{BOTH, Fixture, alice, bob, fixture, owner, treasury};

async fn chunk(fx: &Fixture, needle: &str) -> ChunkRecord {
    let catalog = fx.store.catalog();
    let ids = catalog.chunk_ids(fx.datanet.id).await.unwrap();
    let records = catalog.chunk_records(fx.datanet.id, &ids).await.unwrap();
    records.into_iter().find(|r| r.text.contains(needle)).unwrap_or_else(|| panic!("no chunk with {needle:?}"))
}

async fn ledger(fx: &Fixture) -> Ledger {
    let ledger = Ledger::new(fx.store.catalog());
    let policy = Policy { protocol_account: treasury(), slash_sink: treasury(), ..Policy::default() };
    ledger.set_policy(&policy).await.unwrap();
    // The askers' payer: funded well past any fee these tests charge.
    ledger.grant(&payer(), u128::MAX / 4, Some("tests")).await.unwrap();
    ledger
}

fn payer() -> Address {
    crate::address("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65")
}

/// An answer citing `chunks` (record, sentences citing it), all of them retrieved.
fn answer(fx: &Fixture, chunks: &[(&ChunkRecord, usize)], fee: Amount, claimed: Address) -> NewReceipt {
    let cited = chunks
        .iter()
        .map(|(record, sentences)| CitedChunk {
            datanet: fx.datanet.name.clone(),
            datanet_id: fx.datanet.id,
            // What the caller claims is ignored: the catalog decides.
            datanet_owner: claimed,
            chunk_id: record.chunk_id.to_hex(),
            contributor: claimed,
            sentences: (0..*sentences).map(|i| format!("Sentence {i}.")).collect(),
            score: 0.5,
            weight: *sentences as u64,
        })
        .collect();
    NewReceipt {
        question: "Which river is the longest?".into(),
        keep_question: true,
        datanets: vec![fx.datanet.name.clone()],
        model: "test-model".into(),
        adapters: Vec::new(),
        answer: "The Missouri.".into(),
        retrieved: chunks
            .iter()
            .map(|(r, _)| RetrievedChunk {
                datanet: fx.datanet.name.clone(),
                chunk_id: r.chunk_id.to_hex(),
                score: 0.5,
            })
            .collect(),
        cited,
        trained: Vec::new(),
        quote: Quote { fee, weighting: Weighting::Citation, adapter_owners: Vec::new() },
        payment: Payment::Charge { payer: Payer::Address(payer()), hold: None },
    }
}

#[tokio::test]
async fn receipts_form_a_chain_and_credits_conserve_the_fee() {
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        let longest = chunk(&fx, "longest").await;
        let ohio = chunk(&fx, "Ohio River").await;
        let mut ids = Vec::new();
        for (i, fee) in [1_000_000u128, 7, 123_456_789_012_345_678_901_234].into_iter().enumerate() {
            let mut new = answer(&fx, &[(&longest, 3), (&ohio, 1)], fee, bob());
            new.keep_question = i != 1;
            let receipt = ledger.record(new).await.unwrap();
            let sum: Amount = receipt.credits.iter().map(|c| c.amount).sum();
            assert_eq!(sum, fee, "{backend:?}: credits sum to the fee");
            assert_eq!(receipt.question.is_some(), i != 1);
            assert_eq!(receipt.question_hash.len(), 64);
            // The catalog's contributors and owner are paid, not the claimed ones.
            assert!(receipt.credits.iter().all(|c| c.account != bob().to_checksummed()), "{backend:?}");
            let stored = ledger.receipt(&receipt.id).await.unwrap();
            assert_eq!(stored, receipt);
            ids.push(receipt.id);
        }
        let first = ledger.receipt(&ids[0]).await.unwrap();
        assert_eq!(first.prev_hash, tributary_attribution::GENESIS);
        let second = ledger.receipt(&ids[1]).await.unwrap();
        assert_eq!(second.prev_hash, first.hash);
        let by = |role: Role| first.credits.iter().filter(|c| c.role == role).map(|c| c.amount).sum::<Amount>();
        // Default shares, no adapter owner: 70% to contributors (3:1), 20% owner, 10% protocol.
        assert_eq!(by(Role::Contributor), 700_000);
        assert_eq!(by(Role::DatanetOwner), 200_000);
        assert_eq!(by(Role::Protocol), 100_000);
        let alice_total = ledger.earnings(&alice()).await.unwrap();
        assert_eq!(alice_total.entries.len(), 6, "{backend:?}");
        // Pages of 4: the same entries in order, the same totals on every page.
        let (first_page, next) = ledger.earnings_page(&alice(), None, Some(4)).await.unwrap();
        let (last_page, end) = ledger.earnings_page(&alice(), next, Some(4)).await.unwrap();
        assert_eq!((first_page.entries.len(), last_page.entries.len(), end), (4, 2, None), "{backend:?}");
        assert_eq!(next, Some(first_page.entries[3].id));
        let paged: Vec<_> = first_page.entries.iter().chain(&last_page.entries).cloned().collect();
        assert_eq!(paged, alice_total.entries);
        // A cursor past the end shows nothing and changes no total; the largest limit neither
        // overflows the page arithmetic nor shows more than the account's own entries.
        let (past, none) = ledger.earnings_page(&alice(), Some(i64::MAX), Some(4)).await.unwrap();
        let (all, end) = ledger.earnings_page(&alice(), Some(i64::MIN), Some(usize::MAX)).await.unwrap();
        assert_eq!((past.entries.len(), none, end), (0, None, None));
        assert_eq!(all.entries, alice_total.entries);
        for page in [first_page, last_page, past, all] {
            assert_eq!((page.total, page.by_datanet.clone()), (alice_total.total, alice_total.by_datanet.clone()));
        }
        assert_eq!(ledger.earnings(&owner()).await.unwrap().by_datanet[0].datanet, "rivers");

        let report = ledger.verify().await.unwrap();
        assert_eq!((report.receipts, report.ok()), (3, true), "{backend:?}: {:?}", report.problems);

        // Tampering with a receipt's body, or with a credit, is detected.
        let pool = fx.store.catalog().pool();
        sqlx::query("UPDATE ledger_entries SET amount = '1' WHERE receipt_id = $1 AND role = 'protocol'")
            .bind(&ids[2])
            .execute(pool)
            .await
            .unwrap();
        let report = ledger.verify().await.unwrap();
        assert_eq!(report.problems.len(), 1, "{backend:?}: {:?}", report.problems);
        assert!(report.problems[0].contains(&ids[2]) && report.problems[0].contains("entries"));
        sqlx::query("UPDATE receipts SET body = REPLACE(body, 'The Missouri.', 'The Ohio.') WHERE id = $1")
            .bind(&ids[1])
            .execute(pool)
            .await
            .unwrap();
        let report = ledger.verify().await.unwrap();
        assert!(report.problems.iter().any(|p| p.contains(&ids[1]) && p.contains("hash")), "{:?}", report.problems);
    }
}

#[tokio::test]
async fn a_duplicate_chunk_pays_its_first_contributor_and_bad_citations_are_refused() {
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        // bob uploaded this paragraph too, after alice.
        let joins = chunk(&fx, "joins the Mississippi").await;
        assert_eq!(joins.contributor, alice());
        let receipt = ledger.record(answer(&fx, &[(&joins, 1)], 1_000, bob())).await.unwrap();
        let contributors: Vec<_> = receipt.credits.iter().filter(|c| c.role == Role::Contributor).collect();
        assert_eq!(contributors.len(), 1);
        assert_eq!(contributors[0].account, alice().to_checksummed(), "{backend:?}");
        assert_eq!(ledger.earnings(&bob()).await.unwrap().total, 0);

        // Cited but not retrieved.
        let mut new = answer(&fx, &[(&joins, 1)], 1_000, bob());
        new.retrieved.clear();
        assert!(ledger.record(new).await.unwrap_err().to_string().contains("not retrieved"));
        // A chunk the Datanet does not hold.
        let mut new = answer(&fx, &[(&joins, 1)], 1_000, bob());
        let fake = "ab".repeat(32);
        new.cited[0].chunk_id = fake.clone();
        new.retrieved[0].chunk_id = fake;
        assert!(ledger.record(new).await.unwrap_err().to_string().contains("not found"));
        // Neither left anything behind.
        assert_eq!(ledger.verify().await.unwrap().receipts, 1, "{backend:?}");
        // Bad policy.
        let bad = Policy { shares: Shares { protocol_bps: 1, ..Shares::default() }, ..Policy::default() };
        assert!(ledger.set_policy(&bad).await.is_err());
    }
}

#[tokio::test]
async fn epochs_settle_once_and_proofs_verify() {
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        assert_eq!(ledger.settle().await.unwrap().epoch, None, "nothing to settle yet");
        let longest = chunk(&fx, "longest").await;
        let ohio = chunk(&fx, "Ohio River").await;
        let mut fees: Amount = 0;
        for fee in [1_000u128, 2_000, 3_001] {
            ledger.record(answer(&fx, &[(&longest, 1), (&ohio, 1)], fee, alice())).await.unwrap();
            fees += fee;
        }
        let first = ledger.settle().await.unwrap();
        assert!(first.closed_now);
        let epoch1 = first.epoch.clone().unwrap();
        assert_eq!((epoch1.number, epoch1.total), (1, fees), "{backend:?}");
        assert_eq!(epoch1.receipts_head, ledger.verify().await.unwrap().head);
        // Idempotent: nothing new, nothing closes.
        let again = ledger.settle().await.unwrap();
        assert!(!again.closed_now);
        assert_eq!(again.epoch, first.epoch);

        for account in [alice(), owner(), treasury()] {
            let proof = ledger.proof(&account, None).await.unwrap();
            let root = merkle::from_hex(&epoch1.root).unwrap();
            let path: Vec<_> = proof.proof.iter().map(|p| merkle::from_hex(p).unwrap()).collect();
            let leaf = merkle::leaf_hash(proof.index, &account, proof.cumulative);
            assert!(merkle::verify(&root, &leaf, &path), "{backend:?}");
            assert_eq!(proof.cumulative as i128, ledger.earnings(&account).await.unwrap().settled);
        }
        assert!(ledger.proof(&bob(), None).await.is_err(), "bob earned nothing");

        ledger.record(answer(&fx, &[(&ohio, 1)], 500, alice())).await.unwrap();
        let epoch2 = ledger.settle().await.unwrap().epoch.unwrap();
        assert_eq!((epoch2.number, epoch2.total), (2, fees + 500), "cumulative totals");
        // Every entry landed in exactly one epoch, and the epochs' sums match the entries.
        let mut by_epoch: BTreeMap<i64, i128> = BTreeMap::new();
        for account in [alice(), owner(), treasury()] {
            let earnings = ledger.earnings(&account).await.unwrap();
            assert_eq!(earnings.unsettled, 0);
            for e in &earnings.entries {
                *by_epoch.entry(e.epoch.expect("settled")).or_default() += e.amount;
            }
            let p1 = ledger.proof(&account, Some(1)).await.unwrap().cumulative;
            let p2 = ledger.proof(&account, Some(2)).await.unwrap().cumulative;
            assert!(p2 >= p1);
            assert_eq!(p2 as i128, earnings.total);
        }
        assert_eq!(by_epoch[&1] as u128, fees);
        assert_eq!(by_epoch[&2], 500);
        assert_eq!(ledger.epochs().await.unwrap().len(), 2);
        let report = ledger.verify().await.unwrap();
        assert!(report.ok() && report.epochs == 2, "{backend:?}: {:?}", report.problems);

        // An operator who pays someone more than the entries say is caught.
        sqlx::query("UPDATE epoch_accounts SET cumulative = '999999' WHERE epoch = 1 AND account = $1")
            .bind(alice().to_lower_hex())
            .execute(fx.store.catalog().pool())
            .await
            .unwrap();
        let report = ledger.verify().await.unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].starts_with("epoch 1:"), "{:?}", report.problems);
    }
}

#[tokio::test]
async fn flags_slash_unsettled_credits_and_leave_retrieval() {
    use tributary_retriever::{Mode, Query, Retriever, RetrieverConfig};
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        let longest = chunk(&fx, "longest").await;
        let ohio = chunk(&fx, "Ohio River").await;
        ledger.record(answer(&fx, &[(&longest, 1), (&ohio, 1)], 10_000, alice())).await.unwrap();
        ledger.settle().await.unwrap();
        ledger.record(answer(&fx, &[(&longest, 1), (&ohio, 1)], 10_000, alice())).await.unwrap();
        let before = ledger.earnings(&alice()).await.unwrap();
        assert_eq!((before.total, before.settled), (14_000, 7_000));

        let retriever = Retriever::new(fx.store.clone(), crate::embedder(), RetrieverConfig::default());
        let datanets = [fx.datanet.clone()];
        let search = |text: &'static str| {
            let retriever = &retriever;
            let datanets = &datanets;
            async move {
                let query = Query { text, datanets, contributors: None, k: 5, mode: Mode::Bm25 };
                retriever.search(&query).await.unwrap().into_iter().map(|p| p.chunk_id).collect::<Vec<_>>()
            }
        };
        assert!(search("longest river").await.contains(&longest.chunk_id.to_hex()));

        let target = FlagTarget::Chunk(longest.chunk_id.to_hex());
        let outcome = ledger.flag(fx.datanet.id, &target, "copied from a paywalled atlas", "admin").await.unwrap();
        // Only the unsettled credit of that chunk: half of the second answer's 7,000.
        assert_eq!((outcome.slashed_credits, outcome.slashed), (1, 3_500), "{backend:?}");
        let after = ledger.earnings(&alice()).await.unwrap();
        assert_eq!((after.total, after.slashed, after.settled), (10_500, 3_500, 7_000));
        assert!(!search("longest river").await.contains(&longest.chunk_id.to_hex()), "flagged chunk left retrieval");
        assert!(search("Ohio Kentucky").await.contains(&ohio.chunk_id.to_hex()));

        // Flagging again changes nothing; un-flagging restores retrieval, not the slash.
        let again = ledger.flag(fx.datanet.id, &target, "again", "admin").await.unwrap();
        assert!(again.already_flagged);
        let lifted = ledger.unflag(outcome.flag.id, "appeal upheld", "admin").await.unwrap();
        assert!(!lifted.active);
        assert!(search("longest river").await.contains(&longest.chunk_id.to_hex()));
        assert_eq!(ledger.earnings(&alice()).await.unwrap().total, 10_500);
        // A new flag on the same chunk finds nothing left to slash.
        let third = ledger.flag(fx.datanet.id, &target, "re-flagged", "admin").await.unwrap();
        assert_eq!((third.already_flagged, third.slashed_credits), (false, 0));

        // A contributor flag hides all of bob's chunks but not the duplicate alice owns.
        let columbia = chunk(&fx, "Columbia").await;
        ledger.flag(fx.datanet.id, &FlagTarget::Contributor(bob()), "spam", "owner").await.unwrap();
        assert!(!search("Columbia Pacific Northwest").await.contains(&columbia.chunk_id.to_hex()));
        let joins = chunk(&fx, "joins").await.chunk_id.to_hex();
        assert!(search("joins the Mississippi").await.contains(&joins));
        // Unknown targets are refused; the slash sink got what was slashed.
        let err = ledger.flag(fx.datanet.id, &FlagTarget::Document(9_999), "x", "admin").await.unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
        assert!(ledger.flag(fx.datanet.id, &target, " ", "admin").await.is_err());
        let sink = ledger.earnings(&treasury()).await.unwrap();
        assert_eq!(sink.entries.iter().filter(|e| e.role == Role::Sink).map(|e| e.amount).sum::<i128>(), 3_500);

        // Settling after the slash: totals stay monotone and the ledger balances.
        let epoch = ledger.settle().await.unwrap().epoch.unwrap();
        assert_eq!(epoch.total, 20_000, "{backend:?}: slashes move value, never create or destroy it");
        assert_eq!(ledger.proof(&alice(), None).await.unwrap().cumulative, 10_500);
        assert_eq!(ledger.flags(fx.datanet.id).await.unwrap().len(), 3);
        let report = ledger.verify().await.unwrap();
        assert!(report.ok(), "{backend:?}: {:?}", report.problems);
    }
}

/// Issue #24, defect 14: an answer retrieved before a flag and recorded after it is slashed
/// when it is recorded (it used to keep its credit: the flag had slashed everything before it,
/// and retrieval had already happened).
#[tokio::test]
async fn an_answer_recorded_after_a_flag_is_slashed_at_once() {
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        let longest = chunk(&fx, "longest").await;
        let ohio = chunk(&fx, "Ohio River").await;
        // Both answers were retrieved (and generated) before the flags below.
        let first = answer(&fx, &[(&longest, 1), (&ohio, 1)], 10_000, alice());
        let second = answer(&fx, &[(&longest, 1), (&ohio, 1)], 10_000, alice());
        let chunk_flag =
            ledger.flag(fx.datanet.id, &FlagTarget::Chunk(longest.chunk_id.to_hex()), "copied", "admin").await.unwrap();
        assert_eq!(chunk_flag.slashed_credits, 0, "nothing recorded yet");
        ledger.record(first).await.unwrap();
        let alice_now = ledger.earnings(&alice()).await.unwrap();
        assert_eq!((alice_now.total, alice_now.slashed), (3_500, 3_500), "{backend:?}: the flagged chunk's half");
        // A document flag, then the second answer (its two chunks: one flagged twice over).
        let doc_flag =
            ledger.flag(fx.datanet.id, &FlagTarget::Document(ohio.document_id), "wrong source", "admin").await.unwrap();
        assert_eq!(doc_flag.slashed_credits, 1, "the first answer's ohio credit");
        ledger.record(second).await.unwrap();
        let alice_now = ledger.earnings(&alice()).await.unwrap();
        assert_eq!((alice_now.total, alice_now.slashed), (0, 14_000), "{backend:?}");
        // A contributor flag: bob's passage, retrieved before it, recorded after it.
        let columbia = chunk(&fx, "Columbia").await;
        let third = answer(&fx, &[(&columbia, 1)], 10_000, alice());
        ledger.flag(fx.datanet.id, &FlagTarget::Contributor(bob()), "spam", "owner").await.unwrap();
        ledger.record(third).await.unwrap();
        let bob_now = ledger.earnings(&bob()).await.unwrap();
        assert_eq!((bob_now.total, bob_now.slashed), (0, 7_000), "{backend:?}");
        let sink = ledger.earnings(&treasury()).await.unwrap();
        assert_eq!(sink.entries.iter().filter(|e| e.role == Role::Sink).map(|e| e.amount).sum::<i128>(), 21_000);
        let report = ledger.verify().await.unwrap();
        assert!(report.ok(), "{backend:?}: {:?}", report.problems);
        let epoch = ledger.settle().await.unwrap().epoch.unwrap();
        assert_eq!(epoch.total, 30_000, "{backend:?}: slashes move value, never create or destroy it");
    }
}

/// Two API replicas on one PostgreSQL, each with its own connections (as two processes have),
/// record answers and settle at the same moments: one unforked receipt chain, one epoch, every
/// fee credited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_ledger_without_forking() {
    let fx = fixture(crate::Backend::Postgres).await;
    let first = ledger(&fx).await;
    let url = fx.database_url.clone().expect("a PostgreSQL fixture");
    let second_catalog = tributary_indexer::Catalog::connect(&url).await.unwrap();
    let second = Ledger::new(&second_catalog);
    let (longest, ohio) = (chunk(&fx, "longest").await, chunk(&fx, "Ohio River").await);
    let per_replica = 15;
    let mut tasks = Vec::new();
    for (replica, ledger) in [first.clone(), second.clone()].into_iter().enumerate() {
        for i in 0..per_replica {
            let new = answer(&fx, &[(&longest, 1), (&ohio, 1 + (i + replica) % 2)], 1_000 + i as u128, alice());
            let ledger = ledger.clone();
            tasks.push(tokio::spawn(async move { ledger.record(new).await }));
        }
    }
    let mut fees = 0u128;
    for task in tasks {
        fees += task.await.unwrap().unwrap().fee;
    }
    let (a, b) = tokio::join!(first.settle(), second.settle());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(u8::from(a.closed_now) + u8::from(b.closed_now), 1, "settled once: {a:?} {b:?}");
    assert_eq!(a.epoch, b.epoch, "both name the one epoch");
    let epoch = a.epoch.unwrap();
    assert_eq!((epoch.number, epoch.total), (1, fees));
    let report = second.verify().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.receipts, report.epochs), (2 * per_replica, 1), "an unforked chain holds every receipt");
    assert_eq!(report.head, epoch.receipts_head);
    let mut settled = 0i128;
    for account in [alice(), owner(), treasury()] {
        settled += first.earnings(&account).await.unwrap().settled;
    }
    assert_eq!(settled, fees as i128, "every fee credited once");
}
