//! Prometheus metrics for `/metrics`. Other parts register their own
//! collectors on [`Metrics::registry`].

use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("careline".into()), None).expect("valid registry");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status."),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route and method.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["route", "method"],
        )
        .expect("valid metric");
        registry.register(Box::new(http_requests.clone())).expect("unique metric");
        registry.register(Box::new(http_latency.clone())).expect("unique metric");
        Metrics { registry, http_requests, http_latency }
    }

    /// Counts one request. `route` is the matched route pattern (`/api/patients/{id}`),
    /// never the raw path, so label cardinality stays bounded.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests.with_label_values(&[route, method, &status.to_string()]).inc();
        self.http_latency.with_label_values(&[route, method]).observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
