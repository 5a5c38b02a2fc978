//! The API's request bodies (the same serde types the handlers extract): any bytes either
//! parse or are refused, never a panic.
#![no_main]

// Each target uses one of the checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::request_bodies(data));
