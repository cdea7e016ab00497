//! `egress-guard audit` as a user runs it: the built binary, a kubeconfig pointing at a
//! fake apiserver on 127.0.0.1 that serves Istio objects at several versions, in pages.

mod fake_api;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use fake_api::{FakeApi, configmap};
use serde_json::{Value, json};

const GROUP: &str = "networking.istio.io";
const ALL_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
/// Older Istio CRDs: no `v1`.
const BETA_VERSIONS: &[&str] = &["v1beta1", "v1alpha3"];
/// Every kind `audit` lists: API path prefix, versions newest first, plural.
const KINDS: [(&str, &[&str], &str); 25] = [
    ("/apis/networking.istio.io", ALL_VERSIONS, "serviceentries"),
    ("/apis/networking.istio.io", ALL_VERSIONS, "virtualservices"),
    (
        "/apis/networking.istio.io",
        ALL_VERSIONS,
        "destinationrules",
    ),
    ("/apis/networking.istio.io", ALL_VERSIONS, "gateways"),
    ("/apis/networking.istio.io", ALL_VERSIONS, "sidecars"),
    ("/apis/networking.istio.io", ALL_VERSIONS, "workloadentries"),
    ("/apis/networking.istio.io", ALL_VERSIONS, "workloadgroups"),
    ("/apis/networking.istio.io", &["v1alpha3"], "envoyfilters"),
    ("/apis/extensions.istio.io", &["v1alpha1"], "wasmplugins"),
    (
        "/apis/security.istio.io",
        &["v1", "v1beta1"],
        "requestauthentications",
    ),
    ("/apis/networking.istio.io", &["v1beta1"], "proxyconfigs"),
    (
        "/apis/extensions.istio.io",
        &["v1alpha1"],
        "trafficextensions",
    ),
    ("/api", &["v1"], "pods"),
    ("/api", &["v1"], "services"),
    ("/api", &["v1"], "endpoints"),
    ("/apis/discovery.k8s.io", &["v1"], "endpointslices"),
    ("/apis/apps", &["v1"], "deployments"),
    ("/apis/apps", &["v1"], "statefulsets"),
    ("/apis/apps", &["v1"], "daemonsets"),
    ("/apis/apps", &["v1"], "replicasets"),
    ("/api", &["v1"], "replicationcontrollers"),
    ("/apis/batch", &["v1"], "jobs"),
    ("/apis/batch", &["v1"], "cronjobs"),
    ("/apis/networking.k8s.io", &["v1"], "networkpolicies"),
    (
        "/apis/gateway.networking.x-k8s.io",
        &["v1alpha1"],
        "xbackends",
    ),
];

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn write_kubeconfig(dir: &Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
users:
- name: fake
  user: {{}}
"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// Runs `egress-guard audit ARGS` against `fake` with a clean environment: only
/// `KUBECONFIG` and `HOME` (a temp dir), so no proxy, in-cluster config or user
/// kubeconfig can interfere.
async fn audit(fake: &FakeApi, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), &fake.url());
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .arg("audit")
        .args(args)
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn egress-guard");
    // The fake serves from this runtime; wait without blocking it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "egress-guard audit did not finish within 60s; requests:\n{}",
                fake.request_log()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Output {
        code: status.code(),
        stdout: std::fs::read_to_string(&stdout_path).expect("read stdout"),
        stderr: std::fs::read_to_string(&stderr_path).expect("read stderr"),
    }
}

fn istio(version: &str, kind: &str, namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{version}"),
        "kind": kind,
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    })
}

