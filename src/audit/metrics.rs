//! The metrics of `audit --watch`, in the same registry as the allowlist's (so one
//! `/metrics` shows both). Labels are bounded: a violation code, a mode, a kind, an
//! operation; never a namespace, an object name or a host.

use prometheus::{Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::live::Live;
use crate::policy::Kind;

/// Every `egress_guard_audit_*` family.
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    live: IntGaugeVec,
    violating: IntGauge,
    last_pass: IntGauge,
    passes: prometheus::IntCounter,
    pass_seconds: Gauge,
    judged: IntCounterVec,
    writes: IntCounterVec,
    watch_errors: IntCounterVec,
    next_expiry: IntGauge,
}

/// Why a family could not be registered: a name clash, a programming error.
pub type Error = prometheus::Error;

impl AuditMetrics {
    /// Creates the families and registers them in `r`.
    pub fn register(r: &Registry) -> Result<Self, Error> {
        fn add<T: prometheus::core::Collector + Clone + 'static>(
            r: &Registry,
            c: T,
        ) -> Result<T, Error> {
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        Ok(Self {
            live: add(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "egress_guard_audit_live_violations",
                        "PolicyReport results now: live objects violating each code, by mode",
                    ),
                    &["code", "mode"],
                )?,
            )?,
            violating: add(
                r,
                IntGauge::new(
                    "egress_guard_audit_objects_violating",
                    "Live objects with at least one violation",
                )?,
            )?,
            last_pass: add(
                r,
                IntGauge::new(
                    "egress_guard_audit_last_full_pass_timestamp_seconds",
                    "When the reports of the last full pass (every kind listed and judged) were all published",
                )?,
            )?,
            passes: add(
                r,
                prometheus::IntCounter::new(
                    "egress_guard_audit_full_passes_total",
                    "Full passes (every kind listed and judged) whose reports were all published",
                )?,
            )?,
            pass_seconds: add(
                r,
                Gauge::new(
                    "egress_guard_audit_full_pass_duration_seconds",
                    "How long the last full pass took",
                )?,
            )?,
            judged: add(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "egress_guard_audit_objects_judged_total",
                        "Objects judged (listed or changed), by kind",
                    ),
                    &["kind"],
                )?,
            )?,
            writes: add(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "egress_guard_audit_report_writes_total",
                        "PolicyReport writes by operation (apply, delete) and result",
                    ),
                    &["operation", "result"],
                )?,
            )?,
            watch_errors: add(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "egress_guard_audit_watch_errors_total",
                        "List and watch errors, by kind (each is retried with backoff)",
                    ),
                    &["kind"],
                )?,
            )?,
            next_expiry: add(
                r,
                IntGauge::new(
                    "egress_guard_audit_next_expiry_timestamp_seconds",
                    "When the next allowlist entry expires and everything is judged again (0: none)",
                )?,
            )?,
        })
    }

    /// Sets the live gauges from `live`.
    pub fn record_live(&self, live: &Live) {
        for ((code, outcome), n) in live.counts() {
            self.live
                .with_label_values(&[code.as_str(), outcome.mode()])
                .set(*n);
        }
        self.violating
            .set(i64::try_from(live.len()).unwrap_or(i64::MAX));
    }

    /// Counts one object judged.
    pub fn record_judged(&self, kind: Kind) {
        self.judged.with_label_values(&[kind.as_str()]).inc();
    }

    /// Records a full pass whose reports were all published at `at` (seconds since the
    /// epoch), `took` after it started.
    pub fn record_full_pass(&self, at: i64, took: std::time::Duration) {
        self.passes.inc();
        self.last_pass.set(at);
        self.pass_seconds.set(took.as_secs_f64());
    }

    /// Counts one report write.
    pub fn record_write(&self, operation: &str, ok: bool) {
        self.writes
            .with_label_values(&[operation, if ok { "success" } else { "error" }])
            .inc();
    }

    /// Counts one list or watch error.
    pub fn record_watch_error(&self, kind: Kind) {
        self.watch_errors.with_label_values(&[kind.as_str()]).inc();
    }

    /// Records the next expiry (`None`: no entry expires).
    pub fn record_next_expiry(&self, at: Option<i64>) {
        self.next_expiry.set(at.unwrap_or(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::{Finding, ObjectFindings, Outcome};
    use crate::policy::Code;

    #[test]
    fn live_violations_by_code_and_mode_and_nothing_unbounded() {
        let m = crate::metrics::Metrics::new();
        let a = AuditMetrics::register(m.registry()).unwrap();
        assert!(
            AuditMetrics::register(m.registry()).is_err(),
            "registering twice is a name clash"
        );
        let mut live = Live::default();
        let found = |outcome| {
            Some(ObjectFindings {
                api_version: "v1".into(),
                uid: "u".into(),
                outcome,
                findings: vec![Finding {
                    code: Code::HostNotAllowed,
                    path: "p".into(),
                    value: "secret-host.example".into(),
                    message: "m".into(),
                    count: 3,
                }],
            })
        };
        live.judged(Kind::ServiceEntry, "team-a", "exfil", found(Outcome::Fail));
        live.judged(Kind::ServiceEntry, "team-b", "exfil", found(Outcome::Warn));
        live.judged(Kind::ServiceEntry, "team-c", "exfil", found(Outcome::Fail));
        a.record_live(&live);
        a.record_judged(Kind::ServiceEntry);
        a.record_write("apply", true);
        a.record_full_pass(1_700_000_000, std::time::Duration::from_millis(1500));
        let text = m.render();
        for series in [
            "egress_guard_audit_live_violations{code=\"EG101\",mode=\"enforce\"} 2",
            "egress_guard_audit_live_violations{code=\"EG101\",mode=\"audit\"} 1",
            "egress_guard_audit_objects_violating 3",
            "egress_guard_audit_objects_judged_total{kind=\"ServiceEntry\"} 1",
            "egress_guard_audit_report_writes_total{operation=\"apply\",result=\"success\"} 1",
            "egress_guard_audit_last_full_pass_timestamp_seconds 1700000000",
            "egress_guard_audit_full_pass_duration_seconds 1.5",
            "egress_guard_audit_full_passes_total 1",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
        let readme = include_str!("../../README.md");
        for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = family.split(' ').next().unwrap_or("");
            if name.starts_with("egress_guard_audit_") {
                assert!(
                    readme.contains(&format!("| `{name}` |")),
                    "README does not document {name}"
                );
            }
        }
        for leak in ["team-a", "exfil", "secret-host"] {
            assert!(!text.contains(leak), "{leak} in a label:\n{text}");
        }
        live.deleted(Kind::ServiceEntry, "team-a", "exfil");
        live.deleted(Kind::ServiceEntry, "team-c", "exfil");
        a.record_live(&live);
        assert!(
            m.render()
                .contains("egress_guard_audit_live_violations{code=\"EG101\",mode=\"enforce\"} 0")
        );
    }
}
