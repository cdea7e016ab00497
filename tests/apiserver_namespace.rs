//! The install moved to another namespace, on a real kube-apiserver:
//! `deploy/overlays/other-namespace` rendered (by the server's kubectl) with the test's
//! namespace in place of `platform-egress`, its namespaced RBAC, ConfigMaps and Service
//! applied, and the server run with the rendered Deployment's flags as the kubelet passes
//! them (`$(POD_NAMESPACE)` expanded, `POD_NAMESPACE` set). Nothing names `egress-guard`:
//! the server reads the allowlist there, registers entries that call the Service there
//! and spare that namespace, and they deny a tenant's unapproved host at apply.
//!
//! No kubelet runs pods here, so the Deployment itself is not applied (its preStop sleep
//! needs 1.29+ anyway), and the apiserver cannot reach a ClusterIP: the entries as
//! registered are checked as written and by the error of a call to the Service, and
//! then the same entries, pointed at the server's URL, judge real writes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::ServeCommand;
use common::apiserver::{Kube, TEST_LABEL};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);
const KINDS: [&str; 2] = [
    "validatingwebhookconfiguration",
    "mutatingwebhookconfiguration",
];

fn yaml_docs(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The overlay rendered with `namespace` instead of `platform-egress`, from a copy of
/// `deploy/` (kustomize refuses absolute paths to bases, so the copy keeps the relative
/// ones).
fn render(kube: &Kube, dir: &Path, namespace: &str) -> Vec<Value> {
    let deploy = dir.join("deploy");
    copy_dir(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")),
        &deploy,
    );
    let overlay = deploy.join("overlays/other-namespace");
    let text = std::fs::read_to_string(overlay.join("kustomization.yaml")).unwrap();
    assert_eq!(
        text.matches("\nnamespace: platform-egress\n").count(),
        1,
        "the overlay sets `namespace: platform-egress` once"
    );
    let text = text.replace(
        "\nnamespace: platform-egress\n",
        &format!("\nnamespace: {namespace}\n"),
    );
    std::fs::write(overlay.join("kustomization.yaml"), text).unwrap();
    yaml_docs(&kube.ok(&["kustomize", overlay.to_str().unwrap()]))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn object<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendering"))
}

/// The args of Deployment `name` as the kubelet passes them: `$(VAR)` replaced by the
/// container's env, a fieldRef to metadata.namespace by the Deployment's namespace.
fn kubelet_args(objs: &[Value], name: &str) -> Vec<String> {
    let dep = object(objs, "Deployment", name);
    let ns = dep["metadata"]["namespace"].as_str().unwrap();
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let v = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.namespace") => ns.to_owned(),
                _ => e["value"].as_str()?.to_owned(),
            };
            Some((e["name"].as_str()?.to_owned(), v))
        })
        .collect();
    c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            env.iter()
                .fold(a.as_str().unwrap().to_owned(), |a, (k, v)| {
                    a.replace(&format!("$({k})"), v)
                })
        })
        .collect()
}

