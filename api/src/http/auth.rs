//! API keys, callers and rate limits.
//!
//! A key is `trb_` + 64 random hex digits, shown once at creation; the database keeps its
//! blake3 hash only. Requests send it as `Authorization: Bearer <key>`. No header means an
//! anonymous caller (public reads only); a header that is malformed, unknown or revoked is a 401,
//! never a silent downgrade to anonymous.
//!
//! Roles: `admin` (everything), `owner` (creates Datanets it owns and governs them), `contributor`
//! (uploads as its address), `reader` (reads; with an address, the private Datanets that address
//! was let into). A key's address is who it acts as.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;
use tributary_indexer::{Address, Datanet};

use super::AppState;
use super::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
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

const KEY_PREFIX: &str = "trb_";
const CACHE_TTL: Duration = Duration::from_secs(5);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn hash_key(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// The `api_keys` table. Lookups are cached for a few seconds: a revocation takes effect within
/// [`CACHE_TTL`] on every server.
pub struct KeyStore {
    pool: AnyPool,
    cache: Mutex<HashMap<String, (Option<ApiKey>, Instant)>>,
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
        KeyStore { pool, cache: Mutex::new(HashMap::new()) }
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
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
        Ok(done.rows_affected() == 1)
    }

    /// The live key with this secret.
    pub async fn lookup(&self, secret: &str) -> anyhow::Result<Option<ApiKey>> {
        let hash = hash_key(secret);
        if let Ok(cache) = self.cache.lock()
            && let Some((key, at)) = cache.get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(key.clone());
        }
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&hash).fetch_optional(&self.pool).await?;
        let key = row.as_ref().map(key_from_row).transpose()?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(hash, (key.clone(), Instant::now()));
        }
        Ok(key)
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Key(ApiKey),
}

impl Caller {
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Anonymous => None,
            Caller::Key(key) => Some(key.role),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role() == Some(Role::Admin)
    }

    /// The address the caller acts as.
    pub fn address(&self) -> Option<&Address> {
        match self {
            Caller::Anonymous => None,
            Caller::Key(key) => key.address.as_ref(),
        }
    }

    /// Refuses anonymous callers (401) and keys without one of `roles` (403). Admins pass
    /// always, so `require(&[])` means "admins only".
    pub fn require(&self, roles: &[Role]) -> ApiResult<()> {
        match self.role() {
            None => Err(ApiError::new("missing_api_key", "this operation needs an API key")),
            Some(Role::Admin) => Ok(()),
            Some(role) if roles.contains(&role) => Ok(()),
            Some(role) => Err(ApiError::forbidden(format!("a {} key may not do this", role.as_str()))),
        }
    }

    /// Who the caller is in records (flags, decisions): its address, or `admin` for a key
    /// without one.
    pub fn actor(&self) -> String {
        self.address().map(|a| a.to_checksummed()).unwrap_or_else(|| "admin".into())
    }

    /// Whether the caller may read the Datanet (admins read everything).
    pub async fn can_read(&self, state: &AppState, datanet: &Datanet) -> ApiResult<bool> {
        if self.is_admin() {
            return Ok(true);
        }
        Ok(state.catalog().can_read(datanet, self.address()).await?)
    }

    /// Whether the caller governs the Datanet: an admin, or an owner key of its owner address.
    pub fn governs(&self, datanet: &Datanet) -> bool {
        self.is_admin() || (self.role() == Some(Role::Owner) && self.address() == Some(&datanet.owner))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The authentication middleware put it there; a route outside it is anonymous.
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or(Caller::Anonymous))
    }
}

/// Token buckets per caller: `rate` requests per minute, bursts up to a tenth of a minute's
/// worth (at least 10).
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new() -> Self {
        RateLimiter { buckets: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds to wait)` when the caller is over its rate.
    pub fn check(&self, who: &str, per_minute: u32) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let rate = per_minute as f64 / 60.0;
        let burst = (per_minute as f64 / 10.0).max(10.0);
        let now = Instant::now();
        if buckets.len() > 100_000 {
            buckets.retain(|_, b| now.duration_since(b.at) < Duration::from_secs(60));
        }
        let bucket = buckets.entry(who.to_string()).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolves the caller, applies its rate limit and hands it to the handler.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let caller = match caller_of(&state, request.headers()).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let (bucket, rate) = match &caller {
        Caller::Key(key) => {
            (format!("key:{}", key.id), key.rate_per_minute.unwrap_or(state.config().key_rate_per_minute))
        }
        Caller::Anonymous => {
            let ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
            (format!("ip:{}", ip.unwrap_or_default()), state.config().anonymous_rate_per_minute)
        }
    };
    if let Err(wait) = state.limiter().check(&bucket, rate) {
        state.metrics().rate_limited.inc();
        let e = ApiError {
            retry_after: Some(wait),
            ..ApiError::new("rate_limited", format!("over {rate} requests per minute"))
        };
        return e.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn caller_of(state: &AppState, headers: &axum::http::HeaderMap) -> ApiResult<Caller> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(Caller::Anonymous) };
    let invalid = |detail: &str| ApiError::new("invalid_api_key", detail);
    let text = value.to_str().map_err(|_| invalid("the Authorization header is not text"))?;
    let Some(secret) = text.strip_prefix("Bearer ").map(str::trim) else {
        return Err(invalid("send the key as `Authorization: Bearer <key>`"));
    };
    if !secret.starts_with(KEY_PREFIX) || secret.len() != KEY_PREFIX.len() + 64 {
        return Err(invalid("this is not a Tributary API key"));
    }
    match state.keys().lookup(secret).await.map_err(ApiError::internal)? {
        Some(key) => Ok(Caller::Key(key)),
        None => Err(invalid("unknown or revoked API key")),
    }
}
