//! An EVM chain and the Tributary contracts on it: a local anvil for tests and the demo, or any
//! JSON-RPC endpoint (an OP Stack chain is plain EVM JSON-RPC).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;

use crate::{Error, Result};

sol!(
    #[sol(rpc, all_derives)]
    AttributionPayouts,
    "artifacts/AttributionPayouts.json"
);
sol!(
    #[sol(rpc, all_derives)]
    DatanetRegistry,
    "artifacts/DatanetRegistry.json"
);
sol!(
    #[sol(rpc, all_derives)]
    TributaryTestToken,
    "artifacts/TributaryTestToken.json"
);

/// anvil's well-known development keys (mnemonic "test test ... junk"): for local chains only.
pub const ANVIL_KEYS: [&str; 4] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

/// Where the anvil binary is: `$TRIBUTARY_ANVIL`, else the npm package `scripts/setup.sh`
/// installs under `contracts/node_modules` (found from the working directory or this crate).
pub fn locate_anvil() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TRIBUTARY_ANVIL") {
        return Some(PathBuf::from(path));
    }
    let relative = Path::new("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    [Path::new("contracts").join(relative), Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)]
        .into_iter()
        .find(|p| p.is_file())
}

/// A local anvil on 127.0.0.1 and a free port, stopped when dropped.
pub struct Anvil {
    child: Child,
    url: String,
}

impl Anvil {
    /// Starts anvil and waits until it answers JSON-RPC (it starts offline in well under a
    /// second).
    pub async fn start() -> Result<Anvil> {
        let binary = locate_anvil().ok_or_else(|| Error::Chain("anvil not found: run scripts/setup.sh".into()))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::Chain(format!("no free port: {e}")))?
            .port();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--chain-id", "31337"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Chain(format!("starting {}: {e}", binary.display())))?;
        let anvil = Anvil { child, url: format!("http://127.0.0.1:{port}") };
        let provider =
            ProviderBuilder::new().connect_http(anvil.url.parse().map_err(|e| Error::Chain(format!("{e}")))?);
        let started = Instant::now();
        loop {
            if provider.get_chain_id().await.is_ok() {
                return Ok(anvil);
            }
            if started.elapsed() > Duration::from_secs(15) {
                return Err(Error::Chain("anvil did not answer within 15 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Addresses of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deployment {
    pub registry: Address,
    pub payouts: Address,
    pub token: Address,
}

/// How long to wait for a transaction to be mined before reporting it pending.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// A signer connected to a chain.
#[derive(Clone)]
pub struct Chain {
    provider: DynProvider,
    signer: Address,
}

impl std::fmt::Debug for Chain {
    // The key never appears: only the address it signs for.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("signer", &self.signer).finish()
    }
}

fn chain_err(e: impl std::fmt::Display) -> Error {
    Error::Chain(e.to_string())
}

/// Where the signer's private key comes from.
#[derive(Clone, Copy)]
pub enum SignerKey<'a> {
    /// 0x-hex private key.
    Hex(&'a str),
    /// An encrypted JSON keystore (Web3 Secret Storage v3, as `cast wallet import` and geth
    /// write it) and its password.
    Keystore { path: &'a Path, password: &'a str },
}

impl std::fmt::Debug for SignerKey<'_> {
    // Neither the key nor the password ever appears.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignerKey::Hex(_) => f.write_str("SignerKey::Hex(..)"),
            SignerKey::Keystore { path, .. } => f.debug_struct("SignerKey::Keystore").field("path", path).finish(),
        }
    }
}

/// Encrypts `key` (0x-hex) into a new keystore file `dir/name` under `password` (scrypt, as
/// geth and cast do); the signer's address.
pub fn write_keystore(dir: &Path, name: &str, key: &str, password: &str) -> Result<Address> {
    let signer = SignerKey::Hex(key).load()?;
    let keystore_err =
        |e: alloy::signers::local::LocalSignerError| Error::Keystore { path: dir.join(name), reason: e.to_string() };
    PrivateKeySigner::encrypt_keystore(dir, &mut rand::thread_rng(), signer.to_bytes(), password, Some(name))
        .map_err(keystore_err)?;
    Ok(signer.address())
}

impl SignerKey<'_> {
    pub fn load(self) -> Result<PrivateKeySigner> {
        match self {
            SignerKey::Hex(key) => key.parse().map_err(|_| Error::InvalidKey),
            SignerKey::Keystore { path, password } => PrivateKeySigner::decrypt_keystore(path, password)
                .map_err(|e| Error::Keystore { path: path.to_path_buf(), reason: e.to_string() }),
        }
    }
}