/// A cluster with ServiceEntry, VirtualService and Sidecar served at v1, v1beta1 and
/// v1alpha3, DestinationRule and Gateway only at v1beta1 and v1alpha3 (older CRDs), and
/// lists that return at most two items per page.
async fn cluster() -> FakeApi {
    let fake = FakeApi::start().await;
    fake.serve_kind(GROUP, "ServiceEntry", "serviceentries", ALL_VERSIONS);
    fake.serve_kind(GROUP, "VirtualService", "virtualservices", ALL_VERSIONS);
    fake.serve_kind(GROUP, "DestinationRule", "destinationrules", BETA_VERSIONS);
    fake.serve_kind(GROUP, "Gateway", "gateways", BETA_VERSIONS);
    fake.serve_kind(GROUP, "Sidecar", "sidecars", ALL_VERSIONS);
    fake.set_max_page(2);

    let se = |ns: &str, name: &str, host: &str| {
        istio(
            "v1",
            "ServiceEntry",
            ns,
            name,
            json!({
                "hosts": [host],
                "location": "MESH_EXTERNAL",
                "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
                "resolution": "DNS",
            }),
        )
    };
    // Listed in (namespace, name) order: two on the first page, one on the second.
    fake.put(se("default", "exfil", "upload.evil.example.org"));
    fake.put(se("default", "github", "api.github.com"));
    // Left out: an exempt namespace, and namespaces the webhook never judges.
    fake.put(se(
        "istio-system",
        "telemetry",
        "telemetry.evil.example.org",
    ));
    fake.put(se("kube-system", "dns", "dns.evil.example.org"));
    fake.put(se("egress-guard", "self", "self.evil.example.org"));
    fake.put(istio(
        "v1",
        "VirtualService",
        "default",
        "github-api",
        json!({
            "hosts": ["api.github.com"],
            "http": [
                {"match": [{"uri": {"prefix": "/repos"}}],
                 "route": [{"destination": {"host": "api.github.com", "port": {"number": 443}}}]},
                {"route": [{"destination": {"host": "api.github.com", "port": {"number": 443}}}],
                 "timeout": "30s"},
            ],
        }),
    ));
    fake.put(istio(
        "v1beta1",
        "DestinationRule",
        "production",
        "external-api",
        json!({
            "host": "api.external-service.com",
            "trafficPolicy": {"portLevelSettings": [{
                "port": {"number": 443},
                "tls": {"mode": "SIMPLE", "sni": "api.external-service.com"},
            }]},
        }),
    ));
    fake.put(istio(
        "v1beta1",
        "Gateway",
        "production",
        "external-api-gateway",
        json!({
            "selector": {"istio": "egressgateway"},
            "servers": [{
                "port": {"number": 443, "name": "tls", "protocol": "TLS"},
                "hosts": ["api.external-service.com"],
                "tls": {"mode": "PASSTHROUGH"},
            }],
        }),
    ));
    fake.put(istio(
        "v1",
        "Sidecar",
        "default",
        "default",
        json!({"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}),
    ));
    fake
}

/// `(kind, namespace/name, verdict)` per object, in report order.
fn verdicts(report: &Value) -> Vec<(String, String, String)> {
    report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            let verdict = if o["mode"].as_str().unwrap_or("").starts_with("skipped") {
                "SKIP"
            } else if o["allowed"] == json!(false) {
                "DENY"
            } else if o["violations"].as_array().is_some_and(|v| !v.is_empty()) {
                "AUDIT"
            } else {
                "ALLOW"
            };
            (
                o["kind"].as_str().unwrap_or("").to_owned(),
                format!(
                    "{}/{}",
                    o["namespace"].as_str().unwrap_or(""),
                    o["name"].as_str().unwrap_or("")
                ),
                verdict.to_owned(),
            )
        })
        .collect()
}

fn object<'a>(report: &'a Value, kind: &str, ns_name: &str) -> &'a Value {
    report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| {
            o["kind"] == json!(kind)
                && format!(
                    "{}/{}",
                    o["namespace"].as_str().unwrap_or(""),
                    o["name"].as_str().unwrap_or("")
                ) == ns_name
        })
        .unwrap_or_else(|| panic!("no {kind} {ns_name} in {report:#}"))
}

