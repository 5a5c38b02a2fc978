//! Paid answers (issue #20): every credit is money a payer paid, exactly once. The three ways
//! to mint credits found against the unpaid ledger, each now a test that mints nothing; holds,
//! deposits, grants and sponsor budgets; and `verify` catching books that do not balance.

use std::time::Duration;

use tributary_attribution::{
    AdapterPricing, Amount, CitedChunk, DatanetPricing, Deposit, Error, FlagTarget, Ledger, NewReceipt, PaidBy, Payer,
    Payment, Policy, Quote, RetrievedChunk, Role, Shares, TrainedChunk, Weighting, split_fee,
};
use tributary_indexer::{Address, ChunkRecord};

use crate::{BOTH, Fixture, address, alice, bob, fixture, owner, treasury};

const TOKEN: Amount = 1_000_000_000_000_000_000;

fn carol() -> Address {
    address("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65")
}

async fn chunks(fx: &Fixture) -> Vec<ChunkRecord> {
    let catalog = fx.store.catalog();
    let ids = catalog.chunk_ids(fx.datanet.id).await.unwrap();
    catalog.chunk_records(fx.datanet.id, &ids).await.unwrap()
}

async fn ledger(fx: &Fixture) -> Ledger {
    let ledger = Ledger::new(fx.store.catalog());
    let policy = Policy { protocol_account: treasury(), slash_sink: treasury(), ..Policy::default() };
    ledger.set_policy(&policy).await.unwrap();
    ledger
}

/// An answer over the fixture's Datanet citing `cited` (weight 1 each), charged as `payment`.
fn answer(fx: &Fixture, cited: &[&ChunkRecord], quote: Quote, payment: Payment) -> NewReceipt {
    NewReceipt {
        question: "q".into(),
        keep_question: true,
        datanets: vec![fx.datanet.name.clone()],
        model: "m".into(),
        adapters: Vec::new(),
        answer: "a".into(),
        retrieved: cited
            .iter()
            .map(|c| RetrievedChunk { datanet: fx.datanet.name.clone(), chunk_id: c.chunk_id.to_hex(), score: 1.0 })
            .collect(),
        cited: cited
            .iter()
            .map(|c| CitedChunk {
                datanet: fx.datanet.name.clone(),
                datanet_id: fx.datanet.id,
                datanet_owner: Address::ZERO,
                chunk_id: c.chunk_id.to_hex(),
                contributor: Address::ZERO,
                sentences: vec!["s".into()],
                score: 1.0,
                weight: 1,
            })
            .collect(),
        trained: Vec::new(),
        quote,
        payment,
    }
}

fn charge(payer: Address, hold: Option<String>) -> Payment {
    Payment::Charge { payer: Payer::Address(payer), hold }
}

/// What `who` holds in total: its payer balance plus everything the ledger credited it.
async fn wealth(ledger: &Ledger, who: Address) -> i128 {
    let balance = ledger.balance(&Payer::Address(who)).await.unwrap().balance as i128;
    balance + ledger.earnings(&who).await.unwrap().total
}

#[tokio::test]
async fn an_owner_cannot_mint_with_its_own_price() {
    // Scenario 1: an owner prices its Datanet at 1e30 and asks an anonymous question citing its
    // own chunk, expecting ~90% of the fee as credits.
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        let huge: Amount = 1_000_000_000_000_000_000_000_000_000_000;
        let pricing = DatanetPricing { fee: Some(huge), weighting: None };
        let refused = ledger.set_datanet_pricing(fx.datanet.id, &pricing).await;
        assert!(matches!(refused, Err(Error::InvalidArgument(_))), "{backend:?}: over the cap");
        // Within the cap, the anonymous answer is unpaid: it credits no one.
        let cap = Policy::default().max_datanet_fee;
        ledger.set_datanet_pricing(fx.datanet.id, &DatanetPricing { fee: Some(cap), weighting: None }).await.unwrap();
        let quote = ledger.quote(std::slice::from_ref(&fx.datanet), &[]).await.unwrap();
        assert_eq!(quote.fee, cap);
        let chunks = chunks(&fx).await;
        let receipt = ledger.record(answer(&fx, &[&chunks[0]], quote.clone(), Payment::Unpaid)).await.unwrap();
        assert_eq!((receipt.fee, receipt.credits.len()), (0, 0), "{backend:?}");
        assert_eq!(receipt.payment.as_ref().map(|p| p.paid_by), Some(PaidBy::Unpaid));
        assert_eq!(ledger.earnings(&owner()).await.unwrap().total, 0);
        // Asking as itself, it must pay first: nothing to hold.
        let refused = ledger.hold(&Payer::Address(owner()), quote.fee, Duration::from_secs(60)).await;
        assert!(matches!(refused, Err(Error::InsufficientBalance { available: 0, .. })), "{backend:?}");
        // A cap lowered later caps the price already set.
        let policy = Policy { max_datanet_fee: 5, default_fee: 5, ..ledger.policy().await.unwrap() };
        ledger.set_policy(&policy).await.unwrap();
        assert_eq!(ledger.quote(std::slice::from_ref(&fx.datanet), &[]).await.unwrap().fee, 5);
        // So are adapter surcharges, and their owners are never the zero address.
        let over = AdapterPricing { fee: TOKEN * 2, owner: Some(bob()) };
        assert!(ledger.set_adapter_pricing("a", &over).await.is_err());
        let zero = AdapterPricing { fee: 1, owner: Some(Address::ZERO) };
        assert!(ledger.set_adapter_pricing("a", &zero).await.is_err());
        assert!(ledger.verify().await.unwrap().ok());
    }
}

