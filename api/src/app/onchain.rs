//! On chain: deploying the contracts, closing an epoch and posting it (`settle`), claims and
//! batch payouts (`push`), a Datanet's contribution root (`register`, `prove`), and the chain's
//! state against the ledger's (`status`). The CLI's `chain`, `settle` and `claim` and the HTTP
//! API's chain and settlement routes call these.
//!
//! Configuration: `<data-dir>/chain.toml` (RPC URL, chain id, contract addresses, keystore
//! path), the RPC URL also from `--rpc-url` / `TRIBUTARY_RPC_URL`; the signer is a hex key in
//! `TRIBUTARY_SIGNER_KEY`, or an encrypted keystore (`TRIBUTARY_SIGNER_KEYSTORE` or the config's
//! `keystore`) with its password in `TRIBUTARY_SIGNER_PASSWORD` or the file named by
//! `TRIBUTARY_SIGNER_PASSWORD_FILE`. Keys and passwords are never written, never logged.
//!
//! What is posted is read back from the chain itself (`latestEpoch`), after waiting for any
//! transaction of the signer still pending, so a crash after sending cannot post an epoch twice
//! (the contract refuses a number that is not greater than the last, and the client does not try)
//! and a failed posting is simply retried: an epoch the ledger closed but the chain lacks is
//! "pending on chain". Nonces come from the chain's pending count, so they are right after a
//! restart.

use std::path::{Path, PathBuf};

use alloy::primitives::{Address as EvmAddress, B256, U256, keccak256};
use alloy::providers::Provider;
use alloy::sol_types::SolValue;
use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use tributary_attribution::AccountProof;
use tributary_attribution::merkle::{MerkleTree, PayoutTree, contribution_leaf};
use tributary_contracts::chain::{
    AttributionPayouts, Chain, Deployment, PostedEpoch, RECEIPT_TIMEOUT, SignerKey, revert,
};

use crate::app::App;

pub const KEY_ENV: &str = "TRIBUTARY_SIGNER_KEY";
pub const KEYSTORE_ENV: &str = "TRIBUTARY_SIGNER_KEYSTORE";
pub const PASSWORD_ENV: &str = "TRIBUTARY_SIGNER_PASSWORD";
pub const PASSWORD_FILE_ENV: &str = "TRIBUTARY_SIGNER_PASSWORD_FILE";

/// Tries per epoch within one `settle` (1 s, 2 s between them); later runs try again.
const POST_ATTEMPTS: u32 = 3;

/// `<data-dir>/chain.toml`.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChainConfig {
    pub rpc_url: Option<String>,
    pub chain_id: Option<u64>,
    pub registry: Option<String>,
    pub payouts: Option<String>,
    pub token: Option<String>,
    /// Blocks to wait for after posting an epoch (default 1).
    pub confirmations: Option<u64>,
    /// An encrypted JSON keystore holding the signer key (its password never goes here).
    pub keystore: Option<PathBuf>,
    /// The block the payout contract was deployed in: deposits are read from there on.
    pub deployed_at: Option<u64>,
}

/// Where the chain configuration of this data directory lives.
pub fn config_path(app: &App) -> PathBuf {
    app.store.data_dir().join("chain.toml")
}

pub fn load_config(path: &Path) -> Result<ChainConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{} is not a valid chain config", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ChainConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save_config(path: &Path, config: &ChainConfig) -> Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, toml::to_string(config)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn parse_evm(text: &str, what: &str) -> Result<EvmAddress> {
    text.parse().with_context(|| format!("{what} {text:?} is not an address"))
}

/// The configured chain, for reads only (no key is loaded).
fn reader(app: &App, config: &ChainConfig) -> Result<Chain> {
    let url = app.settings.rpc_url.clone().or_else(|| config.rpc_url.clone()).ok_or(ChainRefused::NoRpc)?;
    Ok(Chain::reader(&url)?)
}

