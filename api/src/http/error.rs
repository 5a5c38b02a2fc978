//! Every error the API returns: `application/problem+json` (RFC 9457) with a stable `code`.
//!
//! Library errors map to a status and a code in one exhaustive place ([`ApiError::from`] for
//! each crate's error). A 500 logs its cause and answers a fixed text: internal error text never
//! reaches the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::onchain::ChainRefused;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: `code` is the machine-readable kind.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short, fixed summary of the kind.
    pub title: String,
    pub status: u16,
    /// What went wrong with this request, for a person.
    pub detail: String,
    /// Stable machine-readable code; the list is in the `Problem` schema description of
    /// `openapi/openapi.json` and in `api/src/http/error.rs`.
    pub code: String,
    /// With `insufficient_balance`: the fee the answer would cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9]+$")]
    pub quote: Option<String>,
    /// With `insufficient_balance`: what the payer has available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9]+$")]
    pub balance: Option<String>,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
    /// (quote, available balance), for 402 `insufficient_balance`.
    pub shortfall: Option<(u128, u128)>,
}

/// Every `code` the API answers with: its status and title. An error's status is looked up
/// here by its code, so the two cannot disagree.
pub const CODES: &[(&str, u16, &str)] = &[
    ("invalid_request", 400, "Invalid request"),
    ("invalid_json", 400, "Invalid request"),
    ("invalid_address", 422, "Invalid address"),
    ("invalid_datanet_name", 422, "Invalid Datanet name"),
    ("malformed_input", 422, "Unusable upload"),
    ("unsupported_input", 422, "Unusable upload"),
    ("invalid_value", 422, "Invalid value"),
    ("invalid_signature", 401, "Invalid signature"),
    ("missing_api_key", 401, "API key required"),
    ("invalid_api_key", 401, "Invalid API key"),
    ("forbidden", 403, "Forbidden"),
    ("not_found", 404, "Not found"),
    ("datanet_not_found", 404, "Not found"),
    ("receipt_not_found", 404, "Not found"),
    ("adapter_not_found", 404, "Not found"),
    ("method_not_allowed", 405, "Method not allowed"),
    ("not_acceptable", 406, "Not acceptable"),
    ("conflict", 409, "Conflict"),
    ("datanet_exists", 409, "Conflict"),
    ("signature_replayed", 409, "Conflict"),
    ("worse_than_base", 409, "Conflict"),
    ("insufficient_balance", 402, "Payment required"),
    ("insufficient_funds", 422, "Insufficient funds"),
    ("payer_required", 402, "Payment required"),
    ("payload_too_large", 413, "Payload too large"),
    ("unsupported_media_type", 415, "Unsupported media type"),
    ("invalid_adapter", 422, "Invalid adapter"),
    ("context_overflow", 422, "Context overflow"),
    ("rate_limited", 429, "Too many requests"),
    ("internal", 500, "Internal error"),
    ("generator_failed", 502, "Generator failed"),
    ("chain_failed", 502, "Chain request failed"),
    ("overloaded", 503, "Overloaded"),
    ("generator_unavailable", 503, "Generator unavailable"),
    ("database_unavailable", 503, "Database unavailable"),
    ("insufficient_storage", 507, "Insufficient storage"),
    ("not_ready", 503, "Not ready"),
    ("chain_not_configured", 503, "Chain not configured"),
    ("pricing_not_configured", 503, "Pricing not configured"),
    ("timeout", 504, "Timeout"),
];

/// The status and title of `code`; 500 for a code missing from [`CODES`] (a bug the tests
/// catch: every error they provoke is checked for its status).
fn status_and_title(code: &str) -> (StatusCode, &'static str) {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .and_then(|(_, status, title)| Some((StatusCode::from_u16(*status).ok()?, *title)))
        .unwrap_or((StatusCode::INTERNAL_SERVER_ERROR, "Internal error"))
}

