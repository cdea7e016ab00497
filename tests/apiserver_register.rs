//! The install on a real kube-apiserver: the server registers its own webhook
//! configurations only once it can answer them, `uninstall` removes them in any order,
//! the garbage collector removes them with their owner, `certs` patches every entry,
//! and `preflight` says what is missing.
//!
//! Each test registers the shipped `deploy/base/webhooks.yaml` under names of its own,
//! every entry narrowed to its test namespace, so tests never judge each other's writes.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::ServeCommand;
use common::apiserver::{Kube, TEST_LABEL, TestNamespace};
use serde_json::Value;

const WEBHOOKS: &str = include_str!("../deploy/base/webhooks.yaml");
const KINDS: [&str; 2] = [
    "validatingwebhookconfiguration",
    "mutatingwebhookconfiguration",
];

/// The shipped file with its configurations renamed `<prefix>-<ns>`, each entry judging
/// only `ns`, written to `dir`.
fn webhooks_file(dir: &Path, prefix: &str, ns: &TestNamespace) -> (PathBuf, String) {
    let name = format!("{prefix}-{}", ns.name);
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(WEBHOOKS) {
        use serde::Deserialize as _;
        let mut v = Value::deserialize(doc).unwrap();
        if v.is_null() {
            continue;
        }
        v["metadata"]["name"] = name.clone().into();
        for w in v["webhooks"].as_array_mut().unwrap() {
            w["namespaceSelector"]["matchLabels"][TEST_LABEL] = ns.name.clone().into();
        }
        docs.push(serde_norway::to_string(&v).unwrap());
    }
    let path = dir.join(format!("{prefix}-webhooks.yaml"));
    std::fs::write(&path, docs.join("---\n")).unwrap();
    (path, name)
}

/// The live configuration `kind/name`, if any.
fn live(kube: &Kube, kind: &str, name: &str) -> Option<Value> {
    let out = kube.run(&["get", kind, name, "-o", "json"], None);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// Both configurations, once each carries a caBundle on every entry.
fn registered(kube: &Kube, name: &str) -> Option<[Value; 2]> {
    let v = live(kube, KINDS[0], name)?;
    let m = live(kube, KINDS[1], name)?;
    let complete = |c: &Value| {
        c["webhooks"]
            .as_array()
            .is_some_and(|ws| ws.iter().all(|w| w["clientConfig"]["caBundle"].is_string()))
    };
    (complete(&v) && complete(&m)).then_some([v, m])
}

fn gone(kube: &Kube, name: &str) -> bool {
    KINDS.iter().all(|k| live(kube, k, name).is_none())
}

/// `serve` with the apiserver's webhook certificate, an allowlist file granting
/// api.github.com, and registration of `file` calling it by URL as install `ns`.
fn serve(kube: &Kube, file: &Path, ns: &TestNamespace) -> ServeCommand {
    let (cert, key) = kube.webhook_cert();
    let cmd = ServeCommand::with_tls(&cert, &key, &kube.ca_pem());
    let allowlist = cmd.dir().join("allowlist.yaml");
    std::fs::write(&allowlist, "hosts: [api.github.com]\n").unwrap();
    cmd.arg_path("--allowlist-file", &allowlist)
        .arg_path("--register-webhooks", file)
        .arg_path("--webhook-ca-bundle", &kube.dir.join("certs/ca.crt"))
        .args([
            "--webhook-url",
            "https://127.0.0.1:{port}",
            "--namespace",
            &ns.name,
        ])
        .env("KUBECONFIG", &kube.kubeconfig)
}

fn egress_guard(kube: &Kube, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args(args)
        .env_clear()
        .env("KUBECONFIG", &kube.kubeconfig)
        .output()
        .unwrap()
}

fn service_entry(ns: &str, name: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{hosts: [{host}], location: MESH_EXTERNAL, resolution: DNS, ports: [{{number: 443, name: https, protocol: TLS}}]}}\n"
    )
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_server_registers_every_entry_once_ready_and_uninstall_removes_them_after_it_is_gone() {
    let kube = require_kube!();
    let ns = kube.namespace("register");
    let dir = tempfile::tempdir().unwrap();
    let (file, name) = webhooks_file(dir.path(), "eg-reg", &ns);
    let server = serve(&kube, &file, &ns).spawn().await;

    let [v, m] = kube.wait_for("both configurations registered", LONG, || {
        registered(&kube, &name)
    });
    let bundle = kube.ca_bundle();
    let port = server.https.port();
    for (config, entries, path) in [(&v, 4, "/validate"), (&m, 1, "/mutate")] {
        let ws = config["webhooks"].as_array().unwrap();
        assert_eq!(ws.len(), entries, "{config}");
        for w in ws {
            assert_eq!(w["clientConfig"]["caBundle"], bundle.as_str());
            assert_eq!(
                w["clientConfig"]["url"],
                format!("https://127.0.0.1:{port}{path}")
            );
        }
        let labels = &config["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "egress-guard");
        assert_eq!(labels["egress-guard.io/instance"], ns.name.as_str());
    }
    // What is registered answers: a tenant's unapproved host is refused at apply.
    let denied = kube
        .apply(&service_entry(&ns.name, "evil", "evil.example.com"))
        .unwrap_err();
    assert!(
        denied.contains("denied the request") && denied.contains("EG101"),
        "{denied}"
    );
    kube.apply(&service_entry(&ns.name, "github", "api.github.com"))
        .unwrap();

    // The server goes first (a failed rollout, a deleted Deployment): what it registered
    // stays and fails closed ...
    drop(server);
    let blocked = kube
        .apply(&service_entry(&ns.name, "github2", "api.github.com"))
        .unwrap_err();
    assert!(blocked.contains("failed calling webhook"), "{blocked}");
    // ... until uninstall removes it; the binding it deletes first need not exist.
    let out = egress_guard(
        &kube,
        &[
            "uninstall",
            "--namespace",
            &ns.name,
            "--binding",
            "egress-guard-register-absent",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert!(
            stdout.contains(&format!("deleted {kind}/{name}")),
            "{stdout}"
        );
    }
    assert!(gone(&kube, &name));
    kube.apply(&service_entry(&ns.name, "github2", "api.github.com"))
        .unwrap();
}

#[tokio::test]
async fn a_server_without_a_valid_allowlist_registers_nothing_until_it_has_one() {
    let kube = require_kube!();
    let ns = kube.namespace("noready");
    let dir = tempfile::tempdir().unwrap();
    let (file, name) = webhooks_file(dir.path(), "eg-noready", &ns);
    let (cert, key) = kube.webhook_cert();
    // The allowlist ConfigMap does not exist yet: the server serves but is not ready.
    let server = ServeCommand::with_tls(&cert, &key, &kube.ca_pem())
        .args([
            "--allowlist-configmap",
            &format!("{}/allowlist", ns.name),
            "--webhook-url",
            "https://127.0.0.1:{port}",
            "--namespace",
            &ns.name,
        ])
        .arg_path("--register-webhooks", &file)
        .arg_path("--webhook-ca-bundle", &kube.dir.join("certs/ca.crt"))
        .env("KUBECONFIG", &kube.kubeconfig)
        .spawn()
        .await;
    server
        .wait_for_log("not registered yet: no valid allowlist loaded")
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(gone(&kube, &name), "registered without an allowlist");
    // Tenants are not blocked by a server that cannot start.
    kube.apply(&service_entry(&ns.name, "any", "evil.example.com"))
        .unwrap();

    kube.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: allowlist, namespace: {}}}\ndata:\n  allowlist.yaml: 'hosts: [api.github.com]'\n",
        ns.name
    ))
    .unwrap();
    kube.wait_for("registered once the allowlist loaded", LONG, || {
        registered(&kube, &name)
    });
    drop(server);
    let out = egress_guard(&kube, &["uninstall", "--namespace", &ns.name]);
    assert!(out.status.success());
    assert!(gone(&kube, &name));
}