/// The signer on the configured chain.
fn connect(app: &App, config: &ChainConfig) -> Result<Chain> {
    let url = app.settings.rpc_url.clone().or_else(|| config.rpc_url.clone()).ok_or(ChainRefused::NoRpc)?;
    let keystore = std::env::var_os(KEYSTORE_ENV).map(PathBuf::from).or_else(|| config.keystore.clone());
    let signer = match (std::env::var(KEY_ENV), keystore) {
        (Ok(key), _) => SignerKey::Hex(&key).load()?,
        (Err(_), Some(path)) => {
            let password = match (std::env::var(PASSWORD_ENV), std::env::var_os(PASSWORD_FILE_ENV)) {
                (Ok(password), _) => password,
                (Err(_), Some(file)) => std::fs::read_to_string(&file)
                    .with_context(|| format!("reading the keystore password from {}", PathBuf::from(&file).display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                (Err(_), None) => return Err(ChainRefused::NoPassword.into()),
            };
            SignerKey::Keystore { path: &path, password: &password }.load()?
        }
        (Err(_), None) => return Err(ChainRefused::NoSigner.into()),
    };
    Ok(Chain::connect_with(&url, signer)?)
}

/// A ledger address as alloy's: the same 20 bytes.
pub fn evm(address: &tributary_indexer::Address) -> EvmAddress {
    EvmAddress::from(*address.as_bytes())
}

fn registry_address(config: &ChainConfig) -> Result<EvmAddress> {
    let text = config.registry.as_deref().ok_or(ChainRefused::NotConfigured)?;
    parse_evm(text, "registry contract")
}

/// The contribution tree of a Datanet: every chunk with its first contributor, and where each
/// leaf sits.
pub(crate) async fn contribution_tree(
    app: &App,
    datanet: &tributary_indexer::Datanet,
) -> Result<(MerkleTree, Vec<(tributary_indexer::ChunkId, tributary_indexer::Address, usize)>)> {
    let catalog = app.store.catalog();
    let ids = catalog.chunk_ids(datanet.id).await?;
    let records = catalog.chunk_records(datanet.id, &ids).await?;
    let hashes: Vec<_> = records.iter().map(|r| contribution_leaf(r.chunk_id.as_bytes(), &r.contributor)).collect();
    let (tree, positions) =
        MerkleTree::new(&hashes).with_context(|| format!("Datanet {} has no chunks to commit", datanet.name))?;
    let leaves = records.iter().zip(positions).map(|(r, p)| (r.chunk_id, r.contributor, p)).collect();
    Ok((tree, leaves))
}

/// A closed epoch as the payout contract takes it: number, root, receipts head, cumulative total.
pub fn epoch_words(epoch: &tributary_attribution::Epoch) -> Result<PostedEpoch> {
    let root = epoch.root.parse().context("stored epoch root")?;
    let head = format!("0x{}", epoch.receipts_head).parse().context("stored receipts head")?;
    let number = u64::try_from(epoch.number).context("epoch number")?;
    Ok(PostedEpoch { epoch: number, root, head, total: U256::from(epoch.total) })
}

/// Submits `proof` as a claim for its account and waits for it; the transaction hash.
pub async fn submit_claim(chain: &Chain, payouts: EvmAddress, proof: &AccountProof) -> Result<B256> {
    let account = evm(&proof.account);
    let path: Vec<B256> = proof.proof.iter().map(|p| p.parse()).collect::<Result<_, _>>().context("stored proof")?;
    let contract = chain.payouts(payouts);
    let claim = contract.claim(U256::from(proof.index), account, U256::from(proof.cumulative), path);
    let sent = claim.send().await.map_err(revert)?;
    Ok(sent.get_receipt().await.context("waiting for the claim")?.transaction_hash)
}

fn payouts_address(config: &ChainConfig) -> Result<EvmAddress> {
    let text = config.payouts.as_deref().ok_or(ChainRefused::NotConfigured)?;
    parse_evm(text, "payout contract")
}

/// What `chain register` committed.
#[derive(Debug, serde::Serialize)]
pub struct Registered {
    pub datanet: String,
    pub id: String,
    pub version: u64,
    pub root: String,
}

/// What `chain prove` checked on chain.
#[derive(Debug, serde::Serialize)]
pub struct Proven {
    pub datanet: String,
    pub chunk_id: String,
    pub contributor: String,
    pub version: u64,
    pub verified: bool,
    pub proof: Vec<String>,
}

/// The chain's epochs against the ledger's.
#[derive(Debug, serde::Serialize)]
pub struct ChainStatus {
    pub chain_id: Option<u64>,
    pub registry: Option<String>,
    pub payouts: Option<String>,
    pub token: Option<String>,
    /// `None` without deployed contracts.
    pub chain_latest_epoch: Option<u64>,
    pub ledger_latest_epoch: Option<i64>,
    pub pending_on_chain: Vec<i64>,
    /// Deposited into the payout contract, the latest epoch's total, and paid out, ever.
    pub deposited: Option<String>,
    pub epoch_total: Option<String>,
    pub paid_out: Option<String>,
}

/// Deploys the contracts and writes their addresses to chain.toml.
/// `admin`: the payout contract's admin (role grants, pause), if not the signer.
pub async fn deploy(app: &App, token: Option<&str>, supply: &str, admin: Option<&str>) -> Result<Deployment> {
    let path = config_path(app);
    let mut config = load_config(&path)?;
    let chain = connect(app, &config)?;
    let supply: U256 = supply.parse().context("the supply is not an integer")?;
    let token = token.map(|t| parse_evm(t, "token")).transpose()?;
    let admin = admin.map(|a| parse_evm(a, "admin")).transpose()?.unwrap_or(chain.signer());
    let deployment = chain.deploy_with_admin(token, supply, admin).await?;
    config.rpc_url = app.settings.rpc_url.clone().or(config.rpc_url);
    config.deployed_at = Some(chain.provider().get_block_number().await.context("reading the block number")?);
    config.chain_id = Some(chain.provider().get_chain_id().await.context("reading the chain id")?);
    config.registry = Some(deployment.registry.to_string());
    config.payouts = Some(deployment.payouts.to_string());
    config.token = Some(deployment.token.to_string());
    save_config(&path, &config)?;
    Ok(deployment)
}

/// A Datanet's id in the registry: its name under the operator that registered it (the
/// contract's `datanetId`), so another account registering the same name first takes nothing.
fn registry_id(operator: EvmAddress, name: &str) -> B256 {
    keccak256((operator, name.to_string()).abi_encode_params())
}

/// Commits the Datanet's contribution root as its next version, registering it first if the
/// chain lacks it.
pub async fn register(app: &App, datanet: &tributary_indexer::Datanet) -> Result<Registered> {
    let config = load_config(&config_path(app))?;
    let chain = connect(app, &config)?;
    let registry = chain.registry(registry_address(&config)?);
    let (tree, _) = contribution_tree(app, datanet).await?;
    let id = registry_id(chain.signer(), &datanet.name);
    let root = B256::from(tree.root());
    if registry.ownerOf(id).call().await.is_err() {
        let sent = registry.register(datanet.name.clone()).send().await.map_err(revert)?;
        sent.get_receipt().await.context("registering the Datanet")?;
    } else {
        // The operator pays for every commit, and Datanet owners may ask for one: a root
        // already on chain is not sent again (new data must have arrived, through uploads
        // that have their own limits, before an owner can spend the operator's gas again).
        let version = registry.versions(id).call().await.map_err(revert)?;
        if version > 0 && registry.contributionRoot(id, version).call().await.map_err(revert)? == root {
            return Err(ChainRefused::RegistryCurrent { datanet: datanet.name.clone(), version }.into());
        }
    }
    let sent = registry.commitRoot(id, root).send().await.map_err(revert)?;
    sent.get_receipt().await.context("committing the contribution root")?;
    let version = registry.versions(id).call().await.map_err(revert)?;
    Ok(Registered { datanet: datanet.name.clone(), id: id.to_string(), version, root: root.to_string() })
}

/// What the registry holds of a trained adapter: its id (under the signer), its training root,
/// and the transaction that wrote it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdapterOnChain {
    pub id: String,
    pub training_root: String,
    pub transaction: String,
    pub registry: String,
}

fn adapter_id(operator: EvmAddress, name: &str) -> B256 {
    keccak256((operator, "adapter".to_string(), name.to_string()).abi_encode_params())
}

/// Commits the training root of the adapter `name` in the registry, under the signer (once:
/// the contract refuses a second commit of the same adapter).
pub async fn commit_adapter_training(app: &App, name: &str, root: &str) -> Result<AdapterOnChain> {
    let config = load_config(&config_path(app))?;
    let chain = connect(app, &config)?;
    let address = registry_address(&config)?;
    let registry = chain.registry(address);
    let training_root: B256 = format!("0x{}", root.trim_start_matches("0x")).parse().context("training root")?;
    let sent = registry.commitAdapterTraining(name.to_string(), training_root).send().await.map_err(revert)?;
    let receipt = sent.get_receipt().await.context("committing the training root")?;
    Ok(AdapterOnChain {
        id: adapter_id(chain.signer(), name).to_string(),
        training_root: training_root.to_string(),
        transaction: receipt.transaction_hash.to_string(),
        registry: address.to_string(),
    })
}

/// The training root the registry holds for `name` under the signer, if any.
pub async fn adapter_training_root(app: &App, name: &str) -> Result<Option<B256>> {
    let config = load_config(&config_path(app))?;
    let chain = connect(app, &config)?;
    let registry = chain.registry(registry_address(&config)?);
    match registry.adapterTrainingRoot(adapter_id(chain.signer(), name)).call().await {
        Ok(root) => Ok(Some(root)),
        Err(e) => {
            let e = revert(e);
            if e.to_string().contains("UnknownAdapter") { Ok(None) } else { Err(e.into()) }
        }
    }
}

/// Checks on chain that `chunk` was contributed by its first contributor at the latest version.
pub async fn prove(
    app: &App,
    datanet: &tributary_indexer::Datanet,
    chunk: &tributary_indexer::ChunkId,
) -> Result<Proven> {
    let config = load_config(&config_path(app))?;
    let chain = connect(app, &config)?;
    let registry = chain.registry(registry_address(&config)?);
    let (tree, leaves) = contribution_tree(app, datanet).await?;
    let Some((contributor, position)) =
        leaves.iter().find(|(id, _, _)| id == chunk).map(|(_, who, position)| (*who, *position))
    else {
        return Err(ChainRefused::NoSuchChunk { datanet: datanet.name.clone(), chunk: chunk.to_hex() }.into());
    };
    let id = registry_id(chain.signer(), &datanet.name);
    let version = registry.versions(id).call().await.map_err(revert)?;
    let on_chain = registry.contributionRoot(id, version).call().await.map_err(revert)?;
    if on_chain != B256::from(tree.root()) {
        return Err(ChainRefused::StaleRegistry { datanet: datanet.name.clone(), version }.into());
    }
    let proof: Vec<B256> = tree.proof(position).into_iter().map(B256::from).collect();
    let who = evm(&contributor);
    let chunk_word = B256::from(*chunk.as_bytes());
    let verified =
        registry.proveContribution(id, version, chunk_word, who, proof.clone()).call().await.map_err(revert)?;
    Ok(Proven {
        datanet: datanet.name.clone(),
        chunk_id: chunk.to_hex(),
        contributor: contributor.to_checksummed(),
        version,
        verified,
        proof: proof.iter().map(|p| p.to_string()).collect(),
    })
}

/// The chain's latest epoch, the ledger's, and what is pending on chain (every closed epoch
/// when no contracts are deployed).
pub async fn status(app: &App) -> Result<ChainStatus> {
    let config = load_config(&config_path(app))?;
    // The contract's latest epoch and its money (deposited, epoch total, paid out).
    let on_chain = match config.payouts {
        None => None,
        Some(_) => {
            let chain = reader(app, &config)?;
            let contract = chain.payouts(payouts_address(&config)?);
            let latest = contract.latestEpoch().call().await.map_err(revert)?;
            let deposited = contract.totalDeposited().call().await.map_err(revert)?.to_string();
            let epoch_total = contract.epochTotal().call().await.map_err(revert)?.to_string();
            let paid_out = contract.totalPaid().call().await.map_err(revert)?.to_string();
            Some((latest, deposited, epoch_total, paid_out))
        }
    };
    let epochs = app.ledger().epochs().await?;
    let latest = on_chain.as_ref().map(|(latest, ..)| *latest);
    let pending: Vec<i64> = epochs.iter().map(|e| e.number).filter(|n| *n > latest.unwrap_or(0) as i64).collect();
    let (deposited, epoch_total, paid_out) = match on_chain {
        Some((_, deposited, epoch_total, paid_out)) => (Some(deposited), Some(epoch_total), Some(paid_out)),
        None => (None, None, None),
    };
    Ok(ChainStatus {
        chain_id: config.chain_id,
        registry: config.registry,
        payouts: config.payouts,
        token: config.token,
        chain_latest_epoch: latest,
        ledger_latest_epoch: epochs.last().map(|e| e.number),
        pending_on_chain: pending,
        deposited,
        epoch_total,
        paid_out,
    })
}

/// What `settle` did: the epoch the ledger closed (or its latest), and what went on chain.
pub struct Settled {
    pub outcome: tributary_attribution::SettleOutcome,
    /// Epochs posted now, oldest first; `Ok(None)` without deployed contracts. A failed posting
    /// leaves its epoch pending on chain: the next settle posts it.
    pub posted: Result<Option<Vec<i64>>>,
}

/// Closes the current epoch in the ledger, then posts every closed epoch the chain lacks. The
/// epoch is closed whatever happens on chain.
pub async fn settle(app: &App) -> Result<Settled> {
    let outcome = app.ledger().settle().await?;
    let posted = post_pending(app).await;
    Ok(Settled { outcome, posted })
}

/// Posts every closed epoch the chain lacks, oldest first; `None` when no chain is configured.
pub async fn post_pending(app: &App) -> Result<Option<Vec<i64>>> {
    let config = load_config(&config_path(app))?;
    if config.payouts.is_none() {
        return Ok(None);
    }
    let chain = connect(app, &config)?;
    let payouts = payouts_address(&config)?;
    // A posting sent before a crash may still be in the mempool: let it land (or not) first,
    // so that the chain's answer below counts it.
    chain.wait_for_pending(RECEIPT_TIMEOUT).await?;
    let on_chain = chain.payouts(payouts).latestEpoch().call().await.map_err(revert)?;
    let mut posted = Vec::new();
    let confirmations = config.confirmations.unwrap_or(1);
    for epoch in app.ledger().epochs().await?.into_iter().filter(|e| e.number > on_chain as i64) {
        let words = epoch_words(&epoch)?;
        // Solvency: the contract pays out at most what was deposited into it, and refuses an
        // epoch that credits more; say why here rather than spend gas on the revert.
        let deposited = chain.payouts(payouts).totalDeposited().call().await.map_err(revert)?;
        if words.total > deposited {
            return Err(ChainRefused::Overfunded {
                epoch: epoch.number,
                total: epoch.total,
                deposited: deposited.to_string(),
            }
            .into());
        }
        // A few tries with backoff; between tries the chain is asked whether the epoch landed
        // after all (a send that timed out may have been mined): never posted twice.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match chain.post_epoch_confirmed(payouts, words, confirmations).await {
                Ok(_) => break,
                Err(e) if attempt >= POST_ATTEMPTS => {
                    return Err(anyhow::Error::from(e)).with_context(|| {
                        format!("posting epoch {} after {attempt} tries (it stays pending on chain)", epoch.number)
                    });
                }
                Err(e) => {
                    tracing::warn!(epoch = epoch.number, attempt, error = %e, "posting an epoch failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
                    let landed =
                        chain.payouts(payouts).latestEpoch().call().await.is_ok_and(|n| n as i64 >= epoch.number);
                    if landed {
                        break;
                    }
                }
            }
        }
        posted.push(epoch.number);
    }
    Ok(Some(posted))
}

