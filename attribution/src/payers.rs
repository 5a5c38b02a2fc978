//! Payers: the money behind every credit.
//!
//! An answer's credits are the division of a fee that a payer paid, exactly once. A payer's
//! balance is funded by on-chain deposits (recorded once each, keyed by transaction hash and log
//! index) or, on deployments without a chain, by grants; a Datanet owner may move part of its
//! balance into the Datanet's sponsor budget, which pays for questions nobody else pays for.
//! Before an answer is generated its quoted fee is held against the payer's balance; the
//! receipt's transaction turns the hold into a charge (`Ledger::record_many`) and credits the
//! split of the same amount; a failed or cancelled answer releases the hold.
//!
//! The books are double entry: every movement is one row of `payer_transfers` that takes an
//! amount from one account and gives it to another, so all accounts sum to zero. The external
//! sources are the `world:chain` and `world:grant` accounts (they go negative by what came in);
//! charges go to `fees`, whose balance is the sum of the paid receipts' credits. Balances are
//! kept per account in `payer_accounts`, written in the same transaction as the transfers, and
//! no account but a `world:` one may go below zero (a CHECK, and a check before every write
//! that also leaves room for the account's other holds).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{Any, AssertSqlSafe, Row, Transaction};
use tributary_indexer::Address;

use crate::ledger::{Ledger, Param, insert_rows, lock, now_ms, parse_signed};
use crate::policy::Amount;
use crate::{Error, Result};

/// Where deposited tokens come from (the payout contract's `Deposited` events).
pub const WORLD_CHAIN: &str = "world:chain";
/// Where grants come from (`tributary account fund`).
pub const WORLD_GRANT: &str = "world:grant";
/// Where charges go: its balance is the sum of every paid receipt's credits.
pub const FEES: &str = "fees";

/// How long a hold keeps its money when nobody charges, releases or renews it (a crashed
/// process). The service holds for a short lease instead and renews it while the answer is
/// being generated (`Ledger::renew_holds`), so a killed process's holds return within it.
pub const DEFAULT_HOLD_TTL: Duration = Duration::from_secs(3600);

/// Who pays for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Payer {
    /// An address's balance (an API key's address, `ask --payer`).
    Address(Address),
    /// A Datanet's sponsor budget (by the Datanet's id).
    Sponsor(i64),
}

impl Payer {
    /// The ledger account: `0x` + 40 lowercase hex digits, or `sponsor:<datanet id>`.
    pub fn account(&self) -> String {
        match self {
            Payer::Address(address) => address.to_lower_hex(),
            Payer::Sponsor(datanet_id) => format!("sponsor:{datanet_id}"),
        }
    }

    /// How receipts and balances name it: a checksummed address, or `sponsor:<datanet id>`.
    pub fn display(&self) -> String {
        match self {
            Payer::Address(address) => address.to_checksummed(),
            Payer::Sponsor(_) => self.account(),
        }
    }
}

/// An account's money.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Balance {
    /// The address (checksummed), or `sponsor:<datanet id>`.
    pub address: String,
    /// Everything that reached the account less everything that left it.
    #[serde(with = "crate::amount_string")]
    pub balance: Amount,
    /// Set aside for answers being generated now.
    #[serde(with = "crate::amount_string")]
    pub held: Amount,
    /// Deposited on chain.
    #[serde(with = "crate::amount_string")]
    pub deposited: Amount,
    /// Granted off chain by the operator.
    #[serde(with = "crate::amount_string")]
    pub granted: Amount,
    /// Charged for answers, and moved into sponsor budgets.
    #[serde(with = "crate::amount_string")]
    pub spent: Amount,
}

impl Balance {
    /// What a new hold may take.
    pub fn available(&self) -> Amount {
        self.balance.saturating_sub(self.held)
    }
}

/// Money set aside for one answer: charged when its receipt commits, else released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    pub payer: Payer,
    pub amount: Amount,
}

/// A token deposit as the payout contract's `Deposited` event reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deposit {
    pub payer: Address,
    pub amount: Amount,
    /// `0x` + 64 hex digits.
    pub transaction: String,
    pub log_index: u64,
}

