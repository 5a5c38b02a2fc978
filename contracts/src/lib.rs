//! On-chain Proof of Attribution: the Datanet registry, epoch roots, claims and batched payouts.
//!
//! The Solidity sources live in `contracts/src/*.sol`; `contracts/scripts/compile.mjs` compiles
//! them with solc-js (pinned in `package.json`) into `contracts/artifacts/*.json`, which are
//! committed and embedded here. A test fails when a fresh compile differs from them.
//!
//! [`chain`]: bindings generated from those artifacts by alloy's `sol!`, a local [`chain::Anvil`]
//! (the npm `@foundry-rs/anvil` binary, started on a free port), and [`chain::Chain`] (a signer on
//! any JSON-RPC endpoint: deploy, post epochs). Invariant: an epoch is paid at most once (the
//! payout contract refuses an epoch number that is not greater than the last, and pays each
//! account only the difference between its proven cumulative total and what it was paid).

pub mod chain;

/// What talking to a chain can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("chain: {0}")]
    Chain(String),
    /// The contract refused, with its reason (a custom error such as `NothingToClaim`).
    #[error("transaction reverted: {0}")]
    Reverted(String),
    #[error("the signer key is not a 32-byte hex private key")]
    InvalidKey,
    /// The keystore could not be read or decrypted (a wrong password says so here).
    #[error("keystore {}: {reason}", path.display())]
    Keystore { path: std::path::PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A compiled contract: its ABI and bytecode, as solc-js wrote them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub contract_name: String,
    pub abi: serde_json::Value,
    /// Creation code, 0x-hex.
    pub bytecode: String,
    /// Runtime code, 0x-hex.
    pub deployed_bytecode: String,
}

/// The committed artifact JSON of each contract.
pub const ARTIFACTS: [(&str, &str); 3] = [
    ("AttributionPayouts", include_str!("../artifacts/AttributionPayouts.json")),
    ("DatanetRegistry", include_str!("../artifacts/DatanetRegistry.json")),
    ("TributaryTestToken", include_str!("../artifacts/TributaryTestToken.json")),
];

/// The artifact of `name`, parsed.
pub fn artifact(name: &str) -> Option<Artifact> {
    let (_, json) = ARTIFACTS.iter().find(|(n, _)| *n == name)?;
    serde_json::from_str(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_parse_and_carry_the_functions_the_ledger_calls() {
        let payouts = artifact("AttributionPayouts").expect("payouts artifact");
        let names: Vec<&str> = payouts.abi.as_array().unwrap().iter().filter_map(|f| f["name"].as_str()).collect();
        for wanted in [
            "postEpoch",
            "claim",
            "pushBatch",
            "pause",
            "unpause",
            "paid",
            "claimable",
            "latestEpoch",
            "EpochPosted",
            "BatchPushed",
        ] {
            assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
        }
        for (name, _) in ARTIFACTS {
            let a = artifact(name).unwrap();
            assert_eq!(a.contract_name, name);
            assert!(a.bytecode.len() > 2 && a.bytecode.starts_with("0x"));
        }
        assert!(artifact("Nope").is_none());
    }
}
