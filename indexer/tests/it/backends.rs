//! The SQL backends the catalog runs on: a SQLite file, and PostgreSQL (a fresh schema per test
//! in `$TEST_DATABASE_URL`, by default the local server this machine kind runs).

use tributary_indexer::testing::fresh_pg_schema;
use tributary_indexer::{Store, StoreConfig};

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A store in a temp dir on `backend`. Bind as `let (dir, store)`: locals drop in reverse, so
/// the store closes before its directory is removed.
pub async fn store(backend: Backend) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    if let Backend::Postgres = backend {
        config.database_url = Some(fresh_pg_schema("t").await.expect("PostgreSQL reachable at TEST_DATABASE_URL"));
    }
    let store = Store::open(config).await.expect("store opens");
    (dir, store)
}
