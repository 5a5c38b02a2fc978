//! Test support for the crates whose tests run on PostgreSQL (feature `test-support`; never in
//! a release build).

/// The server this machine kind runs, when `TEST_DATABASE_URL` is unset.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// Creates an empty schema `{prefix}_{pid}_{nanos}` in `$TEST_DATABASE_URL` and returns a URL
/// whose connections use it, so that concurrent tests never see each other's tables.
pub async fn fresh_pg_schema(prefix: &str) -> Result<String, sqlx::Error> {
    let base = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_string());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&base).await?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let schema = format!("{prefix}_{}_{nanos}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&pool).await?;
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}
