//! Callers and rate limits. The keys themselves (roles, the `api_keys` table) are
//! `crate::app::keys`.
//!
//! Requests send a key as `Authorization: Bearer <key>`. No header means an anonymous caller
//! (public reads only); a header that is malformed, unknown or revoked is a 401, never a silent
//! downgrade to anonymous.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tributary_indexer::{Address, Datanet};

use super::error::{ApiError, ApiResult};
use super::state::AppState;
use crate::app::keys::{ApiKey, KEY_LEN, KEY_PREFIX, Role};

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

    /// Who asks, as the query cache sees it: each key its own scope; anonymous callers share
    /// one (they read public Datanets only).
    pub fn cache_scope(&self) -> String {
        match self {
            Caller::Anonymous => "anonymous".into(),
            Caller::Key(key) => format!("key:{}", key.id),
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

/// Resolves the caller, applies its rate limit and hands it to the handler. A client's network
/// (IPv4 address, IPv6 /64) is limited before its key is looked up: a request with a key that
/// does not resolve spends from that network's anonymous bucket, and once it is empty such
/// requests get 429 without a lookup (unknown keys cannot buy unlimited database reads).
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let network = match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => super::rate_limit::client_bucket(addr.ip()),
        None => "ip:".to_string(),
    };
    let anonymous_rate = state.config().anonymous_rate_per_minute;
    let limited = |state: &AppState, rate: u32, wait: u64| {
        state.metrics().rate_limited.inc();
        ApiError {
            retry_after: Some(wait),
            ..ApiError::new("rate_limited", format!("over {rate} requests per minute"))
        }
        .into_response()
    };
    let failed_keys = format!("{network}:failed-keys");
    if request.headers().contains_key(header::AUTHORIZATION)
        && let Err(wait) = state.limiter().peek(&failed_keys, anonymous_rate)
    {
        return limited(&state, anonymous_rate, wait);
    }
    let caller = match caller_of(&state, request.headers()).await {
        Ok(caller) => caller,
        Err(e) => {
            if let Err(wait) = state.limiter().check(&failed_keys, anonymous_rate) {
                return limited(&state, anonymous_rate, wait);
            }
            return e.into_response();
        }
    };
    let (bucket, rate) = match &caller {
        Caller::Key(key) => {
            (format!("key:{}", key.id), key.rate_per_minute.unwrap_or(state.config().key_rate_per_minute))
        }
        Caller::Anonymous => (network, anonymous_rate),
    };
    if let Err(wait) = state.limiter().check(&bucket, rate) {
        return limited(&state, rate, wait);
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
    if !secret.starts_with(KEY_PREFIX) || secret.len() != KEY_LEN {
        return Err(invalid("this is not a Tributary API key"));
    }
    match state.keys().lookup(secret).await.map_err(ApiError::from)? {
        Some(key) => Ok(Caller::Key(key)),
        None => Err(invalid("unknown or revoked API key")),
    }
}
