//! A namespace's PolicyReport (`wgpolicyk8s.io/v1alpha2`, the Policy WG report API that
//! Policy Reporter, Kyverno, Kubewarden and Trivy use), built from decisions. Pure: what
//! `audit --watch` keeps of each violating object ([`ObjectFindings`]) goes in, the
//! report to apply comes out, with a hash of its content so that an unchanged report is
//! never written again.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::policy::{Code, Decision, Kind, Mode};

/// The API group and version of the report.
pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
/// The report's name in every namespace.
pub const NAME: &str = "egress-guard";
/// The label that marks a report as egress-guard's.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "egress-guard");
/// The annotation holding the hash of the report's content.
pub const CONTENT_HASH: &str = "egress-guard.io/content-sha256";
/// The annotation counting results left out of a report that reached [`MAX_RESULTS`].
pub const OMITTED: &str = "egress-guard.io/results-omitted";
/// Results per report: each is at most about 1.5 KiB (paths, values and messages are
/// bounded), so a report stays well below the apiserver's object size limit.
pub const MAX_RESULTS: usize = 500;

/// How a result is reported: `fail` where the webhook enforces, `warn` in audit mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// The object would be denied now.
    Fail,
    /// The object would be admitted with warnings (audit mode).
    Warn,
}

impl Outcome {
    /// The report's `result` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Warn => "warn",
        }
    }

    /// The mode it stands for, as metric labels name it.
    pub fn mode(self) -> &'static str {
        match self {
            Self::Fail => Mode::Enforce.as_str(),
            Self::Warn => Mode::Audit.as_str(),
        }
    }
}

/// The violations of one code on one object: the first one's path, value and message,
/// and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The code.
    pub code: Code,
    /// The first violation's field path.
    pub path: Box<str>,
    /// The first violation's value.
    pub value: Box<str>,
    /// The first violation's message.
    pub message: Box<str>,
    /// Violations of this code on the object (at least 1).
    pub count: u32,
}

/// What a report needs of one violating object, and nothing more: not the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFindings {
    /// The object's `apiVersion` as served.
    pub api_version: Box<str>,
    /// The object's uid.
    pub uid: Box<str>,
    /// Fail or warn, from the decision's effective mode.
    pub outcome: Outcome,
    /// One per code, in the order the codes first appear.
    pub findings: Vec<Finding>,
}

impl ObjectFindings {
    /// What a decision found, or `None` when it found nothing (or skipped the object).
    pub fn from_decision(d: &Decision, api_version: &str, uid: &str) -> Option<Self> {
        if d.skipped.is_some() || d.violations.is_empty() {
            return None;
        }
        let mut findings: Vec<Finding> = Vec::new();
        for v in &d.violations {
            match findings.iter_mut().find(|f| f.code == v.code) {
                Some(f) => f.count = f.count.saturating_add(1),
                None => findings.push(Finding {
                    code: v.code,
                    path: v.path.as_str().into(),
                    value: v.value.as_str().into(),
                    message: v.message.as_str().into(),
                    count: 1,
                }),
            }
        }
        // Violations past those kept are counted on the last code kept.
        if let Some(last) = findings.last_mut() {
            last.count = last
                .count
                .saturating_add(u32::try_from(d.omitted).unwrap_or(u32::MAX));
        }
        Some(Self {
            api_version: api_version.into(),
            uid: uid.into(),
            outcome: if d.mode == Mode::Enforce {
                Outcome::Fail
            } else {
                Outcome::Warn
            },
            findings,
        })
    }
}

/// A `PolicyReport` as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    /// [`API_VERSION`].
    pub api_version: &'static str,
    /// `PolicyReport`.
    pub kind: &'static str,
    /// Name, namespace, label and annotations.
    pub metadata: Metadata,
    /// Counts by result.
    pub summary: Summary,
    /// One per violating object and code.
    pub results: Vec<ReportResult>,
}

/// The report's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metadata {
    /// [`NAME`].
    pub name: &'static str,
    /// The namespace reported on.
    pub namespace: String,
    /// [`MANAGED_BY`].
    pub labels: BTreeMap<&'static str, &'static str>,
    /// [`CONTENT_HASH`] and, when results were left out, [`OMITTED`].
    pub annotations: BTreeMap<&'static str, String>,
}

/// Results by outcome, as the report API counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Always 0: passing objects are not listed.
    pub pass: usize,
    /// Results in enforced namespaces, listed or not.
    pub fail: usize,
    /// Results in audit-mode namespaces, listed or not.
    pub warn: usize,
    /// Always 0.
    pub error: usize,
    /// Always 0.
    pub skip: usize,
}