impl ApiError {
    /// An error with `code` (one of [`CODES`], which gives its status).
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status: status_and_title(code).0, code, detail: detail.into(), retry_after: None, shortfall: None }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new("invalid_request", detail)
    }

    /// Well-formed (the schema allows it) but unusable: 422.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new("invalid_value", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new("forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new("not_found", detail)
    }

    /// The same answer for "does not exist" and "exists, but not for you": a private Datanet
    /// never shows through an error.
    pub fn datanet_not_found(name: &str) -> Self {
        Self::new("datanet_not_found", format!("Datanet {name:?} does not exist"))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new("conflict", detail)
    }

    /// The database cannot be reached (stopped, restarting, the network to it down), or `e` is
    /// another database failure (a 500 then).
    pub fn database(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                tracing::warn!(error = %e, "the database is unreachable");
                ApiError {
                    retry_after: Some(5),
                    ..Self::new("database_unavailable", "the database cannot be reached; retry shortly")
                }
            }
            _ => ApiError::internal(e),
        }
    }

    pub fn overloaded(detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after), ..Self::new("overloaded", detail) }
    }

    /// The generator model cannot be loaded: logged with its cause, answered 503.
    pub fn generator_unavailable(cause: &anyhow::Error) -> Self {
        tracing::error!(error = %format!("{cause:#}"), "no generator model");
        Self::new("generator_unavailable", "the generator model is not available")
    }

    /// A failure the client cannot fix: logged here with its cause, answered with a fixed text.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new("internal", "the server failed; the failure is logged")
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: "about:blank".into(),
            title: status_and_title(self.code).1.into(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.into(),
            quote: self.shortfall.map(|(quote, _)| quote.to_string()),
            balance: self.shortfall.map(|(_, balance)| balance.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<tributary_indexer::Error> for ApiError {
    fn from(e: tributary_indexer::Error) -> Self {
        use tributary_indexer::Error as E;
        let text = e.to_string();
        match e {
            E::InvalidAddress { .. } => ApiError::new("invalid_address", text),
            E::InvalidDatanetName(_) => ApiError::new("invalid_datanet_name", text),
            E::DatanetNotFound(name) => ApiError::datanet_not_found(&name),
            E::DatanetExists(_) => ApiError::new("datanet_exists", text),
            E::MalformedInput { .. } => ApiError::new("malformed_input", text),
            E::UnsupportedInput { .. } => ApiError::new("unsupported_input", text),
            E::InvalidArgument(detail) => ApiError::invalid(detail),
            E::NotFound(_) => ApiError::not_found(text),
            E::Conflict(detail) => ApiError::conflict(detail),
            E::Database(e) => ApiError::database(&e),
            E::DiskFull { .. } => {
                tracing::error!(error = %text, "the data directory's disk is full");
                ApiError::new(
                    "insufficient_storage",
                    "the server's disk is full: the upload stopped (what it stored stays; send it again once there is room)",
                )
            }
            E::ModelNotFound(_)
            | E::Model(_)
            | E::Migration(_)
            | E::VectorIndex(_)
            | E::KeywordIndex(_)
            | E::Internal(_)
            | E::Inconsistent(_)
            | E::Io { .. } => ApiError::internal(text),
        }
    }
}

impl From<tributary_attribution::Error> for ApiError {
    fn from(e: tributary_attribution::Error) -> Self {
        use tributary_attribution::Error as E;
        match e {
            E::InvalidArgument(detail) => ApiError::invalid(detail),
            E::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            E::InsufficientBalance { account, needed, available } => ApiError {
                shortfall: Some((needed, available)),
                ..ApiError::new(
                    "insufficient_balance",
                    format!("{account} has {available} available; {needed} is needed"),
                )
            },
            E::Unconfigured(detail) => ApiError::new("pricing_not_configured", detail),
            E::Catalog(e) => e.into(),
            E::Database(e) => ApiError::database(&e),
            e @ E::Inconsistent(_) => ApiError::internal(e),
        }
    }
}

impl From<tributary_generator::Error> for ApiError {
    fn from(e: tributary_generator::Error) -> Self {
        use tributary_generator::Error as E;
        let text = e.to_string();
        match e {
            E::UnknownAdapter(_) => ApiError::new("adapter_not_found", text),
            E::Adapter { .. } => ApiError::new("invalid_adapter", text),
            E::ContextOverflow { .. } => ApiError::new("context_overflow", text),
            E::InvalidRequest(detail) => ApiError::invalid(detail),
            E::Unsupported(detail) => ApiError::invalid(detail),
            E::Overloaded(detail) => ApiError::overloaded(detail, 1),
            E::Remote(_) => {
                tracing::warn!(error = %text, "remote generator failed");
                ApiError::new("generator_failed", "the generation engine failed")
            }
            E::Io(..) | E::Model(_) | E::Tokenizer(_) | E::Template(_) | E::Candle(_) => ApiError::internal(text),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    /// Errors from the command layer (shared with the CLI): the typed cause decides.
    fn from(e: anyhow::Error) -> Self {
        let e = match e.downcast::<tributary_indexer::Error>() {
            Ok(e) => return e.into(),
            Err(e) => e,
        };
        let e = match e.downcast::<tributary_attribution::Error>() {
            Ok(e) => return e.into(),
            Err(e) => e,
        };
        if let Some(e) = e.downcast_ref::<sqlx::Error>() {
            return ApiError::database(e);
        }
        if let Some(refused) = e.downcast_ref::<crate::app::answers::PayerRequired>() {
            return ApiError::new("payer_required", refused.to_string());
        }
        match e.downcast::<tributary_generator::Error>() {
            Ok(e) => e.into(),
            Err(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

/// Chain failures: refusals the caller can act on are 409 / 503 with their reason; the rest
/// are logged and answered 502.
pub fn chain_error(e: anyhow::Error) -> ApiError {
    match e.downcast::<ChainRefused>() {
        Ok(
            refused @ (ChainRefused::NotConfigured
            | ChainRefused::NoRpc
            | ChainRefused::NoSigner
            | ChainRefused::NoPassword),
        ) => ApiError::new("chain_not_configured", refused.to_string()),
        Ok(refused @ ChainRefused::NoSuchChunk { .. }) => ApiError::not_found(refused.to_string()),
        Ok(refused) => ApiError::conflict(refused.to_string()),
        Err(e) => match e.downcast::<tributary_attribution::Error>() {
            Ok(e) => e.into(),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "chain request failed");
                ApiError::new("chain_failed", "the chain refused or failed the transaction")
            }
        },
    }
}

/// The error responses every `/v1` operation may give (documented on each in the spec).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only its OpenAPI description is used
pub enum Errors {
    /// The request does not match the schema (bad JSON, parameters, types, ranges).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// An API key is needed, or the one sent is unknown, revoked or malformed.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The answer needs a payer, or its payer's balance is short of its fee.
    #[response(status = 402, content_type = "application/problem+json")]
    PaymentRequired(Problem),
    /// The key's role may not do this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// Not found, or not visible to this caller (private Datanets do not show).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// Conflicts with the current state.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body is larger than the server accepts.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not JSON (or multipart where accepted).
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// Matches the schema but is unusable: an address with a bad checksum, a malformed upload,
    /// shares that do not sum to 10,000, an adapter that does not fit, a context overflow.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
    /// Over the rate limit: see `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json")]
    RateLimited(Problem),
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// A remote engine or the chain failed.
    #[response(status = 502, content_type = "application/problem+json")]
    BadGateway(Problem),
    /// Busy or the database unreachable (see `Retry-After`), or a needed component is not
    /// configured.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(Problem),
    /// The server's disk is full.
    #[response(status = 507, content_type = "application/problem+json")]
    InsufficientStorage(Problem),
}
