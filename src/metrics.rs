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
    /// The routing counters of this node, rendered as `switchboard_acd_*`
    /// gauges at each scrape (share it with `Acd::with_metrics`).
    pub acd: Arc<crate::acd::metrics::Store>,
    /// IVR flows on calls (share it with `Flows::new`).
    pub flows: FlowMetrics,
}

/// IVR flow sessions by how they ended, and the time of each step.
#[derive(Clone, Debug)]
pub struct FlowMetrics {
    pub sessions: Family<OutcomeLabel, Counter>,
    pub step_seconds: Histogram,
}

impl Default for FlowMetrics {
    fn default() -> Self {
        FlowMetrics {
            sessions: Family::default(),
            // 10 µs to about 160 ms.
            step_seconds: Histogram::new(exponential_buckets(0.00001, 2.0, 15)),
        }
    }
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
        let flows = FlowMetrics::default();
        r.register(
            "flow_sessions",
            "IVR flow sessions on calls by end (queue, transfer, hangup, fallback, caller_left)",
            flows.sessions.clone(),
        );
        r.register(
            "flow_step_duration_seconds",
            "Time of one IVR flow step (a replay to the next command)",
            flows.step_seconds.clone(),
        );
        let acd = Arc::new(crate::acd::metrics::Store::new());
        r.register_collector(Box::new(AcdCollector(acd.clone())));
        Self {
            registry: Arc::new(r),
            http_requests,
            http_duration,
            http_in_flight,
            login_attempts,
            webhook_attempts,
            jobs_finished,
            interactions_created,
            acd,
            flows,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    tenant: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    tenant: String,
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    tenant: String,
    status: String,
}

/// Renders the routing figures (`crate::acd::metrics`) at scrape time:
/// per queue and per agent, labelled by ids (names would multiply series
/// when renamed). Figures not defined yet (no answer yet: no ASA) are left
/// out rather than reported as 0.
#[derive(Debug)]
struct AcdCollector(Arc<crate::acd::metrics::Store>);

impl prometheus_client::collector::Collector for AcdCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        let now = crate::acd::service::now_ms();
        let views: Vec<_> = self
            .0
            .tenants()
            .into_iter()
            .filter_map(|t| self.0.view(t, now).map(|v| (t, v)))
            .collect();
        type QueueFigure = fn(&crate::acd::metrics::QueueMetrics) -> Option<f64>;
        let queue_gauges: [(&str, &str, QueueFigure); 6] = [
            (
                "acd_queue_waiting",
                "Interactions waiting in the queue",
                |q| Some(q.waiting as f64),
            ),
            (
                "acd_queue_longest_wait_seconds",
                "How long the longest-waiting interaction has waited",
                |q| Some(q.longest_wait_secs),
            ),
            (
                "acd_queue_service_level_ratio",
                "Answered within the threshold over answered plus abandoned, since midnight UTC on this node",
                |q| q.service_level,
            ),
            (
                "acd_queue_asa_seconds",
                "Average speed of answer since midnight UTC on this node",
                |q| q.asa_secs,
            ),
            (
                "acd_queue_abandon_ratio",
                "Abandoned over answered plus abandoned since midnight UTC on this node",
                |q| q.abandon_rate,
            ),
            (
                "acd_queue_aht_seconds",
                "Average handle time (answer to end of wrap-up) since midnight UTC on this node",
                |q| q.aht_secs,
            ),
        ];
        for (name, help, f) in queue_gauges {
            let mut m = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (t, v) in &views {
                for q in &v.queues {
                    if let Some(x) = f(q) {
                        let labels = QueueLabels {
                            tenant: t.to_string(),
                            queue: q.queue_id.to_string(),
                        };
                        ConstGauge::new(x).encode(m.encode_family(&labels)?)?;
                    }
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "acd_agent_occupancy_ratio",
                "Time busy or in wrap-up over time signed in, since midnight UTC on this node",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (t, v) in &views {
                for a in &v.agents {
                    if let Some(x) = a.occupancy {
                        let labels = AgentLabels {
                            tenant: t.to_string(),
                            agent: a.agent_id.to_string(),
                        };
                        ConstGauge::new(x).encode(m.encode_family(&labels)?)?;
                    }
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "acd_agent_handled",
                "Interactions whose work ended, since midnight UTC on this node",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (t, v) in &views {
                for a in &v.agents {
                    let labels = AgentLabels {
                        tenant: t.to_string(),
                        agent: a.agent_id.to_string(),
                    };
                    prometheus_client::metrics::counter::ConstCounter::new(a.handled)
                        .encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "acd_agents",
                "Agents by status",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (t, v) in &views {
                let mut by: std::collections::BTreeMap<&str, i64> = Default::default();
                for s in ["idle", "busy", "wrap_up", "away", "offline"] {
                    by.insert(s, 0);
                }
                for a in &v.agents {
                    *by.entry(a.status.as_str()).or_default() += 1;
                }
                for (s, n) in by {
                    let labels = StatusLabels {
                        tenant: t.to_string(),
                        status: s.to_owned(),
                    };
                    ConstGauge::new(n).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
