//! Prices, shares and the split of one answer's fee: integer arithmetic that conserves the fee.
//!
//! The fee is divided into five pools by basis points: protocol, adapter owners, Datanet owners,
//! data contributors and training data. The contributors' pool (and the Datanet owners' pool) is
//! divided among the cited chunks in proportion to their influence weights; each cited chunk's
//! contributor (the chunk's first contributor: a duplicate earns for no one else) and its
//! Datanet's owner are credited. The training pool is divided the same way among the chunks of
//! the training examples that most influenced the answer of a trained adapter
//! ([`TrainedChunk`]), to their first contributors. Every division rounds down, and all
//! rounding dust goes to the protocol account, as do the pools nobody can receive: the data
//! pools when no chunk is cited, and any share of the zero address (a Datanet created without
//! an owner). The adapter pool with no adapter owner, and the training pool with no trained
//! chunk, join the contributors' pool (the protocol's when nothing is cited). So an answer's
//! credits always sum exactly to its fee.

use tributary_indexer::Address;

use crate::{Error, Result};

/// An amount in the token's smallest unit (uint256 on chain; u128 holds any realistic sum).
pub type Amount = u128;

/// Upper bound on any configured price: keeps every product below u128's range.
pub const MAX_PRICE: Amount = 1_000_000_000_000_000_000_000_000_000_000; // 1e30

/// The default cap on a Datanet's price and on an adapter's surcharge: one whole token of 18
/// decimals. The admin may set another (up to [`MAX_PRICE`]).
pub const DEFAULT_MAX_FEE: Amount = 1_000_000_000_000_000_000;

fn default_max_fee() -> Amount {
    DEFAULT_MAX_FEE
}

/// Basis points of the fee per recipient group; they sum to 10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shares {
    pub protocol_bps: u32,
    pub adapter_bps: u32,
    pub datanet_bps: u32,
    pub contributors_bps: u32,
    /// The training data of the answer's trained adapters. Absent (0) in policies and
    /// receipts written before training credits existed.
    #[serde(default)]
    pub training_bps: u32,
}

impl Default for Shares {
    /// Without a trained adapter, the training share joins the contributors': 60% to the cited
    /// data, as before training credits existed.
    fn default() -> Self {
        Shares {
            protocol_bps: 1_000,
            adapter_bps: 1_000,
            datanet_bps: 2_000,
            contributors_bps: 5_000,
            training_bps: 1_000,
        }
    }
}

impl Shares {
    pub fn validate(&self) -> Result<()> {
        let sum = [self.protocol_bps, self.adapter_bps, self.datanet_bps, self.contributors_bps, self.training_bps]
            .iter()
            .map(|&b| b as u64)
            .sum::<u64>();
        if sum != 10_000 {
            return Err(Error::InvalidArgument(format!("shares must sum to 10000 basis points, not {sum}")));
        }
        Ok(())
    }
}

/// How a Datanet divides the data pools among the chunks an answer cites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Sentences citing the chunk times its retrieval score.
    Citation,
    /// The drop in the answer's log-likelihood when the chunk's passage is left out of the
    /// prompt (ContextCite-style); negative drops count as zero.
    Ablation,
}

impl std::str::FromStr for Weighting {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "citation" => Ok(Weighting::Citation),
            "ablation" => Ok(Weighting::Ablation),
            other => Err(Error::InvalidArgument(format!("weighting must be citation or ablation, not {other:?}"))),
        }
    }
}

impl Weighting {
    pub fn as_str(&self) -> &'static str {
        match self {
            Weighting::Citation => "citation",
            Weighting::Ablation => "ablation",
        }
    }
}

