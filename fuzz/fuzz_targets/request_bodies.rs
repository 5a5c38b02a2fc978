//! The API's request bodies (the same serde types the handlers extract): any bytes either
//! parse or are refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary::http::wire;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<wire::SearchRequest>(data);
    let _ = serde_json::from_slice::<wire::AnswerRequest>(data);
    let _ = serde_json::from_slice::<wire::CreateDatanet>(data);
    let _ = serde_json::from_slice::<wire::Upload>(data);
    let _ = serde_json::from_slice::<wire::QuoteRequest>(data);
    let _ = serde_json::from_slice::<wire::ClaimRequest>(data);
});
