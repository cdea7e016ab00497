//! The kinds beyond the five Istio networking kinds, over real HTTPS, with the
//! AdmissionReviews a real kube-apiserver sent for them (tests/fixtures/admission),
//! judged under the embedded example allowlist.

mod common;

use common::verdicts::{Want, judge, named};
use common::{TestServer, fixture_json};
use serde_json::{Value, json};

#[tokio::test]
async fn captured_reviews_of_every_new_kind_get_their_verdicts() {
    let s = TestServer::start().await;
    let cases: [(&str, Want); 14] = [
        ("validate-create-pod-v1-app-injected", Want::Allow),
        (
            "validate-create-pod-v1-no-sidecar",
            Want::Deny(&[("EG304", "metadata.labels[sidecar.istio.io/inject]")]),
        ),
        (
            "validate-create-pod-v1-exclude-ranges",
            Want::Deny(&[
                (
                    "EG305",
                    "metadata.annotations[traffic.sidecar.istio.io/excludeOutboundIPRanges]",
                ),
                (
                    "EG305",
                    "metadata.annotations[traffic.sidecar.istio.io/excludeOutboundPorts]",
                ),
                ("EG306", "spec.containers[0].securityContext.runAsUser"),
            ]),
        ),
        ("validate-create-deployment-v1-shop", Want::Allow),
        (
            "validate-create-service-v1-partner-cname",
            Want::Deny(&[("EG101", "spec.externalName")]),
        ),
        ("validate-create-service-v1-partner-manual", Want::Allow),
        (
            "validate-create-endpoints-v1-partner-manual",
            Want::Deny(&[("EG103", "subsets[0].addresses[0].ip")]),
        ),
        (
            "validate-create-endpointslice-v1-partner-manual-1",
            Want::Deny(&[("EG103", "endpoints[0].addresses[0]")]),
        ),
        (
            "validate-create-endpointslice-v1-controller-shop",
            Want::Skip,
        ),
        (
            "validate-create-endpointslice-v1-mirrored-partner-approved",
            Want::Skip,
        ),
        (
            "validate-create-workloadentry-v1-partner-vm",
            Want::Deny(&[("EG103", "spec.address")]),
        ),
        (
            "validate-create-envoyfilter-v1alpha3-extra-cluster",
            Want::Deny(&[("EG303", "spec")]),
        ),
        (
            "validate-create-wasmplugin-v1alpha1-auth-plugin",
            Want::Deny(&[("EG101", "spec.url")]),
        ),
        (
            "validate-create-requestauthentication-v1-jwt",
            Want::Deny(&[("EG101", "spec.jwtRules[0].jwksUri")]),
        ),
    ];
    for (name, want) in cases {
        judge(&s, name, want).await;
    }
}

#[tokio::test]
async fn kubectl_label_on_a_running_pod_is_allowed() {
    // Capture is set up when a pod starts: relabelling a running pod that opted out
    // changes nothing, and must not be blocked (the pod could never be cleaned up).
    let s = TestServer::start().await;
    judge(&s, "validate-update-pod-v1-no-sidecar", Want::Skip).await;
}

#[tokio::test]
async fn a_debug_container_running_as_the_proxy_is_denied() {
    let s = TestServer::start().await;
    let mut review = fixture_json("validate-update-pod-v1-no-sidecar");
    review["request"]["subResource"] = json!("ephemeralcontainers");
    review["request"]["object"]["spec"]["ephemeralContainers"] = json!([
        {"name": "debugger", "image": "busybox", "securityContext": {"runAsUser": 1337}}
    ]);
    let answer = s
        .review("/validate", serde_json::to_vec(&review).unwrap())
        .await;
    let message = answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(
        named(message),
        [(
            "EG306".to_owned(),
            "spec.ephemeralContainers[0].securityContext.runAsUser".to_owned()
        )]
    );
}

#[tokio::test]
async fn controller_writes_are_judged_when_the_writer_is_not_trusted() {
    // The same EndpointSlice a controller wrote, sent by a tenant, is judged.
    let s = TestServer::start().await;
    let mut review: Value =
        fixture_json("validate-create-endpointslice-v1-mirrored-partner-approved");
    review["request"]["userInfo"] =
        json!({"username": "alice", "groups": ["system:authenticated"]});
    review["request"]["object"]["endpoints"][0]["addresses"] = json!(["198.51.100.77"]);
    let answer = s
        .review("/validate", serde_json::to_vec(&review).unwrap())
        .await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
}
