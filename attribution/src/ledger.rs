//! The ledger: receipts, append-only entries, flags and epochs in the catalog's database.
//!
//! Every write runs in one transaction that first bumps the single `ledger_lock` row, so ledger
//! writes are serialized on SQLite and PostgreSQL alike: the receipts' hash chain never forks,
//! a slash cannot race a settlement, and a crash at any point (kill -9) leaves either all of a
//! write or none of it. Amounts are stored as decimal TEXT (uint256 on chain) and summed here.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, AssertSqlSafe, Row, Transaction};
use tributary_indexer::{Address, Backend, Catalog, Datanet};

use crate::merkle::{self, PayoutLeaf, PayoutTree};
use crate::payers::{self, FEES, Move, Payer};
use crate::policy::{
    self, AdapterPricing, Amount, CitedChunk, DatanetPricing, Policy, Role, Shares, TrainedChunk, Weighting, split_fee,
};
use crate::{Error, Result};

/// The `prev_hash` of the first receipt.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The most Datanets one question may search (and be charged for).
pub const MAX_DATANETS: usize = 16;
/// The most adapters one question may combine.
pub const MAX_ADAPTERS: usize = 4;

/// Chunks looked up per query (two parameters each): well under SQLite's bound-parameter limit.
const BATCH_ROWS: usize = 200;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn parse_address(text: &str) -> Result<Address> {
    text.parse().map_err(|_| Error::Inconsistent(format!("stored address {text:?} is not valid")))
}

pub(crate) fn parse_signed(text: &str) -> Result<i128> {
    text.parse().map_err(|_| Error::Inconsistent(format!("stored amount {text:?} is not an integer")))
}

fn signed_string<S: serde::Serializer>(value: &i128, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&value.to_string())
}

/// A retrieved chunk as the receipt records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetrievedChunk {
    pub datanet: String,
    pub chunk_id: String,
    pub score: f32,
}

/// What an answer costs and how its data pools are divided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quote {
    #[serde(with = "crate::amount_string")]
    pub fee: Amount,
    pub weighting: Weighting,
    pub adapter_owners: Vec<String>,
}

/// Who pays for an answer being recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    /// The payer is charged the quote's fee in the receipt's transaction; the hold placed before
    /// generating (if any) becomes that charge.
    Charge { payer: Payer, hold: Option<String> },
    /// Nobody pays: the answer is free, credits no one, and its receipt says it was unpaid.
    Unpaid,
}

/// Who paid for an answer, as its receipt records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaidBy {
    /// An address's balance.
    Payer,
    /// A Datanet's sponsor budget.
    Sponsor,
    /// No one: a free answer, which credits no one.
    Unpaid,
}

/// How a receipt was paid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptPayment {
    pub paid_by: PaidBy,
    /// The account charged: a checksummed address or `sponsor:<datanet id>`; none when unpaid.
    pub payer: Option<String>,
}

/// An answer about to be recorded.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub question: String,
    /// Keep the question's text (its hash is always kept): false for a private Datanet or when
    /// the caller opts out.
    pub keep_question: bool,
    pub datanets: Vec<String>,
    pub model: String,
    pub adapters: Vec<(String, f32)>,
    pub answer: String,
    pub retrieved: Vec<RetrievedChunk>,
    /// Cited chunks with their weights; contributor and Datanet owner are taken from the
    /// catalog, not from here (a duplicate chunk pays its first contributor only).
    pub cited: Vec<CitedChunk>,
    /// Chunks of the answer's adapters' training data, with their weights: each must be
    /// registered for its adapter and training root ([`Ledger::register_training`]), the
    /// adapter must be one the answer used, and the contributor is taken from the catalog.
    pub trained: Vec<TrainedChunk>,
    pub quote: Quote,
    pub payment: Payment,
}

/// One credit as the receipt lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptCredit {
    pub account: String,
    pub role: Role,
    #[serde(with = "crate::amount_string")]
    pub amount: Amount,
    pub datanet: Option<String>,
    pub chunk_id: Option<String>,
}

/// The fee's division by group.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitSummary {
    #[serde(with = "crate::amount_string")]
    pub protocol: Amount,
    #[serde(with = "crate::amount_string")]
    pub adapter_owners: Amount,
    #[serde(with = "crate::amount_string")]
    pub datanet_owners: Amount,
    #[serde(with = "crate::amount_string")]
    pub contributors: Amount,
    /// The training data's credits (absent in receipts written before they existed).
    #[serde(default, with = "crate::amount_string")]
    pub training: Amount,
}

/// A receipt: everything about one answer that the payment depends on. The JSON of this
/// struct without `hash` is what `hash` covers (blake3), and it names the previous receipt's
/// hash, so changing any receipt breaks the chain after it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub id: String,
    pub created_at_ms: i64,
    pub prev_hash: String,
    pub question_hash: String,
    pub question: Option<String>,
    pub datanets: Vec<String>,
    pub model: String,
    pub adapters: Vec<(String, f32)>,
    pub answer: String,
    pub retrieved: Vec<RetrievedChunk>,
    pub cited: Vec<CitedChunk>,
    /// The trained adapters' training-data chunks credited (none without a trained adapter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trained: Vec<TrainedChunk>,
    pub weighting: Weighting,
    #[serde(with = "crate::amount_string")]
    pub fee: Amount,
    /// The split's inputs as they were when the answer was recorded, so anyone can recompute
    /// it: the shares, the protocol account and the adapter owners.
    pub shares: Shares,
    pub protocol_account: String,
    pub adapter_owners: Vec<String>,
    pub split: SplitSummary,
    pub credits: Vec<ReceiptCredit>,
    /// Who paid `fee`. Absent only on receipts recorded before payments existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<ReceiptPayment>,
    /// Not part of the hashed body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

impl Receipt {
    fn body_json(&self) -> Result<String> {
        let mut body = self.clone();
        body.hash = String::new();
        serde_json::to_string(&body).map_err(|e| Error::Inconsistent(format!("receipt does not serialize: {e}")))
    }
}

/// Recomputes a receipt's split from the inputs it records; `Some(why)` when it differs.
fn check_split(receipt: &Receipt) -> Option<String> {
    if let Err(e) = receipt.shares.validate() {
        return Some(format!("its shares are not a policy's: {e}"));
    }
    if let Err(e) = policy::check_weights(&receipt.cited, &receipt.trained) {
        return Some(format!("its weights cannot be split: {e}"));
    }
    let protocol: Address = receipt.protocol_account.parse().ok()?;
    let owners: Vec<Address> = receipt.adapter_owners.iter().filter_map(|a| a.parse().ok()).collect();
    if owners.len() != receipt.adapter_owners.len() {
        return Some("an adapter owner is not an address".into());
    }
    let splits = split_fee(receipt.fee, &receipt.shares, protocol, &owners, &receipt.cited, &receipt.trained);
    (receipt_credits(&splits, &receipt.cited, &receipt.trained) != receipt.credits)
        .then(|| "its credits are not the split of its fee".into())
}

/// Checks that a receipt's fee was paid: the charge (payer account, amount) recorded for it
/// must be its payer's and its fee; an unpaid receipt has no fee and no credits. `Some(why)`
/// when not.
fn check_payment(receipt: &Receipt, charge: Option<(String, Amount)>) -> Option<String> {
    let Some(payment) = &receipt.payment else {
        return (receipt.fee > 0).then(|| "recorded before payments: no payer paid its fee".into());
    };
    match payment.paid_by {
        PaidBy::Unpaid if receipt.fee > 0 || !receipt.credits.is_empty() => {
            Some("it is unpaid but credits someone".into())
        }
        PaidBy::Unpaid => charge.map(|_| "it is unpaid but a payer was charged for it".into()),
        PaidBy::Payer | PaidBy::Sponsor => {
            let payer = payment
                .payer
                .as_deref()
                .map(|p| p.parse::<Address>().map(|a| a.to_lower_hex()).unwrap_or_else(|_| p.to_string()));
            match charge {
                None if receipt.fee == 0 => None,
                None => Some(format!("no payer was charged its fee {}", receipt.fee)),
                Some((account, _)) if Some(&account) != payer.as_ref() => {
                    Some(format!("{account} was charged, the receipt names {:?}", payment.payer))
                }
                Some((_, amount)) if amount != receipt.fee => {
                    Some(format!("its payer was charged {amount}, its fee is {}", receipt.fee))
                }
                Some(_) => None,
            }
        }
    }
}