/// Logs asked for per `eth_getLogs` call (public RPCs cap the range).
const SYNC_BLOCKS: u64 = 5_000;

/// What `chain sync` read.
#[derive(Debug, Default, serde::Serialize)]
pub struct Synced {
    /// Blocks read, inclusive; none when the chain had nothing confirmed past the last sync.
    pub from_block: Option<u64>,
    pub to_block: Option<u64>,
    /// Deposits recorded now.
    pub recorded: usize,
    /// Deposits seen before (recorded by an earlier sync).
    pub already_recorded: usize,
}

/// Where the last sync of `payouts` stopped (`ledger_settings`, one row per contract).
fn sync_scope(payouts: EvmAddress) -> String {
    format!("chain_sync:{payouts}")
}

/// Records the payout contract's `Deposited` events that have `confirmations` blocks (each
/// once, keyed by transaction hash and log index) as their payers' balances; `None` without
/// deployed contracts.
pub async fn sync(app: &App) -> Result<Option<Synced>> {
    let config = load_config(&config_path(app))?;
    if config.payouts.is_none() {
        return Ok(None);
    }
    // Reading logs needs no key: a keystore is not unlocked on every tick of the server's sync.
    let chain = reader(app, &config)?;
    let payouts = payouts_address(&config)?;
    let start = config.deployed_at.unwrap_or(0);
    Ok(Some(sync_with(app, &chain, payouts, start, config.confirmations.unwrap_or(1)).await?))
}

