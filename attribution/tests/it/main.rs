//! Integration tests of the ledger on SQLite and PostgreSQL: one binary (it links once).

mod ledger;
mod payers;
mod properties;

use std::path::PathBuf;
use std::sync::Arc;

use tributary_indexer::testing::fresh_pg_schema;
use tributary_indexer::{
    Address, Datanet, EmbedBackend, Embedder, IngestOptions, NewDatanet, NoProgress, Store, StoreConfig, Visibility,
};

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

pub fn embedder() -> Arc<dyn Embedder> {
    let from_env = std::env::var_os("TRIBUTARY_EMBED_MODEL").map(PathBuf::from);
    let dir = from_env.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2"));
    tributary_indexer::load_embedder(&dir, EmbedBackend::Auto).expect("model loads: run scripts/setup.sh")
}

pub fn address(hex: &str) -> Address {
    hex.parse().unwrap()
}

pub fn alice() -> Address {
    address("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
}

pub fn bob() -> Address {
    address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
}

pub fn owner() -> Address {
    address("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
}

pub fn treasury() -> Address {
    address("0x90F79bf6EB2c4f870365E785982E1f101E93b906")
}

/// A store with Datanet "rivers": alice contributed two documents, bob one that repeats a
/// paragraph of alice's (a duplicate chunk).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub datanet: Datanet,
    /// The PostgreSQL schema's URL (None on SQLite), for a second connection to it.
    pub database_url: Option<String>,
}

pub async fn fixture(backend: Backend) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path().join("data"));
    if let Backend::Postgres = backend {
        config.database_url = Some(fresh_pg_schema("l").await.expect("PostgreSQL reachable at TEST_DATABASE_URL"));
    }
    let database_url = config.database_url.clone();
    let store = Arc::new(Store::open(config).await.expect("store opens"));
    let new = NewDatanet {
        name: "rivers".into(),
        description: String::new(),
        owner: owner(),
        visibility: Visibility::Public,
        review: false,
    };
    let datanet = store.catalog().create_datanet(&new).await.unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("alice")).unwrap();
    std::fs::create_dir_all(files.join("bob")).unwrap();
    // One chunk per file (short documents are one chunk each).
    for (path, text) in [
        ("alice/missouri.txt", "The Missouri River is the longest river in North America, flowing 2,341 miles."),
        ("alice/joins.txt", "The Missouri joins the Mississippi just north of St. Louis."),
        ("alice/ohio.txt", "The Ohio River forms part of the border between Ohio and Kentucky."),
        // Different bytes, the same normalized text: a duplicate chunk, alice's.
        ("bob/joins.txt", "The Missouri joins the Mississippi just north of St. Louis.\n"),
        ("bob/columbia.txt", "The Columbia River drains much of the Pacific Northwest."),
    ] {
        std::fs::write(files.join(path), text).unwrap();
    }
    let embedder = embedder();
    for (who, sub) in [(alice(), "alice"), (bob(), "bob")] {
        let options = IngestOptions::new(who);
        tributary_indexer::ingest(&store, embedder.clone(), &datanet, &[files.join(sub)], &options, &NoProgress)
            .await
            .unwrap();
    }
    Fixture { dir, store, datanet, database_url }
}