#[tokio::test]
async fn repeated_names_are_quoted_once_and_lists_are_bounded() {
    // Scenario 2: one Datanet named 100,000 times, one adapter named 100,000 times.
    let fx = fixture(crate::Backend::Sqlite).await;
    let ledger = ledger(&fx).await;
    let one = ledger.quote(std::slice::from_ref(&fx.datanet), &["a".into()]).await.unwrap();
    let many_datanets = vec![fx.datanet.clone(); 100_000];
    let many_adapters = vec!["a".to_string(); 100_000];
    ledger.set_adapter_pricing("a", &AdapterPricing { fee: 7, owner: Some(bob()) }).await.unwrap();
    let quote = ledger.quote(&many_datanets, &many_adapters).await.unwrap();
    assert_eq!(quote.fee, one.fee + 7);
    assert_eq!(quote.adapter_owners, vec![bob().to_checksummed()]);
    // Past the bounds: refused.
    let adapters: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    assert!(matches!(ledger.quote(std::slice::from_ref(&fx.datanet), &adapters).await, Err(Error::InvalidArgument(_))));
    let mut datanets = Vec::new();
    for i in 0..17 {
        let mut d = fx.datanet.clone();
        d.id += 1000 + i;
        datanets.push(d);
    }
    assert!(matches!(ledger.quote(&datanets, &[]).await, Err(Error::InvalidArgument(_))));
}

#[tokio::test]
async fn self_dealing_does_not_pay() {
    // Scenario 3, and item 6: a contributor funds itself and asks about its own chunks. With
    // a protocol share above zero it ends with less than it started with.
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        let chunks = chunks(&fx).await;
        let own: Vec<&ChunkRecord> = chunks.iter().filter(|c| c.contributor == alice()).collect();
        ledger.grant(&alice(), 10 * TOKEN, Some("alice-start")).await.unwrap();
        let start = wealth(&ledger, alice()).await;
        let quote = ledger.quote(std::slice::from_ref(&fx.datanet), &[]).await.unwrap();
        for _ in 0..5 {
            let hold = ledger.hold(&Payer::Address(alice()), quote.fee, Duration::from_secs(60)).await.unwrap();
            let new = answer(&fx, &own, quote.clone(), charge(alice(), Some(hold.id)));
            let receipt = ledger.record(new).await.unwrap();
            assert_eq!(receipt.fee, quote.fee);
            assert_eq!(receipt.payment.as_ref().and_then(|p| p.payer.clone()), Some(alice().to_checksummed()));
        }
        let end = wealth(&ledger, alice()).await;
        assert!(end < start, "{backend:?}: self-dealing paid: {start} -> {end}");
        let protocol_cut = (5 * quote.fee * Shares::default().protocol_bps as Amount / 10_000) as i128;
        assert!(start - end >= protocol_cut, "{backend:?}: at least the protocol's share is lost");
        // Without a balance it cannot even start.
        let broke = ledger.hold(&Payer::Address(bob()), quote.fee, Duration::from_secs(60)).await;
        assert!(matches!(broke, Err(Error::InsufficientBalance { .. })));
        let report = ledger.verify().await.unwrap();
        assert!(report.ok(), "{backend:?}: {:?}", report.problems);
    }
}

