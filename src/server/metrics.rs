//! Prometheus metrics, recorded in one place from decisions and reload outcomes.
//! Labels are bounded: never an object name or a host.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::admission::Endpoint;
use crate::policy::Decision;

/// Every egress-guard metric family.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    violations: IntCounterVec,
    timeouts_added: IntCounter,
    bad_requests: IntCounterVec,
    allowlist_entries: IntGauge,
    allowlist_reloads: IntCounterVec,
    allowlist_info: IntGaugeVec,
    allowlist_load_seconds: Histogram,
    tls_reloads: IntCounterVec,
    tls_expiry: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// How a request ended, for the `decision` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with nothing to report.
    Allow,
    /// Denied.
    Deny,
    /// Allowed with violations reported (audit mode or unchanged spec).
    Audit,
    /// Allowed with a patch.
    Patch,
    /// Not checked (DELETE, other kinds, exempt namespace).
    Skip,
    /// Could not be judged (bad request).
    Error,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Audit => "audit",
            Outcome::Patch => "patch",
            Outcome::Skip => "skip",
            Outcome::Error => "error",
        }
    }

    /// Classifies a decision as answered on `endpoint`.
    pub fn of(endpoint: Endpoint, d: &Decision) -> Self {
        if d.skipped.is_some() {
            return Outcome::Skip;
        }
        match endpoint {
            Endpoint::Mutate if d.patch().is_some() => Outcome::Patch,
            Endpoint::Mutate => Outcome::Allow,
            Endpoint::Validate if !d.allowed() => Outcome::Deny,
            Endpoint::Validate if d.audited() => Outcome::Audit,
            Endpoint::Validate => Outcome::Allow,
        }
    }
}

