//! A signed upload as an anonymous caller sends it: the JSON body, the content hash, the
//! EIP-712 message and the signature's recovery never panic on any input.
#![no_main]

use alloy::primitives::{Signature, U256};
use alloy::sol_types::{Eip712Domain, SolStruct};
use libfuzzer_sys::fuzz_target;
use tributary::http::{content_hash, typed_upload, wire};
use tributary_indexer::{Address, ChunkerConfig, IngestOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(upload) = serde_json::from_slice::<wire::Upload>(data) else { return };
    let hash = content_hash(&upload.documents);
    let mut options = IngestOptions::new(Address::ZERO);
    if let Some(license) = &upload.license {
        options.license = license.clone();
    }
    options.chunker = ChunkerConfig {
        target_tokens: upload.chunk_tokens.unwrap_or(254),
        overlap_tokens: upload.overlap_tokens.unwrap_or(32),
    };
    let nonce = upload.nonce.as_deref().and_then(|n| n.parse::<U256>().ok()).unwrap_or_default();
    let Ok(message) = typed_upload("fuzz", &hash, &options, nonce, upload.deadline.unwrap_or(0)) else { return };
    let domain = Eip712Domain::new(Some("Tributary".into()), Some("1".into()), None, None, Some([7u8; 32].into()));
    let digest = message.eip712_signing_hash(&domain);
    if let Some(Ok(signature)) = upload.signature.as_deref().map(str::parse::<Signature>) {
        let _ = signature.recover_address_from_prehash(&digest);
    }
});
