//! The SQL backends the catalog runs on: a SQLite file, and PostgreSQL (a fresh schema per test
//! in `$TEST_DATABASE_URL`, by default the local server this machine kind runs).

use tributary_indexer::{Store, StoreConfig};

pub const DEFAULT_PG: &str = "postgres://root@127.0.0.1:5432/test";

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
        config.database_url = Some(fresh_pg_schema().await);
    }
    let store = Store::open(config).await.expect("store opens");
    (dir, store)
}

/// Creates an empty schema and returns a URL whose connections use it.
pub async fn fresh_pg_schema() -> String {
    let base = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG.to_string());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&base).await.expect("PostgreSQL reachable at TEST_DATABASE_URL");
    let schema = format!(
        "t_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&pool).await.unwrap();
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}
