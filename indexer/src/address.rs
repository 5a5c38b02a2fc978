//! Contributor and owner identities: EVM addresses, stored lowercase, printed EIP-55.

use std::fmt;
use std::str::FromStr;

use sha3::{Digest, Keccak256};

use crate::Error;

/// A 20-byte EVM address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address([u8; 20]);

impl Address {
    pub const ZERO: Address = Address([0; 20]);

    pub const fn from_bytes(bytes: [u8; 20]) -> Address {
        Address(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Lowercase `0x…` form: what the database stores and filters compare.
    pub fn to_lower_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }

    /// EIP-55 mixed-case checksum form, for display.
    pub fn to_checksummed(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = Keccak256::digest(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

impl FromStr for Address {
    type Err = Error;

    /// Accepts `0x` + 40 hex digits. All-lowercase or all-uppercase input is taken as is;
    /// mixed case must carry a valid EIP-55 checksum, so that a typo is caught.
    fn from_str(input: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidAddress { input: input.to_string(), reason };
        let digits = input
            .strip_prefix("0x")
            .or_else(|| input.strip_prefix("0X"))
            .ok_or_else(|| invalid("must start with 0x"))?;
        if digits.len() != 40 {
            return Err(invalid("must have exactly 40 hex digits after 0x"));
        }
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(digits, &mut bytes).map_err(|_| invalid("not hexadecimal"))?;
        let address = Address(bytes);
        let has_lower = digits.chars().any(|c| c.is_ascii_lowercase());
        let has_upper = digits.chars().any(|c| c.is_ascii_uppercase());
        if has_lower && has_upper && address.to_checksummed()[2..] != *digits {
            return Err(invalid("mixed-case address with a wrong EIP-55 checksum"));
        }
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksummed())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_checksummed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors from EIP-55 itself.
    const EIP55: [&str; 4] = [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    #[test]
    fn checksums_match_eip55_vectors() {
        for s in EIP55 {
            let a: Address = s.to_lowercase().parse().unwrap();
            assert_eq!(a.to_checksummed(), s);
            assert_eq!(s.parse::<Address>().unwrap(), a);
        }
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x1234",
            "0xzzzeb6053f3e94c9b9a09f33669435e7ef1beaed",
            // One letter's case flipped: checksum must fail.
            "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        ] {
            assert!(bad.parse::<Address>().is_err(), "{bad} accepted");
        }
    }
}
