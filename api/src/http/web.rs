//! The web app: the pages in `web/`, embedded in the binary (it works offline, without a CDN)
//! and served at `/`. They call the same `/v1` API as any other client, with the key the user
//! signs in with. Every page response carries a strict Content-Security-Policy: scripts,
//! styles and connections from this origin only, no inline script or style, no framing.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::state::AppState;

/// The policy every page and asset is served with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($(($name:literal, $type:literal)),* $(,)?) => {
        &[$(Asset { name: $name, content_type: $type, body: include_bytes!(concat!("../../../web/", $name)) }),*]
    };
}

/// Every file the pages load. A file added to `web/` must be listed here (a test fails when
/// `web/` holds a page file that is not).
const ASSETS: &[Asset] = assets![
    ("index.html", "text/html; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("api.js", "text/javascript; charset=utf-8"),
    ("dom.js", "text/javascript; charset=utf-8"),
    ("ask.js", "text/javascript; charset=utf-8"),
    ("document.js", "text/javascript; charset=utf-8"),
    ("contributor.js", "text/javascript; charset=utf-8"),
    ("datanets.js", "text/javascript; charset=utf-8"),
    ("accounts.js", "text/javascript; charset=utf-8"),
    ("factory.js", "text/javascript; charset=utf-8"),
];

/// The names of the embedded files, for the test that `web/` and this list agree.
pub fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|a| a.name).collect()
}

/// Strong validators: the blake3 of each file, computed once.
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| format!("\"{}\"", &blake3::hash(a.body).to_hex()[..32])).collect());

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/assets/{name}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    if name == "index.html" {
        return ApiError::not_found("no such asset").into_response();
    }
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return ApiError::not_found("no such asset").into_response();
    };
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if let Ok(etag) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, etag);
    }
    // Revalidated on every load (cheap: 304), so a new binary's pages are never mixed with
    // an old binary's scripts.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
