//! Signed uploads: a contributor without an API key signs the upload as EIP-712 typed data
//! ([`Upload`]) that covers everything the upload decides (the Datanet, the documents' content
//! hash, the license, the chunking) under a domain that names this deployment (its random
//! `salt`, kept in the catalog, and the chain id and registry once contracts are deployed), a
//! nonce used once and a deadline. A leaked signed payload can then be submitted only as it
//! was signed, only here, only once, and only until its deadline.

use alloy::primitives::{Address as EvmAddress, B256, Signature, U256};
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct};
use anyhow::{Context, Result};
use sqlx::Row;
use tributary_indexer::Address;

use crate::app::App;
use crate::app::onchain::{config_path, load_config};

sol! {
    /// What a contributor signs to upload without an API key (EIP-712 primary type `Upload`).
    #[derive(Debug)]
    struct Upload {
        /// The Datanet's name.
        string datanet;
        /// blake3 over blake3(name) || blake3(text) of each document, in order.
        bytes32 contentHash;
        /// The SPDX identifier the documents are stored under (`unspecified` by default).
        string license;
        /// The chunk length and overlap in embedder tokens (their defaults when not sent).
        uint32 chunkTokens;
        uint32 overlapTokens;
        /// Any number, used once per signer.
        uint256 nonce;
        /// Unix seconds after which the signature is refused; at most a day ahead.
        uint64 deadline;
    }
}

/// The domain's name and version.
pub const DOMAIN_NAME: &str = "Tributary";
pub const DOMAIN_VERSION: &str = "1";
/// How far ahead a deadline may be (it bounds how long a used nonce is remembered).
pub const MAX_SIGNATURE_LIFETIME_SECS: u64 = 24 * 3600;

/// Why a signed upload is refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{0}")]
    Malformed(String),
    #[error("the signature is not the contributor's over this upload")]
    WrongSigner,
    #[error("the signature's deadline {deadline} has passed (now {now})")]
    Expired { deadline: u64, now: u64 },
    #[error("the signature's deadline {deadline} is more than {MAX_SIGNATURE_LIFETIME_SECS} s ahead (now {now})")]
    TooFarAhead { deadline: u64, now: u64 },
    #[error("this signed upload (nonce {nonce}) was already submitted")]
    Replayed { nonce: U256 },
}

/// This deployment's salt: 32 random bytes made on first use and kept in the catalog.
async fn salt(app: &App) -> Result<B256> {
    let pool = app.store.catalog().pool();
    let read = || sqlx::query("SELECT salt FROM deployment WHERE id = 1").fetch_optional(pool);
    let row = match read().await? {
        Some(row) => row,
        None => {
            let mut random = [0u8; 32];
            getrandom::fill(&mut random)
                .map_err(|e| anyhow::anyhow!("no randomness for the deployment's salt: {e}"))?;
            // Two first uses at once: the first insert wins and both read it.
            sqlx::query("INSERT INTO deployment (id, salt) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
                .bind(alloy::hex::encode_prefixed(random))
                .execute(pool)
                .await?;
            read().await?.context("the deployment's salt was not stored")?
        }
    };
    let salt: String = row.try_get("salt")?;
    salt.parse().context("the stored deployment salt is not 32 bytes of hex")
}

/// The EIP-712 domain uploads are signed under here.
pub async fn domain(app: &App) -> Result<Eip712Domain> {
    let config = load_config(&config_path(app))?;
    let registry =
        config.registry.as_deref().map(str::parse::<EvmAddress>).transpose().context("chain.toml registry")?;
    Ok(Eip712Domain::new(
        Some(DOMAIN_NAME.into()),
        Some(DOMAIN_VERSION.into()),
        config.chain_id.map(U256::from),
        registry,
        Some(salt(app).await?),
    ))
}

/// A used nonce, claimed for one upload: [`Claim::release`] gives it back when the upload
/// stored nothing, so that the same signed upload may be retried.
#[derive(Debug)]
pub struct Claim {
    signer: String,
    nonce: String,
}

impl Claim {
    pub async fn release(self, app: &App) -> Result<()> {
        sqlx::query("DELETE FROM upload_nonces WHERE signer = $1 AND nonce = $2")
            .bind(&self.signer)
            .bind(&self.nonce)
            .execute(app.store.catalog().pool())
            .await?;
        Ok(())
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Checks that `signature` is `contributor`'s over `upload` under this deployment's domain,
/// within its deadline. `Ok(Err(_))` is a refusal; `Err` a failure of the store.
pub async fn verify(
    app: &App,
    upload: &Upload,
    signature: &str,
    contributor: &Address,
) -> Result<std::result::Result<(), SignatureError>> {
    let Ok(signature) = signature.parse::<Signature>() else {
        return Ok(Err(SignatureError::Malformed("the signature is not 65 bytes of 0x-hex".into())));
    };
    let now = now_secs();
    if upload.deadline < now {
        return Ok(Err(SignatureError::Expired { deadline: upload.deadline, now }));
    }
    if upload.deadline > now + MAX_SIGNATURE_LIFETIME_SECS {
        return Ok(Err(SignatureError::TooFarAhead { deadline: upload.deadline, now }));
    }
    let hash = upload.eip712_signing_hash(&domain(app).await?);
    Ok(match signature.recover_address_from_prehash(&hash) {
        Ok(signer) if signer.as_slice() == contributor.as_bytes() => Ok(()),
        _ => Err(SignatureError::WrongSigner),
    })
}

/// Claims a verified upload's nonce for `contributor`: refused when it was claimed before.
pub async fn claim(
    app: &App,
    upload: &Upload,
    contributor: &Address,
) -> Result<std::result::Result<Claim, SignatureError>> {
    let claim = Claim { signer: contributor.to_lower_hex(), nonce: upload.nonce.to_string() };
    let mut tx = app.store.catalog().pool().begin().await?;
    // Nonces past their deadline cannot be replayed (the deadline refuses them): forgotten.
    sqlx::query("DELETE FROM upload_nonces WHERE deadline < $1")
        .bind(i64::try_from(now_secs()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO upload_nonces (signer, nonce, deadline) VALUES ($1, $2, $3) ON CONFLICT (signer, nonce) DO NOTHING",
    )
    .bind(&claim.signer)
    .bind(&claim.nonce)
    .bind(i64::try_from(upload.deadline).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if inserted.rows_affected() == 0 {
        return Ok(Err(SignatureError::Replayed { nonce: upload.nonce }));
    }
    Ok(Ok(claim))
}
