//! The webhook entries of `deploy/` as shipped, registered on a real kube-apiserver and
//! answered by a real egress-guard server: what `kubectl` shows a tenant.

mod common;

use common::{Options, TestServer};

const WEBHOOKS: &str = include_str!("../deploy/base/webhooks.yaml");

const ALLOWLIST: &str = "hosts: [api.github.com]\ndefaultTimeout: 15s\n";

async fn server(kube: &common::apiserver::Kube) -> TestServer {
    TestServer::start_with(Options {
        allowlist: ALLOWLIST.to_owned(),
        tls: Some(kube.webhook_cert()),
        ..Options::default()
    })
    .await
}

fn service_entry(ns: &str, name: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{host}]
  ports: [{{number: 443, name: https, protocol: TLS}}]
  resolution: DNS
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_shows_the_denial_of_an_unapproved_service_entry() {
    let kube = require_kube!();
    let ns = kube.namespace("se-deny");
    let srv = server(&kube).await;
    let _hooks = kube.register_webhook(WEBHOOKS, srv.addr.port(), &ns);
    let (k, name) = (kube.clone(), ns.name.clone());
    let err = tokio::task::spawn_blocking(move || {
        // The apiserver picks registrations up within a second or so.
        k.wait_for(
            "the webhook denies",
            std::time::Duration::from_secs(20),
            || {
                k.apply(&service_entry(&name, "exfil", "upload.evil.example.org"))
                    .err()
            },
        )
    })
    .await
    .unwrap();
    assert!(
        err.contains(r#"admission webhook "validate.egress-guard.io" denied the request"#),
        "{err}"
    );
    assert!(
        err.contains("EG101 spec.hosts[0] \"upload.evil.example.org\""),
        "{err}"
    );
    let (k, name) = (kube.clone(), ns.name.clone());
    tokio::task::spawn_blocking(move || {
        k.apply(&service_entry(&name, "github", "api.github.com"))
            .expect("an approved host is admitted")
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mutating_entry_adds_the_default_timeout_on_a_real_apiserver() {
    let kube = require_kube!();
    let ns = kube.namespace("vs-timeout");
    let srv = server(&kube).await;
    let _hooks = kube.register_webhook(WEBHOOKS, srv.addr.port(), &ns);
    let vs = format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: github, namespace: {}}}
spec:
  hosts: [api.github.com]
  http:
  - route:
    - destination: {{host: api.github.com}}
",
        ns.name
    );
    let k = kube.clone();
    let name = ns.name.clone();
    let timeout = tokio::task::spawn_blocking(move || {
        k.wait_for(
            "the route gets its timeout",
            std::time::Duration::from_secs(20),
            || {
                let _ = k.apply(&vs);
                let t = k.ok(&[
                    "get",
                    "virtualservice",
                    "github",
                    "-n",
                    &name,
                    "-o",
                    "jsonpath={.spec.http[0].timeout}",
                ]);
                if t.is_empty() {
                    // Registered after the first apply: delete and try again.
                    let _ = k.run(&["delete", "virtualservice", "github", "-n", &name], None);
                    None
                } else {
                    Some(t)
                }
            },
        )
    })
    .await
    .unwrap();
    assert_eq!(timeout, "15s");
}
