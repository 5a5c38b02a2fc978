//! A signed upload as an anonymous caller sends it: the JSON body, the content hash, the
//! EIP-712 message and the signature's recovery never panic on any input.
#![no_main]

// Each target uses one of the checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::signed_upload(data));
