//! `tributary`: answers that pay their sources, over the indexer, retriever, generator,
//! attribution and contracts crates. Three layers:
//!
//! - [`app`]: the opened data directory, the models and the use cases every front end shares
//!   (answering, search, ingest, settlement, claims and payouts, API keys). It knows neither
//!   the terminal nor HTTP.
//! - [`cli`]: the command line, one file per command group.
//! - [`http`]: `tributary serve`, the HTTP API (the tests build its router in process).
//!
//! `cli` and `http` call into `app` and never into each other; `app` imports neither.

pub mod app;
pub mod cli;
pub mod http;