impl Chain {
    /// Connects to `rpc_url`, signing with `key` (0x-hex private key).
    pub fn connect(rpc_url: &str, key: &str) -> Result<Chain> {
        Chain::connect_with(rpc_url, SignerKey::Hex(key).load()?)
    }

    /// Connects to `rpc_url`, signing with `signer`.
    pub fn connect_with(rpc_url: &str, signer: PrivateKeySigner) -> Result<Chain> {
        let address = signer.address();
        let url = rpc_url.parse().map_err(|e| Error::Chain(format!("RPC URL {rpc_url:?}: {e}")))?;
        // The nonce comes from the chain (pending count) for every transaction: alloy's cached
        // nonce counts one up even when the transaction is never sent (a revert at gas
        // estimation), which would leave a gap that stalls every later transaction; the chain's
        // count is also right after a restart.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url)
            .erased();
        Ok(Chain { provider, signer: address })
    }

    /// Connects to `rpc_url` without a key: reads only (a transaction sent through it fails).
    /// What a periodic read (deposits, status) should use, so that it never unlocks a keystore.
    pub fn reader(rpc_url: &str) -> Result<Chain> {
        let url = rpc_url.parse().map_err(|e| Error::Chain(format!("RPC URL {rpc_url:?}: {e}")))?;
        let provider = ProviderBuilder::new().disable_recommended_fillers().connect_http(url).erased();
        Ok(Chain { provider, signer: Address::ZERO })
    }

