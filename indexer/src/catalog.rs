//! The SQL catalog: Datanets, documents, chunks and the index journal.
//!
//! One code path for both backends through sqlx's `Any` driver: SQLite (a file in the data
//! directory, the embedded default) or PostgreSQL (`DATABASE_URL=postgres://…`). Queries use
//! `$n` placeholders, which both accept; the two migration sets differ only in DDL dialect.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Arguments, Encode, Row, Type};

use crate::{Address, ChunkId, Error, Result};

/// `SELECT <every column [`document_of`] reads> FROM documents <rest>`, as a literal.
macro_rules! select_documents {
    ($rest:literal) => {
        concat!(
            "SELECT id, datanet_id, contributor, source_name, external_id, license, byte_len, raw_hash, text, \
             chunk_count, duplicate_chunks FROM documents ",
            $rest
        )
    };
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Rows per multi-row INSERT / IN list: well under SQLite's 32766 bound parameters.
const BATCH_ROWS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

impl Visibility {
    pub fn as_str(&self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datanet {
    pub id: i64,
    /// The name as stored, which names the Datanet everywhere (receipts, the chain registry):
    /// the requested name for a Datanet created public; `name~0xowner` for one created
    /// private, so that a private name never collides with anyone else's and so never reveals
    /// itself to someone creating a Datanet (see [`stored_name`]).
    pub name: String,
    pub description: String,
    pub owner: Address,
    pub visibility: Visibility,
    /// Uploads from anyone but the owner wait for an owner's or a member's review.
    pub review: bool,
    pub created_at_ms: i64,
}

/// See [`Catalog::writer_lock`].
pub struct WriterLock {
    _session: Option<sqlx::AnyConnection>,
}

/// What a new Datanet is made of.
#[derive(Debug, Clone)]
pub struct NewDatanet {
    /// The requested name (1-64 of a-z, 0-9, '-' and '_'); see [`stored_name`].
    pub name: String,
    pub description: String,
    pub owner: Address,
    pub visibility: Visibility,
    /// See [`Datanet::review`].
    pub review: bool,
}

/// A document about to be committed, with its chunk spans (duplicates included).
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub contributor: Address,
    pub source_name: String,
    pub external_id: String,
    pub license: String,
    pub byte_len: usize,
    pub raw_hash: [u8; 32],
    pub text: String,
    pub spans: Vec<Span>,
    pub duplicate_chunks: usize,
}

/// Where a chunk sits in a document; `new_chunk` when this document introduces it.
#[derive(Debug, Clone)]
pub struct Span {
    pub chunk_id: ChunkId,
    pub start: usize,
    pub end: usize,
    pub tokens: usize,
    pub new_chunk: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: i64,
    pub datanet_id: i64,
    pub contributor: Address,
    pub source_name: String,
    pub external_id: String,
    pub license: String,
    pub byte_len: usize,
    pub raw_hash: String,
    pub text: String,
    pub chunk_count: usize,
    pub duplicate_chunks: usize,
}

/// A stored chunk with what a citation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    pub datanet_id: i64,
    pub chunk_id: ChunkId,
    pub document_id: i64,
    pub document_external_id: String,
    pub source_name: String,
    pub contributor: Address,
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Handle to the catalog database. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    pool: AnyPool,
    backend: Backend,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(crate) fn parse_address(s: &str) -> Result<Address> {
    s.parse().map_err(|_| Error::Inconsistent(format!("stored address {s:?} is not valid")))
}

fn parse_chunk_id(s: &str) -> Result<ChunkId> {
    s.parse().map_err(|_| Error::Inconsistent(format!("stored chunk id {s:?} is not valid")))
}

fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.constraint() == Some(constraint)
                || db.is_unique_violation() && db.message().contains(constraint)
                // SQLite names the columns, not the constraint.
                || db.is_unique_violation() && constraint == "datanets_name_unique" && db.message().contains("datanets.name")
        }
        _ => false,
    }
}

/// A statement built at run time with `$n` placeholders, which SQLite and PostgreSQL both accept.
/// (sqlx's `QueryBuilder` writes `?` for the `Any` driver, which PostgreSQL rejects.)
struct Statement {
    sql: String,
    args: AnyArguments,
    count: usize,
    error: Option<sqlx::error::BoxDynError>,
}