#[tokio::test]
async fn a_service_target_waits_for_a_ready_endpoint_and_follows_the_install_namespace() {
    let kube = require_kube!();
    let ns = kube.namespace("svc");
    let dir = tempfile::tempdir().unwrap();
    let (file, name) = webhooks_file(dir.path(), "eg-svc", &ns);
    let slice = |ready: bool| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: egress-guard-1\n  namespace: {}\n  labels: {{kubernetes.io/service-name: egress-guard}}\n\
             addressType: IPv4\nports: [{{name: https, port: 8443, protocol: TCP}}]\nendpoints:\n  - addresses: [192.0.2.10]\n    conditions: {{ready: {ready}}}\n",
            ns.name
        )
    };
    kube.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: egress-guard, namespace: {}}}\nspec: {{ports: [{{name: https, port: 443, targetPort: 8443}}]}}\n",
        ns.name
    ))
    .unwrap();
    kube.apply(&slice(false)).unwrap();
    let (cert, key) = kube.webhook_cert();
    let allowlist = dir.path().join("allowlist.yaml");
    std::fs::write(&allowlist, "hosts: []\n").unwrap();
    let server = ServeCommand::with_tls(&cert, &key, &kube.ca_pem())
        .arg_path("--allowlist-file", &allowlist)
        .arg_path("--register-webhooks", &file)
        .arg_path("--webhook-ca-bundle", &kube.dir.join("certs/ca.crt"))
        .args(["--namespace", &ns.name])
        .env("KUBECONFIG", &kube.kubeconfig)
        .spawn()
        .await;
    server
        .wait_for_log(&format!(
            "no ready endpoint behind Service {}/egress-guard",
            ns.name
        ))
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        gone(&kube, &name),
        "registered before an endpoint was ready"
    );

    kube.apply(&slice(true)).unwrap();
    let [v, m] = kube.wait_for("registered once an endpoint is ready", LONG, || {
        registered(&kube, &name)
    });
    // The Service is the install's own namespace's, and so are the exemptions.
    drop(server);
    let out = egress_guard(&kube, &["uninstall", "--namespace", &ns.name]);
    assert!(out.status.success());
    for w in v["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(m["webhooks"].as_array().unwrap())
    {
        assert_eq!(w["clientConfig"]["service"]["namespace"], ns.name.as_str());
        assert_eq!(w["clientConfig"]["service"]["name"], "egress-guard");
        let named = w["namespaceSelector"]["matchExpressions"].to_string();
        assert!(
            named.contains(&format!("\"{}\"", ns.name)) && !named.contains("\"egress-guard\""),
            "{}: {named}",
            w["name"]
        );
    }
}

