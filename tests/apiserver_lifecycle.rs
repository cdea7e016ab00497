//! The pod after admission on a real kube-apiserver, with `deploy/`'s webhook entries as
//! shipped: what `kubectl set image`, `exec`, `debug` show a tenant, and the pods that
//! kube-controller-manager writes for a ReplicationController and a Deployment.

mod common;

use std::time::Duration;

use common::apiserver::{Kube, TestNamespace};
use common::{Options, TestServer, fixture_json};
use serde_json::{Value, json};

const WEBHOOKS: &str = include_str!("../deploy/base/webhooks.yaml");

const ALLOWLIST: &str = "hosts: [api.github.com]\n";

const DENIED: &str = r#"admission webhook "workloads.validate.egress-guard.io" denied the request"#;

async fn server(kube: &Kube) -> TestServer {
    TestServer::start_with(Options {
        allowlist: ALLOWLIST.to_owned(),
        tls: Some(kube.webhook_cert()),
        ..Options::default()
    })
    .await
}

/// The injected pod the kube-apiserver once sent for review, as a tenant would create it
/// in `ns` (server-set metadata removed).
fn injected_pod(ns: &str, name: &str) -> Value {
    let mut pod = fixture_json("validate-create-pod-v1-app-injected")["request"]["object"].take();
    let meta = pod["metadata"].as_object_mut().unwrap();
    for k in ["uid", "creationTimestamp", "managedFields"] {
        meta.remove(k);
    }
    meta["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(ns));
    pod
}

/// Runs blocking kubectl work off the runtime that serves the webhook.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Creates the injected pod once the registration is live: the first creates can race
/// the apiserver picking the webhooks up, so a pod created before is recreated until a
/// denial of a probe object proves the webhook answers.
fn create_when_live(kube: &Kube, ns: &TestNamespace, pod: &Value) {
    let probe = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probe", "namespace": ns.name},
        "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "busybox"}]},
    });
    let err = kube.wait_for(
        "the webhook answers",
        Duration::from_secs(20),
        || match kube.apply(&probe.to_string()) {
            Ok(_) => {
                let _ = kube.run(
                    &["delete", "pod", "probe", "-n", &ns.name, "--wait=false"],
                    None,
                );
                None
            }
            Err(e) => Some(e),
        },
    );
    assert!(err.contains(DENIED) && err.contains("EG304"), "{err}");
    kube.apply(&pod.to_string())
        .expect("the injected pod is admitted");
}

/// The stderr of a kubectl command that must fail.
fn fails(kube: &Kube, args: &[&str]) -> String {
    let out = kube.run(args, None);
    assert!(!out.status.success(), "kubectl {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn set_image_exec_and_debug_as_kubectl_shows_them() {
    let kube = require_kube!();
    let ns = kube.namespace("lifecycle");
    let srv = server(&kube).await;
    let _hooks = kube.register_webhook(WEBHOOKS, srv.addr.port(), &ns);
    let k = kube.clone();
    blocking(move || {
        let n = ns.name.as_str();
        create_when_live(&k, &ns, &injected_pod(n, "shop"));

        // The proxy's image swapped for one that runs as 1337 outside capture.
        let err = fails(
            &k,
            &[
                "set",
                "image",
                "pod/shop",
                "istio-proxy=evil.example/proxy:1",
                "-n",
                n,
            ],
        );
        assert!(err.contains(DENIED), "{err}");
        assert!(err.contains("EG307 spec.containers[1].image"), "{err}");
        // The app's image is the tenant's own.
        k.ok(&[
            "set",
            "image",
            "pod/shop",
            "shop=registry.example.com/shop:2",
            "-n",
            n,
        ]);

        // A shell in the proxy's container runs as 1337; in the app's it is admitted
        // (and then fails only because this cluster has no node to run it on).
        let err = fails(
            &k,
            &["exec", "shop", "-c", "istio-proxy", "-n", n, "--", "sh"],
        );
        assert!(err.contains(DENIED), "{err}");
        assert!(err.contains("EG309"), "{err}");
        let err = fails(&k, &["exec", "shop", "-c", "shop", "-n", n, "--", "ls"]);
        assert!(!err.contains("egress-guard"), "{err}");

        // A debug container beside the app runs captured, as the app does; one with
        // the netadmin profile could rewrite the pod's capture rules.
        k.ok(&["debug", "shop", "--image=busybox", "-c", "dbg", "-n", n]);
        let err = fails(
            &k,
            &[
                "debug",
                "shop",
                "--image=busybox",
                "-c",
                "dbg2",
                "--profile=netadmin",
                "-n",
                n,
            ],
        );
        assert!(err.contains(DENIED), "{err}");
        assert!(err.contains("spec.ephemeralContainers[1]"), "{err}");
    })
    .await;
}

fn workload(kind: &str, ns: &str, name: &str, pod_spec: Value) -> String {
    let (api, selector) = match kind {
        "Deployment" => ("apps/v1", json!({"matchLabels": {"app": name}})),
        _ => ("v1", json!({"app": name})),
    };
    json!({
        "apiVersion": api, "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": selector,
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn controllers_create_the_pods_of_admitted_templates_only() {
    let kube = require_kube!();
    if !kube.controllers_running() {
        return;
    }
    let ns = kube.namespace("controllers");
    let srv = server(&kube).await;
    let _hooks = kube.register_webhook(WEBHOOKS, srv.addr.port(), &ns);
    let k = kube.clone();
    blocking(move || {
        let n = ns.name.as_str();
        let ordinary = json!({"containers": [{"name": "web", "image": "nginx:1.27"}]});
        let escape = json!({
            "hostNetwork": true,
            "containers": [{"name": "web", "image": "nginx:1.27"}],
        });
        // A template that would run its pods on the host network is refused at apply,
        // as its pods would be.
        let err = k.wait_for("the webhook denies", Duration::from_secs(20), || {
            k.apply(&workload(
                "ReplicationController",
                n,
                "rc-escape",
                escape.clone(),
            ))
            .err()
        });
        assert!(err.contains(DENIED), "{err}");
        assert!(
            err.contains("EG304 spec.template.spec.hostNetwork"),
            "{err}"
        );
        let err = k
            .apply(&workload("Deployment", n, "dep-escape", escape))
            .unwrap_err();
        assert!(
            err.contains("EG304 spec.template.spec.hostNetwork"),
            "{err}"
        );

        // Ordinary workloads: the controllers' pods pass the same webhook.
        for kind in ["ReplicationController", "Deployment"] {
            let name = kind.to_lowercase();
            k.apply(&workload(kind, n, &name, ordinary.clone()))
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
        for app in ["replicationcontroller", "deployment"] {
            let pods = k.wait_for(&format!("{app}'s pods"), Duration::from_secs(30), || {
                let names = k.ok(&[
                    "get",
                    "pods",
                    "-n",
                    n,
                    "-l",
                    &format!("app={app}"),
                    "-o",
                    "jsonpath={.items[*].metadata.name}",
                ]);
                (names.split_whitespace().count() == 2).then_some(names)
            });
            assert!(!pods.is_empty());
        }
    })
    .await;
}