#[tokio::test]
async fn holds_reserve_money_and_charges_never_overdraw() {
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        let chunks = chunks(&fx).await;
        let carol_pays = Payer::Address(carol());
        ledger.grant(&carol(), 100, None).await.unwrap();
        let quote = |fee| Quote { fee, weighting: Weighting::Citation, adapter_owners: Vec::new() };
        let first = ledger.hold(&carol_pays, 60, Duration::from_secs(60)).await.unwrap();
        // Only 40 is left to hold.
        let refused = ledger.hold(&carol_pays, 50, Duration::from_secs(60)).await;
        assert!(matches!(refused, Err(Error::InsufficientBalance { needed: 50, available: 40, .. })), "{refused:?}");
        let balance = ledger.balance(&carol_pays).await.unwrap();
        assert_eq!((balance.balance, balance.held, balance.available()), (100, 60, 40));
        // A released hold frees its money; releasing twice is harmless.
        ledger.release(&first).await.unwrap();
        ledger.release(&first).await.unwrap();
        let second = ledger.hold(&carol_pays, 90, Duration::from_secs(60)).await.unwrap();
        // A charge without a hold of its own may not eat into another answer's hold: nothing is
        // written.
        let receipts_before = ledger.verify().await.unwrap().receipts;
        let failed = ledger.record(answer(&fx, &[&chunks[0]], quote(20), charge(carol(), None))).await;
        assert!(matches!(failed, Err(Error::InsufficientBalance { .. })), "{backend:?}: {failed:?}");
        assert_eq!(ledger.verify().await.unwrap().receipts, receipts_before, "nothing recorded");
        // Its own hold covers it; the charge spends the hold.
        let receipt =
            ledger.record(answer(&fx, &[&chunks[0]], quote(90), charge(carol(), Some(second.id)))).await.unwrap();
        assert_eq!(receipt.credits.iter().map(|c| c.amount).sum::<Amount>(), 90);
        let balance = ledger.balance(&carol_pays).await.unwrap();
        assert_eq!((balance.balance, balance.held, balance.spent, balance.granted), (10, 0, 90, 100));
        // A hold left by a crashed process expires and frees its money.
        ledger.hold(&carol_pays, 10, Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(ledger.balance(&carol_pays).await.unwrap().held, 0);
        ledger.hold(&carol_pays, 10, Duration::from_secs(60)).await.unwrap();
        // An unset protocol account refuses every hold: nobody could take the protocol share.
        let pool = fx.store.catalog().pool();
        sqlx::query("DELETE FROM ledger_settings WHERE scope = 'policy'").execute(pool).await.unwrap();
        let refused = ledger.hold(&carol_pays, 1, Duration::from_secs(60)).await;
        assert!(matches!(refused, Err(Error::Unconfigured(_))), "{refused:?}");
        assert!(ledger.set_policy(&Policy::default()).await.is_err(), "the zero address is refused");
        let report = ledger.verify().await.unwrap();
        assert!(report.ok(), "{backend:?}: {:?}", report.problems);
    }
}

#[tokio::test]
async fn deposits_are_recorded_once_and_sponsors_pay_for_unpaid_questions() {
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        let chunks = chunks(&fx).await;
        let deposit =
            Deposit { payer: owner(), amount: 1_000, transaction: format!("0x{}", "ab".repeat(32)), log_index: 3 };
        assert!(ledger.record_deposit(&deposit).await.unwrap());
        assert!(!ledger.record_deposit(&deposit).await.unwrap(), "the same log again");
        let other_log = Deposit { log_index: 4, ..deposit.clone() };
        assert!(ledger.record_deposit(&other_log).await.unwrap());
        let balance = ledger.balance(&Payer::Address(owner())).await.unwrap();
        assert_eq!((balance.balance, balance.deposited), (2_000, 2_000), "{backend:?}");
        // The owner sponsors its Datanet: the budget pays for unpaid questions until it runs out.
        ledger.sponsor(&owner(), fx.datanet.id, 250).await.unwrap();
        assert!(ledger.sponsor(&owner(), fx.datanet.id, 5_000).await.is_err(), "only what it has");
        let budget = Payer::Sponsor(fx.datanet.id);
        assert_eq!(ledger.balance(&budget).await.unwrap().balance, 250);
        let quote = Quote { fee: 100, weighting: Weighting::Citation, adapter_owners: Vec::new() };
        for _ in 0..2 {
            let hold = ledger.hold(&budget, 100, Duration::from_secs(60)).await.unwrap();
            let payment = Payment::Charge { payer: budget, hold: Some(hold.id) };
            let receipt = ledger.record(answer(&fx, &[&chunks[1]], quote.clone(), payment)).await.unwrap();
            assert_eq!(receipt.payment.as_ref().map(|p| p.paid_by), Some(PaidBy::Sponsor));
            assert_eq!(receipt.fee, 100);
        }
        assert!(matches!(
            ledger.hold(&budget, 100, Duration::from_secs(60)).await,
            Err(Error::InsufficientBalance { available: 50, .. })
        ));
        assert!(ledger.record_deposit(&Deposit { payer: Address::ZERO, ..deposit }).await.is_err());
        let report = ledger.verify().await.unwrap();
        assert!(report.ok(), "{backend:?}: {:?}", report.problems);
    }
}

