//! Prometheus metrics, recorded in one place from reviews and reload outcomes. Sits
//! below the server and the allowlist sources, which both record into it.
//!
//! Labels are bounded: never an object name or a host. `kind` is one of the kinds
//! egress-guard knows or `other`; `namespace` is the namespace for the first
//! [`MAX_NAMESPACE_LABELS`] distinct valid namespace names seen, then `other`, so a
//! client posting made-up reviews cannot mint series without end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::admission::{Endpoint, Judgement};
use crate::policy::Code;

/// Distinct `namespace` label values before new namespaces are counted as `other`.
pub const MAX_NAMESPACE_LABELS: usize = 500;

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
    budget_exceeded: IntCounter,
    connections_rejected: IntCounter,
    entries_expiring: IntGaugeVec,
    webhooks_registered: IntGauge,
    registrations: IntCounterVec,
    namespaces: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
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
            webhooks_registered: register(
                &r,
                IntGauge::new(
                    "egress_guard_webhooks_registered",
                    "1 when the last registration of the webhook configurations succeeded, \
                     0 before the first or after a failed one (serve --register-webhooks)",
                )
                .expect("valid metric"),
            ),
            registrations: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "egress_guard_webhook_registrations_total",
                        "Server-side applies of the webhook configurations, by result",
                    ),
                    &["result"],
                )
                .expect("valid metric"),
            ),
            budget_exceeded: register(
                &r,
                IntCounter::new(
                    "egress_guard_review_budget_exceeded_total",
                    "Reviews too complex to evaluate within the work budget or the deadline",
                )
                .expect("valid metric"),
            ),
            connections_rejected: register(
                &r,
                IntCounter::new(
                    "egress_guard_connections_rejected_total",
                    "Connections closed on accept because the connection cap was reached",
                )
                .expect("valid metric"),
            ),
            entries_expiring: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "egress_guard_allowlist_entries_expiring",
                        "Allowlist entries that expire within the window (7d, 30d), or have expired",
                    ),
                    &["window"],
                )
                .expect("valid metric"),
            ),
            registry: r,
            namespaces: Arc::default(),
        }
    }

    /// Records one judged review.
    pub fn record_review(&self, endpoint: Endpoint, j: &Judgement, elapsed: Duration) {
        self.requests
            .with_label_values(&[
                endpoint.as_str(),
                j.operation.as_str(),
                j.kind_label,
                j.answer.as_str(),
            ])
            .inc();
        self.duration
            .with_label_values(&[endpoint.as_str()])
            .observe(elapsed.as_secs_f64());
        let d = &j.decision;
        if d.violations.iter().any(|v| v.code == Code::TooComplex) {
            self.budget_exceeded.inc();
        }
        if endpoint == Endpoint::Validate && !d.violations.is_empty() {
            let namespace = self.namespace_label(&j.namespace);
            for v in &d.violations {
                self.violations
                    .with_label_values(&[namespace.as_str(), v.code.as_str(), d.mode.as_str()])
                    .inc();
            }
        }
        if endpoint == Endpoint::Mutate {
            self.timeouts_added.inc_by(d.patched_routes.len() as u64);
        }
    }

    /// The `namespace` label for `ns`: itself while fewer than [`MAX_NAMESPACE_LABELS`]
    /// distinct namespaces have been seen, `other` beyond that or for a name that is
    /// not a valid namespace name.
    fn namespace_label(&self, ns: &str) -> String {
        if crate::policy::host::check_label(ns).is_err() {
            return "other".to_owned();
        }
        let Ok(mut seen) = self.namespaces.lock() else {
            return "other".to_owned();
        };
        if seen.contains(ns) || (seen.len() < MAX_NAMESPACE_LABELS && seen.insert(ns.to_owned())) {
            ns.to_owned()
        } else {
            "other".to_owned()
        }
    }

    /// Counts the allowlist's entries that have expired or expire within 7 and 30 days
    /// of `now`.
    pub fn record_expiring(&self, allowlist: &crate::policy::Allowlist, now: i64) {
        const DAY: i64 = 86_400;
        let count = |from: i64, to: i64| {
            let n = allowlist
                .expiring_before(to)
                .filter(|n| n.info.expires.as_ref().is_some_and(|e| e.at > from))
                .count();
            i64::try_from(n).unwrap_or(i64::MAX)
        };
        self.entries_expiring
            .with_label_values(&["expired"])
            .set(count(i64::MIN, now));
        self.entries_expiring
            .with_label_values(&["7d"])
            .set(count(now, now + 7 * DAY));
        self.entries_expiring
            .with_label_values(&["30d"])
            .set(count(now, now + 30 * DAY));
    }

    /// Records a connection closed at the connection cap.
    pub fn record_connection_rejected(&self) {
        self.connections_rejected.inc();
    }

    /// Records a request that could not be evaluated.
    pub fn record_bad_request(&self, endpoint: Endpoint, reason: &str, elapsed: Duration) {
        self.bad_requests.with_label_values(&[reason]).inc();
        self.requests
            .with_label_values(&[endpoint.as_str(), "", "", "error"])
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

    /// Records one registration of the webhook configurations.
    pub fn record_registration(&self, ok: bool) {
        self.webhooks_registered.set(i64::from(ok));
        self.registrations
            .with_label_values(&[if ok { "success" } else { "error" }])
            .inc();
    }

    /// The registry every family is in, for a command that adds its own families
    /// (`audit --watch`) to the one `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
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
    use crate::admission::Answer;
    use crate::policy::{Decision, Operation, Violation};

    fn judged(kind_label: &'static str, namespace: &str, violations: usize) -> Judgement {
        let v = Violation {
            code: Code::HostNotAllowed,
            path: "spec.hosts[0]".into(),
            value: "x".into(),
            message: "m".into(),
        };
        Judgement {
            uid: "u".into(),
            kind: kind_label.into(),
            kind_label,
            namespace: namespace.into(),
            name: "n".into(),
            user: "alice".into(),
            operation: Operation::Create,
            dry_run: false,
            codes: String::new(),
            answer: if violations > 0 {
                Answer::Deny
            } else {
                Answer::Allow
            },
            decision: Decision {
                violations: vec![v; violations],
                ..Decision::default()
            },
        }
    }

    #[test]
    fn renders_every_family_after_use() {
        let m = Metrics::new();
        m.record_review(
            Endpoint::Validate,
            &judged("ServiceEntry", "default", 0),
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

    #[test]
    fn namespace_labels_are_capped_and_validated() {
        let m = Metrics::new();
        for i in 0..MAX_NAMESPACE_LABELS + 50 {
            m.record_review(
                Endpoint::Validate,
                &judged("ServiceEntry", &format!("ns-{i}"), 1),
                Duration::ZERO,
            );
        }
        m.record_review(
            Endpoint::Validate,
            &judged("ServiceEntry", "Not A Namespace\n", 1),
            Duration::ZERO,
        );
        m.record_review(
            Endpoint::Validate,
            &judged("ServiceEntry", "ns-0", 1),
            Duration::ZERO,
        );
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("egress_guard_violations_total{"))
            .count();
        assert_eq!(
            series,
            MAX_NAMESPACE_LABELS + 1,
            "one series per admitted namespace plus other"
        );
        assert!(text.contains("egress_guard_violations_total{code=\"EG101\",mode=\"enforce\",namespace=\"other\"} 51"), "{text}");
        assert!(text.contains("namespace=\"ns-0\"} 2"));
    }
}
