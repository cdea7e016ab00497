//! A pod after admission, over real HTTPS, from the reviews a real kube-apiserver sent
//! (tests/fixtures/admission): `kubectl set image`, `exec`, `attach`, `debug`,
//! `annotate`, a ReplicationController, and metadata-only UPDATEs that change who sees
//! an object. Each attack is beside the ordinary operation that must keep working.

mod common;

use common::verdicts::{Want, judge, judge_body};
use common::{TestServer, fixture_json};
use serde_json::{Value, json};

const SWAP: &str = "validate-update-pod-v1-proxy-image-swap";
const EXEC: &str = "validate-connect-pods-exec-v1-istio-proxy";
const ATTACH: &str = "validate-connect-pods-attach-v1-shop";
const DEBUG: &str = "validate-update-pods-ephemeralcontainers-v1-debug";
const FORGED: &str = "validate-update-pod-v1-status-annotation-forged";
const RC: &str = "validate-create-replicationcontroller-v1-rc";
const EXPORT: &str = "validate-update-service-v1-partner-exportto-removed";

/// The fixture `name`, changed by `edit`, as a request body.
fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review = fixture_json(name);
    edit(&mut review["request"]);
    serde_json::to_vec(&review).unwrap()
}

#[tokio::test]
async fn set_image_on_the_proxy_is_denied_and_on_the_app_allowed() {
    let s = TestServer::start().await;
    judge(
        &s,
        SWAP,
        Want::Deny(&[("EG307", "spec.containers[1].image")]),
    )
    .await;
    // The same UPDATE with the proxy's image left alone and the app's changed.
    let app_only = edited(SWAP, |r| {
        let proxy = r["oldObject"]["spec"]["containers"][1]["image"].clone();
        r["object"]["spec"]["containers"][1]["image"] = proxy;
        r["object"]["spec"]["containers"][0]["image"] = json!("registry.example.com/shop:2.0");
    });
    judge_body(&s, SWAP, app_only, Want::Allow).await;
}

#[tokio::test]
async fn exec_and_attach_reach_app_containers_only() {
    let s = TestServer::start().await;
    judge(&s, EXEC, Want::Deny(&[("EG309", "container")])).await;
    judge(&s, ATTACH, Want::Allow).await;
    let into = |name: &'static str, container: &'static str| {
        edited(name, move |r| r["object"]["container"] = json!(container))
    };
    judge_body(&s, EXEC, into(EXEC, "shop"), Want::Allow).await;
    judge_body(
        &s,
        ATTACH,
        into(ATTACH, "istio-proxy"),
        Want::Deny(&[("EG309", "container")]),
    )
    .await;
    judge_body(
        &s,
        EXEC,
        into(EXEC, "istio-init"),
        Want::Deny(&[("EG309", "container")]),
    )
    .await;
    // istioctl's read of the proxy's admin API.
    let read = edited(EXEC, |r| {
        r["object"]["command"] = json!(["pilot-agent", "request", "GET", "config_dump"]);
    });
    judge_body(&s, EXEC, read, Want::Allow).await;
    // Without a container the apiserver picks the only one: a gateway's proxy.
    let unnamed = edited(EXEC, |r| {
        r["object"].as_object_mut().unwrap().remove("container");
    });
    judge_body(&s, EXEC, unnamed, Want::Deny(&[("EG309", "container")])).await;
    // Port-forwarding carries connections into the pod, not out of it.
    let forward = edited(EXEC, |r| {
        r["subResource"] = json!("portforward");
        r["requestSubResource"] = json!("portforward");
        r["kind"]["kind"] = json!("PodPortForwardOptions");
        r["object"] =
            json!({"kind": "PodPortForwardOptions", "apiVersion": "v1", "ports": [15000]});
    });
    judge_body(&s, EXEC, forward, Want::Skip).await;
}

#[tokio::test]
async fn a_rewritten_status_is_denied_and_never_trusted() {
    let s = TestServer::start().await;
    judge(
        &s,
        FORGED,
        Want::Deny(&[("EG304", "metadata.annotations[sidecar.istio.io/status]")]),
    )
    .await;
    // `kubectl debug` into the app container is an ordinary operation.
    judge(&s, DEBUG, Want::Allow).await;
    // A debug container named like one the status (rewritten after admission) lists is
    // still the tenant's: what the pod was admitted with decides.
    let forged = fixture_json(FORGED)["request"]["object"]["metadata"]["annotations"]
        ["sidecar.istio.io/status"]
        .clone();
    let disguised = edited(DEBUG, |r| {
        r["object"]["metadata"]["annotations"]["sidecar.istio.io/status"] = forged;
        r["object"]["spec"]["ephemeralContainers"][0]["name"] = json!("istio-validation");
        r["object"]["spec"]["ephemeralContainers"][0]["securityContext"] =
            json!({"runAsUser": 1337});
    });
    judge_body(
        &s,
        DEBUG,
        disguised,
        Want::Deny(&[(
            "EG306",
            "spec.ephemeralContainers[0].securityContext.runAsUser",
        )]),
    )
    .await;
}

