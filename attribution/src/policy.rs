//! Prices, shares and the split of one answer's fee: integer arithmetic that conserves the fee.
//!
//! The fee is divided into four pools by basis points: protocol, adapter owners, Datanet owners
//! and data contributors. The contributors' pool (and the Datanet owners' pool) is divided among
//! the cited chunks in proportion to their influence weights; each cited chunk's contributor (the
//! chunk's first contributor: a duplicate earns for no one else) and its Datanet's owner are
//! credited. Every division rounds down, and all rounding dust goes to the protocol account, as
//! do the pools nobody can receive: the adapter pool when no adapter has an owner, the data
//! pools when no chunk is cited, and any share of the zero address (a Datanet created without
//! an owner). So an answer's credits always sum exactly to its fee.

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
}

impl Default for Shares {
    fn default() -> Self {
        Shares { protocol_bps: 1_000, adapter_bps: 1_000, datanet_bps: 2_000, contributors_bps: 6_000 }
    }
}

impl Shares {
    pub fn validate(&self) -> Result<()> {
        let sum =
            self.protocol_bps as u64 + self.adapter_bps as u64 + self.datanet_bps as u64 + self.contributors_bps as u64;
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
            Role::Sink => "sink",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "protocol" => Role::Protocol,
            "adapter_owner" => Role::AdapterOwner,
            "datanet_owner" => Role::DatanetOwner,
            "contributor" => Role::Contributor,
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

/// `amount * numerator / denominator`, rounded down, without overflow for amounts <= 1e31 and
/// denominators < 2^64.
fn mul_div(amount: Amount, numerator: u64, denominator: u64) -> Amount {
    let (d, n) = (denominator as Amount, numerator as Amount);
    (amount / d) * n + (amount % d) * n / d
}

/// Splits `fee` (see the module docs). The returned amounts sum to `fee` exactly; zero amounts
/// are left out.
pub fn split_fee(
    fee: Amount,
    shares: &Shares,
    protocol: Address,
    adapter_owners: &[Address],
    cited: &[CitedChunk],
) -> Vec<Split> {
    let part = |bps: u32| mul_div(fee, bps as u64, 10_000);
    let total_weight: u64 = cited.iter().map(|c| c.weight).sum();
    let data_cited = total_weight > 0;
    let mut out = Vec::new();
    let pay = |out: &mut Vec<Split>, split: Split| {
        if split.amount > 0 {
            out.push(split);
        }
    };

    // The zero address is never a payee: what it would get is the protocol's (below).
    let payee = |account: Address, role: Role| if account == Address::ZERO { None } else { Some((account, role)) };

    // Adapter owners: equal parts of the adapter pool.
    let mut contributors_pool = if data_cited { part(shares.contributors_bps) } else { 0 };
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
        let splits = split_fee(1_000_000, &shares, protocol, &[address(50)], &cited);
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
        let shares = Shares { protocol_bps: 1, adapter_bps: 3_333, datanet_bps: 3_333, contributors_bps: 3_333 };
        let protocol = address(100);
        for fee in [0u128, 1, 7, 9_999, 10_001, 123_456_789, MAX_PRICE * 10] {
            for owners in [vec![], vec![address(50)], vec![address(50), address(51), address(52)]] {
                let cited = [chunk(1, 1), chunk(2, 1), chunk(3, 1)];
                let splits = split_fee(fee, &shares, protocol, &owners, &cited);
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
        let splits = split_fee(1_000, &shares, protocol, &[], &[]);
        assert_eq!(splits.len(), 1);
        assert_eq!((splits[0].role, splits[0].amount), (Role::Protocol, 1_000));
        // Cited, no adapter owner: the adapter share joins the contributors' pool.
        let splits = split_fee(1_000, &shares, protocol, &[], &[chunk(1, 5)]);
        let contributor: Amount = splits.iter().filter(|s| s.role == Role::Contributor).map(|s| s.amount).sum();
        assert_eq!(contributor, 700);
        // A zero-weight chunk earns nothing.
        let splits = split_fee(1_000, &shares, protocol, &[], &[chunk(1, 5), chunk(2, 0)]);
        assert!(!splits.iter().any(|s| s.account == address(2)));
        assert_eq!(total(&splits), 1_000);
    }

    #[test]
    fn weights() {
        assert_eq!(citation_weights(&[(2, 0.5), (1, 0.5), (1, 0.0)]), vec![1_000_000, 500_000, 0]);
        assert_eq!(ablation_weights(&[-1.0, 0.0]), None);
        assert_eq!(ablation_weights(&[2.0, -3.0, 0.5]), Some(vec![1_000_000, 0, 250_000]));
        assert_eq!(ablation_weights(&[f64::NAN, 1.0]), Some(vec![0, 1_000_000]));
        assert!(Shares { protocol_bps: 1, ..Shares::default() }.validate().is_err());
        assert!(Shares::default().validate().is_ok());
    }
}
