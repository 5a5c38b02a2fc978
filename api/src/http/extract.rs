//! Extractors whose rejections are problem documents, and the JSON response type.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// A JSON body that must be an object (serde would also read a struct from an array), refusing
/// bad bodies with `invalid_json` / `unsupported_media_type` / `payload_too_large`.
pub struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let is_json = content_type
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")));
        if !is_json {
            return Err(ApiError::new("unsupported_media_type", "send the body as application/json"));
        }
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new("payload_too_large", "the body exceeds the server's limit")
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        let invalid = |detail: String| ApiError::new("invalid_json", detail);
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("the body is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(invalid("the body must be a JSON object".into()));
        }
        serde_json::from_value(value).map(Json).map_err(|e| invalid(format!("the body does not fit: {e}")))
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// Integers that JSON Schema allows as `10.0` (a number with no fraction is an integer).
pub mod integer {
    use serde::{Deserialize, Deserializer, de::Error};

    fn exact<T: TryFrom<u64>, E: Error>(n: &serde_json::Number) -> Result<T, E> {
        let whole = match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u,
            // 2^64 (u64::MAX as f64) itself does not fit.
            (None, Some(f)) if f.fract() == 0.0 && (0.0..u64::MAX as f64).contains(&f) => f as u64,
            _ => return Err(E::custom(format!("{n} is not a non-negative integer"))),
        };
        T::try_from(whole).map_err(|_| E::custom(format!("{n} is out of range")))
    }

    pub fn required<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        exact(&serde_json::Number::deserialize(d)?)
    }

    pub fn option<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?.map(|n| exact(&n)).transpose()
    }
}

/// Where a page starts (after the cursor's key) and how long it is (default 50, 1 to 1000).
pub fn page_bounds<K: std::str::FromStr>(
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<(Option<K>, usize), ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let after = match cursor {
        Some(c) => Some(c.parse::<K>().map_err(|_| ApiError::invalid("the cursor is not one this list gave"))?),
        None => None,
    };
    Ok((after, limit))
}

/// A page of a list: `next_cursor` is given back as `cursor` for the next page. Items are put
/// in `key` order here, whatever order the database returned them in: a cursor is compared in
/// Rust's order, and PostgreSQL under a locale collation (en_US.UTF-8) orders text otherwise
/// (it ignores `-` and `_`), which made pages skip rows.
pub fn paginate<T, K: Ord + ToString + std::str::FromStr>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let (after, limit) = page_bounds::<K>(cursor, limit)?;
    let mut page: Vec<T> = items.into_iter().filter(|item| after.as_ref().is_none_or(|a| key(item) > *a)).collect();
    page.sort_by_cached_key(|item| key(item));
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|last| key(last).to_string())
    } else {
        None
    };
    Ok((page, next))
}