/// [`sync`] with the given chain and payout contract, reading from block `start` the first time.
pub async fn sync_with(
    app: &App,
    chain: &Chain,
    payouts: EvmAddress,
    start: u64,
    confirmations: u64,
) -> Result<Synced> {
    let ledger = app.ledger();
    let scope = sync_scope(payouts);
    // The cursor names the last block read and its hash: if the chain no longer has that block
    // (a reorg past the confirmations, or a chain reset under the same contract address), read
    // again from the start: deposits are keyed, so a re-read records nothing twice.
    let from = match ledger.sync_cursor(&scope).await?.as_deref().and_then(|c| c.split_once(':')) {
        Some((block, hash)) => {
            let block: u64 = block.parse().context("stored sync cursor")?;
            let on_chain = chain.provider().get_block_by_number(block.into()).await.context("reading a block")?;
            match on_chain {
                Some(b) if b.header.hash.to_string() == hash => block + 1,
                _ => start,
            }
        }
        None => start,
    };
    let head = chain.provider().get_block_number().await.context("reading the block number")?;
    // A block has one confirmation when it is the head.
    let Some(to) = (head + 1).checked_sub(confirmations.max(1)).filter(|to| *to >= from) else {
        return Ok(Synced::default());
    };
    let mut synced = Synced { from_block: Some(from), to_block: Some(to), ..Synced::default() };
    let mut low = from;
    while low <= to {
        let high = (low + SYNC_BLOCKS - 1).min(to);
        for log in chain.deposits(payouts, low, high).await? {
            let deposit = tributary_attribution::Deposit {
                payer: tributary_indexer::Address::from_bytes(log.payer.into_array()),
                amount: u128::try_from(log.amount).context("a deposit past 2^128 base units")?,
                transaction: log.transaction.to_string(),
                log_index: log.log_index,
            };
            if ledger.record_deposit(&deposit).await? {
                synced.recorded += 1;
            } else {
                synced.already_recorded += 1;
            }
        }
        // Each range is recorded before the cursor moves past it: a crash re-reads it, and
        // the deposits' keys keep it from counting twice.
        let block = chain.provider().get_block_by_number(high.into()).await.context("reading a block")?;
        let hash = block.map(|b| b.header.hash.to_string()).unwrap_or_default();
        ledger.set_sync_cursor(&scope, &format!("{high}:{hash}")).await?;
        low = high + 1;
    }
    Ok(synced)
}

