//! Ledger speed: paid receipts recorded per second (each answer's fee held from its payer's
//! balance first, as the server does before generating; then the receipt, its charge and its
//! credits in one transaction, or in group commits),
//! and the time to close an epoch over many credits and contributors (tree and proofs
//! included), on SQLite or PostgreSQL. Prints one JSON line.
//!
//!     cargo run -p tributary-benches --bin ledger -- [--database-url postgres://...]
//!
//! The catalog rows the receipts cite and the bulk credits of the epoch test are written with
//! plain SQL (the setup is not what is measured); receipts go through `Ledger::record`, the
//! epoch through `Ledger::settle`.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use sqlx::{AssertSqlSafe, Row};
use tributary_attribution::{
    CitedChunk, DEFAULT_HOLD_TTL, Ledger, NewReceipt, Payer, Payment, Policy, Quote, RetrievedChunk, Weighting,
};
use tributary_indexer::{Address, NewDatanet, Store, StoreConfig, Visibility};

#[derive(Parser)]
struct Args {
    /// Default: SQLite in a temporary directory.
    #[arg(long)]
    database_url: Option<String>,
    /// Receipts to record, each citing 3 chunks (7 credits).
    #[arg(long, default_value_t = 5_000)]
    receipts: usize,
    /// Credits in the epoch to close.
    #[arg(long, default_value_t = 1_000_000)]
    credits: usize,
    #[arg(long, default_value_t = 10_000)]
    contributors: usize,
    /// Receipts per transaction in the group-commit run.
    #[arg(long, default_value_t = 64)]
    group: usize,
}

/// Each answer's fee.
const FEE: u128 = 1_000_000_000_000_000;
/// Distinct payers the answers rotate over.
const PAYERS: usize = 16;

fn address(n: usize) -> Address {
    format!("0x{:040x}", n + 1).parse().expect("a valid address")
}

