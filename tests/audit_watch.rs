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
        Self::start_as(kube, &kube.kubeconfig, objects, cm).await
    }

    /// [`start`](Self::start) with another kubeconfig.
    async fn start_as(
        kube: &Kube,
        kubeconfig: &std::path::Path,
        objects: &TestNamespace,
        cm: &str,
    ) -> AuditWatch {
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
            .env("KUBECONFIG", kubeconfig)
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
    named_allowlist_cm(ns, "allowlist", allowlist)
}

fn named_allowlist_cm(ns: &TestNamespace, name: &str, allowlist: &str) -> String {
    let data = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns.name},
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

/// `deploy/audit-watch` as `kubectl kustomize` renders it.
fn rendered(kube: &Kube) -> Vec<Value> {
    use serde::Deserialize as _;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/audit-watch");
    let yaml = kube.ok(&["kustomize", dir]);
    serde_norway::Deserializer::from_str(&yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn shipped<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/audit-watch"))
}

/// The admin kubeconfig acting as `user` in `groups` (impersonation).
fn kubeconfig_as(kube: &Kube, dir: &std::path::Path, user: &str, groups: &[&str]) -> PathBuf {
    let text = std::fs::read_to_string(&kube.kubeconfig).unwrap();
    let mut v: Value = serde_norway::from_str(&text).unwrap();
    for u in v["users"].as_array_mut().unwrap() {
        u["user"]["as"] = user.into();
        u["user"]["as-groups"] = serde_json::json!(groups);
    }
    let path = dir.join(format!("kubeconfig-{user}"));
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    path
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// A `kind` (Role or ClusterRole) with `rules`, and its binding to `subjects`.
fn granted(
    kind: &str,
    name: &str,
    ns: Option<&str>,
    rules: &Value,
    subjects: &Value,
) -> Vec<Value> {
    let mut metadata = serde_json::json!({"name": name});
    if let Some(ns) = ns {
        metadata["namespace"] = ns.into();
    }
    vec![
        serde_json::json!({"apiVersion": format!("{RBAC}/v1"), "kind": kind, "metadata": metadata, "rules": rules}),
        serde_json::json!({"apiVersion": format!("{RBAC}/v1"), "kind": format!("{kind}Binding"),
            "metadata": metadata, "roleRef": {"apiGroup": RBAC, "kind": kind, "name": name}, "subjects": subjects}),
    ]
}

/// Cluster-scoped RBAC objects a test created, deleted when it ends.
struct ClusterRbac(Kube, String);

impl Drop for ClusterRbac {
    fn drop(&mut self) {
        let _ = self.0.run(
            &[
                "delete",
                "clusterrolebinding,clusterrole",
                &self.1,
                "--ignore-not-found",
            ],
            None,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rbac_is_enough_for_the_auditor_and_lets_tenants_read() {
    let kube = require_kube!();
    let cfg = kube.namespace("aw-cfg");
    let ns = kube.namespace("aw-rbac");
    let objs = rendered(&kube);
    let dir = tempfile::tempdir().unwrap();

    // The auditor's ClusterRole and Role as shipped, bound to a user of this test.
    let auditor = format!("aw-auditor-{}", ns.name);
    let _rbac = ClusterRbac(kube.clone(), auditor.clone());
    let user = |name: &str| serde_json::json!([{"apiGroup": RBAC, "kind": "User", "name": name}]);
    let mut rbac = granted(
        "ClusterRole",
        &auditor,
        None,
        &shipped(&objs, "ClusterRole", "egress-guard-auditor")["rules"],
        &user(&auditor),
    );
    rbac.extend(granted(
        "Role",
        "auditor",
        Some(&cfg.name),
        &shipped(&objs, "Role", "egress-guard-auditor")["rules"],
        &user(&auditor),
    ));
    let rbac = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": rbac});
    kube.apply(&rbac.to_string()).unwrap();
    // The shipped Role names the allowlist ConfigMap: this one has that name.
    kube.apply(&named_allowlist_cm(&cfg, "egress-guard-allowlist", REVOKED))
        .unwrap();
    kube.apply(&service_entry(&ns, "slack", "hooks.slack.com"))
        .unwrap();

    let as_auditor = kubeconfig_as(&kube, dir.path(), &auditor, &["system:authenticated"]);
    let cm = format!("{}/egress-guard-allowlist", cfg.name);
    let w = AuditWatch::start_as(&kube, &as_auditor, &ns, &cm).await;
    let r = report(&kube, &ns).expect("created with the shipped verbs");
    assert_eq!(results(&r), [row("ServiceEntry/slack", "EG101", "fail")]);
    kube.apply(&named_allowlist_cm(&cfg, "egress-guard-allowlist", GRANTED))
        .unwrap();
    wait_report(
        &kube,
        &ns,
        "the report deleted with the shipped verbs",
        |r| r.is_none(),
    );
    assert!(!w.log().contains("forbidden"), "{}", w.log());
    drop(w);

    // A tenant: `grants` needs the shipped reader Role, which every authenticated user has.
    let tenant = format!("tenant-{}", ns.name);
    let as_tenant = kubeconfig_as(&kube, dir.path(), &tenant, &["system:authenticated"]);
    let grants = || {
        let out = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
            .args([
                "grants",
                "-n",
                &ns.name,
                "--allowlist-configmap",
                &cm,
                "-o",
                "json",
            ])
            .env_clear()
            .env("KUBECONFIG", &as_tenant)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = grants();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("forbidden") || stderr.contains("Forbidden"),
        "{stderr}"
    );
    let reader = shipped(&objs, "Role", "egress-guard-allowlist-reader");
    let binding = shipped(&objs, "RoleBinding", "egress-guard-allowlist-reader");
    let mut access = granted(
        "Role",
        "reader",
        Some(&cfg.name),
        &reader["rules"],
        &binding["subjects"],
    );
    // The report, through the rules aggregated into `view` (the rig runs no aggregation
    // controller: bound directly here).
    access.extend(granted(
        "Role",
        "reports",
        Some(&ns.name),
        &shipped(&objs, "ClusterRole", "egress-guard-policyreports-view")["rules"],
        &user(&tenant),
    ));
    let access = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": access});
    kube.apply(&access.to_string()).unwrap();
    let (code, stdout, stderr) = kube.wait_for("grants readable by a tenant", WITHIN, || {
        let out = grants();
        (out.0 == Some(0)).then_some(out)
    });
    assert_eq!(code, Some(0), "{stderr}");
    let g: Value = serde_json::from_str(&stdout).unwrap();
    let hosts: Vec<&str> = g["global"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["api.github.com", "hooks.slack.com"]);
    assert_eq!(g["global"][1]["owner"], "team-a");
    kube.apply(&service_entry(&ns, "exfil", "upload.evil.example.org"))
        .unwrap();
    let w = AuditWatch::start(&kube, &ns, &cm).await;
    let out = kube.run(
        &[
            "--as",
            &tenant,
            "--as-group",
            "system:authenticated",
            "get",
            "policyreports.wgpolicyk8s.io",
            "egress-guard",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.results[0].rule}",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "EG101",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(w);
}