/// What `chain deposit` did.
#[derive(Debug, serde::Serialize)]
pub struct Deposited {
    pub payer: String,
    pub amount: String,
    pub transaction: String,
    /// What the sync after it recorded (the deposit, once it has its confirmations).
    pub synced: Synced,
}

/// Deposits `amount` of the signer's tokens into the payout contract for `payer`, then syncs.
pub async fn deposit(app: &App, payer: &tributary_indexer::Address, amount: u128) -> Result<Deposited> {
    let config = load_config(&config_path(app))?;
    let payouts = payouts_address(&config)?;
    let chain = connect(app, &config)?;
    let token = parse_evm(config.token.as_deref().ok_or(ChainRefused::NotConfigured)?, "token")?;
    let transaction = chain.deposit(payouts, token, evm(payer), U256::from(amount)).await?;
    let synced =
        sync_with(app, &chain, payouts, config.deployed_at.unwrap_or(0), config.confirmations.unwrap_or(1)).await?;
    Ok(Deposited {
        payer: payer.to_checksummed(),
        amount: amount.to_string(),
        transaction: transaction.to_string(),
        synced,
    })
}

/// What a claim paid.
#[derive(Debug, serde::Serialize)]
pub struct ClaimOutcome {
    pub account: String,
    pub epoch: i64,
    pub paid: String,
    pub cumulative: String,
    pub transaction: String,
}