    /// The signing address (the zero address for a [`Chain::reader`]).
    pub fn signer(&self) -> Address {
        self.signer
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// Deploys the registry, a test token (all of `supply` to the signer) unless `token` is
    /// given, and the payout contract (the signer is admin and settler).
    pub async fn deploy(&self, token: Option<Address>, supply: U256) -> Result<Deployment> {
        self.deploy_with_admin(token, supply, self.signer).await
    }

    /// [`Chain::deploy`] with the payout contract's admin (who grants roles and pauses) apart
    /// from the signer, which is its settler (posts epochs, pushes batches): a leaked server
    /// key can then neither pause nor grant.
    pub async fn deploy_with_admin(&self, token: Option<Address>, supply: U256, admin: Address) -> Result<Deployment> {
        let registry = *DatanetRegistry::deploy(&self.provider).await.map_err(chain_err)?.address();
        let token = match token {
            Some(t) => t,
            None => {
                *TributaryTestToken::deploy(&self.provider, "Tributary Test".into(), "TRIB".into(), self.signer, supply)
                    .await
                    .map_err(chain_err)?
                    .address()
            }
        };
        let payouts =
            *AttributionPayouts::deploy(&self.provider, token, admin, self.signer).await.map_err(chain_err)?.address();
        Ok(Deployment { registry, payouts, token })
    }

    pub fn payouts(&self, address: Address) -> AttributionPayouts::AttributionPayoutsInstance<DynProvider> {
        AttributionPayouts::new(address, self.provider.clone())
    }

    pub fn registry(&self, address: Address) -> DatanetRegistry::DatanetRegistryInstance<DynProvider> {
        DatanetRegistry::new(address, self.provider.clone())
    }

    pub fn token(&self, address: Address) -> TributaryTestToken::TributaryTestTokenInstance<DynProvider> {
        TributaryTestToken::new(address, self.provider.clone())
    }

    /// Posts an epoch's payout root, receipts head and cumulative total (refused by the
    /// contract beyond what was deposited into it); waits for the receipt.
    pub async fn post_epoch(&self, payouts: Address, epoch: u64, root: B256, head: B256, total: U256) -> Result<B256> {
        self.post_epoch_confirmed(payouts, PostedEpoch { epoch, root, head, total }, 1).await
    }

    /// Deposits `amount` of the signer's tokens into the payout contract for `payer` (an ERC-20
    /// approval, then `deposit`); the deposit's transaction hash.
    pub async fn deposit(&self, payouts: Address, token: Address, payer: Address, amount: U256) -> Result<B256> {
        let approval = self.token(token).approve(payouts, amount).send().await.map_err(revert)?;
        let approved = approval.with_timeout(Some(RECEIPT_TIMEOUT)).get_receipt().await.map_err(chain_err)?;
        if !approved.status() {
            return Err(Error::Reverted("approve".into()));
        }
        let sent = self.payouts(payouts).deposit(payer, amount).send().await.map_err(revert)?;
        let receipt = sent.with_timeout(Some(RECEIPT_TIMEOUT)).get_receipt().await.map_err(chain_err)?;
        if !receipt.status() {
            return Err(Error::Reverted("deposit".into()));
        }
        Ok(receipt.transaction_hash)
    }

    /// The payout contract's `Deposited` events in blocks `from..=to`, in chain order.
    pub async fn deposits(&self, payouts: Address, from: u64, to: u64) -> Result<Vec<DepositLog>> {
        let filter = alloy::rpc::types::Filter::new()
            .address(payouts)
            .event_signature(<AttributionPayouts::Deposited as alloy::sol_types::SolEvent>::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(chain_err)?;
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            let (Some(transaction), Some(log_index), Some(block)) =
                (log.transaction_hash, log.log_index, log.block_number)
            else {
                return Err(Error::Chain("a Deposited log without its transaction, index or block".into()));
            };
            let event = log.log_decode::<AttributionPayouts::Deposited>().map_err(chain_err)?;
            out.push(DepositLog {
                payer: event.inner.data.payer,
                amount: event.inner.data.amount,
                transaction,
                log_index,
                block,
            });
        }
        Ok(out)
    }

    /// [`Chain::post_epoch`], waiting for `confirmations` blocks (1: the block that includes it).
    /// On an OP Stack chain, more confirmations wait for more L2 blocks; finality on L1 comes later
    /// and a reorg of unsafe L2 blocks is what they guard against.
    pub async fn post_epoch_confirmed(
        &self,
        payouts: Address,
        posted: PostedEpoch,
        confirmations: u64,
    ) -> Result<B256> {
        let PostedEpoch { epoch, root, head, total } = posted;
        let pending = self.payouts(payouts).postEpoch(epoch, root, head, total).send().await.map_err(revert)?;
        // Test hook: a crash after the transaction left, before its receipt came back.
        if std::env::var("TRIBUTARY_FAILPOINT").is_ok_and(|v| v == "post-after-send") {
            std::process::abort();
        }
        let receipt = pending
            .with_required_confirmations(confirmations.max(1))
            .with_timeout(Some(RECEIPT_TIMEOUT))
            .get_receipt()
            .await
            .map_err(chain_err)?;
        if !receipt.status() {
            return Err(Error::Reverted("postEpoch".into()));
        }
        Ok(receipt.transaction_hash)
    }

    /// Waits until no transaction of the signer is pending (the pending nonce equals the mined
    /// one), so that what the chain says afterwards includes everything sent before a crash.
    pub async fn wait_for_pending(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let mined = self.provider.get_transaction_count(self.signer).latest().await.map_err(chain_err)?;
            let pending = self.provider.get_transaction_count(self.signer).pending().await.map_err(chain_err)?;
            if pending <= mined {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(Error::Chain(format!(
                    "{} transaction(s) of {} still pending after {timeout:?} (nonces {mined}..{pending})",
                    pending - mined,
                    self.signer
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Pays `leaves` (proven together by `proof` and `flags`, in `multiproof` order) in one
    /// transaction; waits for the receipt and returns it.
    pub async fn push_batch(
        &self,
        payouts: Address,
        leaves: &[(U256, Address, U256)],
        proof: Vec<B256>,
        flags: Vec<bool>,
    ) -> Result<alloy::rpc::types::TransactionReceipt> {
        let indices = leaves.iter().map(|l| l.0).collect();
        let accounts = leaves.iter().map(|l| l.1).collect();
        let amounts = leaves.iter().map(|l| l.2).collect();
        let sent =
            self.payouts(payouts).pushBatch(indices, accounts, amounts, proof, flags).send().await.map_err(revert)?;
        let receipt = sent.with_timeout(Some(RECEIPT_TIMEOUT)).get_receipt().await.map_err(chain_err)?;
        if !receipt.status() {
            return Err(Error::Reverted("pushBatch".into()));
        }
        Ok(receipt)
    }
}

/// What `postEpoch` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostedEpoch {
    pub epoch: u64,
    pub root: B256,
    pub head: B256,
    /// The epoch's cumulative total: every credit so far.
    pub total: U256,
}

/// One `Deposited` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositLog {
    pub payer: Address,
    pub amount: U256,
    pub transaction: B256,
    pub log_index: u64,
    pub block: u64,
}

/// A contract call's error, with the contract's own revert reason when it gave one.
pub fn revert(e: alloy::contract::Error) -> Error {
    if let Some(decoded) = e.as_decoded_interface_error::<AttributionPayouts::AttributionPayoutsErrors>() {
        return Error::Reverted(format!("{decoded:?}"));
    }
    if let Some(decoded) = e.as_decoded_interface_error::<DatanetRegistry::DatanetRegistryErrors>() {
        return Error::Reverted(format!("{decoded:?}"));
    }
    Error::Chain(e.to_string())
}
