//! `egress-guard audit --watch` against the real kube-apiserver of `../shared/kube`: the
//! built binary watches one test namespace, reads its allowlist from a ConfigMap in
//! another, and keeps that namespace's PolicyReport. Revoking a grant, an entry
//! expiring by the clock, restoring it, audit mode and deleting an object each show in
//! the report, and nothing writes to the objects judged.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::apiserver::{Kube, TestNamespace};
use serde_json::Value;

/// The issue's bound: a revoked grant shows within 30 s.
const WITHIN: Duration = Duration::from_secs(30);

/// A running `audit --watch`, killed when dropped.
struct AuditWatch {
    child: Child,
    stderr: PathBuf,
    metrics: String,
    _dir: tempfile::TempDir,
}

impl AuditWatch {
    /// Starts `audit --watch -n <objects> --allowlist-configmap <cm>` and waits until its
    /// first pass is published (`/readyz`).
    async fn start(kube: &Kube, objects: &TestNamespace, cm: &str) -> AuditWatch {
        egress_guard::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
            .args(["audit", "--watch", "--namespace", &objects.name])
            .args([
                "--allowlist-configmap",
                cm,
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .env_clear()
            .env("KUBECONFIG", &kube.kubeconfig)
            .env("HOME", dir.path())
            .env("EGRESS_GUARD_LOG_LEVEL", "info,egress_guard=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut w = AuditWatch {
            child,
            stderr,
            metrics: String::new(),
            _dir: dir,
        };
        let addr = kube.wait_for("audit --watch to log its metrics address", WITHIN, || {
            let log = w.log();
            assert!(w.child.try_wait().unwrap().is_none(), "exited:\n{log}");
            let (_, rest) = log.split_once("metrics=")?;
            Some(rest.split_whitespace().next()?.to_owned())
        });
        w.metrics = format!("http://{addr}");
        let ready = format!("{}/readyz", w.metrics);
        common::eventually(WITHIN, || {
            let ready = ready.clone();
            async move { matches!(reqwest::get(&ready).await, Ok(r) if r.status() == 200) }
        })
        .await;
        w
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn metric(&self, series: &str) -> f64 {
        common::metric(&self.metrics().await, series).unwrap_or(0.0)
    }

    /// Waits until a full pass after the `before`-th has published its reports.
    async fn wait_for_pass(&self, before: f64) {
        let deadline = Instant::now() + WITHIN;
        while self.metric("egress_guard_audit_full_passes_total").await <= before {
            assert!(Instant::now() < deadline, "no full pass:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for AuditWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn allowlist_cm(ns: &TestNamespace, allowlist: &str) -> String {
    let data = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "allowlist", "namespace": ns.name},
        "data": {"allowlist.yaml": allowlist},
    });
    data.to_string()
}

fn service_entry(ns: &TestNamespace, name: &str, host: &str) -> String {
    serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": ns.name},
        "spec": {
            "hosts": [host],
            "location": "MESH_EXTERNAL",
            "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
            "resolution": "DNS",
            // Visible in its own namespace only: in audit mode, an object exported to
            // enforced namespaces is enforced (EG107).
            "exportTo": ["."],
        },
    })
    .to_string()
}

/// The namespace's PolicyReport, if there is one.
fn report(kube: &Kube, ns: &TestNamespace) -> Option<Value> {
    let out = kube.ok(&[
        "get",
        "policyreports.wgpolicyk8s.io",
        "egress-guard",
        "-n",
        &ns.name,
        "-o",
        "json",
        "--ignore-not-found",
    ]);
    (!out.trim().is_empty()).then(|| serde_json::from_str(&out).unwrap())
}

/// (kind/name, rule, result) of every result.
fn results(report: &Value) -> Vec<(String, String, String)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let res = &r["resources"][0];
            (
                format!(
                    "{}/{}",
                    res["kind"].as_str().unwrap(),
                    res["name"].as_str().unwrap()
                ),
                r["rule"].as_str().unwrap().to_owned(),
                r["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn row(object: &str, rule: &str, result: &str) -> (String, String, String) {
    (object.to_owned(), rule.to_owned(), result.to_owned())
}

fn resource_version(kube: &Kube, ns: &TestNamespace, what: &str) -> String {
    kube.ok(&[
        "get",
        what,
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ])
}

/// Waits until the report satisfies `done`; returns it and the time it took.
fn wait_report(
    kube: &Kube,
    ns: &TestNamespace,
    what: &str,
    done: impl Fn(Option<&Value>) -> bool,
) -> (Option<Value>, Duration) {
    let start = Instant::now();
    let r = kube.wait_for(what, WITHIN, || {
        let r = report(kube, ns);
        done(r.as_ref()).then_some(r)
    });
    (r, start.elapsed())
}

const GRANTED: &str = "hosts:\n  - api.github.com\n  - {host: hooks.slack.com, owner: team-a}\n";
const REVOKED: &str = "hosts:\n  - api.github.com\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_fails_live_objects_and_restoring_it_clears_them() {
    let kube = require_kube!();
    let cfg = kube.namespace("aw-cfg");
    let ns = kube.namespace("aw-revoke");
    kube.apply(&allowlist_cm(&cfg, GRANTED)).unwrap();
    kube.apply(&service_entry(&ns, "github", "api.github.com"))
        .unwrap();
    kube.apply(&service_entry(&ns, "slack", "hooks.slack.com"))
        .unwrap();
    let slack_rv = resource_version(&kube, &ns, "serviceentry/slack");

    let w = AuditWatch::start(&kube, &ns, &format!("{}/allowlist", cfg.name)).await;
    assert_eq!(report(&kube, &ns), None, "a clean namespace has no report");

    // Revoked: the live ServiceEntry that relied on the grant fails.
    kube.apply(&allowlist_cm(&cfg, REVOKED)).unwrap();
    let (r, took) = wait_report(&kube, &ns, "the revoked grant's result", |r| r.is_some());
    let r = r.unwrap();
    eprintln!(
        "grant revoked: PolicyReport result {} ms after the ConfigMap edit",
        took.as_millis()
    );
    assert_eq!(results(&r), [row("ServiceEntry/slack", "EG101", "fail")]);
    let result = &r["results"][0];
    assert_eq!(result["policy"], "egress-guard");
    assert_eq!(result["properties"]["path"], "spec.hosts[0]");
    assert_eq!(result["properties"]["value"], "hooks.slack.com");
    assert_eq!(result["resources"][0]["namespace"], ns.name.as_str());
    assert_eq!(
        result["resources"][0]["apiVersion"],
        "networking.istio.io/v1"
    );
    let uid = kube.ok(&[
        "get",
        "serviceentry/slack",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    assert_eq!(result["resources"][0]["uid"], uid.as_str());
    assert_eq!(r["summary"]["fail"], 1);
    assert_eq!(
        r["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "egress-guard"
    );
    assert_eq!(
        resource_version(&kube, &ns, "serviceentry/slack"),
        slack_rv,
        "the judged object is never written"
    );
    assert_eq!(
        w.metric(r#"egress_guard_audit_live_violations{code="EG101",mode="enforce"}"#)
            .await,
        1.0
    );

    // Judged again with nothing changed for the report: it is not rewritten.
    let report_rv = r["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let writes = w
        .metric(r#"egress_guard_audit_report_writes_total{operation="apply",result="success"}"#)
        .await;
    let passes = w.metric("egress_guard_audit_full_passes_total").await;
    kube.apply(&allowlist_cm(
        &cfg,
        &format!("{REVOKED}  - unrelated.example.com\n"),
    ))
    .unwrap();
    w.wait_for_pass(passes).await;
    assert_eq!(
        report(&kube, &ns).unwrap()["metadata"]["resourceVersion"],
        report_rv.as_str(),
        "{}",
        w.log()
    );
    assert_eq!(
        w.metric(r#"egress_guard_audit_report_writes_total{operation="apply",result="success"}"#)
            .await,
        writes
    );

    // Restored: the result goes, and with it the report of a now clean namespace.
    kube.apply(&allowlist_cm(&cfg, GRANTED)).unwrap();
    let (_, took) = wait_report(&kube, &ns, "the report deleted", |r| r.is_none());
    eprintln!(
        "grant restored: PolicyReport deleted {} ms after the ConfigMap edit",
        took.as_millis()
    );
    assert_eq!(resource_version(&kube, &ns, "serviceentry/slack"), slack_rv);
    assert_eq!(
        w.metric(r#"egress_guard_audit_live_violations{code="EG101",mode="enforce"}"#)
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_expiring_by_the_clock_fails_what_relied_on_it() {
    let kube = require_kube!();
    let cfg = kube.namespace("aw-cfg");
    let ns = kube.namespace("aw-expiry");
    // A few seconds ahead, whole seconds (RFC 3339).
    let expires_at = egress_guard::unix_now() + 8;
    let expires = time::OffsetDateTime::from_unix_timestamp(expires_at)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    kube.apply(&allowlist_cm(
        &cfg,
        &format!("hosts:\n  - {{host: hooks.slack.com, owner: team-a, expires: \"{expires}\"}}\n"),
    ))
    .unwrap();
    kube.apply(&service_entry(&ns, "slack", "hooks.slack.com"))
        .unwrap();
    let slack_rv = resource_version(&kube, &ns, "serviceentry/slack");
    let cm_rv = resource_version(&kube, &cfg, "configmap/allowlist");

    let w = AuditWatch::start(&kube, &ns, &format!("{}/allowlist", cfg.name)).await;
    assert!(
        egress_guard::unix_now() < expires_at,
        "started too slowly for this test"
    );
    assert_eq!(report(&kube, &ns), None, "granted until {expires}");
    assert_eq!(
        w.metric("egress_guard_audit_next_expiry_timestamp_seconds")
            .await,
        expires_at as f64
    );

    let (r, _) = wait_report(&kube, &ns, "the expired grant's result", |r| r.is_some());
    let late = egress_guard::unix_now() - expires_at;
    eprintln!("entry expired: PolicyReport result within {late} s of the expiry");
    assert!(late >= 0);
    assert_eq!(
        results(&r.unwrap()),
        [row("ServiceEntry/slack", "EG101", "fail")]
    );
    assert_eq!(
        resource_version(&kube, &cfg, "configmap/allowlist"),
        cm_rv,
        "no allowlist change"
    );
    assert_eq!(resource_version(&kube, &ns, "serviceentry/slack"), slack_rv);
    assert!(
        w.log().contains("an allowlist entry expired"),
        "{}",
        w.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_warns_enforce_fails_and_a_deleted_object_leaves_the_report() {
    let kube = require_kube!();
    let cfg = kube.namespace("aw-cfg");
    let ns = kube.namespace("aw-mode");
    let audit_mode = format!(
        "hosts: [api.github.com]\nnamespaces:\n  {}:\n    mode: audit\n",
        ns.name
    );
    kube.apply(&allowlist_cm(&cfg, &audit_mode)).unwrap();
    kube.apply(&service_entry(&ns, "exfil", "upload.evil.example.org"))
        .unwrap();
    kube.apply(&service_entry(&ns, "exfil-2", "paste.evil.example.org"))
        .unwrap();
    kube.apply(&service_entry(&ns, "github", "api.github.com"))
        .unwrap();

    let w = AuditWatch::start(&kube, &ns, &format!("{}/allowlist", cfg.name)).await;
    let r = report(&kube, &ns).expect("published with the first pass");
    assert_eq!(
        results(&r),
        [
            row("ServiceEntry/exfil", "EG101", "warn"),
            row("ServiceEntry/exfil-2", "EG101", "warn"),
        ]
    );
    assert_eq!(
        (r["summary"]["warn"].as_u64(), r["summary"]["fail"].as_u64()),
        (Some(2), Some(0))
    );

    // Enforced from now on: the same objects fail.
    kube.apply(&allowlist_cm(&cfg, "hosts: [api.github.com]\n"))
        .unwrap();
    let (r, _) = wait_report(&kube, &ns, "fail results", |r| {
        r.is_some_and(|r| r["summary"]["fail"] == 2)
    });
    assert_eq!(
        results(&r.unwrap())[0],
        row("ServiceEntry/exfil", "EG101", "fail")
    );

    // A change to an object is judged on its own: fixed, it leaves the report.
    kube.apply(&service_entry(&ns, "exfil-2", "api.github.com"))
        .unwrap();
    let (r, _) = wait_report(&kube, &ns, "exfil-2 gone", |r| {
        r.is_some_and(|r| r["results"].as_array().is_some_and(|a| a.len() == 1))
    });
    assert_eq!(
        results(&r.unwrap()),
        [row("ServiceEntry/exfil", "EG101", "fail")]
    );

    // Deleted: the last result goes, and the report with it.
    kube.ok(&["delete", "serviceentry", "exfil", "-n", &ns.name]);
    let (_, took) = wait_report(&kube, &ns, "the report deleted", |r| r.is_none());
    eprintln!(
        "object deleted: PolicyReport deleted {} ms later",
        took.as_millis()
    );
    assert_eq!(w.metric("egress_guard_audit_objects_violating").await, 0.0);
    assert!(
        w.metric(r#"egress_guard_audit_report_writes_total{operation="delete",result="success"}"#)
            .await
            >= 1.0
    );
}