/// Why a chain operation cannot be done now (as opposed to a chain or RPC failure).
#[derive(Debug, thiserror::Error)]
pub enum ChainRefused {
    #[error("no contracts deployed: run `tributary chain deploy`")]
    NotConfigured,
    #[error("no chain configured: set --rpc-url or TRIBUTARY_RPC_URL (an OP Stack chain's RPC works as is)")]
    NoRpc,
    #[error("no signer: set {KEY_ENV} to the signer's private key (hex)")]
    NoSigner,
    #[error("Datanet {datanet} has no chunk {chunk}")]
    NoSuchChunk { datanet: String, chunk: String },
    #[error("Datanet {datanet} changed since version {version}: run `tributary chain register` first")]
    StaleRegistry { datanet: String, version: u64 },
    #[error("Datanet {datanet} is unchanged since version {version}: nothing to commit (no transaction sent)")]
    RegistryCurrent { datanet: String, version: u64 },
    #[error("epoch {epoch} is not on chain yet (the chain has {on_chain}): run `tributary settle`")]
    NotPosted { epoch: i64, on_chain: u64 },
    #[error("nothing to claim: {0} was already paid its cumulative total")]
    NothingToClaim(String),
    #[error("a keystore is configured but no password: set {PASSWORD_ENV} or {PASSWORD_FILE_ENV}")]
    NoPassword,
    #[error(
        "epoch {epoch} credits {total} in all, but only {deposited} was deposited into the payout contract: the \
         contract pays out deposits only (grants from `account fund` are not on chain); deposit the difference \
         with `tributary chain deposit`, then settle again"
    )]
    Overfunded { epoch: i64, total: u128, deposited: String },
}

/// The configured signer and payout contract; refused without deployed contracts.
fn payout_signer(app: &App) -> Result<(Chain, EvmAddress)> {
    let config = load_config(&config_path(app))?;
    if config.payouts.is_none() {
        return Err(ChainRefused::NotConfigured.into());
    }
    Ok((connect(app, &config)?, payouts_address(&config)?))
}

