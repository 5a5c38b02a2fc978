//! The use cases every front end shares: [`App`] (the opened data directory, models loaded once,
//! caches) and what is done with it: answering (retrieve, generate, cite, record), search,
//! ingest, settlement and posting on chain, claims and pushes, API keys.
//!
//! This layer knows neither clap nor axum: the command line (`crate::cli`) and the HTTP API
//! (`crate::http`) parse their input, call in here, and present the result their own way.

pub mod accounts;
pub mod adapters;
pub mod answers;
pub mod batch;
mod context;
pub mod contributions;
pub mod eval;
pub mod ingest;
pub mod keys;
pub mod onchain;
pub mod search;
pub mod training;
pub mod training_credits;
pub mod training_jobs;
pub mod uploads;

pub use context::{App, QUERY_CACHE_BYTES, Settings, Writing, parse_address, read_jsonl};