/// Multi-row INSERT of `rows`, each `width` values, bound by `bind`.
async fn insert_rows(
    pool: &sqlx::AnyPool,
    head: &str,
    width: usize,
    rows: usize,
    bind: impl Fn(
        usize,
        sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
) -> Result<()> {
    const BATCH: usize = 150;
    let mut start = 0;
    while start < rows {
        let end = (start + BATCH).min(rows);
        let mut sql = String::from(head);
        for (i, _) in (start..end).enumerate() {
            sql.push_str(if i == 0 { " (" } else { ", (" });
            let values: Vec<String> = (1..=width).map(|c| format!("${}", i * width + c)).collect();
            sql.push_str(&values.join(", "));
            sql.push(')');
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in start..end {
            query = bind(row, query);
        }
        query.execute(pool).await?;
        start = end;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut config = StoreConfig::new(dir.path());
    config.database_url = args.database_url.clone();
    let store = Store::open(config).await?;
    let catalog = store.catalog();
    let backend = format!("{:?}", catalog.backend());
    let name = format!("bench{}", std::process::id());
    let new = NewDatanet {
        name,
        description: String::new(),
        owner: address(999_999),
        visibility: Visibility::Public,
        review: false,
    };
    let datanet = catalog.create_datanet(&new).await?;
    let pool = catalog.pool();

    // 1,000 chunks from 100 contributors, one document each.
    let chunks = 1_000;
    insert_rows(
        pool,
        "INSERT INTO documents (datanet_id, contributor, source_name, external_id, license, byte_len, raw_hash, \
         text, chunk_count, duplicate_chunks, created_at) VALUES",
        11,
        chunks,
        |i, q| {
            q.bind(datanet.id)
                .bind(address(i % 100).to_lower_hex())
                .bind(format!("doc{i}"))
                .bind(format!("doc{i}"))
                .bind("CC0")
                .bind(10i64)
                .bind(format!("{:064x}", i + datanet.id as usize * 10_000_000))
                .bind(format!("text {i}"))
                .bind(1i64)
                .bind(0i64)
                .bind(0i64)
        },
    )
    .await?;
    let chunk_id = |i: usize| format!("{i:064x}");
    let documents: Vec<i64> = sqlx::query("SELECT id FROM documents WHERE datanet_id = $1 ORDER BY id")
        .bind(datanet.id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;
    insert_rows(
        pool,
        "INSERT INTO chunks (datanet_id, chunk_id, document_id, contributor, start_offset, end_offset, tokens, text, \
         created_at) VALUES",
        9,
        chunks,
        |i, q| {
            q.bind(datanet.id)
                .bind(chunk_id(i))
                .bind(documents[i])
                .bind(address(i % 100).to_lower_hex())
                .bind(0i64)
                .bind(6i64)
                .bind(2i64)
                .bind(format!("text {i}"))
                .bind(0i64)
        },
    )
    .await?;

    // Receipts per second: one transaction each (lock, catalog lookups, chain head, receipt,
    // 7 credits), one writer; then the same in group commits of `group` receipts.
    let ledger = Ledger::new(catalog);
    let answer = |r: usize| {
        let cited: Vec<usize> = (0..3).map(|k| (r * 7 + k * 331) % chunks).collect();
        NewReceipt {
            question: format!("question {r}"),
            keep_question: true,
            datanets: vec![datanet.name.clone()],
            model: "bench".into(),
            adapters: Vec::new(),
            answer: format!("answer {r}"),
            retrieved: cited
                .iter()
                .map(|c| RetrievedChunk { datanet: datanet.name.clone(), chunk_id: chunk_id(*c), score: 0.5 })
                .collect(),
            cited: cited
                .iter()
                .enumerate()
                .map(|(k, c)| CitedChunk {
                    datanet: datanet.name.clone(),
                    datanet_id: datanet.id,
                    datanet_owner: Address::ZERO,
                    chunk_id: chunk_id(*c),
                    contributor: Address::ZERO,
                    sentences: vec![format!("sentence {k}")],
                    score: 0.5,
                    weight: k as u64 + 1,
                })
                .collect(),
            trained: Vec::new(),
            quote: Quote { fee: FEE, weighting: Weighting::Citation, adapter_owners: Vec::new() },
            payment: Payment::Unpaid,
        }
    };
    // The payers: a few addresses, funded for every answer; the protocol account set.
    let policy = Policy { protocol_account: address(1_000_000), slash_sink: address(1_000_000), ..Policy::default() };
    ledger.set_policy(&policy).await?;
    let payers: Vec<Payer> = (0..PAYERS).map(|p| Payer::Address(address(2_000_000 + p))).collect();
    for payer in &payers {
        let Payer::Address(who) = payer else { continue };
        ledger.grant(who, FEE * (2 * args.receipts as u128 + 1), None).await?;
    }
    let paid = |r: usize, hold: String| {
        let mut new = answer(r);
        new.payment = Payment::Charge { payer: payers[r % PAYERS], hold: Some(hold) };
        new
    };
    let started = Instant::now();
    for r in 0..args.receipts {
        let hold = ledger.hold(&payers[r % PAYERS], FEE, DEFAULT_HOLD_TTL).await?;
        ledger.record(paid(r, hold.id)).await?;
    }
    let record_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut hold_s = 0.0;
    let mut r = 0;
    while r < args.receipts {
        let end = (r + args.group).min(args.receipts);
        // What the server's group commit does with answers that start and finish together:
        // their holds in one transaction, their receipts in another.
        let ids: Vec<usize> = (args.receipts + r..args.receipts + end).collect();
        let requests: Vec<(Payer, u128)> = ids.iter().map(|i| (payers[i % PAYERS], FEE)).collect();
        let holding = Instant::now();
        let holds = ledger.hold_many(&requests, DEFAULT_HOLD_TTL).await?;
        hold_s += holding.elapsed().as_secs_f64();
        let mut group = Vec::with_capacity(ids.len());
        for (i, hold) in ids.into_iter().zip(holds) {
            group.push(paid(i, hold?.id));
        }
        ledger.record_many(group).await?;
        r = end;
    }
    let grouped_s = started.elapsed().as_secs_f64();
    let report = ledger.verify().await?;
    anyhow::ensure!(
        report.ok(),
        "the ledger does not check after the run ({} problems; a database the bench used before? give a fresh one): {:?}",
        report.problems.len(),
        &report.problems[..report.problems.len().min(5)]
    );
    let settle_small = Instant::now();
    ledger.settle().await?;
    let settle_small_s = settle_small.elapsed().as_secs_f64();

    // The epoch test: `credits` entries over `contributors` accounts, 5 per receipt.
    let per_receipt = 5;
    let receipts = args.credits.div_ceil(per_receipt);
    let setup = Instant::now();
    insert_rows(
        pool,
        "INSERT INTO receipts (id, created_at, fee, prev_hash, hash, body) VALUES",
        6,
        receipts,
        |i, q| {
            q.bind(format!("bulk{i}"))
                .bind(0i64)
                .bind("5000")
                .bind(format!("bulk-prev{i}"))
                .bind(format!("bulk-hash{i}"))
                .bind("{}")
        },
    )
    .await?;
    insert_rows(
        pool,
        "INSERT INTO ledger_entries (kind, receipt_id, account, role, amount, datanet_id, chunk_id, created_at) VALUES",
        8,
        args.credits,
        |i, q| {
            q.bind("credit")
                .bind(format!("bulk{}", i / per_receipt))
                .bind(address((i * 7_919) % args.contributors).to_lower_hex())
                .bind("contributor")
                .bind(format!("{}", 1_000 + i % 977))
                .bind(datanet.id)
                .bind(chunk_id(i % chunks))
                .bind(0i64)
        },
    )
    .await?;
    let setup_s = setup.elapsed().as_secs_f64();
    let settle = Instant::now();
    let outcome = ledger.settle().await?;
    let settle_s = settle.elapsed().as_secs_f64();
    let epoch = outcome.epoch.ok_or_else(|| anyhow::anyhow!("no epoch closed"))?;

    println!(
        "{}",
        serde_json::json!({
            "backend": backend,
            "receipts": args.receipts, "credits_per_receipt": 7, "record_s": record_s,
            "receipts_per_s": args.receipts as f64 / record_s,
            "group": args.group, "grouped_receipts_per_s": args.receipts as f64 / grouped_s,
            "grouped_hold_share": hold_s / grouped_s,
            "settle_receipts_epoch_s": settle_small_s,
            "epoch_credits": args.credits, "epoch_accounts": epoch.accounts, "bulk_setup_s": setup_s,
            "settle_s": settle_s,
        })
    );
    store.catalog().close().await;
    Ok(())
}
