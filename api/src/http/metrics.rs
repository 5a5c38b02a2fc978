//! Prometheus metrics: requests by route and status, latency per route, and counters of the
//! work behind them (retrieval, generation, ingest, settlement, adapter cache).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub searches: Counter,
    pub answers: Counter,
    pub answer_tokens: Counter,
    pub ingested_documents: Counter,
    pub ingested_chunks: Counter,
    pub duplicate_chunks: Counter,
    pub receipts: Counter,
    pub epochs_closed: Counter,
    pub rate_limited: Counter,
    pub overloaded: Counter,
    query_cache_hits: Gauge,
    query_cache_misses: Gauge,
    adapters_loaded: Gauge,
    adapter_bytes: Gauge,
    adapter_hits: Gauge,
    adapter_loads: Gauge,
    adapter_evictions: Gauge,
    /// The local generator's scheduler, by field of [`tributary_generator::SchedulerStats`].
    scheduler: [Gauge; 9],
}

/// Gauges of the local generator's scheduler: name and help.
const SCHEDULER_GAUGES: [(&str, &str); 9] = [
    ("generator_running", "Answers in the local model's running batch"),
    ("generator_waiting", "Answers waiting for a row of the running batch"),
    ("generator_kv_reserved_bytes", "KV cache bytes the running answers reserve"),
    ("generator_kv_budget_bytes", "KV cache budget of the running batch"),
    ("generator_steps", "Decoding steps run since start"),
    ("generator_step_rows", "Rows decoded since start (over steps: the mean batch size)"),
    ("generator_prefill_tokens", "Prompt tokens run since start"),
    ("generator_refused", "Answers the scheduler refused (queue full or KV budget) since start"),
    ("generator_scheduler_restarts", "Times the scheduler failed outside the model work and started again"),
];

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tributary");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        Metrics {
            searches: counter(&mut registry, "searches", "Searches served"),
            answers: counter(&mut registry, "answers", "Answers generated"),
            answer_tokens: counter(&mut registry, "answer_tokens", "Tokens generated for answers"),
            ingested_documents: counter(&mut registry, "ingested_documents", "Documents stored by uploads"),
            ingested_chunks: counter(&mut registry, "ingested_chunks", "New chunks embedded and indexed"),
            duplicate_chunks: counter(&mut registry, "duplicate_chunks", "Uploaded chunks a Datanet already had"),
            receipts: counter(&mut registry, "receipts", "Receipts recorded"),
            epochs_closed: counter(&mut registry, "epochs_closed", "Epochs closed by settlement"),
            rate_limited: counter(&mut registry, "rate_limited", "Requests refused by a rate limit"),
            overloaded: counter(&mut registry, "overloaded", "Requests refused because the server was busy"),
            query_cache_hits: gauge(&mut registry, "query_cache_hits", "Queries whose embedding was cached"),
            query_cache_misses: gauge(&mut registry, "query_cache_misses", "Queries embedded"),
            adapters_loaded: gauge(&mut registry, "adapters_loaded", "LoRA adapters in the cache"),
            adapter_bytes: gauge(&mut registry, "adapter_cache_bytes", "Bytes of loaded adapters"),
            adapter_hits: gauge(&mut registry, "adapter_cache_hits", "Adapter requests served from memory since start"),
            adapter_loads: gauge(&mut registry, "adapter_loads", "Adapters loaded since start (cache misses)"),
            adapter_evictions: gauge(&mut registry, "adapter_evictions", "Adapters evicted since start"),
            scheduler: SCHEDULER_GAUGES.map(|(name, help)| gauge(&mut registry, name, help)),
            registry,
            requests,
            latency,
        }
    }

    /// Counts what an ingest stored (an upload indexed now, or a contribution accepted).
    pub fn ingested(&self, report: &tributary_indexer::IngestReport) {
        self.ingested_documents.inc_by(report.documents_stored as u64);
        self.ingested_chunks.inc_by(report.new_chunks as u64);
        self.duplicate_chunks.inc_by(report.duplicate_chunks as u64);
    }

    /// The text exposition, with the adapter and query caches and the scheduler read now.
    pub fn render(
        &self,
        adapters: Option<tributary_generator::CacheStats>,
        queries: Option<(u64, u64)>,
        scheduler: Option<tributary_generator::SchedulerStats>,
    ) -> String {
        if let Some(s) = scheduler {
            let values = [
                s.running as u64,
                s.waiting as u64,
                s.kv_reserved_bytes as u64,
                s.kv_budget_bytes as u64,
                s.steps,
                s.step_rows,
                s.prefill_tokens,
                s.refused,
                s.restarts,
            ];
            for (gauge, value) in self.scheduler.iter().zip(values) {
                gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        if let Some((hits, misses)) = queries {
            self.query_cache_hits.set(hits as i64);
            self.query_cache_misses.set(misses as i64);
        }
        if let Some(stats) = adapters {
            self.adapters_loaded.set(stats.loaded as i64);
            self.adapter_bytes.set(stats.bytes as i64);
            self.adapter_hits.set(stats.hits as i64);
            self.adapter_loads.set(stats.loads as i64);
            self.adapter_evictions.set(stats.evictions as i64);
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::error!("metrics did not encode");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A method as a label: the standard ones by name, anything else `other` (a method is whatever
/// token a client sends; each invented one would otherwise be a new series, kept forever).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 7] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
    ];
    KNOWN.iter().find(|(m, _)| m == method).map_or("other", |(_, name)| name)
}

/// Counts and times every request under its route template (not its raw path, which would
/// make one series per Datanet or receipt).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_string();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics.requests.get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status }).inc();
    metrics.latency.get_or_create(&RouteLabels { method, route }).observe(started.elapsed().as_secs_f64());
    response
}