/// The receipt's view of a split: accounts by their checksummed address, Datanets by name.
fn receipt_credits(
    splits: &[crate::policy::Split],
    cited: &[CitedChunk],
    trained: &[TrainedChunk],
) -> Vec<ReceiptCredit> {
    let names: BTreeMap<i64, &str> = cited
        .iter()
        .map(|c| (c.datanet_id, c.datanet.as_str()))
        .chain(trained.iter().map(|c| (c.datanet_id, c.datanet.as_str())))
        .collect();
    splits
        .iter()
        .map(|s| ReceiptCredit {
            account: s.account.to_checksummed(),
            role: s.role,
            amount: s.amount,
            datanet: s.datanet_id.and_then(|d| names.get(&d).map(|n| n.to_string())),
            chunk_id: s.chunk_id.clone(),
        })
        .collect()
}

/// A ledger entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub id: i64,
    /// credit or slash
    pub kind: String,
    pub receipt_id: Option<String>,
    pub flag_id: Option<i64>,
    /// The credit a slash offsets.
    pub offsets: Option<i64>,
    #[serde(with = "crate::address_string")]
    pub account: Address,
    pub role: Role,
    #[serde(serialize_with = "signed_string")]
    pub amount: i128,
    pub datanet_id: Option<i64>,
    pub datanet: Option<String>,
    pub chunk_id: Option<String>,
    pub sentences: Vec<String>,
    pub epoch: Option<i64>,
    pub created_at_ms: i64,
}

/// An account's earnings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Earnings {
    #[serde(with = "crate::address_string")]
    pub account: Address,
    /// Credits minus slashes, settled or not.
    #[serde(serialize_with = "signed_string")]
    pub total: i128,
    #[serde(serialize_with = "signed_string")]
    pub settled: i128,
    #[serde(serialize_with = "signed_string")]
    pub unsettled: i128,
    #[serde(serialize_with = "signed_string")]
    pub slashed: i128,
    pub by_datanet: Vec<DatanetEarnings>,
    pub by_epoch: Vec<EpochEarnings>,
    /// Every entry: which answer, which chunk, which sentences, how much.
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatanetEarnings {
    pub datanet: String,
    #[serde(serialize_with = "signed_string")]
    pub amount: i128,
}

/// What one contributor's chunks earned in one Datanet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContributorEarnings {
    pub contributor: Address,
    /// Answers' citations of the contributor's chunks that credited them.
    pub citations: u64,
    /// Their credits less their slashes.
    pub earned: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EpochEarnings {
    pub epoch: i64,
    #[serde(serialize_with = "signed_string")]
    pub amount: i128,
}

/// What a flag names, inside one Datanet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagTarget {
    Chunk(String),
    Document(i64),
    Contributor(Address),
}