#[tokio::test]
async fn the_zero_address_is_never_paid() {
    let owners_pool_to_protocol = split_fee(
        10_000,
        &Shares::default(),
        treasury(),
        &[],
        &[CitedChunk {
            datanet: "d".into(),
            datanet_id: 1,
            datanet_owner: Address::ZERO,
            chunk_id: "00".repeat(32),
            contributor: alice(),
            sentences: vec![],
            score: 1.0,
            weight: 1,
        }],
        &[],
    );
    assert!(owners_pool_to_protocol.iter().all(|s| s.account != Address::ZERO));
    let protocol: Amount = owners_pool_to_protocol.iter().filter(|s| s.role == Role::Protocol).map(|s| s.amount).sum();
    assert_eq!(protocol, 3_000, "the protocol's 10% and the missing owner's 20%");
}

#[tokio::test]
async fn verify_catches_books_that_do_not_balance() {
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        let chunks = chunks(&fx).await;
        ledger.grant(&carol(), 1_000, None).await.unwrap();
        let quote = Quote { fee: 300, weighting: Weighting::Citation, adapter_owners: Vec::new() };
        let receipt = ledger.record(answer(&fx, &[&chunks[0]], quote, charge(carol(), None))).await.unwrap();
        assert!(ledger.verify().await.unwrap().ok());
        let pool = fx.store.catalog().pool();
        // A charge rewritten to less than the fee the credits divide.
        sqlx::query("UPDATE payer_transfers SET amount = '1' WHERE receipt_id = $1")
            .bind(&receipt.id)
            .execute(pool)
            .await
            .unwrap();
        let problems = ledger.verify().await.unwrap().problems;
        assert!(problems.iter().any(|p| p.contains(&receipt.id) && p.contains("charged")), "{backend:?}: {problems:?}");
        assert!(problems.iter().any(|p| p.contains("stored balance")), "{backend:?}: {problems:?}");
        // A balance raised by hand.
        sqlx::query("UPDATE payer_transfers SET amount = '300' WHERE receipt_id = $1")
            .bind(&receipt.id)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE payer_accounts SET balance = '5000' WHERE account = $1")
            .bind(carol().to_lower_hex())
            .execute(pool)
            .await
            .unwrap();
        let problems = ledger.verify().await.unwrap().problems;
        assert_eq!(problems.len(), 1, "{backend:?}: {problems:?}");
        // A charge deleted: the receipt's credits were paid by no one.
        sqlx::query("UPDATE payer_accounts SET balance = '700' WHERE account = $1")
            .bind(carol().to_lower_hex())
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM payer_transfers WHERE receipt_id = $1").bind(&receipt.id).execute(pool).await.unwrap();
        let problems = ledger.verify().await.unwrap().problems;
        assert!(
            problems.iter().any(|p| p.contains(&receipt.id) && p.contains("no payer")),
            "{backend:?}: {problems:?}"
        );
    }
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    Deposit {
        payer: u8,
        amount: Amount,
    },
    Grant {
        payer: u8,
        amount: Amount,
    },
    /// A paid answer: hold, generate, record.
    Paid {
        payer: u8,
        fee: Amount,
        picks: Vec<usize>,
    },
    /// Anonymous on a free server.
    Unpaid {
        fee: Amount,
        picks: Vec<usize>,
    },
    /// The owner tops up the sponsor budget, which pays for an anonymous question.
    Sponsored {
        top_up: Amount,
        fee: Amount,
        picks: Vec<usize>,
    },
    /// Held, then the generation failed or the client went away: released.
    Failed {
        payer: u8,
        fee: Amount,
    },
    Flag {
        pick: usize,
    },
    Settle,
    /// Someone claims an account's latest cumulative total (modelled: the chain's `paid`).
    Claim {
        who: u8,
    },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let picks = || proptest::collection::vec(0usize..5, 0..4);
    prop_oneof![
        (0u8..3, 0u128..2_000_000).prop_map(|(payer, amount)| Step::Deposit { payer, amount: amount + 1 }),
        (0u8..3, 0u128..2_000_000).prop_map(|(payer, amount)| Step::Grant { payer, amount: amount + 1 }),
        (0u8..3, 0u128..1_500_000, picks()).prop_map(|(payer, fee, picks)| Step::Paid { payer, fee, picks }),
        (0u128..1_500_000, picks()).prop_map(|(fee, picks)| Step::Unpaid { fee, picks }),
        (0u128..1_000_000, 0u128..1_000_000, picks()).prop_map(|(top_up, fee, picks)| Step::Sponsored {
            top_up,
            fee,
            picks
        }),
        (0u8..3, 0u128..1_500_000).prop_map(|(payer, fee)| Step::Failed { payer, fee }),
        (0usize..5).prop_map(|pick| Step::Flag { pick }),
        Just(Step::Settle),
        (0u8..6).prop_map(|who| Step::Claim { who }),
    ]
}

