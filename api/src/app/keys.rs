//! API keys: who may call the HTTP API, as what role, acting as which address.
//!
//! A key is `trb_` + 64 random hex digits, shown once at creation; the database keeps its
//! blake3 hash only. Roles: `admin` (everything), `owner` (creates Datanets it owns and governs
//! them), `contributor` (uploads as its address), `reader` (reads; with an address, the private
//! Datanets that address was let into). A key's address is who it acts as.

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;
use tributary_indexer::Address;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Owner,
    Contributor,
    Reader,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Owner => "owner",
            Role::Contributor => "contributor",
            Role::Reader => "reader",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            "contributor" => Ok(Role::Contributor),
            "reader" => Ok(Role::Reader),
            other => anyhow::bail!("role must be admin, owner, contributor or reader, not {other:?}"),
        }
    }
}

/// A stored key (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    /// The key's first characters, to recognize it in lists.
    pub prefix: String,
    pub role: Role,
    pub address: Option<Address>,
    pub label: String,
    /// Requests per minute; `None`: the server's default.
    pub rate_per_minute: Option<u32>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub role: Role,
    pub address: Option<Address>,
    pub label: String,
    pub rate_per_minute: Option<u32>,
}

/// Every key starts with this.
pub const KEY_PREFIX: &str = "trb_";
/// A key's length: the prefix and 64 hex digits.
pub const KEY_LEN: usize = KEY_PREFIX.len() + 64;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn hash_key(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// The `api_keys` table. Every lookup reads it (one indexed row): a revocation takes effect at
/// once, on every server and from the command line. (A cache of lookups made revocations late
/// across processes, and a lookup racing a revocation could cache the revoked key again.)
pub struct KeyStore {
    pool: AnyPool,
}

fn key_from_row(row: &AnyRow) -> anyhow::Result<ApiKey> {
    let role: String = row.try_get("role")?;
    let address: Option<String> = row.try_get("address")?;
    let rate: Option<i64> = row.try_get("rate_per_minute")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        prefix: row.try_get("prefix")?,
        role: role.parse()?,
        address: address.map(|a| a.parse()).transpose()?,
        label: row.try_get("label")?,
        rate_per_minute: rate.map(|r| r.clamp(1, u32::MAX as i64) as u32),
        created_at_ms: row.try_get("created_at")?,
        revoked_at_ms: row.try_get("revoked_at")?,
    })
}

const KEY_COLUMNS: &str = "id, prefix, role, address, label, rate_per_minute, created_at, revoked_at";

impl KeyStore {
    pub fn new(pool: AnyPool) -> Self {
        KeyStore { pool }
    }

    /// Creates a key; the secret is returned here and nowhere else.
    pub async fn create(&self, new: &NewKey) -> anyhow::Result<(String, ApiKey)> {
        if matches!(new.role, Role::Owner | Role::Contributor) && new.address.is_none() {
            anyhow::bail!("an {} key acts as an address: give --address", new.role.as_str());
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness for the key: {e}"))?;
        let secret = format!("{KEY_PREFIX}{}", hex::encode(random));
        let prefix = secret[..KEY_PREFIX.len() + 8].to_string();
        let created_at = now_ms();
        let row = sqlx::query(
            "INSERT INTO api_keys (key_hash, prefix, role, address, label, rate_per_minute, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(hash_key(&secret))
        .bind(&prefix)
        .bind(new.role.as_str())
        .bind(new.address.map(|a| a.to_lower_hex()))
        .bind(&new.label)
        .bind(new.rate_per_minute.map(i64::from))
        .bind(created_at)
        .fetch_one(&self.pool)
        .await?;
        let key = ApiKey {
            id: row.try_get("id")?,
            prefix,
            role: new.role,
            address: new.address,
            label: new.label.clone(),
            rate_per_minute: new.rate_per_minute,
            created_at_ms: created_at,
            revoked_at_ms: None,
        };
        Ok((secret, key))
    }

    pub async fn list(&self) -> anyhow::Result<Vec<ApiKey>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes a key; `false` when there is no such live key.
    pub async fn revoke(&self, id: i64) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The live key with this secret.
    pub async fn lookup(&self, secret: &str) -> anyhow::Result<Option<ApiKey>> {
        let hash = hash_key(secret);
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(key_from_row).transpose()
    }
}