impl Statement {
    fn new(sql: &str) -> Self {
        Statement { sql: sql.to_string(), args: AnyArguments::default(), count: 0, error: None }
    }

    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    fn bind<'t, T: Encode<'t, Any> + Type<Any>>(&mut self, value: T) -> &mut Self {
        self.count += 1;
        self.sql.push('$');
        self.sql.push_str(&self.count.to_string());
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert(e);
        }
        self
    }

    /// `(v1, v2, ...)`
    fn bind_list<'t, T: Encode<'t, Any> + Type<Any>>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self {
        self.sql.push('(');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.bind(v);
        }
        self.sql.push(')');
        self
    }

    fn build(self) -> Result<sqlx::query::Query<'static, Any, AnyArguments>> {
        if let Some(e) = self.error {
            return Err(Error::Database(sqlx::Error::Encode(e)));
        }
        Ok(sqlx::query_with(sqlx::AssertSqlSafe(self.sql), self.args))
    }
}

impl Catalog {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Catalog> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(Error::InvalidArgument(format!(
                "database URL must start with sqlite: or postgres:, got {:?}",
                url.split(':').next().unwrap_or_default()
            )));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            // A PostgreSQL server that refuses connections (stopped, restarting) is retried for
            // this long, then the caller gets an error (an HTTP 503) instead of waiting 30 s.
            .acquire_timeout(std::time::Duration::from_secs(if backend == Backend::Sqlite { 30 } else { 10 }))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the single writer; NORMAL sync is durable
                        // at each commit in WAL mode except for power loss.
                        sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Catalog { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The one-writer rule across processes: held while a process writes a Datanet's indexes.
    /// On PostgreSQL a session advisory lock on the Datanet, so that processes sharing the
    /// database (API replicas, a CLI ingest beside a server) write one at a time. Its session
    /// is a connection taken out of the pool (so that many writers never starve the pool's
    /// queries) and closed when the guard drops, or when the process dies: either way the lock
    /// goes with it. On SQLite nothing more is needed: one machine, one process's lock.
    pub async fn writer_lock(&self, datanet_id: i64) -> Result<WriterLock> {
        match self.backend {
            Backend::Sqlite => Ok(WriterLock { _session: None }),
            Backend::Postgres => {
                let mut session = self.pool.acquire().await?.detach();
                // A key of our own: "trib" in the high half, the Datanet in the low half.
                let key = (0x7472_6962_i64 << 32) ^ (datanet_id & 0xffff_ffff);
                sqlx::query("SELECT 1 AS held FROM (SELECT pg_advisory_lock($1)) AS locked")
                    .bind(key)
                    .fetch_one(&mut session)
                    .await?;
                Ok(WriterLock { _session: Some(session) })
            }
        }
    }

    /// The connection pool, for the ledger tables that share this database.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates a Datanet under [`stored_name`]; `DatanetExists` when that name is taken, which
    /// only a public name, or the same owner's own private one, can be.
    pub async fn create_datanet(&self, new: &NewDatanet) -> Result<Datanet> {
        validate_datanet_name(&new.name)?;
        let name = stored_name(&new.name, &new.owner, new.visibility);
        let created_at_ms = now_ms();
        let row = sqlx::query(
            "INSERT INTO datanets (name, description, owner, visibility, review, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&name)
        .bind(&new.description)
        .bind(new.owner.to_lower_hex())
        .bind(new.visibility.as_str())
        .bind(i64::from(new.review))
        .bind(created_at_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "datanets_name_unique") {
                Error::DatanetExists(name.clone())
            } else {
                Error::Database(e)
            }
        })?;
        Ok(Datanet {
            id: row.try_get("id")?,
            name,
            description: new.description.clone(),
            owner: new.owner,
            visibility: new.visibility,
            review: new.review,
            created_at_ms,
        })
    }

    fn datanet_from_row(row: &AnyRow) -> Result<Datanet> {
        let visibility = match row.try_get::<String, _>("visibility")?.as_str() {
            "private" => Visibility::Private,
            _ => Visibility::Public,
        };
        Ok(Datanet {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            owner: parse_address(&row.try_get::<String, _>("owner")?)?,
            visibility,
            review: row.try_get::<i64, _>("review")? != 0,
            created_at_ms: row.try_get("created_at")?,
        })
    }