#[allow(clippy::expect_used)] // metric definitions are static; a failure is a programming error caught by tests
fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    #[allow(clippy::expect_used)] // static metric definitions, exercised by every test
    pub fn new() -> Self {
        let r = Registry::new();
        let buckets = vec![
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 1.0,
        ];
        Self {
            requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "egress_guard_requests_total",
                        "Admission requests by endpoint, operation, kind and decision",
                    ),
                    &["endpoint", "operation", "kind", "decision"],
                )
                .expect("valid metric"),
            ),
            duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "egress_guard_request_duration_seconds",
                        "Time from request body read to response encoded",
                    )
                    .buckets(buckets),
                    &["endpoint"],
                )
                .expect("valid metric"),
            ),
            violations: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "egress_guard_violations_total",
                        "Violations found on /validate by namespace, code and mode",
                    ),
                    &["namespace", "code", "mode"],
                )
                .expect("valid metric"),
            ),
            timeouts_added: register(
                &r,
                IntCounter::new(
                    "egress_guard_timeouts_added_total",
                    "Default timeouts added to VirtualService routes",
                )
                .expect("valid metric"),
            ),
            bad_requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "egress_guard_bad_requests_total",
                        "Requests rejected before evaluation, by reason",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            allowlist_entries: register(
                &r,
                IntGauge::new(
                    "egress_guard_allowlist_entries",
                    "Host and CIDR entries in the loaded allowlist",
                )
                .expect("valid metric"),
            ),
            allowlist_reloads: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "egress_guard_allowlist_reloads_total",
                        "Allowlist loads by result",
                    ),
                    &["result"],
                )
                .expect("valid metric"),
            ),
            allowlist_info: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "egress_guard_allowlist_info",
                        "The loaded allowlist's revision and SHA-256 (value 1)",
                    ),
                    &["revision", "sha256"],
                )
                .expect("valid metric"),
            ),
            allowlist_load_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "egress_guard_allowlist_load_seconds",
                        "Time to parse and compile an allowlist",
                    )
                    .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
                )
                .expect("valid metric"),
            ),
            tls_reloads: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "egress_guard_tls_reloads_total",
                        "Serving certificate loads by result",
                    ),
                    &["result"],
                )
                .expect("valid metric"),
            ),
            tls_expiry: register(
                &r,
                IntGauge::new(
                    "egress_guard_tls_cert_expiry_timestamp_seconds",
                    "notAfter of the serving certificate in use, seconds since the epoch",
                )
                .expect("valid metric"),
            ),
            registry: r,
        }
    }

    /// Records one answered review; returns how it was classified, for the log line.
    pub fn record_review(
        &self,
        endpoint: Endpoint,
        operation: &str,
        kind: &str,
        namespace: &str,
        d: &Decision,
        elapsed: Duration,
    ) -> Outcome {
        let outcome = Outcome::of(endpoint, d);
        self.requests
            .with_label_values(&[endpoint.as_str(), operation, kind, outcome.as_str()])
            .inc();
        self.duration
            .with_label_values(&[endpoint.as_str()])
            .observe(elapsed.as_secs_f64());
        if endpoint == Endpoint::Validate {
            for v in &d.violations {
                self.violations
                    .with_label_values(&[namespace, v.code.as_str(), d.mode.as_str()])
                    .inc();
            }
        }
        if endpoint == Endpoint::Mutate {
            self.timeouts_added.inc_by(d.patched_routes.len() as u64);
        }
        outcome
    }

    /// Records a request that could not be evaluated.
    pub fn record_bad_request(&self, endpoint: Endpoint, reason: &str, elapsed: Duration) {
        self.bad_requests.with_label_values(&[reason]).inc();
        self.requests
            .with_label_values(&[endpoint.as_str(), "", "", Outcome::Error.as_str()])
            .inc();
        self.duration
            .with_label_values(&[endpoint.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    /// Records a successful allowlist load.
    pub fn record_allowlist_loaded(
        &self,
        entries: usize,
        revision: &str,
        sha256: &str,
        took: Duration,
    ) {
        self.allowlist_reloads.with_label_values(&["success"]).inc();
        self.allowlist_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.allowlist_info.reset();
        self.allowlist_info
            .with_label_values(&[revision, sha256])
            .set(1);
        self.allowlist_load_seconds.observe(took.as_secs_f64());
    }

    /// Records a rejected allowlist (the previous one stays in force).
    pub fn record_allowlist_error(&self) {
        self.allowlist_reloads.with_label_values(&["error"]).inc();
    }

    /// Records a serving-certificate load.
    pub fn record_tls_reload(&self, ok: bool) {
        self.tls_reloads
            .with_label_values(&[if ok { "success" } else { "error" }])
            .inc();
    }

    /// Records when the serving certificate in use expires.
    pub fn record_tls_expiry(&self, not_after: Option<i64>) {
        if let Some(t) = not_after {
            self.tls_expiry.set(t);
        }
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# error encoding metrics: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_after_use() {
        let m = Metrics::new();
        m.record_review(
            Endpoint::Validate,
            "CREATE",
            "ServiceEntry",
            "default",
            &Decision::default(),
            Duration::from_micros(80),
        );
        m.record_bad_request(Endpoint::Validate, "malformed", Duration::from_micros(5));
        m.record_allowlist_loaded(12, "42", "abc", Duration::from_millis(3));
        m.record_allowlist_error();
        m.record_tls_reload(true);
        let text = m.render();
        for family in [
            "egress_guard_requests_total{decision=\"allow\",endpoint=\"validate\",kind=\"ServiceEntry\",operation=\"CREATE\"} 1",
            "egress_guard_request_duration_seconds_bucket",
            "egress_guard_bad_requests_total{reason=\"malformed\"} 1",
            "egress_guard_allowlist_entries 12",
            "egress_guard_allowlist_reloads_total{result=\"error\"} 1",
            "egress_guard_allowlist_info{revision=\"42\",sha256=\"abc\"} 1",
            "egress_guard_tls_reloads_total{result=\"success\"} 1",
        ] {
            assert!(text.contains(family), "missing {family} in\n{text}");
        }
    }
}