/// The ledger-wide policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Fee of one answer per Datanet searched, unless the Datanet sets its own.
    #[serde(with = "crate::amount_string")]
    pub default_fee: Amount,
    pub shares: Shares,
    /// Receives the protocol share, the rounding dust and unclaimable pools. Never the zero
    /// address; until the admin sets one (the default policy has none), no answer is charged.
    #[serde(with = "crate::address_string")]
    pub protocol_account: Address,
    /// Receives slashed credits. Never the zero address.
    #[serde(with = "crate::address_string")]
    pub slash_sink: Address,
    pub default_weighting: Weighting,
    /// The highest price a Datanet may set (its owner's price above it is refused; a lower cap
    /// set later caps the prices already set).
    #[serde(default = "default_max_fee", with = "crate::amount_string")]
    pub max_datanet_fee: Amount,
    /// The highest surcharge an adapter may set.
    #[serde(default = "default_max_fee", with = "crate::amount_string")]
    pub max_adapter_fee: Amount,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            default_fee: 1_000_000_000_000_000, // 0.001 of an 18-decimal token
            shares: Shares::default(),
            protocol_account: Address::ZERO,
            slash_sink: Address::ZERO,
            default_weighting: Weighting::Citation,
            max_datanet_fee: DEFAULT_MAX_FEE,
            max_adapter_fee: DEFAULT_MAX_FEE,
        }
    }
}

impl Policy {
    /// What a stored policy must be: shares that sum to 10,000, prices within their caps, and
    /// real accounts for the protocol and the slash sink (the zero address is never a payee: a
    /// payout leaf for it would make every batch that holds it revert in the token).
    pub fn validate(&self) -> Result<()> {
        self.shares.validate()?;
        check_price(self.default_fee)?;
        check_price(self.max_datanet_fee)?;
        check_price(self.max_adapter_fee)?;
        if self.default_fee > self.max_datanet_fee {
            return Err(Error::InvalidArgument(format!(
                "the default fee {} exceeds the Datanet price cap {}",
                self.default_fee, self.max_datanet_fee
            )));
        }
        if self.protocol_account == Address::ZERO {
            return Err(Error::InvalidArgument("the protocol account cannot be the zero address".into()));
        }
        if self.slash_sink == Address::ZERO {
            return Err(Error::InvalidArgument("the slash sink cannot be the zero address".into()));
        }
        Ok(())
    }

    /// Refuses to charge while no protocol account is set (the default policy has none).
    pub fn check_payable(&self) -> Result<()> {
        if self.protocol_account == Address::ZERO {
            return Err(Error::Unconfigured(
                "no protocol account is set, so no answer can be charged: `tributary pricing set --protocol-account ADDR`"
                    .into(),
            ));
        }
        Ok(())
    }

    /// A Datanet's price as charged: its own (or the default), never above the cap.
    pub fn datanet_fee(&self, pricing: &DatanetPricing) -> Amount {
        pricing.fee.unwrap_or(self.default_fee).min(self.max_datanet_fee)
    }

    /// An adapter's surcharge as charged, never above the cap.
    pub fn adapter_fee(&self, pricing: &AdapterPricing) -> Amount {
        pricing.fee.min(self.max_adapter_fee)
    }
}

pub(crate) fn check_price(fee: Amount) -> Result<()> {
    if fee > MAX_PRICE {
        return Err(Error::InvalidArgument(format!("a price may be at most {MAX_PRICE}, not {fee}")));
    }
    Ok(())
}

/// A Datanet's own price and weighting (either may be left to the policy).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatanetPricing {
    #[serde(default, with = "crate::amount_string::option")]
    pub fee: Option<Amount>,
    pub weighting: Option<Weighting>,
}

/// An adapter's surcharge and the account its share goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdapterPricing {
    #[serde(with = "crate::amount_string")]
    pub fee: Amount,
    #[serde(default, with = "crate::address_string::option")]
    pub owner: Option<Address>,
}

/// Who a credit pays, in which capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Protocol,
    AdapterOwner,
    DatanetOwner,
    Contributor,
    /// The first contributor of a chunk a trained adapter learned from.
    TrainingContributor,
    /// The slash sink's side of a slash.
    Sink,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Protocol => "protocol",
            Role::AdapterOwner => "adapter_owner",
            Role::DatanetOwner => "datanet_owner",
            Role::Contributor => "contributor",
            Role::TrainingContributor => "training_contributor",
            Role::Sink => "sink",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "protocol" => Role::Protocol,
            "adapter_owner" => Role::AdapterOwner,
            "datanet_owner" => Role::DatanetOwner,
            "contributor" => Role::Contributor,
            "training_contributor" => Role::TrainingContributor,
            "sink" => Role::Sink,
            _ => return None,
        })
    }
}