impl FlagTarget {
    fn kind(&self) -> &'static str {
        match self {
            FlagTarget::Chunk(_) => "chunk",
            FlagTarget::Document(_) => "document",
            FlagTarget::Contributor(_) => "contributor",
        }
    }

    fn value(&self) -> String {
        match self {
            FlagTarget::Chunk(id) => id.clone(),
            FlagTarget::Document(id) => id.to_string(),
            FlagTarget::Contributor(address) => address.to_lower_hex(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flag {
    pub id: i64,
    pub datanet_id: i64,
    pub kind: String,
    pub target: String,
    pub reason: String,
    pub actor: String,
    pub active: bool,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlagOutcome {
    pub flag: Flag,
    /// An active flag on the same target already existed; nothing new was slashed.
    pub already_flagged: bool,
    pub slashed_credits: usize,
    #[serde(with = "crate::amount_string")]
    pub slashed: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Epoch {
    pub number: i64,
    /// The epoch holds the ledger entries after the previous epoch's `last_entry`, up to this.
    pub last_entry: i64,
    pub root: String,
    pub receipts_head: String,
    #[serde(with = "crate::amount_string")]
    pub total: Amount,
    pub accounts: i64,
    pub entries: i64,
    pub closed_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SettleOutcome {
    /// The epoch just closed, or the last one when there was nothing to settle.
    pub epoch: Option<Epoch>,
    pub closed_now: bool,
}

/// An account's leaf and proof in an epoch's payout tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountProof {
    pub epoch: i64,
    /// The account's stable index in the payout trees (the contract's `paid(index)`).
    pub index: u64,
    #[serde(with = "crate::address_string")]
    pub account: Address,
    #[serde(with = "crate::amount_string")]
    pub cumulative: Amount,
    pub root: String,
    pub leaf: String,
    pub proof: Vec<String>,
}

/// What [`Ledger::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub receipts: usize,
    pub epochs: usize,
    /// The hash of the last receipt whose chain checks.
    pub head: String,
    /// Every mismatch, each naming the receipt or epoch: empty when the ledger checks.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Handle to the ledger tables. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    pub(crate) pool: AnyPool,
    backend: Backend,
}

pub(crate) async fn lock(tx: &mut Transaction<'static, Any>) -> Result<()> {
    sqlx::query("UPDATE ledger_lock SET writes = writes + 1 WHERE id = 1").execute(&mut **tx).await?;
    Ok(())
}

async fn head(tx: &mut Transaction<'static, Any>) -> Result<String> {
    let row = sqlx::query("SELECT hash FROM receipts ORDER BY seq DESC LIMIT 1").fetch_optional(&mut **tx).await?;
    Ok(match row {
        Some(row) => row.try_get("hash")?,
        None => GENESIS.to_string(),
    })
}

/// The epoch holding entry `id`, from the epochs in order; `None` while unsettled.
fn epoch_of(epochs: &[Epoch], id: i64) -> Option<i64> {
    let i = epochs.partition_point(|e| e.last_entry < id);
    epochs.get(i).map(|e| e.number)
}

/// Who each of `chunks` pays (its first contributor, its Datanet's owner), in a few queries,
/// and whether any of their Datanets has an active flag (then new credits are checked against
/// the flags).
async fn payees(tx: &mut Transaction<'static, Any>, mut chunks: Vec<(i64, String)>) -> Result<(Payees, bool)> {
    chunks.sort();
    chunks.dedup();
    let mut out = BTreeMap::new();
    let mut flagged = false;
    for batch in chunks.chunks(BATCH_ROWS) {
        let mut sql = String::from(
            "SELECT c.datanet_id, c.chunk_id, c.contributor, d.owner, \
             EXISTS (SELECT 1 FROM flags f WHERE f.datanet_id = c.datanet_id AND f.active = 1) AS flagged \
             FROM chunks c JOIN datanets d ON d.id = c.datanet_id WHERE ",
        );
        for i in 0..batch.len() {
            let or = if i > 0 { " OR " } else { "" };
            sql.push_str(&format!("{or}(c.datanet_id = ${} AND c.chunk_id = ${})", 2 * i + 1, 2 * i + 2));
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (datanet_id, chunk_id) in batch {
            query = query.bind(*datanet_id).bind(chunk_id.clone());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let key: (i64, String) = (row.try_get("datanet_id")?, row.try_get("chunk_id")?);
            let contributor = parse_address(&row.try_get::<String, _>("contributor")?)?;
            out.insert(key, (contributor, parse_address(&row.try_get::<String, _>("owner")?)?));
            // An integer on SQLite, a boolean on PostgreSQL.
            flagged |=
                row.try_get::<bool, _>("flagged").or_else(|_| row.try_get::<i64, _>("flagged").map(|n| n != 0))?;
        }
    }
    Ok((out, flagged))
}

/// Chunk (Datanet id, chunk id) -> (contributor, Datanet owner).
type Payees = BTreeMap<(i64, String), (Address, Address)>;

/// Offsets one contributor credit, cited or trained on (`row`: its id, account, role, amount
/// and chunk), with a slash
/// pair for `flag_id`: the credit's amount back from its account, to the slash sink. What
/// was slashed.
async fn slash_credit(
    tx: &mut Transaction<'static, Any>,
    row: &sqlx::any::AnyRow,
    flag_id: i64,
    datanet_id: i64,
    policy: &Policy,
    now: i64,
) -> Result<Amount> {
    let credit_id: i64 = row.try_get("id")?;
    let account: String = row.try_get("account")?;
    let amount = parse_signed(&row.try_get::<String, _>("amount")?)?;
    let chunk_id: Option<String> = row.try_get("chunk_id")?;
    let stored: String = row.try_get("role")?;
    let credited = Role::parse(&stored).ok_or_else(|| Error::Inconsistent(format!("stored role {stored:?}")))?;
    for (who, role, signed) in
        [(account.clone(), credited, -amount), (policy.slash_sink.to_lower_hex(), Role::Sink, amount)]
    {
        sqlx::query(
            "INSERT INTO ledger_entries (kind, flag_id, offsets, account, role, amount, datanet_id, chunk_id, \
             created_at) VALUES ('slash', $1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(flag_id)
        .bind(credit_id)
        .bind(who)
        .bind(role.as_str())
        .bind(signed.to_string())
        .bind(datanet_id)
        .bind(chunk_id.clone())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(amount.max(0) as Amount)
}

/// Slashes the contributor credits (cited or trained on) written after entry `after` whose chunk, document or
/// contributor an active flag names. Runs inside the recording transaction, under the ledger
/// lock, which flagging takes too: a flag either came first and is found here, or comes after
/// and finds these credits. The entries after `after` are this transaction's credits only, so
/// the query names no `kind` (which would make SQLite walk every credit through the kind index
/// instead of the id range).
async fn slash_flagged_since(tx: &mut Transaction<'static, Any>, after: i64, policy: &Policy, now: i64) -> Result<()> {
    let rows = sqlx::query(
        "SELECT e.id, e.account, e.role, e.amount, e.chunk_id, e.datanet_id, f.id AS flag_id FROM ledger_entries e \
         JOIN flags f ON f.datanet_id = e.datanet_id AND f.active = 1 \
         WHERE e.id > $1 AND e.role IN ('contributor', 'training_contributor') \
         AND ((f.kind = 'chunk' AND f.target = e.chunk_id) \
           OR (f.kind = 'contributor' AND f.target = e.account) \
           OR (f.kind = 'document' AND e.chunk_id IN (SELECT c.chunk_id FROM chunks c \
               WHERE c.datanet_id = e.datanet_id AND CAST(c.document_id AS TEXT) = f.target))) \
         ORDER BY e.id, f.id",
    )
    .bind(after)
    .fetch_all(&mut **tx)
    .await?;
    let mut done = std::collections::HashSet::new();
    for row in &rows {
        let credit_id: i64 = row.try_get("id")?;
        // A credit two flags name is slashed once (by the first).
        if done.insert(credit_id) {
            let (flag_id, datanet_id): (i64, i64) = (row.try_get("flag_id")?, row.try_get("datanet_id")?);
            slash_credit(tx, row, flag_id, datanet_id, policy, now).await?;
        }
    }
    Ok(())
}

/// Refuses training chunks that were not registered for their adapter and training root, in
/// their Datanet, when the adapter was published: an answer credits only the data its adapter
/// was trained on.
async fn check_trained<'a>(
    tx: &mut Transaction<'static, Any>,
    trained: impl Iterator<Item = &'a TrainedChunk>,
) -> Result<()> {
    let mut wanted: Vec<(&str, &str, i64, &str)> =
        trained.map(|c| (c.adapter.as_str(), c.training_root.as_str(), c.datanet_id, c.chunk_id.as_str())).collect();
    wanted.sort_unstable();
    wanted.dedup();
    for (adapter, root, datanet_id, chunk_id) in wanted {
        let found = sqlx::query(
            "SELECT 1 AS x FROM adapter_training_chunks c JOIN adapter_training_sets s \
             ON s.adapter = c.adapter AND s.root = c.root \
             WHERE c.adapter = $1 AND c.root = $2 AND s.datanet_id = $3 AND c.chunk_id = $4",
        )
        .bind(adapter)
        .bind(root)
        .bind(datanet_id)
        .bind(chunk_id)
        .fetch_optional(&mut **tx)
        .await?;
        if found.is_none() {
            return Err(Error::InvalidArgument(format!(
                "chunk {chunk_id} is not in the training data registered for adapter {adapter} (root {root})"
            )));
        }
    }
    Ok(())
}

/// The last settled entry id (0 before the first epoch).
async fn settled_upto(tx: &mut Transaction<'static, Any>) -> Result<i64> {
    let row = sqlx::query("SELECT MAX(last_entry) AS n FROM epochs").fetch_one(&mut **tx).await?;
    Ok(row.try_get::<Option<i64>, _>("n")?.unwrap_or(0))
}

/// A value bound into a multi-row INSERT.
pub(crate) enum Param {
    Int(Option<i64>),
    Text(Option<String>),
}

/// Whether `tx` runs on SQLite (whose statements take anonymous `?` parameters; see
/// [`crate::payers::placeholders_for`]).
pub(crate) fn is_sqlite(tx: &Transaction<'static, Any>) -> bool {
    tx.backend_name().eq_ignore_ascii_case("sqlite")
}

/// `head` followed by `rows` as multi-row VALUES lists, a few hundred parameters a statement.
pub(crate) async fn insert_rows(tx: &mut Transaction<'static, Any>, head: &str, rows: Vec<Vec<Param>>) -> Result<()> {
    insert_rows_with(tx, head, "", rows).await
}

/// [`insert_rows`] with `tail` after the VALUES lists (an `ON CONFLICT` clause).
pub(crate) async fn insert_rows_with(
    tx: &mut Transaction<'static, Any>,
    head: &str,
    tail: &str,
    rows: Vec<Vec<Param>>,
) -> Result<()> {
    let Some(width) = rows.first().map(Vec::len) else { return Ok(()) };
    let sqlite = is_sqlite(tx);
    for batch in rows.chunks((900 / width).max(1)) {
        let mut sql = String::from(head);
        for i in 0..batch.len() {
            let values = crate::payers::placeholders_for(sqlite, i * width + 1, width);
            sql.push_str(&format!("{}({values})", if i > 0 { ", " } else { " " }));
        }
        sql.push_str(tail);
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in batch {
            for value in row {
                query = match value {
                    Param::Int(v) => query.bind(*v),
                    Param::Text(v) => query.bind(v.clone()),
                };
            }
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The policy as stored (the default without one), inside a transaction.
pub(crate) async fn read_policy(tx: &mut Transaction<'static, Any>) -> Result<Policy> {
    Ok(read_setting(&mut **tx, "policy").await?.unwrap_or_default())
}

/// One JSON setting, read through the pool or inside a transaction.
async fn read_setting<'e, T, E>(executor: E, scope: &str) -> Result<Option<T>>
where
    T: serde::de::DeserializeOwned,
    E: sqlx::Executor<'e, Database = Any>,
{
    let row =
        sqlx::query("SELECT value FROM ledger_settings WHERE scope = $1").bind(scope).fetch_optional(executor).await?;
    match row {
        Some(row) => {
            let text: String = row.try_get("value")?;
            let value =
                serde_json::from_str(&text).map_err(|e| Error::Inconsistent(format!("stored setting {scope}: {e}")))?;
            Ok(Some(value))
        }
        None => Ok(None),
    }
}

/// An epoch's payout tree: its leaves, the tree (none without leaves) and the root as stored.
struct EpochTree {
    leaves: Vec<PayoutLeaf>,
    tree: Option<PayoutTree>,
    root: String,
}

/// The tree of an epoch whose accounts hold `cumulative` totals (accounts at zero have no leaf;
/// no leaf at all gives the zero root). `indices` holds every account's index from earlier
/// epochs; accounts new to it are appended, in address order. What `settle` stores and `verify`
/// recomputes.
fn epoch_tree(cumulative: &BTreeMap<String, i128>, indices: &mut BTreeMap<String, u64>) -> Result<EpochTree> {
    let mut next = indices.values().max().map_or(0, |i| i + 1);
    let mut leaves = Vec::new();
    for (account, total) in cumulative.iter().filter(|(_, v)| **v > 0) {
        let index = *indices.entry(account.clone()).or_insert_with(|| {
            next += 1;
            next - 1
        });
        leaves.push(PayoutLeaf { index, account: parse_address(account)?, cumulative: *total as Amount });
    }
    let tree = PayoutTree::new(&leaves);
    let root = tree.as_ref().map(|t| merkle::to_hex(&t.root())).unwrap_or_else(|| format!("0x{GENESIS}"));
    Ok(EpochTree { leaves, tree, root })
}

/// An `epoch_accounts` row (account, account_index, cumulative) of epoch `number` as a leaf.
fn stored_leaf(row: &AnyRow, number: i64) -> Result<PayoutLeaf> {
    let index = u64::try_from(row.try_get::<i64, _>("account_index")?)
        .map_err(|_| Error::Inconsistent(format!("epoch {number} predates payout indices: settle again")))?;
    let cumulative: String = row.try_get("cumulative")?;
    Ok(PayoutLeaf {
        index,
        account: parse_address(&row.try_get::<String, _>("account")?)?,
        cumulative: cumulative.parse().map_err(|_| Error::Inconsistent(format!("stored cumulative {cumulative:?}")))?,
    })
}

/// A proof as `epoch_accounts.proof` stores it: a JSON list of 0x-hex hashes.
fn proof_json(proof: &[merkle::Hash32]) -> String {
    let hexes: Vec<String> = proof.iter().map(merkle::to_hex).collect();
    serde_json::Value::from(hexes).to_string()
}

fn entry_from_row(row: &AnyRow) -> Result<Entry> {
    let role: String = row.try_get("role")?;
    let sentences: Option<String> = row.try_get("sentences")?;
    Ok(Entry {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        receipt_id: row.try_get("receipt_id")?,
        flag_id: row.try_get("flag_id")?,
        offsets: row.try_get("offsets")?,
        account: parse_address(&row.try_get::<String, _>("account")?)?,
        role: Role::parse(&role).ok_or_else(|| Error::Inconsistent(format!("stored role {role:?}")))?,
        amount: parse_signed(&row.try_get::<String, _>("amount")?)?,
        datanet_id: row.try_get("datanet_id")?,
        datanet: row.try_get("datanet_name")?,
        chunk_id: row.try_get("chunk_id")?,
        sentences: match sentences {
            Some(json) => {
                serde_json::from_str(&json).map_err(|e| Error::Inconsistent(format!("stored sentences: {e}")))?
            }
            None => Vec::new(),
        },
        epoch: None,
        created_at_ms: row.try_get("created_at")?,
    })
}

const ENTRY_COLUMNS: &str = "e.id, e.kind, e.receipt_id, e.flag_id, e.offsets, e.account, e.role, e.amount, \
     e.datanet_id, d.name AS datanet_name, e.chunk_id, e.sentences, e.created_at \
     FROM ledger_entries e LEFT JOIN datanets d ON d.id = e.datanet_id";

fn epoch_from_row(row: &AnyRow) -> Result<Epoch> {
    let total: String = row.try_get("total")?;
    Ok(Epoch {
        number: row.try_get("number")?,
        last_entry: row.try_get("last_entry")?,
        root: row.try_get("root")?,
        receipts_head: row.try_get("receipts_head")?,
        total: total.parse().map_err(|_| Error::Inconsistent(format!("stored epoch total {total:?}")))?,
        accounts: row.try_get("accounts")?,
        entries: row.try_get("entries")?,
        closed_at_ms: row.try_get("closed_at")?,
    })
}

fn flag_from_row(row: &AnyRow) -> Result<Flag> {
    Ok(Flag {
        id: row.try_get("id")?,
        datanet_id: row.try_get("datanet_id")?,
        kind: row.try_get("kind")?,
        target: row.try_get("target")?,
        reason: row.try_get("reason")?,
        actor: row.try_get("actor")?,
        active: row.try_get::<i64, _>("active")? != 0,
        created_at_ms: row.try_get("created_at")?,
    })
}

impl Ledger {
    /// The ledger in the catalog's database (its migrations create the tables).
    pub fn new(catalog: &Catalog) -> Ledger {
        Ledger { pool: catalog.pool().clone(), backend: catalog.backend() }
    }

    async fn setting<T: serde::de::DeserializeOwned>(&self, scope: &str) -> Result<Option<T>> {
        read_setting(&self.pool, scope).await
    }

    async fn set_setting<T: serde::Serialize>(&self, scope: &str, value: &T) -> Result<()> {
        let text = serde_json::to_string(value).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        sqlx::query(
            "INSERT INTO ledger_settings (scope, value) VALUES ($1, $2) \
             ON CONFLICT (scope) DO UPDATE SET value = excluded.value",
        )
        .bind(scope)
        .bind(text)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A named position (where a chain sync stopped), kept in the ledger's settings.
    pub async fn sync_cursor(&self, name: &str) -> Result<Option<String>> {
        self.setting(&format!("cursor:{name}")).await
    }

    pub async fn set_sync_cursor(&self, name: &str, value: &str) -> Result<()> {
        self.set_setting(&format!("cursor:{name}"), &value).await
    }

    pub async fn policy(&self) -> Result<Policy> {
        Ok(self.setting("policy").await?.unwrap_or_default())
    }

    pub async fn set_policy(&self, policy: &Policy) -> Result<()> {
        policy.validate()?;
        self.set_setting("policy", policy).await
    }

    pub async fn datanet_pricing(&self, datanet_id: i64) -> Result<DatanetPricing> {
        Ok(self.setting(&format!("datanet:{datanet_id}")).await?.unwrap_or_default())
    }

    /// Sets a Datanet's price; one above the policy's cap is refused.
    pub async fn set_datanet_pricing(&self, datanet_id: i64, pricing: &DatanetPricing) -> Result<()> {
        if let Some(fee) = pricing.fee {
            policy::check_price(fee)?;
            let cap = self.policy().await?.max_datanet_fee;
            if fee > cap {
                return Err(Error::InvalidArgument(format!("a Datanet's price may be at most {cap}, not {fee}")));
            }
        }
        self.set_setting(&format!("datanet:{datanet_id}"), pricing).await
    }

    /// Registers the training data of an adapter as published: the chunks of Datanet
    /// `datanet_id` its training log (root `root`) names. Answers of the adapter may then
    /// credit those chunks, and only those. Idempotent; a set, once registered, never changes
    /// (a republished adapter has another root, hence another set).
    pub async fn register_training(&self, adapter: &str, root: &str, datanet_id: i64, chunks: &[String]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let existing = sqlx::query("SELECT datanet_id FROM adapter_training_sets WHERE adapter = $1 AND root = $2")
            .bind(adapter)
            .bind(root)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            if row.try_get::<i64, _>("datanet_id")? != datanet_id {
                return Err(Error::InvalidArgument(format!(
                    "adapter {adapter}'s training root {root} is registered for another Datanet"
                )));
            }
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO adapter_training_sets (adapter, root, datanet_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(adapter)
        .bind(root)
        .bind(datanet_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let mut chunks: Vec<&String> = chunks.iter().collect();
        chunks.sort_unstable();
        chunks.dedup();
        let rows = chunks
            .into_iter()
            .map(|c| {
                vec![
                    Param::Text(Some(adapter.to_string())),
                    Param::Text(Some(root.to_string())),
                    Param::Text(Some(c.clone())),
                ]
            })
            .collect();
        insert_rows(&mut tx, "INSERT INTO adapter_training_chunks (adapter, root, chunk_id) VALUES", rows).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn adapter_pricing(&self, adapter: &str) -> Result<AdapterPricing> {
        Ok(self.setting(&format!("adapter:{adapter}")).await?.unwrap_or_default())
    }

    /// Sets an adapter's surcharge and owner; a surcharge above the policy's cap, or the zero
    /// address as owner, is refused.
    pub async fn set_adapter_pricing(&self, adapter: &str, pricing: &AdapterPricing) -> Result<()> {
        policy::check_price(pricing.fee)?;
        let cap = self.policy().await?.max_adapter_fee;
        if pricing.fee > cap {
            return Err(Error::InvalidArgument(format!(
                "an adapter's surcharge may be at most {cap}, not {}",
                pricing.fee
            )));
        }
        if pricing.owner == Some(Address::ZERO) {
            return Err(Error::InvalidArgument("an adapter's owner cannot be the zero address".into()));
        }
        self.set_setting(&format!("adapter:{adapter}"), pricing).await
    }

    /// Forgets an adapter's surcharge and owner (it was unregistered): another adapter
    /// registered later under the same name starts unpriced and unowned. Receipts keep the
    /// owners they paid.
    pub async fn clear_adapter_pricing(&self, adapter: &str) -> Result<()> {
        sqlx::query("DELETE FROM ledger_settings WHERE scope = $1")
            .bind(format!("adapter:{adapter}"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The fee of a question over `datanets` with `adapters`: each distinct Datanet's price (or
    /// the default) plus each distinct adapter's surcharge, each within the policy's caps; at
    /// most [`MAX_DATANETS`] Datanets and [`MAX_ADAPTERS`] adapters. Ablation weighting when any
    /// of the Datanets asks for it, since it is the finer measure.
    pub async fn quote(&self, datanets: &[Datanet], adapters: &[String]) -> Result<Quote> {
        let mut datanets: Vec<&Datanet> = datanets.iter().collect();
        datanets.sort_by_key(|d| d.id);
        datanets.dedup_by_key(|d| d.id);
        let mut adapters: Vec<&String> = adapters.iter().collect();
        adapters.sort();
        adapters.dedup();
        if datanets.len() > MAX_DATANETS || adapters.len() > MAX_ADAPTERS {
            return Err(Error::InvalidArgument(format!(
                "a question names at most {MAX_DATANETS} Datanets and {MAX_ADAPTERS} adapters"
            )));
        }
        let policy = self.policy().await?;
        let mut fee: Amount = 0;
        let mut weighting = Weighting::Citation;
        for datanet in datanets {
            let pricing = self.datanet_pricing(datanet.id).await?;
            fee += policy.datanet_fee(&pricing);
            if pricing.weighting.unwrap_or(policy.default_weighting) == Weighting::Ablation {
                weighting = Weighting::Ablation;
            }
        }
        let mut adapter_owners = Vec::new();
        for adapter in adapters {
            let pricing = self.adapter_pricing(adapter).await?;
            fee += policy.adapter_fee(&pricing);
            if let Some(owner) = pricing.owner
                && owner != Address::ZERO
            {
                adapter_owners.push(owner.to_checksummed());
            }
        }
        Ok(Quote { fee, weighting, adapter_owners })
    }

    /// Writes the receipt and its credits in one transaction, linked to the chain's head.
    pub async fn record(&self, new: NewReceipt) -> Result<Receipt> {
        let mut receipts = self.record_many(vec![new]).await?;
        receipts.pop().ok_or_else(|| Error::Inconsistent("a recorded batch of one came back empty".into()))
    }

    /// Writes several answers' receipts and credits in one transaction (group commit: what a
    /// server under load does with answers finishing together), chained in order. All or none.
    pub async fn record_many(&self, batch: Vec<NewReceipt>) -> Result<Vec<Receipt>> {
        let mut owners_of = Vec::with_capacity(batch.len());
        for new in &batch {
            let adapter_owners: Vec<Address> = new
                .quote
                .adapter_owners
                .iter()
                .map(|a| {
                    a.parse().map_err(|_| Error::InvalidArgument(format!("adapter owner {a:?} is not an address")))
                })
                .collect::<Result<_>>()?;
            for chunk in &new.cited {
                if !new.retrieved.iter().any(|r| r.chunk_id == chunk.chunk_id && r.datanet == chunk.datanet) {
                    return Err(Error::InvalidArgument(format!("cited chunk {} was not retrieved", chunk.chunk_id)));
                }
            }
            policy::check_weights(&new.cited, &new.trained)?;
            for chunk in &new.trained {
                if !new.adapters.iter().any(|(name, _)| *name == chunk.adapter) {
                    return Err(Error::InvalidArgument(format!(
                        "training chunk {} is credited for adapter {}, which the answer did not use",
                        chunk.chunk_id, chunk.adapter
                    )));
                }
            }
            owners_of.push(adapter_owners);
        }
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let policy: Policy = read_setting(&mut *tx, "policy").await?.unwrap_or_default();
        let mut prev = head(&mut tx).await?;
        let wanted: Vec<(i64, String)> = batch
            .iter()
            .flat_map(|n| {
                let cited = n.cited.iter().map(|c| (c.datanet_id, c.chunk_id.clone()));
                cited.chain(n.trained.iter().map(|c| (c.datanet_id, c.chunk_id.clone())))
            })
            .collect();
        let (payees, flagged) = payees(&mut tx, wanted).await?;
        check_trained(&mut tx, batch.iter().flat_map(|n| &n.trained)).await?;
        let mut out = Vec::with_capacity(batch.len());
        let (mut receipt_rows, mut entry_rows) = (Vec::new(), Vec::new());
        let (mut charges, mut holds) = (Vec::new(), Vec::new());
        for (new, adapter_owners) in batch.into_iter().zip(owners_of) {
            // What is charged: the quote, or nothing for an unpaid answer (which credits no one).
            let (fee, payment, payer) = match &new.payment {
                Payment::Unpaid => (0, ReceiptPayment { paid_by: PaidBy::Unpaid, payer: None }, None),
                Payment::Charge { payer, hold } => {
                    holds.extend(hold.clone());
                    let paid_by = match payer {
                        Payer::Address(_) => PaidBy::Payer,
                        Payer::Sponsor(_) => PaidBy::Sponsor,
                    };
                    (new.quote.fee, ReceiptPayment { paid_by, payer: Some(payer.display()) }, Some(*payer))
                }
            };
            if fee > 0 {
                policy.check_payable()?;
            }
            // The catalog decides who a chunk pays: its first contributor and its Datanet's owner.
            let mut cited = new.cited.clone();
            for chunk in &mut cited {
                let Some((contributor, owner)) = payees.get(&(chunk.datanet_id, chunk.chunk_id.clone())) else {
                    return Err(Error::NotFound(format!("chunk {} in Datanet {}", chunk.chunk_id, chunk.datanet)));
                };
                (chunk.contributor, chunk.datanet_owner) = (*contributor, *owner);
            }
            let mut trained = new.trained.clone();
            for chunk in &mut trained {
                let Some((contributor, _)) = payees.get(&(chunk.datanet_id, chunk.chunk_id.clone())) else {
                    return Err(Error::NotFound(format!("chunk {} in Datanet {}", chunk.chunk_id, chunk.datanet)));
                };
                chunk.contributor = *contributor;
            }
            let splits = split_fee(fee, &policy.shares, policy.protocol_account, &adapter_owners, &cited, &trained);
            let mut split = SplitSummary::default();
            for s in &splits {
                let group = match s.role {
                    Role::Protocol | Role::Sink => &mut split.protocol,
                    Role::AdapterOwner => &mut split.adapter_owners,
                    Role::DatanetOwner => &mut split.datanet_owners,
                    Role::Contributor => &mut split.contributors,
                    Role::TrainingContributor => &mut split.training,
                };
                *group += s.amount;
            }
            let prev_hash = prev.clone();
            let created_at_ms = now_ms();
            let question_hash = blake3::hash(new.question.as_bytes()).to_hex().to_string();
            let id_seed = format!("{prev_hash}:{created_at_ms}:{question_hash}:{}", new.answer.len());
            let id = blake3::hash(id_seed.as_bytes()).to_hex()[..32].to_string();
            let credits = receipt_credits(&splits, &cited, &trained);
            let mut receipt = Receipt {
                id,
                created_at_ms,
                prev_hash,
                question_hash,
                question: new.keep_question.then(|| new.question.clone()),
                datanets: new.datanets.clone(),
                model: new.model.clone(),
                adapters: new.adapters.clone(),
                answer: new.answer.clone(),
                retrieved: new.retrieved.clone(),
                cited,
                trained,
                weighting: new.quote.weighting,
                fee,
                shares: policy.shares,
                protocol_account: policy.protocol_account.to_checksummed(),
                adapter_owners: adapter_owners.iter().map(Address::to_checksummed).collect(),
                split,
                credits,
                payment: Some(payment),
                hash: String::new(),
            };
            let body = receipt.body_json()?;
            receipt.hash = blake3::hash(body.as_bytes()).to_hex().to_string();
            receipt_rows.push(vec![
                Param::Text(Some(receipt.id.clone())),
                Param::Int(Some(created_at_ms)),
                Param::Text(Some(receipt.fee.to_string())),
                Param::Text(Some(receipt.prev_hash.clone())),
                Param::Text(Some(receipt.hash.clone())),
                Param::Text(Some(body)),
            ]);
            for s in &splits {
                let sentences = (!s.sentences.is_empty())
                    .then(|| serde_json::to_string(&s.sentences).unwrap_or_else(|_| "[]".into()));
                entry_rows.push(vec![
                    Param::Text(Some("credit".into())),
                    Param::Text(Some(receipt.id.clone())),
                    Param::Text(Some(s.account.to_lower_hex())),
                    Param::Text(Some(s.role.as_str().into())),
                    Param::Text(Some(s.amount.to_string())),
                    Param::Int(s.datanet_id),
                    Param::Text(s.chunk_id.clone()),
                    Param::Text(sentences),
                    Param::Int(Some(created_at_ms)),
                ]);
            }
            if let Some(payer) = payer
                && fee > 0
            {
                charges.push(Move {
                    kind: "charge",
                    key: format!("receipt:{}", receipt.id),
                    debit: payer.account(),
                    credit: FEES.into(),
                    amount: fee,
                    receipt_id: Some(receipt.id.clone()),
                });
            }
            prev = receipt.hash.clone();
            out.push(receipt);
        }
        let entries_before: Option<i64> = if flagged {
            Some(
                sqlx::query("SELECT COALESCE(MAX(id), 0) AS n FROM ledger_entries")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?,
            )
        } else {
            None
        };
        // Receipts first: every credit's foreign key names one.
        insert_rows(&mut tx, "INSERT INTO receipts (id, created_at, fee, prev_hash, hash, body) VALUES", receipt_rows)
            .await?;
        insert_rows(
            &mut tx,
            "INSERT INTO ledger_entries (kind, receipt_id, account, role, amount, datanet_id, chunk_id, sentences, \
             created_at) VALUES",
            entry_rows,
        )
        .await?;
        // An answer retrieved before a flag and recorded after it: its credits to the flagged
        // target are slashed now, as the flag slashed every credit before it.
        if let Some(after) = entries_before {
            slash_flagged_since(&mut tx, after, &policy, now_ms()).await?;
        }
        // The payers pay what the credits divide (refused, with nothing written, when a payer
        // cannot); the holds placed for these answers are spent.
        payers::apply(&mut tx, &charges, &holds).await?;
        for batch in holds.chunks(200) {
            let sql = format!("DELETE FROM payer_holds WHERE id IN ({})", payers::placeholders(&tx, 1, batch.len()));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in batch {
                query = query.bind(id.clone());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    pub async fn receipt(&self, id: &str) -> Result<Receipt> {
        let row = sqlx::query("SELECT body, hash FROM receipts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("receipt {id}")))?;
        let body: String = row.try_get("body")?;
        let mut receipt: Receipt =
            serde_json::from_str(&body).map_err(|e| Error::Inconsistent(format!("receipt {id}: {e}")))?;
        receipt.hash = row.try_get("hash")?;
        Ok(receipt)
    }

    /// Entries of one receipt (its credits), in order.
    pub async fn receipt_entries(&self, id: &str) -> Result<Vec<Entry>> {
        self.entries_where("e.receipt_id", id.to_string()).await
    }

    /// The entries whose `column` equals `value`, in order, with the epoch each landed in.
    async fn entries_where(&self, column: &str, value: String) -> Result<Vec<Entry>> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {ENTRY_COLUMNS} WHERE {column} = $1 ORDER BY e.id")))
            .bind(value)
            .fetch_all(&self.pool)
            .await?;
        let epochs = self.epochs().await?;
        let mut entries: Vec<Entry> = rows.iter().map(entry_from_row).collect::<Result<_>>()?;
        for e in &mut entries {
            e.epoch = epoch_of(&epochs, e.id);
        }
        Ok(entries)
    }

    /// Checks the operator from the data alone: re-hashes every receipt and follows the chain,
    /// recomputes every answer's split from the inputs its receipt records and compares it with
    /// the receipt's credits and the ledger's entries, and rebuilds every epoch (cumulative
    /// totals from the entries, the tree, the root, each stored proof).
    pub async fn verify(&self) -> Result<VerifyReport> {
        let rows =
            sqlx::query("SELECT id, prev_hash, hash, body FROM receipts ORDER BY seq").fetch_all(&self.pool).await?;
        let mut entries_by_receipt: BTreeMap<String, Vec<(String, Role, i128)>> = BTreeMap::new();
        let credit_rows = sqlx::query(
            "SELECT receipt_id, account, role, amount FROM ledger_entries WHERE kind = 'credit' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &credit_rows {
            let role: String = row.try_get("role")?;
            let role = Role::parse(&role).ok_or_else(|| Error::Inconsistent(format!("stored role {role:?}")))?;
            let account = parse_address(&row.try_get::<String, _>("account")?)?.to_checksummed();
            let amount = parse_signed(&row.try_get::<String, _>("amount")?)?;
            entries_by_receipt.entry(row.try_get("receipt_id")?).or_default().push((account, role, amount));
        }
        let mut problems = Vec::new();
        let mut charges = self.verify_payers(&mut problems).await?;
        let mut expected_prev = GENESIS.to_string();
        let mut head = GENESIS.to_string();
        let mut chain_intact = true;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let prev: String = row.try_get("prev_hash")?;
            let hash: String = row.try_get("hash")?;
            let body: String = row.try_get("body")?;
            if prev != expected_prev {
                problems.push(format!("receipt {id}: its prev_hash is not the previous receipt's hash"));
                chain_intact = false;
            }
            if blake3::hash(body.as_bytes()).to_hex().as_str() != hash {
                problems.push(format!("receipt {id}: its body does not hash to its hash"));
                chain_intact = false;
            }
            if chain_intact {
                head = hash.clone();
            }
            expected_prev = hash;
            let receipt: Receipt = match serde_json::from_str(&body) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("receipt {id}: its body does not parse: {e}"));
                    continue;
                }
            };
            if receipt.id != id || receipt.prev_hash != prev {
                problems.push(format!("receipt {id}: its body names another id or link"));
            }
            if let Some(problem) = check_split(&receipt) {
                problems.push(format!("receipt {id}: {problem}"));
            }
            if let Some(problem) = self.check_trained_registered(&receipt).await? {
                problems.push(format!("receipt {id}: {problem}"));
            }
            if let Some(problem) = check_payment(&receipt, charges.remove(&id)) {
                problems.push(format!("receipt {id}: {problem}"));
            }
            let listed: Vec<(String, Role, i128)> =
                receipt.credits.iter().map(|c| (c.account.clone(), c.role, c.amount as i128)).collect();
            if entries_by_receipt.remove(&id).unwrap_or_default() != listed {
                problems.push(format!("receipt {id}: its ledger entries differ from its credits"));
            }
        }
        for id in entries_by_receipt.keys() {
            problems.push(format!("credits name receipt {id}, which does not exist"));
        }
        for id in charges.keys() {
            problems.push(format!("a charge names receipt {id}, which is not a paid receipt"));
        }
        let epochs = self.verify_epochs(&mut problems).await?;
        Ok(VerifyReport { receipts: rows.len(), epochs, head, problems })
    }

    /// Whether every training chunk a receipt credits was registered for its adapter and root,
    /// and its adapter is one the receipt names; `Some(why)` when not.
    async fn check_trained_registered(&self, receipt: &Receipt) -> Result<Option<String>> {
        if receipt.trained.is_empty() {
            return Ok(None);
        }
        if let Some(chunk) =
            receipt.trained.iter().find(|c| !receipt.adapters.iter().any(|(name, _)| *name == c.adapter))
        {
            return Ok(Some(format!("it credits training data of adapter {}, which it did not use", chunk.adapter)));
        }
        let mut tx = self.pool.begin().await?;
        match check_trained(&mut tx, receipt.trained.iter()).await {
            Ok(()) => Ok(None),
            Err(Error::InvalidArgument(why)) => Ok(Some(why)),
            Err(e) => Err(e),
        }
    }

    async fn verify_epochs(&self, problems: &mut Vec<String>) -> Result<usize> {
        let epochs = self.epochs().await?;
        let mut cumulative: BTreeMap<String, i128> = BTreeMap::new();
        let mut indices: BTreeMap<String, u64> = BTreeMap::new();
        for (i, epoch) in epochs.iter().enumerate() {
            let n = epoch.number;
            if n != i as i64 + 1 {
                problems.push(format!("epoch {n}: epochs are not numbered 1, 2, 3, ..."));
            }
            let after = if i == 0 { 0 } else { epochs[i - 1].last_entry };
            if epoch.last_entry < after {
                problems.push(format!("epoch {n}: its entries end before the previous epoch's"));
            }
            let rows = sqlx::query("SELECT account, amount FROM ledger_entries WHERE id > $1 AND id <= $2")
                .bind(after)
                .bind(epoch.last_entry)
                .fetch_all(&self.pool)
                .await?;
            if rows.len() as i64 != epoch.entries {
                problems.push(format!("epoch {n}: {} entries, the epoch says {}", rows.len(), epoch.entries));
            }
            for row in rows {
                *cumulative.entry(row.try_get("account")?).or_default() +=
                    parse_signed(&row.try_get::<String, _>("amount")?)?;
            }
            let EpochTree { tree, root, .. } = epoch_tree(&cumulative, &mut indices)?;
            if root != epoch.root {
                problems.push(format!("epoch {n}: the entries give root {root}, the epoch says {}", epoch.root));
            }
            let stored =
                sqlx::query("SELECT account, account_index, cumulative, proof FROM epoch_accounts WHERE epoch = $1")
                    .bind(n)
                    .fetch_all(&self.pool)
                    .await?;
            let mut stored_by_account = BTreeMap::new();
            for row in stored {
                let account: String = row.try_get("account")?;
                let stored = (
                    row.try_get::<i64, _>("account_index")?,
                    row.try_get::<String, _>("cumulative")?,
                    row.try_get::<String, _>("proof")?,
                );
                stored_by_account.insert(account, stored);
            }
            for (leaf, proof) in tree.map(|t| t.proofs()).unwrap_or_default() {
                let want = (leaf.index as i64, leaf.cumulative.to_string(), proof_json(&proof));
                if stored_by_account.remove(&leaf.account.to_lower_hex()).as_ref() != Some(&want) {
                    problems.push(format!(
                        "epoch {n}: {}'s stored index, total or proof differs",
                        leaf.account.to_checksummed()
                    ));
                }
            }
            for account in stored_by_account.keys() {
                problems.push(format!("epoch {n}: stores {account}, which has no cumulative total"));
            }
        }
        Ok(epochs.len())
    }

    /// What `account` earned, with every entry.
    pub async fn earnings(&self, account: &Address) -> Result<Earnings> {
        Ok(self.earnings_page(account, None, None).await?.0)
    }

    /// What `account` earned, with one page of its entries: those after entry `after`, in
    /// order, at most `limit` (all without one), and the id to continue after when more
    /// remain. The totals cover every entry but read only their amounts; a page reads only
    /// its own entries (it read them all, sentences included, for every page).
    /// Per contributor of a Datanet, what their chunks earned there, cited or trained on (the
    /// contributor roles only: a Datanet owner's share is not a contribution); `citations`
    /// counts the citations' credits.
    pub async fn contributor_earnings(&self, datanet_id: i64) -> Result<Vec<ContributorEarnings>> {
        let rows = sqlx::query(
            "SELECT account, kind, role, amount FROM ledger_entries WHERE datanet_id = $1 \
             AND role IN ('contributor', 'training_contributor')",
        )
        .bind(datanet_id)
        .fetch_all(&self.pool)
        .await?;
        let mut by_account: BTreeMap<String, (u64, i128)> = BTreeMap::new();
        for row in &rows {
            let tally = by_account.entry(row.try_get("account")?).or_default();
            if row.try_get::<String, _>("kind")? == "credit" && row.try_get::<String, _>("role")? == "contributor" {
                tally.0 += 1;
            }
            tally.1 += parse_signed(&row.try_get::<String, _>("amount")?)?;
        }
        by_account
            .into_iter()
            .map(|(account, (citations, earned))| {
                Ok(ContributorEarnings { contributor: parse_address(&account)?, citations, earned })
            })
            .collect()
    }

    pub async fn earnings_page(
        &self,
        account: &Address,
        after: Option<i64>,
        limit: Option<usize>,
    ) -> Result<(Earnings, Option<i64>)> {
        let epochs = self.epochs().await?;
        let amounts = sqlx::query(
            "SELECT e.id, e.kind, e.amount, d.name AS datanet_name \
             FROM ledger_entries e LEFT JOIN datanets d ON d.id = e.datanet_id WHERE e.account = $1",
        )
        .bind(account.to_lower_hex())
        .fetch_all(&self.pool)
        .await?;
        let mut by_datanet: BTreeMap<String, i128> = BTreeMap::new();
        let mut by_epoch: BTreeMap<i64, i128> = BTreeMap::new();
        let (mut total, mut settled, mut slashed) = (0i128, 0i128, 0i128);
        for row in &amounts {
            let amount = parse_signed(&row.try_get::<String, _>("amount")?)?;
            total += amount;
            if let Some(epoch) = epoch_of(&epochs, row.try_get("id")?) {
                settled += amount;
                *by_epoch.entry(epoch).or_default() += amount;
            }
            if let Some(name) = row.try_get::<Option<String>, _>("datanet_name")? {
                *by_datanet.entry(name).or_default() += amount;
            }
            if row.try_get::<String, _>("kind")? == "slash" && amount < 0 {
                slashed -= amount;
            }
        }
        // One more than the page, to know whether another follows.
        let fetch = limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX - 1).saturating_add(1));
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} WHERE e.account = $1 AND e.id > $2 ORDER BY e.id LIMIT $3"
        )))
        .bind(account.to_lower_hex())
        .bind(after.unwrap_or(i64::MIN))
        .bind(fetch)
        .fetch_all(&self.pool)
        .await?;
        let mut entries: Vec<Entry> = rows.iter().map(entry_from_row).collect::<Result<_>>()?;
        for e in &mut entries {
            e.epoch = epoch_of(&epochs, e.id);
        }
        let next = match limit {
            Some(limit) if entries.len() > limit => {
                entries.truncate(limit);
                entries.last().map(|e| e.id)
            }
            _ => None,
        };
        let earnings = Earnings {
            account: *account,
            total,
            settled,
            unsettled: total - settled,
            slashed,
            by_datanet: by_datanet.into_iter().map(|(datanet, amount)| DatanetEarnings { datanet, amount }).collect(),
            by_epoch: by_epoch.into_iter().map(|(epoch, amount)| EpochEarnings { epoch, amount }).collect(),
            entries,
        };
        Ok((earnings, next))
    }

    /// Flags a chunk, document or contributor of a Datanet: retrieval leaves it out from now
    /// on (the catalog reads `flags`), and its unsettled contributor credits (for citations and
    /// for training data alike) are slashed to the
    /// policy's slash sink. Flagging an already-flagged target changes nothing.
    pub async fn flag(&self, datanet_id: i64, target: &FlagTarget, reason: &str, actor: &str) -> Result<FlagOutcome> {
        if reason.trim().is_empty() {
            return Err(Error::InvalidArgument("a flag needs a reason".into()));
        }
        let policy = self.policy().await?;
        let (kind, value) = (target.kind(), target.value());
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let exists = match target {
            FlagTarget::Chunk(id) => sqlx::query("SELECT 1 AS x FROM chunks WHERE datanet_id = $1 AND chunk_id = $2")
                .bind(datanet_id)
                .bind(id),
            FlagTarget::Document(id) => {
                sqlx::query("SELECT 1 AS x FROM documents WHERE datanet_id = $1 AND id = $2").bind(datanet_id).bind(*id)
            }
            FlagTarget::Contributor(a) => {
                sqlx::query("SELECT 1 AS x FROM documents WHERE datanet_id = $1 AND contributor = $2")
                    .bind(datanet_id)
                    .bind(a.to_lower_hex())
            }
        }
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Err(Error::NotFound(format!("{kind} {value} in this Datanet")));
        }
        let active = sqlx::query(
            "SELECT id, datanet_id, kind, target, reason, actor, active, created_at FROM flags \
             WHERE datanet_id = $1 AND kind = $2 AND target = $3 AND active = 1",
        )
        .bind(datanet_id)
        .bind(kind)
        .bind(&value)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = active {
            let flag = flag_from_row(&row)?;
            tx.rollback().await?;
            return Ok(FlagOutcome { flag, already_flagged: true, slashed_credits: 0, slashed: 0 });
        }
        let now = now_ms();
        let row = sqlx::query(
            "INSERT INTO flags (datanet_id, kind, target, reason, actor, active, created_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6) RETURNING id",
        )
        .bind(datanet_id)
        .bind(kind)
        .bind(&value)
        .bind(reason)
        .bind(actor)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let flag_id: i64 = row.try_get("id")?;
        sqlx::query(
            "INSERT INTO flag_events (flag_id, action, actor, reason, created_at) VALUES ($1, 'flag', $2, $3, $4)",
        )
        .bind(flag_id)
        .bind(actor)
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let matching = match target {
            FlagTarget::Chunk(_) => "e.chunk_id = $2",
            FlagTarget::Contributor(_) => "e.account = $2",
            FlagTarget::Document(_) => {
                "e.chunk_id IN (SELECT c.chunk_id FROM chunks c WHERE c.datanet_id = $1 \
                 AND CAST(c.document_id AS TEXT) = $2)"
            }
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT e.id, e.account, e.role, e.amount, e.chunk_id FROM ledger_entries e \
             WHERE e.kind = 'credit' AND e.role IN ('contributor', 'training_contributor') AND e.id > $3 \
             AND e.datanet_id = $1 \
             AND {matching} AND NOT EXISTS (SELECT 1 FROM ledger_entries s WHERE s.kind = 'slash' AND s.offsets = e.id) \
             ORDER BY e.id"
        )))
        .bind(datanet_id)
        .bind(&value)
        .bind(settled_upto(&mut tx).await?)
        .fetch_all(&mut *tx)
        .await?;
        let mut slashed: Amount = 0;
        for row in &rows {
            slashed += slash_credit(&mut tx, row, flag_id, datanet_id, &policy, now).await?;
        }
        tx.commit().await?;
        let flag = Flag {
            id: flag_id,
            datanet_id,
            kind: kind.into(),
            target: value,
            reason: reason.into(),
            actor: actor.into(),
            active: true,
            created_at_ms: now,
        };
        Ok(FlagOutcome { flag, already_flagged: false, slashed_credits: rows.len(), slashed })
    }

    /// Lifts a flag: the target returns to retrieval. Slashes stay (they are final).
    pub async fn unflag(&self, flag_id: i64, reason: &str, actor: &str) -> Result<Flag> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let row = sqlx::query(
            "SELECT id, datanet_id, kind, target, reason, actor, active, created_at FROM flags WHERE id = $1",
        )
        .bind(flag_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("flag {flag_id}")))?;
        let mut flag = flag_from_row(&row)?;
        if flag.active {
            sqlx::query("UPDATE flags SET active = 0 WHERE id = $1").bind(flag_id).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO flag_events (flag_id, action, actor, reason, created_at) VALUES ($1, 'unflag', $2, $3, $4)",
            )
            .bind(flag_id)
            .bind(actor)
            .bind(reason)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            flag.active = false;
        }
        tx.commit().await?;
        Ok(flag)
    }

    pub async fn flags(&self, datanet_id: i64) -> Result<Vec<Flag>> {
        let rows = sqlx::query(
            "SELECT id, datanet_id, kind, target, reason, actor, active, created_at FROM flags \
             WHERE datanet_id = $1 ORDER BY id",
        )
        .bind(datanet_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(flag_from_row).collect()
    }

    /// Closes the next epoch: every unsettled entry joins it, each account's cumulative total
    /// (all its entries up to this epoch) becomes a leaf, and the root, the proofs and the
    /// receipts' chain head are stored with it, all in one transaction. With nothing unsettled,
    /// nothing changes and the last epoch is returned: running it twice closes one epoch.
    pub async fn settle(&self) -> Result<SettleOutcome> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let last: Option<i64> =
            sqlx::query("SELECT MAX(number) AS n FROM epochs").fetch_one(&mut *tx).await?.try_get("n")?;
        let number = last.unwrap_or(0) + 1;
        // The epoch is the id range after the last settled entry: no row is rewritten.
        let after = settled_upto(&mut tx).await?;
        let upto: i64 = sqlx::query("SELECT MAX(id) AS n FROM ledger_entries")
            .fetch_one(&mut *tx)
            .await?
            .try_get::<Option<i64>, _>("n")?
            .unwrap_or(0);
        if upto <= after {
            tx.rollback().await?;
            let epoch = match last {
                Some(n) => Some(self.epoch(n).await?),
                None => None,
            };
            return Ok(SettleOutcome { epoch, closed_now: false });
        }
        let moved: i64 = sqlx::query("SELECT COUNT(*) AS n FROM ledger_entries WHERE id > $1 AND id <= $2")
            .bind(after)
            .bind(upto)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        let mut cumulative: BTreeMap<String, i128> = BTreeMap::new();
        let mut indices: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(previous) = last {
            let rows = sqlx::query("SELECT account, account_index, cumulative FROM epoch_accounts WHERE epoch = $1")
                .bind(previous)
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                let account: String = row.try_get("account")?;
                // -1: written before indices existed; such accounts get the next free ones.
                if let Ok(index) = u64::try_from(row.try_get::<i64, _>("account_index")?) {
                    indices.insert(account.clone(), index);
                }
                cumulative.insert(account, parse_signed(&row.try_get::<String, _>("cumulative")?)?);
            }
        }
        let previous = cumulative.clone();
        for (account, amount) in self.epoch_sums(&mut tx, after, upto).await? {
            *cumulative.entry(account).or_default() += amount;
        }
        for (account, total) in &cumulative {
            // Slashes take only unsettled credits, so a cumulative total never falls: the
            // payout contract pays the difference with what was already paid.
            if *total < previous.get(account).copied().unwrap_or(0) || *total < 0 {
                return Err(Error::Inconsistent(format!("{account}'s cumulative total would fall to {total}")));
            }
        }
        let EpochTree { leaves, tree, root } = epoch_tree(&cumulative, &mut indices)?;
        let receipts_head = head(&mut tx).await?;
        let total: Amount = leaves.iter().map(|l| l.cumulative).sum();
        let closed_at_ms = now_ms();
        sqlx::query(
            "INSERT INTO epochs (number, last_entry, root, receipts_head, total, accounts, entries, closed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(number)
        .bind(upto)
        .bind(&root)
        .bind(&receipts_head)
        .bind(total.to_string())
        .bind(leaves.len() as i64)
        .bind(moved)
        .bind(closed_at_ms)
        .execute(&mut *tx)
        .await?;
        let rows = tree
            .map(|t| t.proofs())
            .unwrap_or_default()
            .into_iter()
            .map(|(leaf, proof)| {
                vec![
                    Param::Int(Some(number)),
                    Param::Text(Some(leaf.account.to_lower_hex())),
                    Param::Int(Some(leaf.index as i64)),
                    Param::Text(Some(leaf.cumulative.to_string())),
                    Param::Text(Some(proof_json(&proof))),
                ]
            })
            .collect();
        let insert = "INSERT INTO epoch_accounts (epoch, account, account_index, cumulative, proof) VALUES";
        insert_rows(&mut tx, insert, rows).await?;
        // Test hook: a crash with everything written but nothing committed.
        if std::env::var("TRIBUTARY_FAILPOINT").is_ok_and(|v| v == "settle-before-commit") {
            std::process::abort();
        }
        tx.commit().await?;
        tracing::info!(epoch = number, entries = moved, accounts = leaves.len(), root = %root, "epoch closed");
        Ok(SettleOutcome { epoch: Some(self.epoch(number).await?), closed_now: true })
    }

    /// Each account's sum over one epoch's entries, summed by the database where that is exact:
    /// PostgreSQL's NUMERIC always is; SQLite's 64-bit SUM is for amounts of at most 18 digits
    /// (it raises an error rather than overflow, and then the rows are summed here).
    async fn epoch_sums(
        &self,
        tx: &mut Transaction<'static, Any>,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(String, i128)>> {
        let (grouped, rest) = match self.backend {
            Backend::Postgres => (
                "SELECT account, CAST(SUM(CAST(amount AS NUMERIC)) AS TEXT) AS total FROM ledger_entries \
                 WHERE id > $1 AND id <= $2 GROUP BY account",
                None,
            ),
            Backend::Sqlite => (
                "SELECT account, CAST(SUM(CAST(amount AS INTEGER)) AS TEXT) AS total FROM ledger_entries \
                 WHERE id > $1 AND id <= $2 AND length(amount) <= 18 GROUP BY account",
                Some(
                    "SELECT account, amount AS total FROM ledger_entries WHERE id > $1 AND id <= $2 \
                     AND length(amount) > 18",
                ),
            ),
        };
        let all = "SELECT account, amount AS total FROM ledger_entries WHERE id > $1 AND id <= $2";
        let rows = match sqlx::query(grouped).bind(after).bind(upto).fetch_all(&mut **tx).await {
            Ok(mut rows) => {
                if let Some(rest) = rest {
                    rows.extend(sqlx::query(rest).bind(after).bind(upto).fetch_all(&mut **tx).await?);
                }
                rows
            }
            // SQLite's integer overflow: sum row by row instead.
            Err(_) if self.backend == Backend::Sqlite => {
                sqlx::query(all).bind(after).bind(upto).fetch_all(&mut **tx).await?
            }
            Err(e) => return Err(e.into()),
        };
        rows.iter()
            .map(|row| Ok((row.try_get("account")?, parse_signed(&row.try_get::<String, _>("total")?)?)))
            .collect()
    }

    pub async fn epoch(&self, number: i64) -> Result<Epoch> {
        let row = sqlx::query(
            "SELECT number, last_entry, root, receipts_head, total, accounts, entries, closed_at FROM epochs WHERE number = $1",
        )
        .bind(number)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("epoch {number}")))?;
        epoch_from_row(&row)
    }

    pub async fn epochs(&self) -> Result<Vec<Epoch>> {
        let rows = sqlx::query(
            "SELECT number, last_entry, root, receipts_head, total, accounts, entries, closed_at FROM epochs ORDER BY number",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(epoch_from_row).collect()
    }

    /// Every leaf of `epoch`'s payout tree (default: the latest epoch), as stored; with the
    /// epoch's number and root, so that a caller can rebuild the tree and check it.
    pub async fn payout_leaves(&self, epoch: Option<i64>) -> Result<(Epoch, Vec<PayoutLeaf>)> {
        let epoch = self.epoch(self.epoch_or_latest(epoch).await?).await?;
        let rows = sqlx::query("SELECT account, account_index, cumulative FROM epoch_accounts WHERE epoch = $1")
            .bind(epoch.number)
            .fetch_all(&self.pool)
            .await?;
        let leaves = rows.iter().map(|row| stored_leaf(row, epoch.number)).collect::<Result<_>>()?;
        Ok((epoch, leaves))
    }

    /// `epoch`, or the latest closed one.
    async fn epoch_or_latest(&self, epoch: Option<i64>) -> Result<i64> {
        if let Some(n) = epoch {
            return Ok(n);
        }
        sqlx::query("SELECT MAX(number) AS n FROM epochs")
            .fetch_one(&self.pool)
            .await?
            .try_get::<Option<i64>, _>("n")?
            .ok_or_else(|| Error::NotFound("a settled epoch".into()))
    }

    /// `account`'s leaf and proof in `epoch` (default: the latest).
    pub async fn proof(&self, account: &Address, epoch: Option<i64>) -> Result<AccountProof> {
        let number = self.epoch_or_latest(epoch).await?;
        let epoch = self.epoch(number).await?;
        let row = sqlx::query(
            "SELECT account, account_index, cumulative, proof FROM epoch_accounts WHERE epoch = $1 AND account = $2",
        )
        .bind(number)
        .bind(account.to_lower_hex())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("{} in epoch {number}", account.to_checksummed())))?;
        let PayoutLeaf { index, cumulative, .. } = stored_leaf(&row, number)?;
        let proof: Vec<String> = serde_json::from_str(&row.try_get::<String, _>("proof")?)
            .map_err(|e| Error::Inconsistent(format!("stored proof: {e}")))?;
        Ok(AccountProof {
            epoch: number,
            index,
            account: *account,
            cumulative,
            root: epoch.root,
            leaf: merkle::to_hex(&merkle::leaf_hash(index, account, cumulative)),
            proof,
        })
    }
}