/// One violating object and code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportResult {
    /// `egress-guard`.
    pub source: &'static str,
    /// `egress-guard`.
    pub policy: &'static str,
    /// The violation code, e.g. `EG101`.
    pub rule: &'static str,
    /// What the code's band is about.
    pub category: &'static str,
    /// `fail` or `warn`.
    pub result: &'static str,
    /// Counts towards the summary.
    pub scored: bool,
    /// Path, value and message of the first violation of the code.
    pub message: String,
    /// The object.
    pub resources: [Resource; 1],
    /// `path` and `value` of the first violation, and `violations` when there are more.
    pub properties: BTreeMap<&'static str, String>,
}

/// The object a result is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// As served.
    pub api_version: String,
    /// Kind.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
}

impl PolicyReport {
    /// The hash of the content (summary and results), as written in [`CONTENT_HASH`].
    pub fn content_hash(&self) -> &str {
        self.metadata
            .annotations
            .get(CONTENT_HASH)
            .map_or("", String::as_str)
    }
}

/// The category of a code's band.
fn category(code: Code) -> &'static str {
    match code.as_str().as_bytes().get(2) {
        Some(b'1') => "egress allowlist",
        Some(b'2') => "Istio validity",
        Some(b'3') => "proxy bypass",
        _ => "evaluation",
    }
}