/// A chunk an answer cited, with what the split needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CitedChunk {
    pub datanet: String,
    pub datanet_id: i64,
    #[serde(with = "crate::address_string")]
    pub datanet_owner: Address,
    pub chunk_id: String,
    #[serde(with = "crate::address_string")]
    pub contributor: Address,
    /// The answer's sentences that cite it.
    pub sentences: Vec<String>,
    /// Its retrieval score (fused).
    pub score: f32,
    /// Influence weight, an integer (see [`citation_weights`], [`ablation_weights`]).
    pub weight: u64,
}

/// A chunk of the training data of an adapter the answer used, credited for the influence of
/// the training examples it belongs to on the answer (training-data attribution).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainedChunk {
    /// The adapter, as the answer named it.
    pub adapter: String,
    /// The root of the adapter's training log: the ledger credits only chunks registered for
    /// this (adapter, root) when it was published.
    pub training_root: String,
    pub datanet: String,
    pub datanet_id: i64,
    pub chunk_id: String,
    /// Taken from the catalog when recorded (the chunk's first contributor).
    #[serde(with = "crate::address_string")]
    pub contributor: Address,
    /// The hashes of the influential training examples that hold the chunk.
    pub examples: Vec<String>,
    /// Integer influence weight (the examples' gradient similarity to the answer's).
    pub weight: u64,
}

/// One share of a fee, before it becomes a ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub account: Address,
    pub role: Role,
    pub amount: Amount,
    pub datanet_id: Option<i64>,
    pub chunk_id: Option<String>,
    pub sentences: Vec<String>,
}

/// Scale of the integer weights: the largest weight of an answer is this.
pub const WEIGHT_SCALE: f64 = 1_000_000.0;

/// The largest influence weight a chunk may carry, and the most chunks one answer may weigh:
/// within them the weights' sums fit a u64 and every product in [`split_fee`] fits a u128.
/// (Weights made here are at most a few times [`WEIGHT_SCALE`].)
pub const MAX_WEIGHT: u64 = 1 << 32;
pub const MAX_WEIGHED_CHUNKS: usize = 1 << 16;

/// Refuses weights [`split_fee`] cannot divide by exactly: any above [`MAX_WEIGHT`], or more
/// than [`MAX_WEIGHED_CHUNKS`] chunks in all.
pub fn check_weights(cited: &[CitedChunk], trained: &[TrainedChunk]) -> Result<()> {
    if cited.len() + trained.len() > MAX_WEIGHED_CHUNKS {
        return Err(Error::InvalidArgument(format!("an answer weighs at most {MAX_WEIGHED_CHUNKS} chunks")));
    }
    let weights = cited.iter().map(|c| c.weight).chain(trained.iter().map(|c| c.weight));
    if let Some(w) = weights.into_iter().find(|w| *w > MAX_WEIGHT) {
        return Err(Error::InvalidArgument(format!("an influence weight may be at most {MAX_WEIGHT}, not {w}")));
    }
    Ok(())
}

fn to_integer_weights(raw: &[f64]) -> Vec<u64> {
    let max = raw.iter().copied().filter(|w| w.is_finite()).fold(0.0f64, f64::max);
    if max <= 0.0 {
        return vec![0; raw.len()];
    }
    raw.iter()
        .map(|w| if w.is_finite() && *w > 0.0 { (w / max * WEIGHT_SCALE).round().max(1.0) as u64 } else { 0 })
        .collect()
}

/// Citation weighting: (sentences citing the chunk) x (its retrieval score).
pub fn citation_weights(cited: &[(usize, f32)]) -> Vec<u64> {
    let raw: Vec<f64> = cited.iter().map(|(sentences, score)| *sentences as f64 * (*score).max(0.0) as f64).collect();
    to_integer_weights(&raw)
}

/// Ablation weighting: each chunk's log-likelihood drop, negatives as zero. `None` when every
/// drop is zero (the answer does not depend on any one passage): the caller then falls back to
/// citation weights, so the data pools still reach the cited contributors.
pub fn ablation_weights(drops: &[f64]) -> Option<Vec<u64>> {
    let weights = to_integer_weights(&drops.iter().map(|d| d.max(0.0)).collect::<Vec<_>>());
    weights.iter().any(|w| *w > 0).then_some(weights)
}

