//! The HTTP API: `tributary serve`.
//!
//! [`app`] builds the whole router from an [`AppState`]; the binary and the tests share it.
//! Each area (`datanets`, `answers`, `ledger`, `openai`) has its own router, merged here under
//! `/v1`, with its OpenAPI description generated from the same handlers (utoipa), so the spec at
//! `/openapi.json` (committed as `openapi/openapi.json`) cannot describe routes that do not exist.
//!
//! Layers, outside in: request tracing; metrics by route; a concurrency limit that answers 503
//! at once when full (load shedding, never an unbounded queue); a request timeout (504; a
//! stream's body is not cut); authentication and rate limits (per key, or per IP for anonymous
//! callers); body size limits.

mod accounts;
mod answers;
pub mod auth;
mod contributions;
mod datanets;
pub mod error;
mod extract;
mod ledger;
mod metrics;
mod onchain;
mod openai;
pub mod rate_limit;
mod state;
mod training;
pub mod web;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::Caller;
pub use datanets::{content_hash, typed_upload};
use error::ApiError;
pub use state::{AppState, ServeArgs, ServeConfig};

use crate::app::App;

/// The API's description: info, security scheme, tags. Paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tributary",
        description = "Answers that pay their sources: Datanets, hybrid search, cited answers, receipts, \
                       credits and on-chain settlement. Errors are `application/problem+json` with a stable \
                       `code` (see the `Problem` schema).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(error::Problem)),
    tags(
        (name = "datanets", description = "Datanets, their members and access requests, and contributions"),
        (name = "search", description = "Hybrid retrieval"),
        (name = "answers", description = "Cited answers, JSON or server-sent events"),
        (name = "accounts", description = "Payers' balances and transfers, grants, quotes, sponsor budgets"),
        (name = "ledger", description = "Receipts, earnings, epochs, proofs, flags, settlement, pricing"),
        (name = "adapters", description = "LoRA adapters"),
        (name = "openai", description = "OpenAI-compatible endpoints"),
        (name = "operations", description = "Health and metrics")
    )
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        use utoipa::openapi::{RefOr, Schema};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        // The codes are data (`error::CODES`); the spec lists them as the `code` enum.
        if let Some(RefOr::T(Schema::Object(problem))) = components.schemas.get_mut("Problem")
            && let Some(RefOr::T(Schema::Object(code))) = problem.properties.get_mut("code")
        {
            code.enum_values = Some(error::CODES.iter().map(|(code, _, _)| (*code).into()).collect());
            let list: Vec<String> =
                error::CODES.iter().map(|(code, status, _)| format!("`{code}` ({status})")).collect();
            code.description = Some(format!("Stable machine-readable code: {}.", list.join(", ")));
        }
    }
}

fn routers() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(datanets::router())
        .merge(contributions::router())
        .merge(accounts::router())
        .merge(answers::router())
        .merge(ledger::router())
        .merge(openai::router())
        .merge(onchain::router())
        .merge(training::router())
        .merge(operations_router())
}

/// The OpenAPI document, as served at `/openapi.json` and committed at `openapi/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = routers().split_for_parts();
    api
}

pub fn openapi_json() -> anyhow::Result<String> {
    Ok(openapi().to_pretty_json()? + "\n")
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let (api_routes, api) = routers().split_for_parts();
    let config = state.config().clone();
    let api_routes = api_routes
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    let api = Arc::new(api);
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", (*api).clone());
    Router::new()
        .merge(api_routes)
        .merge(docs)
        .merge(web::router())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new("method_not_allowed", "this route does not take that method")
        })
        .layer(
            ServiceBuilder::new()
                // A 5xx is not logged here: the problems that need an operator log their cause
                // where they arise (a 500's error, a failed engine, an unreachable database),
                // and deliberate refusals (503 overloaded, 429) would flood the log under load.
                .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)))
                .layer(axum::middleware::from_fn_with_state(state.metrics().clone(), metrics::track))
                .layer(HandleErrorLayer::new(overload_or_timeout))
                .load_shed()
                .concurrency_limit(config.max_in_flight.max(1))
                .timeout(Duration::from_secs(config.request_timeout_secs.max(1))),
        )
        .with_state(state)
}

