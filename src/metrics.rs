//! Prometheus metrics, served at `/metrics` in the text exposition format.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route pattern (e.g. `/api/v1/users/{id}`), never the raw
    /// path, so ids do not explode the number of series.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

impl OutcomeLabel {
    pub fn new(outcome: &str) -> Self {
        Self {
            outcome: outcome.to_owned(),
        }
    }
}

#[derive(Clone)]
pub struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        // 0.5 ms .. ~16 s
        Histogram::new(exponential_buckets(0.0005, 2.0, 16))
    }
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpLabels, Histogram, LatencyBuckets>,
    pub http_in_flight: Gauge,
    pub login_attempts: Family<OutcomeLabel, Counter>,
    pub webhook_attempts: Family<OutcomeLabel, Counter>,
    pub jobs_finished: Family<OutcomeLabel, Counter>,
    pub interactions_created: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("switchboard");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<HttpLabels, Histogram, LatencyBuckets>::new_with_constructor(LatencyBuckets);
        let http_in_flight = Gauge::default();
        let login_attempts = Family::<OutcomeLabel, Counter>::default();
        let webhook_attempts = Family::<OutcomeLabel, Counter>::default();
        let jobs_finished = Family::<OutcomeLabel, Counter>::default();
        let interactions_created = Counter::default();
        r.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_duration.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "HTTP requests being served",
            http_in_flight.clone(),
        );
        r.register(
            "login_attempts",
            "Console sign-in attempts by outcome",
            login_attempts.clone(),
        );
        r.register(
            "webhook_attempts",
            "Webhook delivery attempts by outcome",
            webhook_attempts.clone(),
        );
        r.register(
            "jobs_finished",
            "Job runs by outcome",
            jobs_finished.clone(),
        );
        r.register(
            "interactions_created",
            "Interactions created",
            interactions_created.clone(),
        );
        let build = Family::<Vec<(String, String)>, Gauge>::default();
        build
            .get_or_create(&vec![(
                "version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )])
            .set(1);
        r.register("build_info", "Build information", build);
        Self {
            registry: Arc::new(r),
            http_requests,
            http_duration,
            http_in_flight,
            login_attempts,
            webhook_attempts,
            jobs_finished,
            interactions_created,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
