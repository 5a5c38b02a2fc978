//! The citation parser and checker on any model output: never a panic, and every citation it
//! keeps names a passage that exists.
#![no_main]

// Each target uses one of the checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::citations(data));