    /// The Datanet stored under `name` exactly.
    pub async fn datanet(&self, name: &str) -> Result<Datanet> {
        let row = sqlx::query(
            "SELECT id, name, description, owner, visibility, review, created_at FROM datanets WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::DatanetNotFound(name.to_string()))?;
        Self::datanet_from_row(&row)
    }

    pub async fn datanets(&self) -> Result<Vec<Datanet>> {
        let rows = sqlx::query(
            "SELECT id, name, description, owner, visibility, review, created_at FROM datanets ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::datanet_from_row).collect()
    }

    /// Which of `hashes` are already stored as documents of the Datanet.
    pub async fn existing_documents(&self, datanet_id: i64, hashes: &[[u8; 32]]) -> Result<HashSet<[u8; 32]>> {
        let mut found = HashSet::new();
        for batch in hashes.chunks(BATCH_ROWS) {
            let mut query = Statement::new("SELECT raw_hash FROM documents WHERE datanet_id = ");
            query.bind(datanet_id).push(" AND raw_hash IN ").bind_list(batch.iter().map(hex::encode));
            for row in query.build()?.fetch_all(&self.pool).await? {
                let mut hash = [0u8; 32];
                let text: String = row.try_get("raw_hash")?;
                hex::decode_to_slice(&text, &mut hash)
                    .map_err(|_| Error::Inconsistent(format!("stored document hash {text:?} is not valid")))?;
                found.insert(hash);
            }
        }
        Ok(found)
    }

    /// Which of `ids` the Datanet already holds.
    pub async fn existing_chunks(&self, datanet_id: i64, ids: &[ChunkId]) -> Result<HashSet<ChunkId>> {
        let mut found = HashSet::new();
        for batch in ids.chunks(BATCH_ROWS) {
            let mut query = Statement::new("SELECT chunk_id FROM chunks WHERE datanet_id = ");
            query.bind(datanet_id).push(" AND chunk_id IN ").bind_list(batch.iter().map(ChunkId::to_hex));
            for row in query.build()?.fetch_all(&self.pool).await? {
                found.insert(parse_chunk_id(&row.try_get::<String, _>("chunk_id")?)?);
            }
        }
        Ok(found)
    }

    /// Records that these chunks are about to be written to the indexes. Durable on return.
    pub async fn journal_add(&self, datanet_id: i64, ids: &[ChunkId]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for batch in ids.chunks(BATCH_ROWS) {
            let mut query = Statement::new("INSERT INTO index_journal (datanet_id, chunk_id) VALUES ");
            for (i, id) in batch.iter().enumerate() {
                query.push(if i == 0 { "(" } else { ", (" }).bind(datanet_id).push(", ").bind(id.to_hex()).push(")");
            }
            query.push(" ON CONFLICT DO NOTHING");
            query.build()?.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Journal entries left behind by an interrupted ingest, by Datanet.
    pub async fn journal_pending(&self) -> Result<Vec<(i64, ChunkId)>> {
        let rows = sqlx::query("SELECT datanet_id, chunk_id FROM index_journal ORDER BY datanet_id, chunk_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("datanet_id")?, parse_chunk_id(&row.try_get::<String, _>("chunk_id")?)?)))
            .collect()
    }

    pub async fn journal_clear(&self, datanet_id: i64, ids: &[ChunkId]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for batch in ids.chunks(BATCH_ROWS) {
            let mut query = Statement::new("DELETE FROM index_journal WHERE datanet_id = ");
            query.bind(datanet_id).push(" AND chunk_id IN ").bind_list(batch.iter().map(ChunkId::to_hex));
            query.build()?.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Commits documents with their chunks and clears their journal entries, atomically.
    /// This is the durability point of an ingest batch.
    pub async fn commit_documents(&self, datanet_id: i64, documents: &[NewDocument]) -> Result<Vec<i64>> {
        let created_at = now_ms();
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(documents.len());
        let mut journal = Vec::new();
        for doc in documents {
            let row = sqlx::query(
                "INSERT INTO documents (datanet_id, contributor, source_name, external_id, license, byte_len, \
                 raw_hash, text, chunk_count, duplicate_chunks, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .bind(datanet_id)
            .bind(doc.contributor.to_lower_hex())
            .bind(&doc.source_name)
            .bind(&doc.external_id)
            .bind(&doc.license)
            .bind(doc.byte_len as i64)
            .bind(hex::encode(doc.raw_hash))
            .bind(&doc.text)
            .bind(doc.spans.len() as i64)
            .bind(doc.duplicate_chunks as i64)
            .bind(created_at)
            .fetch_one(&mut *tx)
            .await?;
            let document_id: i64 = row.try_get("id")?;
            ids.push(document_id);
            let new_spans: Vec<&Span> = doc.spans.iter().filter(|s| s.new_chunk).collect();
            for batch in new_spans.chunks(BATCH_ROWS) {
                let mut query = Statement::new(
                    "INSERT INTO chunks (datanet_id, chunk_id, document_id, contributor, start_offset, end_offset, tokens, text, created_at) VALUES ",
                );
                for (i, span) in batch.iter().enumerate() {
                    query.push(if i == 0 { "(" } else { ", (" });
                    query.bind(datanet_id).push(", ").bind(span.chunk_id.to_hex()).push(", ").bind(document_id);
                    query.push(", ").bind(doc.contributor.to_lower_hex()).push(", ").bind(span.start as i64);
                    query.push(", ").bind(span.end as i64).push(", ").bind(span.tokens as i64);
                    query.push(", ").bind(doc.text[span.start..span.end].to_string()).push(", ").bind(created_at);
                    query.push(")");
                }
                // A concurrent ingest may have committed the same chunk first; it keeps the
                // credit (first contributor wins), this document still references it.
                query.push(" ON CONFLICT (datanet_id, chunk_id) DO NOTHING");
                query.build()?.execute(&mut *tx).await?;
            }
            journal.extend(new_spans.iter().map(|s| s.chunk_id));
            let spans: Vec<(usize, &Span)> = doc.spans.iter().enumerate().collect();
            for batch in spans.chunks(BATCH_ROWS) {
                let mut query = Statement::new(
                    "INSERT INTO document_chunks (document_id, ordinal, datanet_id, chunk_id, start_offset, end_offset) VALUES ",
                );
                for (i, (ordinal, span)) in batch.iter().enumerate() {
                    query.push(if i == 0 { "(" } else { ", (" });
                    query.bind(document_id).push(", ").bind(*ordinal as i64).push(", ").bind(datanet_id);
                    query.push(", ").bind(span.chunk_id.to_hex()).push(", ").bind(span.start as i64);
                    query.push(", ").bind(span.end as i64).push(")");
                }
                query.build()?.execute(&mut *tx).await?;
            }
        }
        for batch in journal.chunks(BATCH_ROWS) {
            let mut query = Statement::new("DELETE FROM index_journal WHERE datanet_id = ");
            query.bind(datanet_id).push(" AND chunk_id IN ").bind_list(batch.iter().map(ChunkId::to_hex));
            query.build()?.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Chunk records for `ids` (in no particular order; missing ids are skipped).
    pub async fn chunk_records(&self, datanet_id: i64, ids: &[ChunkId]) -> Result<Vec<ChunkRecord>> {
        self.records(datanet_id, ids, "").await
    }

    /// [`Catalog::chunk_records`] without the chunks an active flag removes from retrieval: a
    /// flagged chunk, a chunk a flagged document introduced, a flagged contributor's chunks.
    pub async fn citable_chunk_records(&self, datanet_id: i64, ids: &[ChunkId]) -> Result<Vec<ChunkRecord>> {
        self.records(
            datanet_id,
            ids,
            " AND NOT EXISTS (SELECT 1 FROM flags f WHERE f.active = 1 AND f.datanet_id = c.datanet_id AND \
             ((f.kind = 'chunk' AND f.target = c.chunk_id) \
             OR (f.kind = 'document' AND f.target = CAST(c.document_id AS TEXT)) \
             OR (f.kind = 'contributor' AND f.target = c.contributor)))",
        )
        .await
    }

    async fn records(&self, datanet_id: i64, ids: &[ChunkId], filter: &str) -> Result<Vec<ChunkRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(BATCH_ROWS) {
            let mut query = Statement::new(
                "SELECT c.datanet_id, c.chunk_id, c.document_id, d.external_id, d.source_name, c.contributor, \
                 c.start_offset, c.end_offset, c.text FROM chunks c JOIN documents d ON d.id = c.document_id \
                 WHERE c.datanet_id = ",
            );
            query
                .bind(datanet_id)
                .push(" AND c.chunk_id IN ")
                .bind_list(batch.iter().map(ChunkId::to_hex))
                .push(filter);
            for row in query.build()?.fetch_all(&self.pool).await? {
                out.push(ChunkRecord {
                    datanet_id: row.try_get("datanet_id")?,
                    chunk_id: parse_chunk_id(&row.try_get::<String, _>("chunk_id")?)?,
                    document_id: row.try_get("document_id")?,
                    document_external_id: row.try_get("external_id")?,
                    source_name: row.try_get("source_name")?,
                    contributor: parse_address(&row.try_get::<String, _>("contributor")?)?,
                    start: row.try_get::<i64, _>("start_offset")? as usize,
                    end: row.try_get::<i64, _>("end_offset")? as usize,
                    text: row.try_get("text")?,
                });
            }
        }
        Ok(out)
    }

    /// Raw-byte hash and text of the documents the records point to, by document id.
    pub async fn document_sources(
        &self,
        datanet_id: i64,
        records: &[ChunkRecord],
    ) -> Result<std::collections::HashMap<i64, ([u8; 32], String)>> {
        let mut ids: Vec<i64> = records.iter().map(|r| r.document_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut out = std::collections::HashMap::new();
        for batch in ids.chunks(BATCH_ROWS) {
            let mut query = Statement::new("SELECT id, raw_hash, text FROM documents WHERE datanet_id = ");
            query.bind(datanet_id).push(" AND id IN ").bind_list(batch.iter().copied());
            for row in query.build()?.fetch_all(&self.pool).await? {
                let mut hash = [0u8; 32];
                let text: String = row.try_get("raw_hash")?;
                hex::decode_to_slice(&text, &mut hash)
                    .map_err(|_| Error::Inconsistent(format!("stored document hash {text:?} is not valid")))?;
                out.insert(row.try_get("id")?, (hash, row.try_get("text")?));
            }
        }
        Ok(out)
    }

    /// Every chunk of the Datanet with its contributor, for verification and rebuilds.
    pub async fn chunk_ids(&self, datanet_id: i64) -> Result<Vec<ChunkId>> {
        let rows = sqlx::query("SELECT chunk_id FROM chunks WHERE datanet_id = $1 ORDER BY chunk_id")
            .bind(datanet_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| parse_chunk_id(&r.try_get::<String, _>("chunk_id")?)).collect()
    }

    pub async fn documents(&self, datanet_id: i64) -> Result<Vec<Document>> {
        let rows = sqlx::query(select_documents!("WHERE datanet_id = $1 ORDER BY id"))
            .bind(datanet_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(document_of).collect()
    }

    /// One document of the Datanet, with its text; `None` when the Datanet has no such id.
    pub async fn document(&self, datanet_id: i64, id: i64) -> Result<Option<Document>> {
        let row = sqlx::query(select_documents!("WHERE datanet_id = $1 AND id = $2"))
            .bind(datanet_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(document_of).transpose()
    }

    /// `(document_id, ordinal, chunk_id, start, end)` spans of one document, in order.
    pub async fn document_spans(&self, document_id: i64) -> Result<Vec<(ChunkId, usize, usize)>> {
        let rows = sqlx::query(
            "SELECT chunk_id, start_offset, end_offset FROM document_chunks WHERE document_id = $1 ORDER BY ordinal",
        )
        .bind(document_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_chunk_id(&row.try_get::<String, _>("chunk_id")?)?,
                    row.try_get::<i64, _>("start_offset")? as usize,
                    row.try_get::<i64, _>("end_offset")? as usize,
                ))
            })
            .collect()
    }
}

fn document_of(row: &AnyRow) -> Result<Document> {
    Ok(Document {
        id: row.try_get("id")?,
        datanet_id: row.try_get("datanet_id")?,
        contributor: parse_address(&row.try_get::<String, _>("contributor")?)?,
        source_name: row.try_get("source_name")?,
        external_id: row.try_get("external_id")?,
        license: row.try_get("license")?,
        byte_len: row.try_get::<i64, _>("byte_len")? as usize,
        raw_hash: row.try_get("raw_hash")?,
        text: row.try_get("text")?,
        chunk_count: row.try_get::<i64, _>("chunk_count")? as usize,
        duplicate_chunks: row.try_get::<i64, _>("duplicate_chunks")? as usize,
    })
}

/// The name a new Datanet is stored under: a public one takes the requested name, which is
/// then unique among all Datanets; a private one is qualified by its owner, `name~0xowner`
/// (lowercase hex), so private names are unique per owner only. Creating a Datanet therefore
/// never collides with someone else's private one, and a conflict never reveals that a private
/// name exists (issue #24, defect 9). The name stays when the visibility changes: it is what
/// receipts and the chain registry record.
pub fn stored_name(name: &str, owner: &Address, visibility: Visibility) -> String {
    match visibility {
        Visibility::Public => name.to_string(),
        Visibility::Private => format!("{name}~{}", owner.to_lower_hex()),
    }
}

pub fn validate_datanet_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(Error::InvalidDatanetName(name.to_string())) }
}