#[tokio::test]
async fn a_debug_container_in_a_gateway_pod_is_denied() {
    let s = TestServer::start().await;
    let gateway = edited(DEBUG, |r| {
        for o in ["object", "oldObject"] {
            r[o]["metadata"]["labels"]["gateway.istio.io/managed"] =
                json!("istio.io-gateway-controller");
        }
    });
    judge_body(
        &s,
        DEBUG,
        gateway,
        Want::Deny(&[("EG304", "spec.ephemeralContainers[0]")]),
    )
    .await;
}

#[tokio::test]
async fn ambient_capture_cannot_be_switched_off_on_a_running_pod() {
    let s = TestServer::start().await;
    let off = edited(FORGED, |r| {
        let old = r["oldObject"].clone();
        r["object"] = old;
        r["object"]["metadata"]["labels"]["istio.io/dataplane-mode"] = json!("none");
    });
    judge_body(
        &s,
        FORGED,
        off,
        Want::Deny(&[("EG304", "metadata.labels[istio.io/dataplane-mode]")]),
    )
    .await;
    // An ordinary relabel of the running pod.
    let relabel = edited(FORGED, |r| {
        let old = r["oldObject"].clone();
        r["object"] = old;
        r["object"]["metadata"]["labels"]["release"] = json!("canary");
    });
    judge_body(&s, FORGED, relabel, Want::Allow).await;
}

#[tokio::test]
async fn replication_controllers_are_judged_like_the_other_templates() {
    let s = TestServer::start().await;
    judge(&s, RC, Want::Allow).await;
    let host = edited(RC, |r| {
        r["object"]["spec"]["template"]["spec"]["hostNetwork"] = json!(true)
    });
    judge_body(
        &s,
        RC,
        host,
        Want::Deny(&[("EG304", "spec.template.spec.hostNetwork")]),
    )
    .await;
}

#[tokio::test]
async fn removing_export_to_is_judged_though_the_spec_is_unchanged() {
    let s = TestServer::start().await;
    // The ExternalName is not approved for team-a; with the spec unchanged the UPDATE
    // used to be waived, though it widened who sees the Service.
    judge(&s, EXPORT, Want::Deny(&[("EG101", "spec.externalName")])).await;
    // In an audit namespace the Service now reaches enforcing namespaces.
    let sandbox = edited(EXPORT, |r| {
        r["namespace"] = json!("sandbox");
        r["object"]["metadata"]["namespace"] = json!("sandbox");
        r["oldObject"]["metadata"]["namespace"] = json!("sandbox");
    });
    judge_body(
        &s,
        EXPORT,
        sandbox,
        Want::Deny(&[
            ("EG101", "spec.externalName"),
            (
                "EG107",
                "metadata.annotations[networking.istio.io/exportTo]",
            ),
        ]),
    )
    .await;
}

const BACKSTOP: &str = "metadata.labels[egress-guard.io/backstop]";

/// A NetworkPolicy review (UPDATE with `new`, DELETE without) of the stored `old`, by
/// `user`, in the captured Service UPDATE's envelope.
fn network_policy(old: Value, new: Option<Value>, user: &str) -> Vec<u8> {
    edited(EXPORT, |r| {
        r["kind"] = json!({"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"});
        r["resource"] =
            json!({"group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"});
        r["name"] = json!("egress-backstop");
        r["userInfo"] = json!({"username": user, "groups": ["system:authenticated"]});
        r["oldObject"] = old;
        match new {
            Some(n) => r["object"] = n,
            None => {
                r["operation"] = json!("DELETE");
                r["object"] = Value::Null;
            }
        }
    })
}

fn backstop(selector: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "egress-backstop", "namespace": "team-a",
                     "labels": {"egress-guard.io/backstop": "true"}},
        "spec": {"podSelector": selector, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"ipBlock": {"cidr": "10.244.0.0/16"}}]}]}
    })
}

#[tokio::test]
async fn the_backstop_network_policy_is_the_platforms() {
    let s = TestServer::start().await;
    let tenant = "alice@team-a.example.com";
    let narrowed = backstop(json!({"matchLabels": {"nothing": "here"}}));
    judge_body(
        &s,
        EXPORT,
        network_policy(backstop(json!({})), Some(narrowed), tenant),
        Want::Deny(&[("EG310", BACKSTOP)]),
    )
    .await;
    judge_body(
        &s,
        EXPORT,
        network_policy(backstop(json!({})), None, tenant),
        Want::Deny(&[("EG310", BACKSTOP)]),
    )
    .await;
    // An annotation on it changes nothing it enforces.
    let mut annotated = backstop(json!({}));
    annotated["metadata"]["annotations"] = json!({"owner": "platform"});
    judge_body(
        &s,
        EXPORT,
        network_policy(backstop(json!({})), Some(annotated), tenant),
        Want::Allow,
    )
    .await;
    // A tenant's own policy is the tenant's to delete.
    let mut own = backstop(json!({}));
    own["metadata"]["labels"] = json!({"app": "shop"});
    judge_body(&s, EXPORT, network_policy(own, None, tenant), Want::Skip).await;
}