impl Deposit {
    /// Its idempotency key: one log of one transaction is recorded once.
    pub fn key(&self) -> String {
        format!("chain:{}:{}", self.transaction.to_ascii_lowercase(), self.log_index)
    }
}

/// One movement of money, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transfer {
    pub id: i64,
    /// deposit, grant, sponsor or charge.
    pub kind: String,
    pub key: String,
    pub debit: String,
    pub credit: String,
    #[serde(with = "crate::amount_string")]
    pub amount: Amount,
    pub receipt_id: Option<String>,
    pub created_at_ms: i64,
}

/// A transfer about to be written.
#[derive(Debug, Clone)]
pub(crate) struct Move {
    pub kind: &'static str,
    pub key: String,
    pub debit: String,
    pub credit: String,
    pub amount: Amount,
    pub receipt_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Stored {
    balance: i128,
    deposited: i128,
    granted: i128,
    spent: i128,
}

fn amount_of(value: i128, what: &str) -> Result<Amount> {
    Amount::try_from(value).map_err(|_| Error::Inconsistent(format!("{what} is negative: {value}")))
}

/// An account as people read it: a checksummed address, else as stored.
fn display_account(account: &str) -> String {
    account.parse::<Address>().map(|a| a.to_checksummed()).unwrap_or_else(|_| account.to_string())
}

fn is_world(account: &str) -> bool {
    account.starts_with("world:")
}

/// `$first, $first+1, …` for `n` values; on SQLite `?, ?, …` (anonymous parameters bound in
/// order). sqlx binds a SQLite statement's parameters by asking each one's name, a scan of the
/// statement's named parameters: with `$n` names that is quadratic in the parameters of a
/// statement (a sixth of a grouped commit's time at 900 a statement, measured with perf).
pub(crate) fn placeholders_for(sqlite: bool, first: usize, n: usize) -> String {
    if sqlite {
        return vec!["?"; n].join(", ");
    }
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// [`placeholders_for`] the backend `tx` runs on.
pub(crate) fn placeholders(tx: &Transaction<'static, Any>, first: usize, n: usize) -> String {
    placeholders_for(crate::ledger::is_sqlite(tx), first, n)
}

/// The stored rows of `accounts` (missing ones at zero).
async fn load_accounts(tx: &mut Transaction<'static, Any>, accounts: &[String]) -> Result<BTreeMap<String, Stored>> {
    let mut out: BTreeMap<String, Stored> = accounts.iter().map(|a| (a.clone(), Stored::default())).collect();
    for batch in accounts.chunks(200) {
        let sql = format!(
            "SELECT account, balance, deposited, granted, spent FROM payer_accounts WHERE account IN ({})",
            placeholders(tx, 1, batch.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for account in batch {
            query = query.bind(account.clone());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let account: String = row.try_get("account")?;
            let parse = |column: &str| -> Result<i128> { parse_signed(&row.try_get::<String, _>(column)?) };
            let stored = Stored {
                balance: parse("balance")?,
                deposited: parse("deposited")?,
                granted: parse("granted")?,
                spent: parse("spent")?,
            };
            out.insert(account, stored);
        }
    }
    Ok(out)
}

/// What the live (unexpired) holds of each of `accounts` set aside, less the holds `except`.
async fn held(
    tx: &mut Transaction<'static, Any>,
    accounts: &[String],
    except: &[String],
) -> Result<BTreeMap<String, i128>> {
    let except: std::collections::HashSet<&String> = except.iter().collect();
    let mut out = BTreeMap::new();
    for batch in accounts.chunks(200) {
        let sql = format!(
            "SELECT id, account, amount FROM payer_holds WHERE expires_at > {} AND account IN ({})",
            placeholders(tx, 1, 1),
            placeholders(tx, 2, batch.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now_ms());
        for account in batch {
            query = query.bind(account.clone());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let id: String = row.try_get("id")?;
            if !except.contains(&id) {
                *out.entry(row.try_get::<String, _>("account")?).or_default() +=
                    parse_signed(&row.try_get::<String, _>("amount")?)?;
            }
        }
    }
    Ok(out)
}

/// Writes `moves` inside the caller's ledger transaction: each account's balance changes by
/// what it receives less what it gives, and no account but a `world:` one may end below what
/// its live holds set aside (other than the holds `releasing`, which these moves settle).
pub(crate) async fn apply(tx: &mut Transaction<'static, Any>, moves: &[Move], releasing: &[String]) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let mut names: Vec<String> = moves.iter().flat_map(|m| [m.debit.clone(), m.credit.clone()]).collect();
    names.sort();
    names.dedup();
    let before = load_accounts(tx, &names).await?;
    let mut accounts = before.clone();
    for m in moves {
        if m.amount == 0 || m.debit == m.credit {
            return Err(Error::InvalidArgument(format!(
                "a transfer moves a positive amount between two accounts: {m:?}"
            )));
        }
        // Every sum stays within i128 (the books' range, far past any token's supply): one that
        // would not is refused, never wrapped into money moving the other way.
        let out_of_range =
            || Error::InvalidArgument(format!("{} {} would take an account past the books' range", m.kind, m.amount));
        let amount = i128::try_from(m.amount).map_err(|_| out_of_range())?;
        let add = |total: &mut i128, by: i128| -> Result<()> {
            *total = total.checked_add(by).ok_or_else(out_of_range)?;
            Ok(())
        };
        let debit = accounts.entry(m.debit.clone()).or_default();
        add(&mut debit.balance, -amount)?;
        if matches!(m.kind, "charge" | "sponsor") {
            add(&mut debit.spent, amount)?;
        }
        let credit = accounts.entry(m.credit.clone()).or_default();
        add(&mut credit.balance, amount)?;
        match m.kind {
            "deposit" => add(&mut credit.deposited, amount)?,
            "grant" => add(&mut credit.granted, amount)?,
            _ => {}
        }
    }
    let payers: Vec<String> = names.iter().filter(|a| !is_world(a)).cloned().collect();
    let reserved = held(tx, &payers, releasing).await?;
    for account in &payers {
        let after = accounts.get(account).map_or(0, |r| r.balance);
        let set_aside = reserved.get(account).copied().unwrap_or(0);
        if after < set_aside {
            let needed = moves.iter().filter(|m| &m.debit == account).map(|m| m.amount).sum();
            let had = before.get(account).map_or(0, |r| r.balance);
            return Err(Error::InsufficientBalance {
                account: display_account(account),
                needed,
                available: (had - set_aside).max(0) as Amount,
            });
        }
    }
    let now = now_ms();
    let rows = moves
        .iter()
        .map(|m| {
            vec![
                Param::Text(Some(m.kind.to_string())),
                Param::Text(Some(m.key.clone())),
                Param::Text(Some(m.debit.clone())),
                Param::Text(Some(m.credit.clone())),
                Param::Text(Some(m.amount.to_string())),
                Param::Text(m.receipt_id.clone()),
                Param::Int(Some(now)),
            ]
        })
        .collect();
    let head = "INSERT INTO payer_transfers (kind, key, debit, credit, amount, receipt_id, created_at) VALUES";
    insert_rows(tx, head, rows).await?;
    let rows = accounts
        .iter()
        .map(|(name, r)| {
            vec![
                Param::Text(Some(name.clone())),
                Param::Text(Some(r.balance.to_string())),
                Param::Text(Some(r.deposited.to_string())),
                Param::Text(Some(r.granted.to_string())),
                Param::Text(Some(r.spent.to_string())),
            ]
        })
        .collect();
    let head = "INSERT INTO payer_accounts (account, balance, deposited, granted, spent) VALUES";
    let tail = " ON CONFLICT (account) DO UPDATE SET balance = excluded.balance, deposited = excluded.deposited, \
                granted = excluded.granted, spent = excluded.spent";
    crate::ledger::insert_rows_with(tx, head, tail, rows).await?;
    Ok(())
}

/// Hold ids: unique within the process (a counter) and across processes (time and pid).
fn hold_id(payer: &Payer, amount: Amount) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seed = format!("{}:{amount}:{nanos}:{}:{n}", payer.account(), std::process::id());
    blake3::hash(seed.as_bytes()).to_hex()[..32].to_string()
}

impl Ledger {
    /// Records an on-chain deposit once: `false` when its transaction's log was recorded before.
    pub async fn record_deposit(&self, deposit: &Deposit) -> Result<bool> {
        if deposit.payer == Address::ZERO {
            return Err(Error::InvalidArgument("a deposit for the zero address pays no one".into()));
        }
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let key = deposit.key();
        let seen = sqlx::query("SELECT 1 AS x FROM payer_transfers WHERE key = $1")
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?;
        if seen.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        let m = Move {
            kind: "deposit",
            key,
            debit: WORLD_CHAIN.into(),
            credit: deposit.payer.to_lower_hex(),
            amount: deposit.amount,
            receipt_id: None,
        };
        apply(&mut tx, &[m], &[]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Grants `amount` to `payer` off chain (deployments without a chain). `key` makes a retried
    /// grant land once; without one every call is a new grant.
    pub async fn grant(&self, payer: &Address, amount: Amount, key: Option<&str>) -> Result<Transfer> {
        if *payer == Address::ZERO {
            return Err(Error::InvalidArgument("the zero address cannot hold a balance".into()));
        }
        let key = match key {
            Some(key) if key.is_empty() || key.len() > 200 => {
                return Err(Error::InvalidArgument("a grant's key is 1 to 200 characters".into()));
            }
            Some(key) => format!("grant:{key}"),
            None => format!("grant:{}", hold_id(&Payer::Address(*payer), amount)),
        };
        let m = Move {
            kind: "grant",
            key,
            debit: WORLD_GRANT.into(),
            credit: payer.to_lower_hex(),
            amount,
            receipt_id: None,
        };
        self.transfer_once(m).await
    }

    /// Moves `amount` from `owner`'s balance into Datanet `datanet_id`'s sponsor budget.
    pub async fn sponsor(&self, owner: &Address, datanet_id: i64, amount: Amount) -> Result<Transfer> {
        let key = format!("sponsor:{}", hold_id(&Payer::Sponsor(datanet_id), amount));
        let m = Move {
            kind: "sponsor",
            key,
            debit: owner.to_lower_hex(),
            credit: Payer::Sponsor(datanet_id).account(),
            amount,
            receipt_id: None,
        };
        self.transfer_once(m).await
    }

    /// Writes one transfer unless its key exists; the stored transfer either way.
    async fn transfer_once(&self, m: Move) -> Result<Transfer> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        if let Some(existing) = transfer_by_key(&mut tx, &m.key).await? {
            tx.rollback().await?;
            // A retry of the same transfer is answered with it; the key of another is refused.
            let same = existing.kind == m.kind
                && existing.debit == m.debit
                && existing.credit == m.credit
                && existing.amount == m.amount;
            if !same {
                return Err(Error::InvalidArgument(format!("key {} was used for another transfer", m.key)));
            }
            return Ok(existing);
        }
        apply(&mut tx, std::slice::from_ref(&m), &[]).await?;
        let stored = transfer_by_key(&mut tx, &m.key).await?;
        tx.commit().await?;
        stored.ok_or_else(|| Error::Inconsistent(format!("transfer {} vanished", m.key)))
    }

    /// The payer's balance, what its live holds set aside, and where its money came from.
    pub async fn balance(&self, payer: &Payer) -> Result<Balance> {
        let account = payer.account();
        let mut tx = self.pool.begin().await?;
        let rows = load_accounts(&mut tx, std::slice::from_ref(&account)).await?;
        let held = held(&mut tx, std::slice::from_ref(&account), &[]).await?.get(&account).copied().unwrap_or(0);
        tx.rollback().await?;
        let row = rows.get(&account).cloned().unwrap_or_default();
        Ok(Balance {
            address: payer.display(),
            balance: amount_of(row.balance, "a balance")?,
            held: amount_of(held, "a hold")?,
            deposited: amount_of(row.deposited, "a deposit total")?,
            granted: amount_of(row.granted, "a grant total")?,
            spent: amount_of(row.spent, "a spent total")?,
        })
    }

    /// Sets `amount` aside from the payer's balance for an answer about to be generated, or
    /// refuses with [`Error::InsufficientBalance`]. Refused as well while the policy has no
    /// protocol account (nobody could receive the protocol's share or the dust).
    pub async fn hold(&self, payer: &Payer, amount: Amount, ttl: Duration) -> Result<Hold> {
        let mut held = self.hold_many(&[(*payer, amount)], ttl).await?;
        held.pop().ok_or_else(|| Error::Inconsistent("a hold of one came back empty".into()))?
    }

    /// Several holds in one transaction (answers that start together), each decided in order as
    /// [`Ledger::hold`] would: one refused does not refuse the others.
    pub async fn hold_many(&self, requests: &[(Payer, Amount)], ttl: Duration) -> Result<Vec<Result<Hold>>> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let payable = crate::ledger::read_policy(&mut tx).await?.check_payable();
        let now = now_ms();
        // Holds whose process died: their money is free again.
        sqlx::query("DELETE FROM payer_holds WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
        let mut accounts: Vec<String> = requests.iter().map(|(p, _)| p.account()).collect();
        accounts.sort();
        accounts.dedup();
        let balances = load_accounts(&mut tx, &accounts).await?;
        let mut reserved = held(&mut tx, &accounts, &[]).await?;
        let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let (mut out, mut rows) = (Vec::with_capacity(requests.len()), Vec::new());
        for (payer, amount) in requests {
            if let Payer::Address(address) = payer
                && *address == Address::ZERO
            {
                out.push(Err(Error::InvalidArgument("the zero address cannot pay".into())));
                continue;
            }
            if let Err(e) = &payable {
                let why = match e {
                    Error::Unconfigured(why) => why.clone(),
                    other => other.to_string(),
                };
                out.push(Err(Error::Unconfigured(why)));
                continue;
            }
            let account = payer.account();
            let balance = balances.get(&account).map_or(0, |r| r.balance);
            let set_aside = reserved.entry(account.clone()).or_default();
            let available = (balance - *set_aside).max(0) as Amount;
            if available < *amount {
                out.push(Err(Error::InsufficientBalance { account: payer.display(), needed: *amount, available }));
                continue;
            }
            *set_aside += *amount as i128;
            let hold = Hold { id: hold_id(payer, *amount), payer: *payer, amount: *amount };
            rows.push(vec![
                Param::Text(Some(hold.id.clone())),
                Param::Text(Some(account)),
                Param::Text(Some(amount.to_string())),
                Param::Int(Some(expires_at)),
            ]);
            out.push(Ok(hold));
        }
        insert_rows(&mut tx, "INSERT INTO payer_holds (id, account, amount, expires_at) VALUES", rows).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Extends the live holds among `ids` to `ttl` from now: the process generating their
    /// answers is alive (a lease; see `DEFAULT_HOLD_TTL`). Holds already charged, released or
    /// expired stay gone. How many were extended.
    pub async fn renew_holds(&self, ids: &[String], ttl: Duration) -> Result<u64> {
        let mut renewed = 0;
        for batch in ids.chunks(200) {
            let mut tx = self.pool.begin().await?;
            let now = now_ms();
            let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
            let sql = format!(
                "UPDATE payer_holds SET expires_at = {} WHERE expires_at > {} AND id IN ({})",
                placeholders(&tx, 1, 1),
                placeholders(&tx, 2, 1),
                placeholders(&tx, 3, batch.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(expires_at).bind(now);
            for id in batch {
                query = query.bind(id.clone());
            }
            renewed += query.execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
        }
        Ok(renewed)
    }

    /// Gives a hold's money back (the answer failed, was refused or cancelled). Releasing a hold
    /// that was charged or already released changes nothing.
    pub async fn release(&self, hold: &Hold) -> Result<()> {
        sqlx::query("DELETE FROM payer_holds WHERE id = $1").bind(&hold.id).execute(&self.pool).await?;
        Ok(())
    }

    /// Every transfer into or out of `payer`, oldest first.
    pub async fn transfers(&self, payer: &Payer) -> Result<Vec<Transfer>> {
        let account = payer.account();
        let rows = sqlx::query(
            "SELECT id, kind, key, debit, credit, amount, receipt_id, created_at FROM payer_transfers \
             WHERE debit = $1 OR credit = $1 ORDER BY id",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transfer_from_row).collect()
    }

    /// The double-entry checks of `verify`: stored balances equal the transfers' sums, the
    /// accounts sum to zero, no account but a `world:` one is negative, and `fees` holds what the
    /// charges brought in. Returns each charge by receipt id: (payer account, amount).
    pub(crate) async fn verify_payers(&self, problems: &mut Vec<String>) -> Result<BTreeMap<String, (String, Amount)>> {
        let rows = sqlx::query(
            "SELECT id, kind, key, debit, credit, amount, receipt_id, created_at FROM payer_transfers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut sums: BTreeMap<String, i128> = BTreeMap::new();
        let mut charges = BTreeMap::new();
        for row in &rows {
            let t = transfer_from_row(row)?;
            let Ok(amount) = i128::try_from(t.amount) else {
                problems.push(format!("transfer {} moves {}, past the books' range", t.key, t.amount));
                continue;
            };
            let debit = sums.entry(t.debit.clone()).or_default();
            *debit = debit.saturating_sub(amount);
            let credit = sums.entry(t.credit.clone()).or_default();
            *credit = credit.saturating_add(amount);
            if t.kind == "charge" {
                if t.credit != FEES {
                    problems.push(format!("charge {} goes to {}, not to {FEES}", t.key, t.credit));
                }
                if let Some(receipt) = t.receipt_id {
                    charges.insert(receipt, (t.debit, t.amount));
                }
            }
        }
        if sums.values().try_fold(0i128, |total, v| total.checked_add(*v)) != Some(0) {
            problems.push("the payers' accounts do not sum to zero".into());
        }
        let stored = sqlx::query("SELECT account, balance FROM payer_accounts").fetch_all(&self.pool).await?;
        let mut stored_by_account = BTreeMap::new();
        for row in stored {
            stored_by_account
                .insert(row.try_get::<String, _>("account")?, parse_signed(&row.try_get::<String, _>("balance")?)?);
        }
        for (account, sum) in &sums {
            if stored_by_account.remove(account).unwrap_or(0) != *sum {
                problems.push(format!("account {account}: its stored balance is not the sum of its transfers ({sum})"));
            }
            if *sum < 0 && !is_world(account) {
                problems.push(format!("account {account} is overdrawn: {sum}"));
            }
        }
        for (account, balance) in stored_by_account {
            if balance != 0 {
                problems.push(format!("account {account} has a balance of {balance} but no transfers"));
            }
        }
        Ok(charges)
    }
}

async fn transfer_by_key(tx: &mut Transaction<'static, Any>, key: &str) -> Result<Option<Transfer>> {
    let row = sqlx::query(
        "SELECT id, kind, key, debit, credit, amount, receipt_id, created_at FROM payer_transfers WHERE key = $1",
    )
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(transfer_from_row).transpose()
}

fn transfer_from_row(row: &sqlx::any::AnyRow) -> Result<Transfer> {
    let amount: String = row.try_get("amount")?;
    Ok(Transfer {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        key: row.try_get("key")?,
        debit: row.try_get("debit")?,
        credit: row.try_get("credit")?,
        amount: amount.parse().map_err(|_| Error::Inconsistent(format!("stored transfer amount {amount:?}")))?,
        receipt_id: row.try_get("receipt_id")?,
        created_at_ms: row.try_get("created_at")?,
    })
}
