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

/// The one-writer rule across processes: two catalogs on one PostgreSQL database (two
/// sessions, as two API replicas have) take a Datanet's writer lock one at a time; another
/// Datanet's is free meanwhile; dropping the guard releases it.
#[tokio::test(flavor = "multi_thread")]
async fn the_writer_lock_holds_across_processes_on_postgres() {
    use std::time::Duration;
    use tributary_indexer::Catalog;

    let url = fresh_pg_schema("wl").await.expect("PostgreSQL reachable at TEST_DATABASE_URL");
    let (first, second) = (Catalog::connect(&url).await.unwrap(), Catalog::connect(&url).await.unwrap());
    let held = first.writer_lock(1).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(300), second.writer_lock(1)).await;
    assert!(waiting.is_err(), "the second replica waits while the first writes");
    let other = tokio::time::timeout(Duration::from_secs(5), second.writer_lock(2)).await;
    assert!(other.is_ok_and(|lock| lock.is_ok()), "another Datanet is not blocked");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let contender = tokio::spawn(async move {
        let lock = second.writer_lock(1).await.unwrap();
        tx.send(()).unwrap();
        drop(lock);
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(held);
    tokio::time::timeout(Duration::from_secs(5), rx).await.expect("released on drop").unwrap();
    contender.await.unwrap();
    // Writers hold sessions of their own: more of them than the pool has connections leave
    // its queries unblocked.
    let mut many = Vec::new();
    for datanet in 10..22 {
        many.push(first.writer_lock(datanet).await.unwrap());
    }
    let listed = tokio::time::timeout(Duration::from_secs(5), first.datanets()).await;
    assert!(listed.is_ok_and(|l| l.is_ok()), "queries still get connections");
}