/// Training-data weighting: the gradient similarity of each influential training example to
/// the answer, non-positive ones as zero (an example whose gradient opposes the answer's did
/// not help write it).
pub fn training_weights(similarities: &[f64]) -> Vec<u64> {
    to_integer_weights(&similarities.iter().map(|d| d.max(0.0)).collect::<Vec<_>>())
}

/// `amount * numerator / denominator`, rounded down, without overflow for amounts <= 1e31 and
/// denominators < 2^64.
fn mul_div(amount: Amount, numerator: u64, denominator: u64) -> Amount {
    let (d, n) = (denominator as Amount, numerator as Amount);
    (amount / d) * n + (amount % d) * n / d
}

/// Splits `fee` (see the module docs). The returned amounts sum to `fee` exactly; zero amounts
/// are left out. The weights must pass [`check_weights`] (the ledger checks before it splits).
pub fn split_fee(
    fee: Amount,
    shares: &Shares,
    protocol: Address,
    adapter_owners: &[Address],
    cited: &[CitedChunk],
    trained: &[TrainedChunk],
) -> Vec<Split> {
    let part = |bps: u32| mul_div(fee, bps as u64, 10_000);
    let total_weight: u64 = cited.iter().map(|c| c.weight).sum();
    let data_cited = total_weight > 0;
    let trained_weight: u64 = trained.iter().map(|c| c.weight).sum();
    let mut out = Vec::new();
    let pay = |out: &mut Vec<Split>, split: Split| {
        if split.amount > 0 {
            out.push(split);
        }
    };

    // The zero address is never a payee: what it would get is the protocol's (below).
    let payee = |account: Address, role: Role| if account == Address::ZERO { None } else { Some((account, role)) };

    // Adapter owners: equal parts of the adapter pool.
    // No training data to credit: the training share rewards the cited data instead (one
    // pool, so the split is to the unit the one of a policy without a training share).
    let contributors_bps =
        shares.contributors_bps.saturating_add(if trained_weight == 0 { shares.training_bps } else { 0 });
    let mut contributors_pool = if data_cited { part(contributors_bps) } else { 0 };
    if adapter_owners.is_empty() {
        // No adapter owner: the adapter share rewards the data instead.
        if data_cited {
            contributors_pool += part(shares.adapter_bps);
        }
    } else {
        let each = part(shares.adapter_bps) / adapter_owners.len() as Amount;
        for owner in adapter_owners {
            let Some((account, role)) = payee(*owner, Role::AdapterOwner) else { continue };
            let split = Split { account, role, amount: each, datanet_id: None, chunk_id: None, sentences: Vec::new() };
            pay(&mut out, split);
        }
    }

    // Data pools, by weight, to each cited chunk's contributor and its Datanet's owner.
    if data_cited {
        let datanet_pool = part(shares.datanet_bps);
        for chunk in cited {
            for (role, account, pool) in [
                (Role::Contributor, chunk.contributor, contributors_pool),
                (Role::DatanetOwner, chunk.datanet_owner, datanet_pool),
            ] {
                let Some((account, role)) = payee(account, role) else { continue };
                let split = Split {
                    account,
                    role,
                    amount: mul_div(pool, chunk.weight, total_weight),
                    datanet_id: Some(chunk.datanet_id),
                    chunk_id: Some(chunk.chunk_id.clone()),
                    sentences: chunk.sentences.clone(),
                };
                pay(&mut out, split);
            }
        }
    }

    // The training pool, by weight, to each trained chunk's first contributor.
    if trained_weight > 0 {
        let training_pool = part(shares.training_bps);
        for chunk in trained {
            let Some((account, role)) = payee(chunk.contributor, Role::TrainingContributor) else { continue };
            let split = Split {
                account,
                role,
                amount: mul_div(training_pool, chunk.weight, trained_weight),
                datanet_id: Some(chunk.datanet_id),
                chunk_id: Some(chunk.chunk_id.clone()),
                sentences: Vec::new(),
            };
            pay(&mut out, split);
        }
    }

    // The protocol: its share, the dust, and whatever no one else could receive.
    let rest = fee - out.iter().map(|s| s.amount).sum::<Amount>();
    let split = Split {
        account: protocol,
        role: Role::Protocol,
        amount: rest,
        datanet_id: None,
        chunk_id: None,
        sentences: Vec::new(),
    };
    pay(&mut out, split);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(n: u8) -> Address {
        format!("0x{}", hex::encode([n; 20])).parse().expect("valid address")
    }

    fn chunk(n: u8, weight: u64) -> CitedChunk {
        CitedChunk {
            datanet: "d".into(),
            datanet_id: 1,
            datanet_owner: address(200),
            chunk_id: format!("{n:064x}"),
            contributor: address(n),
            sentences: vec![format!("sentence {n}")],
            score: 1.0,
            weight,
        }
    }

    fn total(splits: &[Split]) -> Amount {
        splits.iter().map(|s| s.amount).sum()
    }

    #[test]
    fn conserves_the_fee_and_follows_the_shares() {
        let shares = Shares::default();
        let protocol = address(100);
        let cited = [chunk(1, 3), chunk(2, 1)];
        let splits = split_fee(1_000_000, &shares, protocol, &[address(50)], &cited, &[]);
        assert_eq!(total(&splits), 1_000_000);
        let of = |role: Role, account: Address| -> Amount {
            splits.iter().filter(|s| s.role == role && s.account == account).map(|s| s.amount).sum()
        };
        assert_eq!(of(Role::AdapterOwner, address(50)), 100_000);
        // 60% to contributors, 3:1.
        assert_eq!(of(Role::Contributor, address(1)), 450_000);
        assert_eq!(of(Role::Contributor, address(2)), 150_000);
        assert_eq!(of(Role::DatanetOwner, address(200)), 200_000);
        assert_eq!(of(Role::Protocol, protocol), 100_000);
    }

    #[test]
    fn dust_goes_to_the_protocol_and_nothing_is_lost() {
        let shares = Shares {
            protocol_bps: 1,
            adapter_bps: 3_333,
            datanet_bps: 3_333,
            contributors_bps: 3_333,
            training_bps: 0,
        };
        let protocol = address(100);
        for fee in [0u128, 1, 7, 9_999, 10_001, 123_456_789, MAX_PRICE * 10] {
            for owners in [vec![], vec![address(50)], vec![address(50), address(51), address(52)]] {
                let cited = [chunk(1, 1), chunk(2, 1), chunk(3, 1)];
                let splits = split_fee(fee, &shares, protocol, &owners, &cited, &[]);
                assert_eq!(total(&splits), fee, "fee {fee}, {} owners", owners.len());
                assert!(splits.iter().all(|s| s.amount > 0));
            }
        }
    }

    #[test]
    fn without_citations_or_owners_the_pools_go_where_documented() {
        let shares = Shares::default();
        let protocol = address(100);
        // Nothing cited: the data pools and (no owner) the adapter pool are the protocol's.
        let splits = split_fee(1_000, &shares, protocol, &[], &[], &[]);
        assert_eq!(splits.len(), 1);
        assert_eq!((splits[0].role, splits[0].amount), (Role::Protocol, 1_000));
        // Cited, no adapter owner: the adapter share joins the contributors' pool.
        let splits = split_fee(1_000, &shares, protocol, &[], &[chunk(1, 5)], &[]);
        let contributor: Amount = splits.iter().filter(|s| s.role == Role::Contributor).map(|s| s.amount).sum();
        assert_eq!(contributor, 700);
        // A zero-weight chunk earns nothing.
        let splits = split_fee(1_000, &shares, protocol, &[], &[chunk(1, 5), chunk(2, 0)], &[]);
        assert!(!splits.iter().any(|s| s.account == address(2)));
        assert_eq!(total(&splits), 1_000);
    }

    fn trained(n: u8, weight: u64) -> TrainedChunk {
        TrainedChunk {
            adapter: "a".into(),
            training_root: "00".repeat(32),
            datanet: "d".into(),
            datanet_id: 1,
            chunk_id: format!("{n:064x}"),
            contributor: address(n),
            examples: vec![format!("example {n}")],
            weight,
        }
    }

    #[test]
    fn the_training_pool_goes_to_the_trained_chunks_by_weight() {
        let shares = Shares::default();
        let protocol = address(100);
        let of = |splits: &[Split], role: Role, account: Address| -> Amount {
            splits.iter().filter(|s| s.role == role && s.account == account).map(|s| s.amount).sum()
        };
        // 10% to the training data, 1:3; the cited data keeps its 50%.
        let splits =
            split_fee(1_000_000, &shares, protocol, &[address(50)], &[chunk(1, 1)], &[trained(7, 1), trained(8, 3)]);
        assert_eq!(total(&splits), 1_000_000);
        assert_eq!(of(&splits, Role::TrainingContributor, address(7)), 25_000);
        assert_eq!(of(&splits, Role::TrainingContributor, address(8)), 75_000);
        assert_eq!(of(&splits, Role::Contributor, address(1)), 500_000);
        // A contributor both cited and trained on is credited in each capacity.
        let splits = split_fee(1_000, &shares, protocol, &[], &[chunk(1, 1)], &[trained(1, 1)]);
        assert_eq!(of(&splits, Role::Contributor, address(1)), 600, "50% + the ownerless adapter's 10%");
        assert_eq!(of(&splits, Role::TrainingContributor, address(1)), 100);
        // Nothing cited: the training pool still pays the training data, the rest the protocol.
        let splits = split_fee(1_000, &shares, protocol, &[], &[], &[trained(7, 2)]);
        assert_eq!(of(&splits, Role::TrainingContributor, address(7)), 100);
        assert_eq!(of(&splits, Role::Protocol, protocol), 900);
        // Zero-weight trained chunks (no influence) count as none: the cited data gets the share.
        let with_zero = split_fee(1_000, &shares, protocol, &[], &[chunk(1, 1)], &[trained(7, 0)]);
        assert_eq!(with_zero, split_fee(1_000, &shares, protocol, &[], &[chunk(1, 1)], &[]));
        // The zero address is never paid: its training share is the protocol's.
        let mut nobody = trained(7, 1);
        nobody.contributor = Address::ZERO;
        let splits = split_fee(1_000, &shares, protocol, &[], &[], &[nobody]);
        assert_eq!(splits.len(), 1);
        assert_eq!((splits[0].role, splits[0].amount), (Role::Protocol, 1_000));
    }

    #[test]
    fn without_training_data_the_split_is_the_one_before_training_shares() {
        // A policy stored before training shares existed (training 0, contributors 6,000) and the
        // default (training 1,000, contributors 5,000) split an answer without trained chunks alike.
        let old = Shares { contributors_bps: 6_000, training_bps: 0, ..Shares::default() };
        let old_json = r#"{"protocol_bps":1000,"adapter_bps":1000,"datanet_bps":2000,"contributors_bps":6000}"#;
        assert_eq!(serde_json::from_str::<Shares>(old_json).unwrap(), old);
        for fee in [0u128, 1, 999, 1_000_003, MAX_PRICE] {
            for owners in [vec![], vec![address(50)]] {
                let cited = [chunk(1, 3), chunk(2, 1)];
                let a = split_fee(fee, &old, address(100), &owners, &cited, &[]);
                let b = split_fee(fee, &Shares::default(), address(100), &owners, &cited, &[]);
                assert_eq!(a, b, "fee {fee}");
            }
        }
    }

    #[test]
    fn weights() {
        assert_eq!(citation_weights(&[(2, 0.5), (1, 0.5), (1, 0.0)]), vec![1_000_000, 500_000, 0]);
        assert_eq!(ablation_weights(&[-1.0, 0.0]), None);
        assert_eq!(ablation_weights(&[2.0, -3.0, 0.5]), Some(vec![1_000_000, 0, 250_000]));
        assert_eq!(ablation_weights(&[f64::NAN, 1.0]), Some(vec![0, 1_000_000]));
        assert!(Shares { protocol_bps: 1, ..Shares::default() }.validate().is_err());
        assert!(Shares { training_bps: 0, ..Shares::default() }.validate().is_err());
        assert!(Shares::default().validate().is_ok());
    }
}
