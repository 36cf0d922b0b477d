//! Prometheus metrics for `/metrics`. Other parts register their own
//! collectors on [`Metrics::registry`].

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The media type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    /// Connections open now (all kinds: requests, event streams, WebSockets).
    connections_open: IntGauge,
    /// Connections refused at accept, by cap (`total`, `per_address`).
    connections_refused: IntCounterVec,
    /// Connections the server ended, by why (`idle`, `header_timeout`, `error`, `dropped`).
    connections_closed: IntCounterVec,
    /// Failed `accept` calls (out of file descriptors, for one).
    accept_errors: IntCounter,
    /// Wrong passwords, by whether the device signed in as that user before.
    login_failures: IntCounterVec,
    /// Runs of failed sign-ins of one user from unknown devices that started its delay (password guessing).
    login_guessing: IntCounter,
    /// Contact starts refused by the limits, by which (`phone`, `address`, `overall`).
    contacts_refused: IntCounterVec,
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
        let connections_open =
            IntGauge::new("http_connections_open", "HTTP connections open now.").expect("valid metric");
        let connections_refused = IntCounterVec::new(
            Opts::new("http_connections_refused_total", "HTTP connections refused at accept, by cap."),
            &["reason"],
        )
        .expect("valid metric");
        let connections_closed = IntCounterVec::new(
            Opts::new("http_connections_closed_total", "HTTP connections the server ended, by why."),
            &["reason"],
        )
        .expect("valid metric");
        let accept_errors =
            IntCounter::new("http_accept_errors_total", "Failed accepts (e.g. out of file descriptors).")
                .expect("valid metric");
        let contacts_refused = IntCounterVec::new(
            Opts::new("contact_starts_refused_total", "Contact starts refused by the limits, by which limit."),
            &["limit"],
        )
        .expect("valid metric");
        let login_failures = IntCounterVec::new(
            Opts::new("login_failures_total", "Wrong passwords, by device (`known`: signed in as that user before)."),
            &["device"],
        )
        .expect("valid metric");
        let login_guessing = IntCounter::new(
            "login_guessing_total",
            "Users whose sign-ins from unknown devices became delayed by repeated failures (password guessing).",
        )
        .expect("valid metric");
        registry.register(Box::new(login_failures.clone())).expect("unique metric");
        registry.register(Box::new(login_guessing.clone())).expect("unique metric");
        registry.register(Box::new(connections_open.clone())).expect("unique metric");
        registry.register(Box::new(connections_refused.clone())).expect("unique metric");
        registry.register(Box::new(connections_closed.clone())).expect("unique metric");
        registry.register(Box::new(accept_errors.clone())).expect("unique metric");
        registry.register(Box::new(contacts_refused.clone())).expect("unique metric");
        Metrics {
            registry,
            http_requests,
            http_latency,
            connections_open,
            connections_refused,
            connections_closed,
            accept_errors,
            contacts_refused,
            login_failures,
            login_guessing,
        }
    }

    pub fn login_failed(&self, known_device: bool) {
        self.login_failures.with_label_values(&[if known_device { "known" } else { "unknown" }]).inc();
    }

    pub fn login_guessing(&self) {
        self.login_guessing.inc();
    }

    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub fn connection_refused(&self, reason: &str) {
        self.connections_refused.with_label_values(&[reason]).inc();
    }

    pub fn connection_ended(&self, reason: &str) {
        self.connections_closed.with_label_values(&[reason]).inc();
    }

    pub fn accept_error(&self) {
        self.accept_errors.inc();
    }

    pub fn contact_refused(&self, limit: &str) {
        self.contacts_refused.with_label_values(&[limit]).inc();
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