/// Conservation over random histories of deposits, grants, answers (paid, unpaid, sponsored,
/// failed), flags, settles and claims, on SQLite and PostgreSQL: no balance is ever negative,
/// the payers were charged exactly what the credits divide, every epoch's total is within the
/// money that came in, and what claims take never exceeds it.
#[test]
fn money_is_conserved_over_random_histories() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for backend in BOTH {
        let fx = runtime.block_on(fixture(backend));
        let ledger = runtime.block_on(ledger(&fx));
        let chunks = runtime.block_on(chunks(&fx));
        let payers = [alice(), bob(), carol()];
        let everyone =
            [alice(), bob(), carol(), owner(), treasury(), address("0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc")];
        let model = std::cell::RefCell::new(Model::default());
        let config = ProptestConfig { cases: 5, ..ProptestConfig::default() };
        proptest!(config, |(steps in proptest::collection::vec(step(), 1..16))| {
            runtime.block_on(async {
                // Taken out for the case (a RefCell borrow may not live across the awaits).
                let mut m = model.take();
                // Every case funds its payers and pays for one answer first, then runs its
                // random steps: a random history may never fund the payer it charges, and some
                // runs ended without a single paid answer (the check below then failed).
                let funding = (0..3u8).map(|payer| Step::Grant { payer, amount: 2_000_000 });
                let first = Step::Paid { payer: 0, fee: 1_000, picks: vec![0, 1] };
                for step in funding.chain([first]).chain(steps) {
                    m.apply(&fx, &ledger, &chunks, &payers, &everyone, step).await;
                    for who in payers.iter().chain([&owner()]) {
                        let b = ledger.balance(&Payer::Address(*who)).await.unwrap();
                        assert!(b.held <= b.balance || b.held == 0, "{backend:?}: holds within the balance");
                    }
                }
                let report = ledger.verify().await.unwrap();
                assert!(report.ok(), "{backend:?}: {:?}", report.problems);
                assert!(m.claimed <= m.funded, "{backend:?}: payouts {} within what came in {}", m.claimed, m.funded);
                model.replace(m);
            });
        });
        let m = model.take();
        assert!(m.charged > 0 && m.funded > 0, "{backend:?}: the histories paid for answers");
    }
}

#[derive(Default)]
struct Model {
    /// Deposits and grants so far.
    funded: Amount,
    /// Fees charged so far.
    charged: Amount,
    /// The modelled chain: what each account was paid, and the sum.
    paid: std::collections::BTreeMap<Address, Amount>,
    claimed: Amount,
    next_log: u64,
}

impl Model {
    async fn apply(
        &mut self,
        fx: &Fixture,
        ledger: &Ledger,
        chunks: &[ChunkRecord],
        payers: &[Address; 3],
        everyone: &[Address; 6],
        step: Step,
    ) {
        let picked = |picks: &[usize]| {
            let mut seen = std::collections::HashSet::new();
            picks.iter().map(|i| &chunks[i % chunks.len()]).filter(|c| seen.insert(c.chunk_id)).collect::<Vec<_>>()
        };
        let quote = |fee| Quote { fee, weighting: Weighting::Citation, adapter_owners: Vec::new() };
        let ttl = Duration::from_secs(60);
        match step {
            Step::Deposit { payer, amount } => {
                self.next_log += 1;
                let transaction = format!("0x{:064x}", self.next_log);
                let deposit = Deposit { payer: payers[payer as usize], amount, transaction, log_index: 0 };
                assert!(ledger.record_deposit(&deposit).await.unwrap());
                assert!(!ledger.record_deposit(&deposit).await.unwrap(), "recorded once");
                self.funded += amount;
            }
            Step::Grant { payer, amount } => {
                ledger.grant(&payers[payer as usize], amount, None).await.unwrap();
                self.funded += amount;
            }
            Step::Paid { payer, fee, picks } => {
                let who = payers[payer as usize];
                match ledger.hold(&Payer::Address(who), fee, ttl).await {
                    Ok(hold) => {
                        let new = answer(fx, &picked(&picks), quote(fee), charge(who, Some(hold.id)));
                        let receipt = ledger.record(new).await.unwrap();
                        assert_eq!(receipt.credits.iter().map(|c| c.amount).sum::<Amount>(), fee);
                        self.charged += fee;
                    }
                    Err(Error::InsufficientBalance { available, .. }) => assert!(available < fee),
                    Err(e) => panic!("{e}"),
                }
            }
            Step::Unpaid { fee, picks } => {
                let receipt = ledger.record(answer(fx, &picked(&picks), quote(fee), Payment::Unpaid)).await.unwrap();
                assert!(receipt.credits.is_empty() && receipt.fee == 0);
            }
            Step::Sponsored { top_up, fee, picks } => {
                if top_up > 0 && ledger.sponsor(&owner(), fx.datanet.id, top_up).await.is_err() {
                    // The owner's balance is short: nothing moved.
                }
                let budget = Payer::Sponsor(fx.datanet.id);
                if let Ok(hold) = ledger.hold(&budget, fee, ttl).await {
                    let payment = Payment::Charge { payer: budget, hold: Some(hold.id) };
                    ledger.record(answer(fx, &picked(&picks), quote(fee), payment)).await.unwrap();
                    self.charged += fee;
                }
            }
            Step::Failed { payer, fee } => {
                if let Ok(hold) = ledger.hold(&Payer::Address(payers[payer as usize]), fee, ttl).await {
                    ledger.release(&hold).await.unwrap();
                }
            }
            Step::Flag { pick } => {
                let target = tributary_attribution::FlagTarget::Chunk(chunks[pick % chunks.len()].chunk_id.to_hex());
                ledger.flag(fx.datanet.id, &target, "test", "admin").await.unwrap();
            }
            Step::Settle => {
                if let Some(epoch) = ledger.settle().await.unwrap().epoch {
                    assert!(epoch.total <= self.funded, "an epoch credits only money that came in");
                    assert!(epoch.total <= self.charged);
                }
            }
            Step::Claim { who } => {
                let who = everyone[who as usize];
                if let Ok(proof) = ledger.proof(&who, None).await {
                    let already = self.paid.entry(who).or_default();
                    if proof.cumulative > *already {
                        self.claimed += proof.cumulative - *already;
                        *already = proof.cumulative;
                    }
                }
            }
        }
    }
}