#[tokio::test]
async fn deleting_the_owner_clusterrole_deletes_the_configurations() {
    let kube = require_kube!();
    if !kube.controllers_running() {
        return;
    }
    let ns = kube.namespace("owner");
    let owner = format!("eg-owner-{}", ns.name);
    kube.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {owner}}}\nrules: []\n"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (file, name) = webhooks_file(dir.path(), "eg-owner", &ns);
    let server = serve(&kube, &file, &ns)
        .args(["--webhook-owner", &owner])
        .spawn()
        .await;
    let [v, _] = kube.wait_for("registered", LONG, || registered(&kube, &name));
    assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "ClusterRole");
    assert_eq!(v["metadata"]["ownerReferences"][0]["name"], owner.as_str());
    // `kubectl delete -k` in whatever order: the server may still run, or be gone.
    drop(server);
    kube.ok(&["delete", "clusterrole", &owner]);
    kube.wait_for("garbage-collected with their owner", LONG, || {
        gone(&kube, &name).then_some(())
    });
}

#[test]
fn the_certs_commands_put_the_ca_bundle_on_every_entry() {
    let kube = require_kube!();
    let ns = kube.namespace("certs");
    let dir = tempfile::tempdir().unwrap();
    let (file, name) = webhooks_file(dir.path(), "eg-certs", &ns);
    kube.ok(&["apply", "-f", file.to_str().unwrap()]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args([
            "certs",
            "--service",
            &name,
            "--namespace",
            &ns.name,
            "--out",
        ])
        .arg(dir.path().join("certs"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    // The printed loop, as a user pastes it.
    let script: String = stdout
        .lines()
        .skip_while(|l| !l.contains("set the caBundle on every entry"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    assert!(script.contains("for kind in"), "{stdout}");
    let run = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e\nkubectl() {{ \"$KUBECTL\" \"$@\"; }}\n{script}"
        ))
        .env("KUBECTL", &kube.kubectl)
        .env("KUBECONFIG", &kube.kubeconfig)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let registered = registered(&kube, &name);
    for kind in KINDS {
        kube.ok(&["delete", kind, &name]);
    }
    let [v, _] = registered.expect("every entry of both configurations has a caBundle");
    let ca = std::fs::read(dir.path().join("certs/ca.crt")).unwrap();
    use base64::Engine as _;
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    assert!(
        v["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["clientConfig"]["caBundle"] == bundle.as_str())
    );
}

#[test]
fn preflight_names_what_is_missing() {
    let kube = require_kube!();
    let ns = kube.namespace("preflight");
    let cm = |networks: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: allowlist, namespace: {}}}\ndata:\n  allowlist.yaml: 'clusterNetworks: [{networks}]'\n",
            ns.name
        )
    };
    kube.apply(&cm("192.0.2.0/24")).unwrap();
    let preflight = || {
        let out = egress_guard(
            &kube,
            &[
                "preflight",
                "--namespace",
                &ns.name,
                "--allowlist-configmap",
                &format!("{}/allowlist", ns.name),
            ],
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = preflight();
    assert_eq!(code, Some(1), "{text}");
    // This apiserver is v1.28; Istio's CRDs are installed; nothing is registered; the
    // kubernetes Service address is outside 192.0.2.0/24.
    assert!(text.contains("FAIL Kubernetes v1.28"), "{text}");
    assert!(text.contains("ok   Istio's CRDs are installed"), "{text}");
    assert!(
        text.contains("FAIL no webhook configuration registered"),
        "{text}"
    );
    assert!(
        text.contains("FAIL outside the allowlist's clusterNetworks")
            && text.contains("default/kubernetes"),
        "{text}"
    );
    let svc_ip = kube.ok(&[
        "get",
        "service",
        "kubernetes",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    kube.apply(&cm(&format!("{}/32", svc_ip.trim()))).unwrap();
    let (_, text) = preflight();
    assert!(
        text.contains("ok   the allowlist's clusterNetworks hold"),
        "{text}"
    );
}
