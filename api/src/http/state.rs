//! What every handler shares: [`AppState`] (the [`App`], API keys, rate limits, metrics, the
//! server's limits and its generation slots), and the server's flags.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::error::ApiError;
use super::metrics;
use super::rate_limit::RateLimiter;
use crate::app::App;
use crate::app::answers::Unpaid;
use crate::app::keys::KeyStore;

/// `tributary serve` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[arg(long, env = "TRIBUTARY_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Connections open at once; more wait in the listen backlog until one closes.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers (the first request's, and each
    /// next one's on a kept-alive connection); past it the connection is closed.
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    #[command(flatten)]
    pub config: ServeConfig,
}

/// Limits of the server.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeConfig {
    /// Seconds before a request without a response head is answered 504.
    #[arg(long, default_value_t = 120)]
    pub request_timeout_secs: u64,
    /// Requests in flight at once; more are refused with 503 at once.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Answers in progress at once (retrieval, generation, receipt); more are refused with
    /// 503. The local model decodes up to --max-batch of them together and queues the rest.
    #[arg(long, default_value_t = 32)]
    pub max_generating: usize,
    /// Tokens an answer may generate at most, whatever a request asks for.
    #[arg(long, default_value_t = 2048)]
    pub max_answer_tokens: usize,
    /// Largest request body in bytes (uploads included).
    #[arg(long, default_value_t = 32 << 20)]
    pub max_body_bytes: usize,
    /// Requests per minute per API key without its own rate.
    #[arg(long, default_value_t = 6000)]
    pub key_rate_per_minute: u32,
    /// Requests per minute per client IP without a key.
    #[arg(long, default_value_t = 600)]
    pub anonymous_rate_per_minute: u32,
    /// Answers nobody pays for (anonymous, or a key without an address) when no sponsor budget
    /// covers them: `free` (answered, crediting no one) or `refuse` (402 `payer_required`).
    #[arg(long, default_value = "free")]
    pub unpaid_answers: Unpaid,
    /// Seconds between reads of the payout contract's deposits (`chain sync`); 0: never.
    #[arg(long, default_value_t = 15)]
    pub chain_sync_secs: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            request_timeout_secs: 120,
            max_in_flight: 256,
            max_generating: 32,
            max_answer_tokens: 2048,
            max_body_bytes: 32 << 20,
            key_rate_per_minute: 6000,
            anonymous_rate_per_minute: 600,
            unpaid_answers: Unpaid::Free,
            chain_sync_secs: 15,
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    app: Arc<App>,
    keys: KeyStore,
    limiter: RateLimiter,
    metrics: Arc<metrics::Metrics>,
    config: ServeConfig,
    generating: Arc<Semaphore>,
    /// Training jobs, started on first use (at serve start, to pick up unfinished ones).
    training: std::sync::OnceLock<Arc<crate::app::training_jobs::TrainingJobs>>,
}

impl AppState {
    pub fn new(app: Arc<App>, config: ServeConfig) -> Self {
        let keys = KeyStore::new(app.store.catalog().pool().clone());
        let generating = Arc::new(Semaphore::new(config.max_generating.max(1)));
        AppState {
            inner: Arc::new(StateInner {
                app,
                keys,
                limiter: RateLimiter::new(),
                metrics: Arc::new(metrics::Metrics::new()),
                config,
                generating,
                training: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn app(&self) -> &Arc<App> {
        &self.inner.app
    }

    pub fn catalog(&self) -> &tributary_indexer::Catalog {
        self.inner.app.store.catalog()
    }

    pub fn keys(&self) -> &KeyStore {
        &self.inner.keys
    }

    pub(super) fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    pub(super) fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.inner.metrics
    }

    /// The training jobs and their worker (started on the current runtime on first call).
    pub fn training(&self) -> anyhow::Result<&Arc<crate::app::training_jobs::TrainingJobs>> {
        if let Some(jobs) = self.inner.training.get() {
            return Ok(jobs);
        }
        let started = crate::app::training_jobs::TrainingJobs::start(self.inner.app.clone())?;
        Ok(self.inner.training.get_or_init(|| started))
    }

    pub fn config(&self) -> &ServeConfig {
        &self.inner.config
    }

    /// A generation slot, or 503 at once when all are taken.
    pub(super) fn generation_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.inner.generating.clone().try_acquire_owned().map_err(|_| {
            self.metrics().overloaded.inc();
            ApiError::overloaded("every generation slot is busy; retry shortly", 1)
        })
    }

    /// The embedding model (loaded at start by `serve`; on first use in tests).
    pub(super) async fn embedder(&self) -> Result<Arc<dyn tributary_indexer::Embedder>, ApiError> {
        let app = self.app().clone();
        tokio::task::spawn_blocking(move || app.embedder()).await.map_err(ApiError::internal)?.map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "no embedding model");
            ApiError::new("not_ready", "the embedding model is not available")
        })
    }

    /// The query cache (searches and answers embed through a caller's view of it).
    pub(super) async fn query_embedder(&self) -> Result<Arc<tributary_indexer::QueryCache>, ApiError> {
        self.embedder().await?;
        let embedder = self.app().query_embedder().map_err(ApiError::internal)?;
        Ok(embedder)
    }

    /// The answer backend, loaded on first use.
    pub(super) async fn generator(&self) -> Result<Arc<dyn tributary_generator::Generator>, ApiError> {
        let app = self.app().clone();
        tokio::task::spawn_blocking(move || app.answer_backend())
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::generator_unavailable(&e))
    }
}