fn codes(o: &Value) -> Vec<&str> {
    o["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| v["code"].as_str().expect("code"))
        .collect()
}

fn owned(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_covers_every_kind_across_pages_and_versions() {
    let fake = cluster().await;
    let out = audit(&fake, &["--output", "json"]).await;
    assert_eq!(out.code, Some(1), "a denial exits 1\n{out}");
    let report = out.json();

    assert_eq!(
        verdicts(&report),
        owned(&[
            ("ServiceEntry", "default/exfil", "DENY"),
            ("ServiceEntry", "default/github", "ALLOW"),
            ("VirtualService", "default/github-api", "ALLOW"),
            ("DestinationRule", "production/external-api", "ALLOW"),
            ("Gateway", "production/external-api-gateway", "ALLOW"),
            ("Sidecar", "default/default", "DENY"),
        ]),
        "{out}"
    );
    assert_eq!(
        report["summary"],
        json!({"total": 6, "allowed": 4, "denied": 2, "audited": 0, "skipped": 0, "patched": 1})
    );

    let exfil = object(&report, "ServiceEntry", "default/exfil");
    assert_eq!(codes(exfil), ["EG101"]);
    assert_eq!(
        exfil["violations"][0]["value"],
        json!("upload.evil.example.org")
    );
    assert_eq!(exfil["source"], json!("cluster"));
    let sidecar = object(&report, "Sidecar", "default/default");
    assert_eq!(codes(sidecar), ["EG301"]);
    let vs = object(&report, "VirtualService", "default/github-api");
    assert_eq!(
        vs["patch"],
        json!([{"op": "add", "path": "/spec/http/0/timeout", "value": "15s"}])
    );
    assert_eq!(
        object(&report, "DestinationRule", "production/external-api")["patch"],
        Value::Null
    );

    // ServiceEntries: two pages, the second asked for with the first page's token; the
    // namespaces the webhook never judges are left out by the apiserver.
    let pages = fake.requests_to("/apis/networking.istio.io/v1/serviceentries");
    assert_eq!(pages.len(), 2, "{}", fake.request_log());
    for p in &pages {
        assert_eq!(
            p.param("fieldSelector"),
            Some(
                "metadata.namespace!=kube-system,metadata.namespace!=kube-public,metadata.namespace!=kube-node-lease,metadata.namespace!=egress-guard"
            ),
            "{p}"
        );
    }
    assert_eq!(pages[0].param("limit"), Some("500"));
    assert_eq!(pages[0].param("continue"), None);
    assert_eq!(pages[1].param("limit"), Some("500"));
    let token = pages[1].param("continue").expect("a continue token");
    assert!(!token.is_empty());

    // DestinationRule and Gateway: v1 is 404, v1beta1 answers; v1alpha3 is never needed.
    for plural in ["destinationrules", "gateways"] {
        let tried: Vec<String> = fake
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(&format!("/{plural}")))
            .map(|r| r.path.clone())
            .collect();
        assert_eq!(
            tried,
            [
                format!("/apis/{GROUP}/v1/{plural}"),
                format!("/apis/{GROUP}/v1beta1/{plural}"),
            ],
            "{}",
            fake.request_log()
        );
    }
    // Nothing but GET list requests reached the API.
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.method == "GET" && !r.is_watch()),
        "{}",
        fake.request_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_report_lists_verdicts_codes_patch_and_summary() {
    let fake = cluster().await;
    let out = audit(&fake, &[]).await;
    assert_eq!(out.code, Some(1), "{out}");
    let text = &out.stdout;
    for expected in [
        "DENY  ServiceEntry default/exfil  [cluster]",
        "EG101",
        "ALLOW ServiceEntry default/github  [cluster]",
        "ALLOW VirtualService default/github-api  [cluster]",
        r#"patch: [{"op":"add","path":"/spec/http/0/timeout","value":"15s"}]"#,
        "ALLOW DestinationRule production/external-api  [cluster]",
        "ALLOW Gateway production/external-api-gateway  [cluster]",
        "DENY  Sidecar default/default  [cluster]",
        "EG301",
        "6 objects: 4 allowed, 2 denied, 0 audited, 0 skipped; 1 would be patched",
    ] {
        assert!(text.contains(expected), "missing {expected:?}\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_allowlist_from_a_configmap() {
    let fake = cluster().await;
    fake.put(configmap(
        "egress-guard",
        "egress-guard-allowlist",
        &[(
            "allowlist.yaml",
            "mode: audit\nexemptNamespaces: [istio-system]\nhosts: [api.github.com]\n",
        )],
    ));
    let out = audit(
        &fake,
        &[
            "--allowlist-configmap",
            "egress-guard/egress-guard-allowlist",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "audit mode denies nothing\n{out}");
    let report = out.json();
    assert_eq!(report["summary"]["denied"], json!(0), "{out}");
    // Violations are still reported, in audit mode.
    let exfil = object(&report, "ServiceEntry", "default/exfil");
    assert_eq!(exfil["mode"], json!("audit"));
    assert_eq!(exfil["allowed"], json!(true));
    assert_eq!(codes(exfil), ["EG101"]);
    let sidecar = object(&report, "Sidecar", "default/default");
    assert_eq!(
        (sidecar["mode"].clone(), codes(sidecar)),
        (json!("audit"), vec!["EG301"])
    );
    // This allowlist has no defaultTimeout: nothing is patched.
    assert_eq!(report["summary"]["patched"], json!(0), "{out}");

    let gets =
        fake.requests_to("/api/v1/namespaces/egress-guard/configmaps/egress-guard-allowlist");
    assert_eq!(gets.len(), 1, "{}", fake.request_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_allowlist_configmap_or_key_is_an_error() {
    let fake = cluster().await;
    let out = audit(&fake, &["--allowlist-configmap", "egress-guard/absent"]).await;
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("reading ConfigMap egress-guard/absent"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");

    fake.put(configmap(
        "egress-guard",
        "other-key",
        &[("policy.yaml", "hosts: []\n")],
    ));
    let out = audit(&fake, &["--allowlist-configmap", "egress-guard/other-key"]).await;
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr
            .contains("ConfigMap egress-guard/other-key has no key allowlist.yaml"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_flag_lists_only_that_namespace() {
    let fake = cluster().await;
    let out = audit(&fake, &["--namespace", "production", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        verdicts(&out.json()),
        owned(&[
            ("DestinationRule", "production/external-api", "ALLOW"),
            ("Gateway", "production/external-api-gateway", "ALLOW"),
        ]),
        "{out}"
    );
    let lists: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| !r.path.contains("/configmaps"))
        .collect();
    for r in &lists {
        let expected = KINDS
            .iter()
            .any(|(_, _, p)| r.path.ends_with(&format!("/namespaces/production/{p}")));
        assert!(
            expected,
            "not a namespaced list: {r}\n{}",
            fake.request_log()
        );
    }
    // Every kind was listed in the namespace: the five Istio kinds served (two after a
    // v1 404), the nineteen others tried at each of their versions.
    let unserved: usize = KINDS.iter().skip(5).map(|(_, v, _)| v.len()).sum();
    assert_eq!(lists.len(), 7 + unserved, "{}", fake.request_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_istio_has_nothing_to_audit() {
    let fake = FakeApi::start().await; // serves ConfigMaps only
    let out = audit(&fake, &["-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.json()["summary"]["total"], json!(0), "{out}");
    assert!(out.stderr.contains("not served by this cluster"), "{out}");
    // Each kind tried at every version, newest first.
    let tried: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    let expected: Vec<String> = KINDS
        .iter()
        .flat_map(|(prefix, versions, p)| versions.iter().map(move |v| format!("{prefix}/{v}/{p}")))
        .collect();
    assert_eq!(tried, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_live_allowlist_lists_what_a_change_would_break() {
    let fake = cluster().await;
    fake.put(configmap(
        "egress-guard",
        "egress-guard-allowlist",
        &[("allowlist.yaml", egress_guard::policy::allowlist::EXAMPLE)],
    ));
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.yaml");
    let narrowed = egress_guard::policy::allowlist::EXAMPLE.replace("  - api.github.com\n", "");
    std::fs::write(&new, narrowed).unwrap();
    let out = audit(
        &fake,
        &[
            "--allowlist",
            new.to_str().unwrap(),
            "--against-configmap",
            "egress-guard/egress-guard-allowlist",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out}");
    let v = out.json();
    let mut changed: Vec<(String, String, String)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                format!(
                    "{}/{}",
                    c["namespace"].as_str().unwrap(),
                    c["name"].as_str().unwrap()
                ),
                format!(
                    "{}->{}",
                    c["before"].as_str().unwrap(),
                    c["after"].as_str().unwrap()
                ),
            )
        })
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        // The VirtualService routing to api.github.com selects the ServiceEntry's
        // registry entry: only the ServiceEntry, which puts the host there, breaks.
        owned(&[("ServiceEntry", "default/github", "allow->deny")]),
        "{out}"
    );
    assert!(v["changes"][0]["appeared"][0]["code"] == "EG101", "{out}");
    // Against itself: nothing changes, exit 0.
    let same = audit(
        &fake,
        &[
            "--against-configmap",
            "egress-guard/egress-guard-allowlist",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(same.code, Some(0), "{same}");
    assert_eq!(same.json()["summary"]["changed"], 0, "{same}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_the_webhook_never_judges_are_not_audited() {
    let fake = cluster().await;
    let out = audit(&fake, &["-o", "json"]).await;
    let listed: Vec<(String, String, String)> = verdicts(&out.json());
    for (_, ns_name, _) in &listed {
        for ns in ["kube-system/", "egress-guard/", "istio-system/"] {
            assert!(!ns_name.starts_with(ns), "{ns_name} listed\n{out}");
        }
    }
    // Asked for by name, such a namespace is not even listed.
    let before = fake.requests().len();
    let out = audit(&fake, &["-n", "kube-system", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.json()["summary"]["total"], json!(0), "{out}");
    assert!(
        out.stderr.contains("never judges namespace kube-system"),
        "{out}"
    );
    assert_eq!(fake.requests().len(), before, "{}", fake.request_log());
}