/// The chain's latest epoch, refused when nothing is posted yet.
async fn posted_epoch(app: &App, chain: &Chain, payouts: EvmAddress) -> Result<i64> {
    let on_chain = chain.payouts(payouts).latestEpoch().call().await.map_err(revert)?;
    if on_chain == 0 {
        let latest = app.ledger().epochs().await?.last().map_or(1, |e| e.number);
        return Err(ChainRefused::NotPosted { epoch: latest, on_chain }.into());
    }
    Ok(on_chain as i64)
}

/// The account's proof in the chain's latest epoch (what the contract checks claims against),
/// submitted by the signer.
pub async fn claim_for(app: &App, account: &tributary_indexer::Address) -> Result<ClaimOutcome> {
    let (chain, payouts) = payout_signer(app)?;
    let epoch = posted_epoch(app, &chain, payouts).await?;
    let proof = app.ledger().proof(account, Some(epoch)).await?;
    let before = chain.payouts(payouts).paid(U256::from(proof.index)).call().await.map_err(revert)?;
    if before >= U256::from(proof.cumulative) {
        return Err(ChainRefused::NothingToClaim(account.to_checksummed()).into());
    }
    let transaction = submit_claim(&chain, payouts, &proof).await?;
    let paid = U256::from(proof.cumulative) - before;
    Ok(ClaimOutcome {
        account: account.to_checksummed(),
        epoch: proof.epoch,
        paid: paid.to_string(),
        cumulative: proof.cumulative.to_string(),
        transaction: transaction.to_string(),
    })
}

/// What an address can claim now: its cumulative total in the chain's latest epoch less what
/// the payout contract has paid it.
#[derive(Debug, serde::Serialize)]
pub struct Claimable {
    pub account: String,
    /// Whether payout contracts are deployed; without them nothing is claimable.
    pub contracts: bool,
    /// The chain's latest posted epoch (0: none yet).
    pub epoch: i64,
    pub cumulative: String,
    pub paid: String,
    pub claimable: String,
}

/// [`Claimable`] for `account`, read from the ledger's proof and the contract (all zero
/// without deployed contracts).
pub async fn claimable(app: &App, account: &tributary_indexer::Address) -> Result<Claimable> {
    let config = load_config(&config_path(app))?;
    if config.payouts.is_none() {
        let zero = "0".to_string();
        return Ok(Claimable {
            account: account.to_checksummed(),
            contracts: false,
            epoch: 0,
            cumulative: zero.clone(),
            paid: zero.clone(),
            claimable: zero,
        });
    }
    let payouts = payouts_address(&config)?;
    let chain = reader(app, &config)?;
    let contract = chain.payouts(payouts);
    let epoch = contract.latestEpoch().call().await.map_err(revert)? as i64;
    let (cumulative, paid) = if epoch == 0 {
        (0u128, U256::ZERO)
    } else {
        match app.ledger().proof(account, Some(epoch)).await {
            Ok(proof) => (proof.cumulative, contract.paid(U256::from(proof.index)).call().await.map_err(revert)?),
            // Not in that epoch: nothing owed.
            Err(tributary_attribution::Error::NotFound(_)) => (0, U256::ZERO),
            Err(e) => return Err(e.into()),
        }
    };
    let owed = U256::from(cumulative).saturating_sub(paid);
    Ok(Claimable {
        account: account.to_checksummed(),
        contracts: true,
        epoch,
        cumulative: cumulative.to_string(),
        paid: paid.to_string(),
        claimable: owed.to_string(),
    })
}

/// One `pushBatch` transaction.
#[derive(Debug, serde::Serialize)]
pub struct PushedBatch {
    pub transaction: String,
    pub recipients: usize,
    pub gas_used: u64,
}

/// What `chain push` paid.
#[derive(Debug, serde::Serialize)]
pub struct Pushed {
    pub epoch: i64,
    /// Accounts paid now.
    pub recipients: usize,
    /// Their sum, in the token's smallest unit.
    pub total: String,
    pub batches: Vec<PushedBatch>,
    /// Accounts owed that could not be paid (the zero address, a recipient the token refuses),
    /// with why: the batches around them went ahead.
    pub skipped: Vec<SkippedLeaf>,
}

/// An account `push` could not pay.
#[derive(Debug, serde::Serialize)]
pub struct SkippedLeaf {
    pub account: String,
    pub cumulative: String,
    pub reason: String,
}

/// Whether a failed transaction was refused by the chain (it reverts: a retry gives the same),
/// as opposed to the RPC failing.
fn reverted(e: &tributary_contracts::Error) -> bool {
    matches!(e, tributary_contracts::Error::Reverted(_)) || e.to_string().contains("revert")
}