/// The report for `namespace` from its violating objects, in the order given (the
/// caller's: kind, then name); `None` when there are none, and the report is to be
/// deleted.
pub fn build<'a>(
    namespace: &str,
    objects: impl IntoIterator<Item = (Kind, &'a str, &'a ObjectFindings)>,
) -> Option<PolicyReport> {
    let mut summary = Summary::default();
    let mut results = Vec::new();
    let mut omitted = 0usize;
    for (kind, name, o) in objects {
        for f in &o.findings {
            match o.outcome {
                Outcome::Fail => summary.fail += 1,
                Outcome::Warn => summary.warn += 1,
            }
            if results.len() == MAX_RESULTS {
                omitted += 1;
                continue;
            }
            let mut properties =
                BTreeMap::from([("path", f.path.to_string()), ("value", f.value.to_string())]);
            if f.count > 1 {
                properties.insert("violations", f.count.to_string());
            }
            let more = match f.count {
                0 | 1 => String::new(),
                n => format!(" (and {} more {} violations)", n - 1, f.code),
            };
            results.push(ReportResult {
                source: NAME,
                policy: NAME,
                rule: f.code.as_str(),
                category: category(f.code),
                result: o.outcome.as_str(),
                scored: true,
                message: format!("{} {:?}: {}{more}", f.path, f.value, f.message),
                resources: [Resource {
                    api_version: o.api_version.to_string(),
                    kind: kind.as_str(),
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    uid: o.uid.to_string(),
                }],
                properties,
            });
        }
    }
    if results.is_empty() {
        return None;
    }
    let mut annotations = BTreeMap::new();
    if omitted > 0 {
        annotations.insert(OMITTED, omitted.to_string());
    }
    let hashed = serde_json::to_vec(&(&summary, &results, &annotations)).unwrap_or_default();
    let hash = Sha256::digest(&hashed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    annotations.insert(CONTENT_HASH, hash);
    Some(PolicyReport {
        api_version: API_VERSION,
        kind: "PolicyReport",
        metadata: Metadata {
            name: NAME,
            namespace: namespace.to_owned(),
            labels: BTreeMap::from([MANAGED_BY]),
            annotations,
        },
        summary,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Skip, Violation};
    use serde_json::json;

    fn mk_violation(code: Code, path: &str, value: &str) -> Violation {
        Violation::new(
            code,
            path,
            value,
            "not in the allowlist for namespace team-a",
        )
    }

    fn mk_decision(mode: Mode, violations: Vec<Violation>) -> Decision {
        Decision {
            mode,
            violations,
            ..Decision::default()
        }
    }

    fn mk_findings(mode: Mode, violations: Vec<Violation>) -> ObjectFindings {
        ObjectFindings::from_decision(
            &mk_decision(mode, violations),
            "networking.istio.io/v1",
            "uid-1",
        )
        .unwrap()
    }

    #[test]
    fn nothing_found_is_nothing_kept() {
        assert_eq!(
            ObjectFindings::from_decision(&mk_decision(Mode::Enforce, vec![]), "v1", "u"),
            None
        );
        let mut skipped = mk_decision(
            Mode::Enforce,
            vec![mk_violation(Code::HostNotAllowed, "spec.hosts[0]", "a")],
        );
        skipped.skipped = Some(Skip::ExemptNamespace);
        assert_eq!(ObjectFindings::from_decision(&skipped, "v1", "u"), None);
        assert_eq!(build("team-a", []), None, "a clean namespace has no report");
    }

    #[test]
    fn one_result_per_object_and_code_with_the_first_path_and_value() {
        let se = mk_findings(
            Mode::Enforce,
            vec![
                mk_violation(Code::HostNotAllowed, "spec.hosts[0]", "a.example"),
                mk_violation(Code::PortNotAllowed, "spec.ports[0].number", "25"),
                mk_violation(Code::HostNotAllowed, "spec.hosts[1]", "b.example"),
            ],
        );
        let report = build("team-a", [(Kind::ServiceEntry, "exfil", &se)]).unwrap();
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(v["kind"], "PolicyReport");
        assert_eq!(v["metadata"]["name"], "egress-guard");
        assert_eq!(v["metadata"]["namespace"], "team-a");
        assert_eq!(
            v["metadata"]["labels"],
            json!({"app.kubernetes.io/managed-by": "egress-guard"})
        );
        assert_eq!(
            v["summary"],
            json!({"pass": 0, "fail": 2, "warn": 0, "error": 0, "skip": 0})
        );
        assert_eq!(
            v["results"][0],
            json!({
                "source": "egress-guard",
                "policy": "egress-guard",
                "rule": "EG101",
                "category": "egress allowlist",
                "result": "fail",
                "scored": true,
                "message": "spec.hosts[0] \"a.example\": not in the allowlist for namespace team-a (and 1 more EG101 violations)",
                "resources": [{
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "ServiceEntry",
                    "namespace": "team-a",
                    "name": "exfil",
                    "uid": "uid-1",
                }],
                "properties": {"path": "spec.hosts[0]", "value": "a.example", "violations": "2"},
            })
        );
        assert_eq!(v["results"][1]["rule"], "EG104");
        assert_eq!(
            v["results"][1]["properties"],
            json!({"path": "spec.ports[0].number", "value": "25"})
        );
        assert_eq!(v["results"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn audit_mode_warns_and_enforce_fails() {
        let enforced = mk_findings(
            Mode::Enforce,
            vec![mk_violation(Code::HostNotAllowed, "spec.hosts[0]", "a")],
        );
        let audited = mk_findings(
            Mode::Audit,
            vec![mk_violation(
                Code::AllowAnyOutbound,
                "spec.outboundTrafficPolicy.mode",
                "ALLOW_ANY",
            )],
        );
        let report = build(
            "team-a",
            [
                (Kind::ServiceEntry, "a", &enforced),
                (Kind::Sidecar, "default", &audited),
            ],
        )
        .unwrap();
        let results: Vec<(&str, &str, &str)> = report
            .results
            .iter()
            .map(|r| (r.rule, r.result, r.category))
            .collect();
        assert_eq!(
            results,
            [
                ("EG101", "fail", "egress allowlist"),
                ("EG301", "warn", "proxy bypass")
            ]
        );
        assert_eq!((report.summary.fail, report.summary.warn), (1, 1));
    }

    #[test]
    fn omitted_violations_count_and_texts_stay_bounded() {
        let mut d = mk_decision(
            Mode::Enforce,
            vec![mk_violation(
                Code::HostNotAllowed,
                &"p".repeat(5000),
                &"v".repeat(5000),
            )],
        );
        d.omitted = 41;
        let o = ObjectFindings::from_decision(&d, "v1", "u").unwrap();
        assert_eq!(o.findings[0].count, 42);
        let r = build("ns", [(Kind::Service, "s", &o)]).unwrap();
        let res = &r.results[0];
        assert!(res.properties["path"].len() <= crate::policy::decision::MAX_TEXT);
        assert!(res.properties["value"].len() <= crate::policy::decision::MAX_VALUE);
        assert!(res.message.len() < 2048, "{}", res.message.len());
        assert_eq!(res.properties["violations"], "42");
    }

    #[test]
    fn a_report_is_capped_and_its_summary_counts_everything() {
        let o = mk_findings(
            Mode::Enforce,
            vec![mk_violation(Code::HostNotAllowed, "spec.hosts[0]", "a")],
        );
        let names: Vec<String> = (0..MAX_RESULTS + 7).map(|i| format!("se-{i:04}")).collect();
        let r = build(
            "ns",
            names.iter().map(|n| (Kind::ServiceEntry, n.as_str(), &o)),
        )
        .unwrap();
        assert_eq!(r.results.len(), MAX_RESULTS);
        assert_eq!(r.summary.fail, MAX_RESULTS + 7);
        assert_eq!(r.metadata.annotations[OMITTED], "7");
    }

    #[test]
    fn the_hash_follows_the_content_only() {
        let o = mk_findings(
            Mode::Enforce,
            vec![mk_violation(Code::HostNotAllowed, "spec.hosts[0]", "a")],
        );
        let a = build("ns", [(Kind::ServiceEntry, "a", &o)]).unwrap();
        let again = build("ns", [(Kind::ServiceEntry, "a", &o)]).unwrap();
        assert_eq!(a.content_hash(), again.content_hash());
        assert_eq!(a.content_hash().len(), 64);
        let renamed = build("ns", [(Kind::ServiceEntry, "b", &o)]).unwrap();
        assert_ne!(a.content_hash(), renamed.content_hash());
        let warned = ObjectFindings {
            outcome: Outcome::Warn,
            ..o.clone()
        };
        let w = build("ns", [(Kind::ServiceEntry, "a", &warned)]).unwrap();
        assert_ne!(a.content_hash(), w.content_hash());
    }
}