fn live(kube: &Kube, kind: &str, name: &str) -> Option<Value> {
    let out = kube.run(&["get", kind, name, "-o", "json"], None);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn entries(configs: &[Value]) -> Vec<&Value> {
    configs
        .iter()
        .flat_map(|c| c["webhooks"].as_array().unwrap())
        .collect()
}

/// The values of the entry's `kubernetes.io/metadata.name` expressions with `op`.
fn names(w: &Value, op: &str) -> Vec<String> {
    w["namespaceSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == op)
        .flat_map(|e| e["values"].as_array().unwrap())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn service_entry(ns: &str, name: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{hosts: [{host}], location: MESH_EXTERNAL, resolution: DNS, ports: [{{number: 443, name: https, protocol: TLS}}]}}\n"
    )
}

fn can_i(kube: &Kube, ns: &str, sa: &str, verb: &str, what: &str) -> bool {
    let who = format!("system:serviceaccount:{ns}:{sa}");
    let out = kube.run(&["auth", "can-i", verb, what, "-n", ns, "--as", &who], None);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[tokio::test]
async fn the_install_in_another_namespace_reads_registers_and_denies_there() {
    let kube = require_kube!();
    let install = kube.namespace("platform-egress");
    let tenant = kube.namespace("tenant");
    // Where the entries as registered (calling the Service) apply: writes there show
    // which Service the apiserver calls.
    let probe = kube.namespace("probe");
    let ns = install.name.as_str();
    let dir = tempfile::tempdir().unwrap();
    let objs = render(&kube, dir.path(), ns);

    // What kustomize moved: every namespace, the bindings' subjects, the DNS names.
    assert_eq!(object(&objs, "Namespace", ns)["kind"], "Namespace");
    for o in &objs {
        let m = &o["metadata"];
        assert!(
            m["namespace"].is_null() || m["namespace"] == ns,
            "{} {} in {}",
            o["kind"],
            m["name"],
            m["namespace"]
        );
        for s in o["subjects"].as_array().into_iter().flatten() {
            if s["kind"] == "ServiceAccount" {
                assert_eq!(s["namespace"], ns, "{} {}", o["kind"], m["name"]);
            }
        }
    }
    assert_eq!(
        object(&objs, "Certificate", "egress-guard-tls")["spec"]["dnsNames"],
        serde_json::json!([
            format!("egress-guard.{ns}.svc"),
            format!("egress-guard.{ns}.svc.cluster.local")
        ])
    );
    let auditor = kubelet_args(&objs, "egress-guard-auditor");
    assert!(
        auditor.contains(&format!(
            "--allowlist-configmap={ns}/egress-guard-allowlist"
        )),
        "{auditor:?}"
    );

    // The namespaced objects a server needs (no Deployments: no kubelet here; no
    // cert-manager kinds: no CRDs). The cluster-scoped ones keep their fixed names,
    // shared by every test on this server, and are left out.
    let applied: Vec<&Value> = objs
        .iter()
        .filter(|o| o["metadata"]["namespace"] == ns)
        .filter(|o| !matches!(o["kind"].as_str(), Some("Deployment")))
        .filter(|o| o["apiVersion"] != "cert-manager.io/v1")
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": applied});
    kube.apply(&list.to_string())
        .expect("the rendered objects apply");
    // The Roles bind the ServiceAccounts of this namespace.
    assert!(can_i(
        &kube,
        ns,
        "egress-guard",
        "watch",
        "configmaps/egress-guard-allowlist"
    ));
    assert!(can_i(
        &kube,
        ns,
        "egress-guard",
        "list",
        "endpointslices.discovery.k8s.io"
    ));
    assert!(can_i(
        &kube,
        ns,
        "egress-guard-auditor",
        "get",
        "configmaps/egress-guard-allowlist"
    ));
    // A ready endpoint behind the rendered Service: the server registers only then.
    kube.apply(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: egress-guard-test\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: egress-guard}}\n\
         addressType: IPv4\nports: [{{name: https, port: 8443, protocol: TCP}}]\nendpoints:\n  - addresses: [192.0.2.10]\n    conditions: {{ready: true}}\n"
    ))
    .unwrap();

    // The webhooks file as mounted (the ConfigMap egress-guard-webhooks-<hash>), under
    // names of this test's, every entry narrowed to the probe namespace.
    let mounted = objs
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("egress-guard-webhooks-"))
        })
        .expect("the webhooks ConfigMap");
    let name = format!("eg-ns-{ns}");
    let mut docs = Vec::new();
    for mut v in yaml_docs(mounted["data"]["webhooks.yaml"].as_str().unwrap()) {
        v["metadata"]["name"] = name.clone().into();
        for w in v["webhooks"].as_array_mut().unwrap() {
            w["namespaceSelector"]["matchLabels"][TEST_LABEL] = probe.name.clone().into();
        }
        docs.push(serde_norway::to_string(&v).unwrap());
    }
    let file = dir.path().join("webhooks.yaml");
    std::fs::write(&file, docs.join("---\n")).unwrap();

    // The server with the Deployment's flags; the test supplies what the pod mounts
    // (TLS pair, CA, webhooks file) and its own ports. --webhook-owner is left out: the
    // ClusterRole it names is cluster-scoped and not applied here.
    let rendered = kubelet_args(&objs, "egress-guard");
    let replaced = [
        "--listen=",
        "--metrics-listen=",
        "--tls-cert=",
        "--tls-key=",
        "--register-webhooks=",
        "--webhook-ca-bundle=",
        "--webhook-owner=",
    ];
    for flag in replaced {
        assert!(
            rendered.iter().any(|a| a.starts_with(flag)),
            "{flag} {rendered:?}"
        );
    }
    assert_eq!(rendered[0], "serve");
    assert!(
        rendered.contains(&format!(
            "--allowlist-configmap={ns}/egress-guard-allowlist"
        )),
        "{rendered:?}"
    );
    let kept: Vec<&String> = rendered[1..]
        .iter()
        .filter(|a| !replaced.iter().any(|f| a.starts_with(f)))
        .collect();
    let (cert, key) = kube.webhook_cert();
    let server = ServeCommand::with_tls(&cert, &key, &kube.ca_pem())
        .args(kept)
        .arg_path("--register-webhooks", &file)
        .arg_path("--webhook-ca-bundle", &kube.dir.join("certs/ca.crt"))
        .env("POD_NAMESPACE", ns)
        .env("KUBECONFIG", &kube.kubeconfig)
        .spawn()
        .await;

    // Registered once the allowlist loaded from this namespace's ConfigMap.
    let configs = kube.wait_for("both configurations registered", LONG, || {
        let [v, m] = KINDS.map(|k| live(&kube, k, &name));
        let configs = vec![v?, m?];
        entries(&configs)
            .iter()
            .all(|w| w["clientConfig"]["caBundle"].is_string())
            .then_some(configs)
    });
    let all = entries(&configs);
    assert_eq!(all.len(), 5);
    for w in &all {
        let what = &w["name"];
        assert_eq!(w["clientConfig"]["service"]["namespace"], ns, "{what}");
        assert_eq!(
            w["clientConfig"]["service"]["name"], "egress-guard",
            "{what}"
        );
        let (not_in, is_in) = (names(w, "NotIn"), names(w, "In"));
        let named = [not_in.clone(), is_in.clone()].concat();
        assert!(
            !named.iter().any(|n| n == "egress-guard"),
            "{what}: {named:?}"
        );
        if what == "allowlist.validate.egress-guard.io" {
            assert_eq!(is_in, [ns], "only the install's namespace");
        } else {
            assert!(
                not_in.iter().any(|n| n == ns),
                "{what} spares {ns}: {not_in:?}"
            );
        }
    }
    for c in &configs {
        assert_eq!(c["metadata"]["labels"]["egress-guard.io/instance"], ns);
    }
    // The apiserver calls the Service in the install's namespace (and, with no network
    // here, fails closed).
    let err = kube
        .apply(&service_entry(&probe.name, "any", "api.github.com"))
        .unwrap_err();
    assert!(
        err.contains(&format!("egress-guard.{ns}.svc")),
        "the call goes to the Service in {ns}: {err}"
    );

    // The same entries, calling the server by URL: a tenant's unapproved host is denied
    // (the rendered allowlist grants nothing) ...
    let shipped: String = configs
        .iter()
        .map(|c| {
            let doc = serde_json::json!({
                "apiVersion": c["apiVersion"], "kind": c["kind"],
                "metadata": {"name": c["metadata"]["name"]}, "webhooks": c["webhooks"],
            });
            format!("---\n{}", serde_norway::to_string(&doc).unwrap())
        })
        .collect();
    let for_tenant = kube.register_webhook(&shipped, server.https.port(), &tenant);
    let for_install = kube.register_webhook(&shipped, server.https.port(), &install);
    let denied = kube
        .apply(&service_entry(&tenant.name, "evil", "evil.example.com"))
        .unwrap_err();
    assert!(
        denied.contains("denied the request") && denied.contains("EG101"),
        "{denied}"
    );
    // ... the install's own namespace is spared ...
    kube.apply(&service_entry(ns, "own", "evil.example.com"))
        .expect("the install's namespace is not judged");
    // ... and its allowlist ConfigMap is the one validated.
    let bad = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: egress-guard-allowlist, namespace: {ns}}}\n\
         data:\n  allowlist.yaml: 'mode: sideways'\n"
    );
    let refused = kube.apply(&bad).unwrap_err();
    assert!(refused.contains("denied the request"), "{refused}");

    drop(for_tenant);
    drop(for_install);
    drop(server);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args([
            "uninstall",
            "--namespace",
            ns,
            "--binding",
            "egress-guard-register-absent",
        ])
        .env_clear()
        .env("KUBECONFIG", &kube.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(KINDS.iter().all(|k| live(&kube, k, &name).is_none()));
}