/// Pays every account the chain's latest epoch owes something, `batch_size` per transaction.
pub async fn push(app: &App, batch_size: usize) -> Result<Pushed> {
    let (chain, payouts) = payout_signer(app)?;
    chain.wait_for_pending(RECEIPT_TIMEOUT).await?;
    push_with(app, &chain, payouts, batch_size).await
}

/// [`push`] with the given signer and payout contract.
pub async fn push_with(app: &App, chain: &Chain, payouts: EvmAddress, batch_size: usize) -> Result<Pushed> {
    let epoch = posted_epoch(app, chain, payouts).await?;
    let (stored, leaves) = app.ledger().payout_leaves(Some(epoch)).await?;
    let tree = PayoutTree::new(&leaves).context("the epoch has no accounts")?;
    let root: B256 = stored.root.parse().context("stored epoch root")?;
    anyhow::ensure!(B256::from(tree.root()) == root, "epoch {epoch}'s stored accounts do not give its root");
    // Who is still owed: the contract's own record, read for each account (a few at a time).
    let contract = chain.payouts(payouts);
    let indices: Vec<U256> = leaves.iter().map(|leaf| U256::from(leaf.index)).collect();
    let paid: Vec<U256> = futures_util::stream::iter(indices)
        .map(|index| {
            let call = contract.paid(index);
            async move { call.call().await.map_err(revert) }
        })
        .buffered(16)
        .try_collect()
        .await?;
    let owed: Vec<_> = leaves
        .iter()
        .zip(paid)
        .filter(|(leaf, paid)| *paid < U256::from(leaf.cumulative))
        .map(|(l, _)| l.account)
        .collect();
    let mut pushed = Pushed { epoch, recipients: 0, total: "0".into(), batches: Vec::new(), skipped: Vec::new() };
    let mut total = U256::ZERO;
    let cumulative_of = |account: &tributary_indexer::Address| {
        leaves.iter().find(|l| l.account == *account).map(|l| l.cumulative.to_string()).unwrap_or_default()
    };
    // The zero address can hold no tokens: its leaf would revert every batch that holds it.
    let (payable, unpayable): (Vec<_>, Vec<_>) = owed.into_iter().partition(|a| *a != tributary_indexer::Address::ZERO);
    for account in unpayable {
        let reason = "the zero address cannot receive tokens".to_string();
        pushed.skipped.push(SkippedLeaf {
            account: account.to_checksummed(),
            cumulative: cumulative_of(&account),
            reason,
        });
    }
    // A batch the chain refuses is split in two until the leaf it cannot pay stands alone;
    // that leaf is skipped and reported, and every other batch goes ahead.
    let mut queue: std::collections::VecDeque<Vec<tributary_indexer::Address>> =
        payable.chunks(batch_size).map(<[_]>::to_vec).collect();
    while let Some(accounts) = queue.pop_front() {
        let multi = tree.multiproof(&accounts);
        let args: Vec<(U256, EvmAddress, U256)> =
            multi.leaves.iter().map(|l| (U256::from(l.index), evm(&l.account), U256::from(l.cumulative))).collect();
        let proof = multi.proof.into_iter().map(B256::from).collect();
        let receipt = match chain.push_batch(payouts, &args, proof, multi.flags).await {
            Ok(receipt) => receipt,
            Err(e) if reverted(&e) && accounts.len() > 1 => {
                let (first, second) = accounts.split_at(accounts.len() / 2);
                queue.push_front(second.to_vec());
                queue.push_front(first.to_vec());
                continue;
            }
            Err(e) if reverted(&e) => {
                let account = accounts[0];
                tracing::warn!(account = %account, error = %e, "push: skipping a leaf the chain will not pay");
                let skipped = SkippedLeaf {
                    account: account.to_checksummed(),
                    cumulative: cumulative_of(&account),
                    reason: e.to_string(),
                };
                pushed.skipped.push(skipped);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // What the contract says it paid: an account claimed in between is skipped there.
        let event = receipt
            .decoded_log::<AttributionPayouts::BatchPushed>()
            .context("the pushBatch receipt has no BatchPushed event")?;
        let recipients = usize::try_from(event.recipients).context("recipient count")?;
        total += event.total;
        pushed.recipients += recipients;
        pushed.batches.push(PushedBatch {
            transaction: receipt.transaction_hash.to_string(),
            recipients,
            gas_used: receipt.gas_used,
        });
    }
    pushed.total = total.to_string();
    Ok(pushed)
}