async fn overload_or_timeout(error: tower::BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::new("timeout", "the request took too long")
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::overloaded("the server is at its limit of requests in flight; retry shortly", 1)
    } else {
        ApiError::internal(error)
    }
}

fn operations_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(healthz))
        .routes(utoipa_axum::routes!(readyz))
        .routes(utoipa_axum::routes!(metrics_text))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// The catalog answers and the embedding model is loaded: searches and uploads will work.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = String),
        (status = 503, description = "Not ready", body = error::Problem, content_type = "application/problem+json")
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    sqlx::query("SELECT 1").execute(state.catalog().pool()).await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: the catalog does not answer");
        ApiError::new("not_ready", "the catalog database does not answer")
    })?;
    state.embedder().await?;
    Ok("ready")
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics().render(
        state.app().adapter_cache_stats(),
        state.app().query_cache_counts(),
        state.app().loaded_generator().map(|local| local.scheduler_stats()),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// Binds, serves until SIGTERM or Ctrl-C, then lets requests in flight finish.
pub async fn serve(app: Arc<App>, args: ServeArgs) -> anyhow::Result<()> {
    let sync_every = args.config.chain_sync_secs;
    let state = AppState::new(app.clone(), args.config);
    // Load the embedding model before taking traffic: the first search should not pay for it.
    let loader = app.clone();
    tokio::task::spawn_blocking(move || loader.embedder()).await??;
    // Contributions accepted before a stop but not yet indexed are indexed now.
    // One that cannot be (its stored upload no longer parses) is logged and left for the
    // operator (`tributary contribution list`): it must not keep the server from starting.
    match crate::app::contributions::resume(&app).await {
        Ok(0) => {}
        Ok(resumed) => tracing::info!(resumed, "indexed accepted contributions a stop had interrupted"),
        Err(e) => tracing::error!(error = %e, "indexing an accepted contribution failed; it stays accepting"),
    }
    // Training jobs a stop interrupted are queued again (each resumes from its checkpoint).
    state.training()?;
    let listener = tokio::net::TcpListener::bind(args.bind).await.with_context(|| format!("binding {}", args.bind))?;
    let local = listener.local_addr()?;
    // Tests and scripts read this line to find a port chosen by the OS (`--bind 127.0.0.1:0`).
    println!("listening on http://{local}");
    tracing::info!(%local, "serving");
    let syncing = (sync_every > 0).then(|| tokio::spawn(sync_deposits(app.clone(), Duration::from_secs(sync_every))));
    let limits = Limits {
        max_connections: args.max_connections.max(1),
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs.max(1)),
    };
    run_listener(listener, self::app(state), limits, shutdown_signal()).await;
    if let Some(task) = syncing {
        task.abort();
    }
    app.store.catalog().close().await;
    Ok(())
}

/// Records the payout contract's confirmed deposits every `every` while the server runs (a
/// data directory without deployed contracts has nothing to read).
async fn sync_deposits(app: Arc<App>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match crate::app::onchain::sync(&app).await {
            Ok(Some(synced)) if synced.recorded > 0 => tracing::info!(recorded = synced.recorded, "deposits synced"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "syncing deposits failed; retrying next tick"),
        }
    }
}

/// What the listener allows each client.
struct Limits {
    max_connections: usize,
    header_read_timeout: Duration,
}

/// Accepts connections (at most `max_connections` open; the rest wait in the kernel's backlog)
/// and serves HTTP/1.1 on each, closing one whose client has not sent a request's headers
/// within `header_read_timeout` (a slow client cannot hold a socket forever). On `shutdown`:
/// stops accepting, closes idle connections and waits for requests in flight.
async fn run_listener(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