/// Amounts at the edge of the integers: a balance that would outgrow the books is refused with
/// an error and nothing written, never wrapped (a wrapped i128 would turn a grant into a debit
/// and mint on the other side).
#[tokio::test]
async fn amounts_past_the_books_range_are_refused_not_wrapped() {
    let fx = fixture(crate::Backend::Sqlite).await;
    let ledger = ledger(&fx).await;
    let huge: Amount = u128::MAX / 2 + 1; // past i128::MAX
    assert!(matches!(ledger.grant(&carol(), huge, None).await, Err(Error::InvalidArgument(_))));
    let big: Amount = i128::MAX as u128 / 2 + 1;
    ledger.grant(&carol(), big, Some("first")).await.unwrap();
    // A second one would take carol (and the grant source) past i128's range.
    let refused = ledger.grant(&carol(), big, Some("second")).await;
    assert!(matches!(refused, Err(Error::InvalidArgument(_))), "{refused:?}");
    let balance = ledger.balance(&Payer::Address(carol())).await.unwrap();
    assert_eq!((balance.balance, balance.granted), (big, big), "nothing of the refused grant landed");
    // Holding more than exists is refused, whatever the amount.
    let refused = ledger.hold(&Payer::Address(carol()), u128::MAX, Duration::from_secs(60)).await;
    assert!(matches!(refused, Err(Error::InsufficientBalance { .. })), "{refused:?}");
    let deposit = Deposit { payer: carol(), amount: huge, transaction: format!("0x{}", "cd".repeat(32)), log_index: 0 };
    assert!(ledger.record_deposit(&deposit).await.is_err());
    let report = ledger.verify().await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// A grant's key lands it once; the same key cannot be reused to claim a grant for someone
/// else or for another amount (it would report a grant that never happened).
#[tokio::test]
async fn a_grant_key_is_not_reused_for_another_grant() {
    let fx = fixture(crate::Backend::Sqlite).await;
    let ledger = ledger(&fx).await;
    let first = ledger.grant(&carol(), 100, Some("k")).await.unwrap();
    assert_eq!(ledger.grant(&carol(), 100, Some("k")).await.unwrap(), first, "a retry is the same grant");
    assert!(matches!(ledger.grant(&bob(), 100, Some("k")).await, Err(Error::InvalidArgument(_))));
    assert!(matches!(ledger.grant(&carol(), 101, Some("k")).await, Err(Error::InvalidArgument(_))));
    assert_eq!(ledger.balance(&Payer::Address(bob())).await.unwrap().balance, 0);
    assert_eq!(ledger.balance(&Payer::Address(carol())).await.unwrap().balance, 100);
}

/// A receipt cannot name one payer and charge another, nor be charged twice: the charge is
/// keyed by the receipt, and `verify` ties it to the payer the receipt names.
#[tokio::test]
async fn a_charge_is_the_named_payers_and_happens_once() {
    let fx = fixture(crate::Backend::Sqlite).await;
    let ledger = ledger(&fx).await;
    let chunks = chunks(&fx).await;
    ledger.grant(&carol(), 1_000, None).await.unwrap();
    ledger.grant(&bob(), 1_000, None).await.unwrap();
    let quote = Quote { fee: 300, weighting: Weighting::Citation, adapter_owners: Vec::new() };
    let receipt = ledger.record(answer(&fx, &[&chunks[0]], quote, charge(carol(), None))).await.unwrap();
    let pool = fx.store.catalog().pool();
    // Moved onto bob's account after the fact: caught.
    sqlx::query("UPDATE payer_transfers SET debit = $1 WHERE receipt_id = $2")
        .bind(bob().to_lower_hex())
        .bind(&receipt.id)
        .execute(pool)
        .await
        .unwrap();
    let problems = ledger.verify().await.unwrap().problems;
    assert!(problems.iter().any(|p| p.contains(&receipt.id) && p.contains("was charged")), "{problems:?}");
    sqlx::query("UPDATE payer_transfers SET debit = $1 WHERE receipt_id = $2")
        .bind(carol().to_lower_hex())
        .bind(&receipt.id)
        .execute(pool)
        .await
        .unwrap();
    // A second charge for the same receipt: refused by the key.
    let twice = sqlx::query(
        "INSERT INTO payer_transfers (kind, key, debit, credit, amount, receipt_id, created_at) \
         VALUES ('charge', $1, $2, 'fees', '300', $3, 0)",
    )
    .bind(format!("receipt:{}", receipt.id))
    .bind(carol().to_lower_hex())
    .bind(&receipt.id)
    .execute(pool)
    .await;
    assert!(twice.is_err(), "the charge's key is unique");
    assert!(ledger.verify().await.unwrap().ok());
}

/// A training chunk of adapter `adapter` (root `root`) with `weight`, claiming `claimed` as its
/// contributor (the ledger reads the catalog's).
fn trained(
    fx: &Fixture,
    adapter: &str,
    root: &str,
    chunk: &ChunkRecord,
    weight: u64,
    claimed: Address,
) -> TrainedChunk {
    TrainedChunk {
        adapter: adapter.into(),
        training_root: root.into(),
        datanet: fx.datanet.name.clone(),
        datanet_id: fx.datanet.id,
        chunk_id: chunk.chunk_id.to_hex(),
        contributor: claimed,
        examples: vec!["e".repeat(64)],
        weight,
    }
}

/// Training-data credits (issue #25): the training share pays the first contributors of the
/// chunks an adapter was trained on, as registered when it was published, and nothing else. A
/// chunk outside the registered set, the set of another adapter or root, an adapter the answer
/// did not use, or a claimed contributor mints or redirects nothing; a flag slashes a training
/// credit as it slashes a citation's; `verify` recomputes the training split and rechecks the
/// registered set.
#[tokio::test]
async fn training_credits_pay_only_the_registered_training_data() {
    for backend in BOTH {
        let fx = fixture(backend).await;
        let ledger = ledger(&fx).await;
        let chunks = chunks(&fx).await;
        let of = |who: Address| chunks.iter().find(|c| c.contributor == who).unwrap().clone();
        let (alices, bobs) = (of(alice()), of(bob()));
        let (root, other_root) = ("11".repeat(32), "22".repeat(32));
        ledger.register_training("tuned", &root, fx.datanet.id, &[alices.chunk_id.to_hex()]).await.unwrap();
        // Registering again is a no-op; the same root for another Datanet is refused.
        ledger.register_training("tuned", &root, fx.datanet.id, &[bobs.chunk_id.to_hex()]).await.unwrap();
        assert!(ledger.register_training("tuned", &root, fx.datanet.id + 1, &[]).await.is_err());
        ledger.grant(&carol(), 10 * TOKEN, None).await.unwrap();
        let quote = Quote { fee: 1_000_000, weighting: Weighting::Citation, adapter_owners: Vec::new() };
        let ask = |trained: Vec<TrainedChunk>, adapters: &[&str]| {
            let mut new = answer(&fx, &[&bobs], quote.clone(), charge(carol(), None));
            new.adapters = adapters.iter().map(|a| (a.to_string(), 1.0)).collect();
            new.trained = trained;
            new
        };

        // The registered chunk, its contributor claimed to be carol: alice (the catalog's) is
        // credited the whole training share (10%), bob's cited chunk the rest of the data's.
        let receipt =
            ledger.record(ask(vec![trained(&fx, "tuned", &root, &alices, 5, carol())], &["tuned"])).await.unwrap();
        let credited = |role: Role, who: Address| -> Amount {
            receipt
                .credits
                .iter()
                .filter(|c| c.role == role && c.account == who.to_checksummed())
                .map(|c| c.amount)
                .sum()
        };
        assert_eq!(credited(Role::TrainingContributor, alice()), 100_000, "{backend:?}: {:?}", receipt.credits);
        assert_eq!(credited(Role::TrainingContributor, carol()), 0);
        assert_eq!(credited(Role::Contributor, bob()), 600_000, "50% + the ownerless adapter's 10%");
        assert_eq!(receipt.split.training, 100_000);
        assert_eq!(receipt.credits.iter().map(|c| c.amount).sum::<Amount>(), 1_000_000);
        assert_eq!(receipt.trained[0].contributor, alice(), "the receipt names the catalog's contributor");
        let alice_before = wealth(&ledger, alice()).await;

        // Each way to redirect the training share is refused, and nothing is written.
        let refused = [
            // A chunk the adapter was not trained on (bob's, cited in the same answer).
            ask(vec![trained(&fx, "tuned", &root, &bobs, 1, bob())], &["tuned"]),
            // The right chunk under a root nobody registered.
            ask(vec![trained(&fx, "tuned", &other_root, &alices, 1, alice())], &["tuned"]),
            // Another adapter's name, though its answer used it.
            ask(vec![trained(&fx, "other", &root, &alices, 1, alice())], &["other"]),
            // Training data of an adapter the answer did not use.
            ask(vec![trained(&fx, "tuned", &root, &alices, 1, alice())], &["other"]),
            ask(vec![trained(&fx, "tuned", &root, &alices, 1, alice())], &[]),
        ];
        let receipts_before = ledger.verify().await.unwrap().receipts;
        for (i, new) in refused.into_iter().enumerate() {
            let err = ledger.record(new).await.unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{backend:?} case {i}: {err}");
        }
        let report = ledger.verify().await.unwrap();
        assert_eq!(report.receipts, receipts_before, "{backend:?}: nothing recorded");
        assert!(report.ok(), "{backend:?}: {:?}", report.problems);
        assert_eq!(wealth(&ledger, alice()).await, alice_before);

        // A flag on the trained chunk slashes its unsettled training credit.
        let outcome =
            ledger.flag(fx.datanet.id, &FlagTarget::Chunk(alices.chunk_id.to_hex()), "copied", "owner").await.unwrap();
        assert_eq!((outcome.slashed_credits, outcome.slashed), (1, 100_000), "{backend:?}");
        assert_eq!(wealth(&ledger, alice()).await, alice_before - 100_000);
        assert!(ledger.verify().await.unwrap().ok());

        // Weights whose sum would wrap a u64 (an overflow to steer the split) are refused
        // before anything is split or written.
        let mut huge = answer(&fx, &[&bobs, &alices], quote.clone(), charge(carol(), None));
        for c in &mut huge.cited {
            c.weight = u64::MAX;
        }
        let err = ledger.record(huge).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{backend:?}: {err}");
        let mut huge = ask(vec![trained(&fx, "tuned", &root, &alices, u64::MAX, alice())], &["tuned"]);
        huge.trained.push(trained(&fx, "tuned", &root, &alices, u64::MAX, alice()));
        let err = ledger.record(huge).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{backend:?}: {err}");
        assert_eq!(ledger.verify().await.unwrap().receipts, receipts_before, "{backend:?}: nothing recorded");

        // A receipt whose training data and weights were rewritten (and its chain re-hashed)
        // no longer checks, and verify reports it rather than overflowing.
        let pool = fx.store.catalog().pool();
        let body: String = sqlx::query_scalar("SELECT body FROM receipts WHERE id = $1")
            .bind(&receipt.id)
            .fetch_one(pool)
            .await
            .unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&body).unwrap();
        value["trained"][0]["chunk_id"] = serde_json::json!(bobs.chunk_id.to_hex());
        value["trained"][0]["weight"] = serde_json::json!(u64::MAX);
        let twin = value["trained"][0].clone();
        value["trained"].as_array_mut().unwrap().push(twin);
        let forged = value.to_string();
        let hash = blake3::hash(forged.as_bytes()).to_hex().to_string();
        sqlx::query("UPDATE receipts SET body = $1, hash = $2 WHERE id = $3")
            .bind(&forged)
            .bind(&hash)
            .bind(&receipt.id)
            .execute(pool)
            .await
            .unwrap();
        let problems = ledger.verify().await.unwrap().problems;
        assert!(
            problems.iter().any(|p| p.contains(&receipt.id) && p.contains("not in the training data registered")),
            "{backend:?}: {problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains(&receipt.id) && p.contains("weights cannot be split")),
            "{backend:?}: {problems:?}"
        );
    }
}
