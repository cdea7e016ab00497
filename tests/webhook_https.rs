//! The webhook over real HTTPS: verdicts on the real apiserver bodies, both review
//! versions, audit mode, mutation, bad input, metrics, certificate rotation, mTLS and
//! graceful shutdown.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{TestServer, eventually, fixture, fixture_json};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn response(review: &Value) -> &Value {
    &review["response"]
}

#[tokio::test]
async fn denies_unlisted_host_with_403_and_a_precise_message() {
    let s = TestServer::start().await;
    let body = fixture("validate-create-serviceentry-v1-exfil");
    let uid = fixture_json("validate-create-serviceentry-v1-exfil")["request"]["uid"].clone();
    let review = s.review("/validate", body).await;
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let r = response(&review);
    assert_eq!(r["uid"], uid);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("ServiceEntry default/exfil")
            && msg.contains("EG101")
            && msg.contains("spec.hosts[0]")
            && msg.contains("upload.evil.example.org"),
        "{msg}"
    );
}

#[tokio::test]
async fn allows_listed_hosts_for_every_kind_and_version() {
    let s = TestServer::start().await;
    for name in [
        "validate-create-serviceentry-v1-github-api",
        "validate-create-destinationrule-v1-github-api",
        "validate-create-gateway-v1-egress",
        "validate-create-sidecar-v1-default",
        "validate-create-virtualservice-v1-github-api",
        "validate-create-virtualservice-v1alpha3-reviews",
        "validate-create-serviceentry-v1-dryrun-github-api",
        "validate-delete-serviceentry-v1-github-api",
    ] {
        let review = s.review("/validate", fixture(name)).await;
        assert_eq!(response(&review)["allowed"], true, "{name}: {review}");
        assert_eq!(
            response(&review)["uid"],
            fixture_json(name)["request"]["uid"],
            "{name}"
        );
    }
}

#[tokio::test]
async fn v1beta1_reviews_are_answered_in_v1beta1() {
    let s = TestServer::start().await;
    let review = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-review-v1beta1-exfil"),
        )
        .await;
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(response(&review)["allowed"], false);
    assert_eq!(response(&review)["status"]["code"], 403);
}

#[tokio::test]
async fn dry_run_requests_get_the_same_verdict() {
    let s = TestServer::start().await;
    let real = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-exfil"),
        )
        .await;
    let dry = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-dryrun-exfil"),
        )
        .await;
    assert_eq!(response(&dry)["allowed"], false);
    assert_eq!(
        response(&dry)["status"]["code"],
        response(&real)["status"]["code"]
    );
}

#[tokio::test]
async fn audit_mode_allows_with_warnings_and_audit_annotations() {
    let allowlist = "mode: audit\nhosts: [api.github.com]\n".to_owned();
    let s = TestServer::start_with(common::Options {
        allowlist,
        ..Default::default()
    })
    .await;
    let review = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-exfil"),
        )
        .await;
    let r = response(&review);
    assert_eq!(r["allowed"], true);
    let warnings = r["warnings"].as_array().unwrap();
    assert!(
        warnings[0].as_str().unwrap().contains("EG101"),
        "{warnings:?}"
    );
    assert!(warnings.iter().all(|w| w.as_str().unwrap().len() <= 256));
    assert_eq!(r["auditAnnotations"]["codes"], "EG101");
    assert_eq!(r["auditAnnotations"]["mode"], "audit");
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains(
            r#"egress_guard_violations_total{code="EG101",mode="audit",namespace="default"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn unchanged_spec_updates_are_allowed_with_a_warning() {
    let s = TestServer::start_with(common::Options {
        allowlist: "hosts: [nothing.example]\n".into(),
        ..Default::default()
    })
    .await;
    let review = s
        .review(
            "/validate",
            fixture("validate-update-serviceentry-v1-github-api"),
        )
        .await;
    assert_eq!(response(&review)["allowed"], true);
    assert!(
        response(&review)["warnings"][0]
            .as_str()
            .unwrap()
            .contains("spec unchanged")
    );
    // A VirtualService's hosts and destinations get no allowlist verdict: the change
    // that is enforced here is an invalid timeout.
    let mut update = common::fixture_json("validate-update-virtualservice-v1-github-api");
    update["request"]["object"]["spec"]["http"][0]["timeout"] = "soon".into();
    let changed = s
        .review("/validate", serde_json::to_vec(&update).unwrap())
        .await;
    assert_eq!(
        response(&changed)["allowed"],
        false,
        "a changed spec is enforced"
    );
}

#[tokio::test]
async fn mutate_patch_applies_and_is_idempotent() {
    let s = TestServer::start().await;
    let mut review_in = fixture_json("mutate-create-virtualservice-v1-github-api");
    let review = s
        .review("/mutate", serde_json::to_vec(&review_in).unwrap())
        .await;
    let r = response(&review);
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    assert!(r["warnings"][0].as_str().unwrap().contains("spec.http[0]"));
    let patch = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let object = &mut review_in["request"]["object"];
    json_patch::patch(object, &patch.0).unwrap();
    assert_eq!(object["spec"]["http"][0]["timeout"], "15s");
    assert_eq!(object["spec"]["http"][1]["timeout"], "30s");
    let again = s
        .review("/mutate", serde_json::to_vec(&review_in).unwrap())
        .await;
    assert!(response(&again).get("patch").is_none(), "{again}");
    assert!(response(&again).get("warnings").is_none(), "{again}");

    // The UPDATE renamed the first route's match and still has no timeout there.
    let update = s
        .review(
            "/mutate",
            fixture("mutate-update-virtualservice-v1-github-api"),
        )
        .await;
    assert_eq!(
        decoded_patch(response(&update)),
        json!([{"op": "add", "path": "/spec/http/0/timeout", "value": "15s"}]),
        "{update}"
    );
    assert_eq!(
        response(&update)["warnings"],
        json!(["egress-guard: added default timeout 15s to spec.http[0]"])
    );
    // One route patched on CREATE, none on the re-submission, one on UPDATE.
    let metrics = s.metrics_text().await;
    assert_eq!(
        common::metric(&metrics, "egress_guard_timeouts_added_total"),
        Some(2.0),
        "{metrics}"
    );
}

/// The JSON patch of a response, decoded from base64.
fn decoded_patch(r: &Value) -> Value {
    let b64 = r["patch"]
        .as_str()
        .unwrap_or_else(|| panic!("no patch in {r}"));
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn non_istio_kinds_are_allowed_with_a_warning() {
    let s = TestServer::start().await;
    let mut review = fixture_json("validate-create-serviceentry-v1-exfil");
    review["request"]["kind"] =
        json!({"group": "apps", "version": "v1", "kind": "ControllerRevision"});
    let out = s
        .review("/validate", serde_json::to_vec(&review).unwrap())
        .await;
    assert_eq!(response(&out)["allowed"], true);
    assert!(
        response(&out)["warnings"][0]
            .as_str()
            .unwrap()
            .contains("ControllerRevision")
    );
}

/// Sends one raw request and returns the status code.
async fn status_of(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    ctype: Option<&str>,
    body: Vec<u8>,
) -> u16 {
    let mut req = s.client().request(method, s.url(path)).body(body);
    if let Some(c) = ctype {
        req = req.header("content-type", c);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    use reqwest::Method;
    let s = TestServer::start().await;
    let good = fixture("validate-create-serviceentry-v1-github-api");
    let json = Some("application/json");
    let truncated = good[..good.len() / 2].to_vec();
    let mut undecodable = fixture_json("validate-create-serviceentry-v1-exfil");
    undecodable["request"]["operation"] = json!(42);
    let no_request = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec();
    let oversized = vec![b' '; 3 * 1024 * 1024 + 10];
    // (method, path, content type, body, expected status)
    type Case<'a> = (Method, &'a str, Option<&'a str>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (Method::GET, "/validate", json, vec![], 405),
        (Method::POST, "/nope", json, good.clone(), 404),
        (
            Method::POST,
            "/validate",
            Some("text/plain"),
            good.clone(),
            415,
        ),
        (Method::POST, "/validate", None, good.clone(), 415),
        (Method::POST, "/validate", json, vec![], 400),
        (Method::POST, "/validate", json, b"{not json".to_vec(), 400),
        (Method::POST, "/mutate", json, truncated, 400),
        (Method::POST, "/validate", json, no_request, 400),
        (
            Method::POST,
            "/validate",
            json,
            b"\xff\xfe\x00garbage".to_vec(),
            400,
        ),
        (Method::POST, "/validate", json, oversized, 413),
    ];
    for (method, path, ctype, body, want) in cases {
        let got = status_of(&s, method.clone(), path, ctype, body).await;
        assert_eq!(got, want, "{method} {path} {ctype:?}");
        let ok = s.review("/validate", good.clone()).await;
        assert_eq!(
            response(&ok)["allowed"],
            true,
            "server still serves after {method} {path}"
        );
    }
    // A request whose uid is readable gets an AdmissionReview error, not a bare 400.
    let review = s
        .review("/validate", serde_json::to_vec(&undecodable).unwrap())
        .await;
    let r = response(&review);
    assert_eq!(r["uid"], undecodable["request"]["uid"]);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 400);
    let metrics = s.metrics_text().await;
    for reason in [
        "content_type",
        "malformed",
        "too_large",
        "no_request",
        "undecodable",
    ] {
        assert!(
            metrics.contains(&format!(
                "egress_guard_bad_requests_total{{reason=\"{reason}\"}}"
            )),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn metrics_and_probes_reflect_traffic() {
    let s = TestServer::start().await;
    s.review(
        "/validate",
        fixture("validate-create-serviceentry-v1-exfil"),
    )
    .await;
    s.review(
        "/validate",
        fixture("validate-create-serviceentry-v1-github-api"),
    )
    .await;
    s.review(
        "/mutate",
        fixture("mutate-create-virtualservice-v1-github-api"),
    )
    .await;
    let m = s.metrics_text().await;
    for line in [
        r#"egress_guard_requests_total{decision="deny",endpoint="validate",kind="ServiceEntry",operation="CREATE"} 1"#,
        r#"egress_guard_requests_total{decision="allow",endpoint="validate",kind="ServiceEntry",operation="CREATE"} 1"#,
        r#"egress_guard_requests_total{decision="patch",endpoint="mutate",kind="VirtualService",operation="CREATE"} 1"#,
        r#"egress_guard_violations_total{code="EG101",mode="enforce",namespace="default"} 1"#,
        "egress_guard_timeouts_added_total 1",
        r#"egress_guard_request_duration_seconds_count{endpoint="validate"} 2"#,
        r#"egress_guard_allowlist_reloads_total{result="success"} 1"#,
        "egress_guard_allowlist_entries 14",
        r#"egress_guard_tls_reloads_total{result="success"} 1"#,
    ] {
        assert!(m.contains(line), "missing {line}\n{m}");
    }
    assert!(m.contains("egress_guard_allowlist_info{revision="));
    let expiry: i64 = m
        .lines()
        .find_map(|l| l.strip_prefix("egress_guard_tls_cert_expiry_timestamp_seconds "))
        .expect("certificate expiry metric")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // The test certificate is valid for 30 days.
    assert!(
        (now + 29 * 86_400..now + 31 * 86_400).contains(&expiry),
        "{expiry}"
    );
    let health = reqwest::get(s.ops_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(s.ops_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn rotated_certificates_are_served_without_dropping_connections() {
    let s = TestServer::start().await;
    let old_client = s.client();
    let body = fixture("validate-create-serviceentry-v1-github-api");
    let send = |c: reqwest::Client, body: Vec<u8>, url: String| async move {
        c.post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
    };
    assert_eq!(
        send(old_client.clone(), body.clone(), s.url("/validate"))
            .await
            .unwrap()
            .status(),
        200
    );

    // cert-manager style rotation: a new CA and key written over the old files.
    let new_dir = tempfile::tempdir().unwrap();
    let new = common::write_certs(new_dir.path());
    std::fs::write(s.path("tls.key"), &new.key).unwrap();
    std::fs::write(s.path("tls.crt"), &new.cert).unwrap();

    let new_client = common::client_trusting(new.ca_cert.as_bytes(), None);
    let url = s.url("/validate");
    eventually(Duration::from_secs(10), || {
        let (c, b, u) = (new_client.clone(), body.clone(), url.clone());
        async move { send(c, b, u).await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    // The kept-alive connection negotiated under the old certificate still works.
    assert_eq!(
        send(old_client, body.clone(), s.url("/validate"))
            .await
            .unwrap()
            .status(),
        200
    );
    // New handshakes present the new certificate: the old CA no longer verifies.
    let stale = common::client_trusting(&s.ca_pem(), None);
    assert!(
        send(stale, body, s.url("/validate")).await.is_err(),
        "old CA must not verify the new certificate"
    );
    assert!(
        s.metrics_text()
            .await
            .contains(r#"egress_guard_tls_reloads_total{result="success"} 2"#)
    );
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_previous_certificate() {
    let s = TestServer::start().await;
    std::fs::write(s.path("tls.crt"), "not a certificate").unwrap();
    let metrics = s.metrics.clone();
    eventually(Duration::from_secs(10), || {
        let m = metrics.clone();
        async move {
            m.render()
                .contains(r#"egress_guard_tls_reloads_total{result="error"}"#)
        }
    })
    .await;
    // Fresh handshakes still get the previous, valid certificate.
    let review = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-github-api"),
        )
        .await;
    assert_eq!(response(&review)["allowed"], true);
}

#[tokio::test]
async fn client_certificates_are_required_with_client_ca() {
    let client_ca_dir = tempfile::tempdir().unwrap();
    let (client_ca, cert, key) = client_identity();
    let client_ca_path = client_ca_dir.path().join("client-ca.crt");
    std::fs::write(&client_ca_path, client_ca).unwrap();
    let s = TestServer::start_with(common::Options {
        client_ca: Some(client_ca_path),
        ..Default::default()
    })
    .await;
    let body = fixture("validate-create-serviceentry-v1-github-api");
    let anonymous = s
        .client()
        .post(s.url("/validate"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate must be refused"
    );

    let authed = common::client_trusting(&s.ca_pem(), Some((cert.as_bytes(), key.as_bytes())));
    let resp = authed
        .post(s.url("/validate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A client CA and a client certificate it signed (PEM: CA, cert, key).
fn client_identity() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["kube-apiserver".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut s = TestServer::start().await;
    let body = fixture("validate-create-serviceentry-v1-github-api");
    // Start a request and stall mid-body, so it is in flight when shutdown begins.
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(common::rustls_client_config(
        &s.ca_pem(),
        None,
    )));
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tls.connect(name, tcp).await.unwrap();
    // `Expect: 100-continue`: the server answers `100 Continue` when the handler starts
    // reading the body, which proves the request is in flight before shutdown begins.
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let interim = common::read_until(&mut stream, b"\r\n\r\n", Duration::from_secs(5)).await;
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    stream.write_all(&body[..100]).await.unwrap();
    stream.flush().await.unwrap();

    s.begin_shutdown();
    let ready = reqwest::Client::new();
    let ops = s.ops_url("/readyz");
    eventually(Duration::from_secs(5), || {
        let (c, u) = (ready.clone(), ops.clone());
        async move { c.get(u).send().await.is_ok_and(|r| r.status() == 503) }
    })
    .await;
    // New connections are refused while the old one drains.
    let refused = tokio::net::TcpStream::connect(s.addr).await;
    if let Ok(tcp) = refused {
        let attempt = tls
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await;
        assert!(attempt.is_err(), "no new TLS sessions after shutdown began");
    }

    stream.write_all(&body[100..]).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "in-flight request must complete: {text}"
    );
    assert!(text.contains("\"allowed\":true"), "{text}");
    let task = s.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A ServiceEntry spec for `hosts` (TLS on 443, DNS: valid for any number of hosts).
fn service_entry_spec(hosts: &[String]) -> Value {
    json!({
        "hosts": hosts,
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
    })
}

#[tokio::test]
async fn a_denial_names_five_violations_and_counts_the_rest() {
    let s = TestServer::start().await;
    let hosts: Vec<String> = (0..8).map(|i| format!("h{i}.unlisted.example")).collect();
    let body = common::with_spec(
        fixture_json("validate-create-serviceentry-v1-exfil"),
        service_entry_spec(&hosts),
    );
    let review = s.review("/validate", body).await;
    let r = response(&review);
    assert_eq!(r["allowed"], false);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("egress-guard denied ServiceEntry default/exfil: "),
        "{msg}"
    );
    for i in 0..5 {
        assert!(
            msg.contains(&format!("EG101 spec.hosts[{i}] \"h{i}.unlisted.example\"")),
            "{msg}"
        );
    }
    for i in 5..8 {
        assert!(!msg.contains(&format!("spec.hosts[{i}]")), "{msg}");
    }
    assert_eq!(msg.matches("EG101").count(), 5, "{msg}");
    assert!(msg.ends_with("; and 3 more"), "{msg}");
    // Every violation is still counted.
    assert_eq!(
        common::metric(
            &s.metrics_text().await,
            r#"egress_guard_violations_total{code="EG101",mode="enforce",namespace="default"}"#
        ),
        Some(8.0)
    );
}

#[tokio::test]
async fn audit_annotations_and_warnings_stay_bounded_for_huge_input() {
    let s = TestServer::start_with(common::Options {
        allowlist: "mode: audit\nhosts: [api.github.com]\n".into(),
        ..Default::default()
    })
    .await;
    // 2,000 unlisted hosts of about 60 characters: ~150 KB of violations.
    let hosts: Vec<String> = (0..2000)
        .map(|i| format!("host-{i:04}-{}.unlisted.example", "x".repeat(40)))
        .collect();
    let body = common::with_spec(
        fixture_json("validate-create-serviceentry-v1-exfil"),
        service_entry_spec(&hosts),
    );
    let review = s.review("/validate", body).await;
    let r = response(&review);
    assert_eq!(r["allowed"], true, "audit mode allows");
    let annotations = r["auditAnnotations"].as_object().unwrap();
    assert_eq!(annotations["codes"], "EG101");
    assert_eq!(annotations["mode"], "audit");
    for (key, value) in annotations {
        let value = value.as_str().unwrap();
        assert!(
            value.chars().count() <= 1024,
            "{key}: {} chars",
            value.len()
        );
    }
    let violations = annotations["violations"].as_str().unwrap();
    assert!(
        violations.starts_with(&format!("EG101 spec.hosts[0]={}", hosts[0])),
        "{violations}"
    );
    assert!(violations.ends_with('…'), "cut, and marked as cut");
    assert!(violations.len() > 900, "cut near the cap, not emptied");
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), egress_guard::admission::MAX_WARNINGS);
    assert!(
        warnings
            .iter()
            .all(|w| w.as_str().unwrap().len() <= egress_guard::admission::MAX_WARNING_LEN)
    );
    assert_eq!(
        warnings.last().unwrap(),
        &json!("egress-guard: and 1991 more warnings")
    );
}

/// `mutate-create-virtualservice-v1-github-api` with the default-timeout annotation.
fn with_timeout_annotation(value: &str) -> Vec<u8> {
    let mut review = fixture_json("mutate-create-virtualservice-v1-github-api");
    review["request"]["object"]["metadata"]["annotations"]["egress-guard.io/default-timeout"] =
        json!(value);
    serde_json::to_vec(&review).unwrap()
}

#[tokio::test]
async fn the_default_timeout_annotation_opts_out_or_overrides() {
    let s = TestServer::start().await;
    let none = s.review("/mutate", with_timeout_annotation("none")).await;
    let r = response(&none);
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none(), "{none}");
    assert!(r.get("patchType").is_none(), "{none}");

    let custom = s.review("/mutate", with_timeout_annotation("3s")).await;
    assert_eq!(
        decoded_patch(response(&custom)),
        json!([{"op": "add", "path": "/spec/http/0/timeout", "value": "3s"}])
    );
    assert_eq!(
        response(&custom)["warnings"],
        json!(["egress-guard: added default timeout 3s to spec.http[0]"])
    );

    // An unusable value falls back to the allowlist's default.
    let invalid = s.review("/mutate", with_timeout_annotation("soon")).await;
    assert_eq!(
        decoded_patch(response(&invalid)),
        json!([{"op": "add", "path": "/spec/http/0/timeout", "value": "15s"}])
    );
    // ... and says so, on the mutating answer (the validating one never plans a patch).
    let said = response(&invalid)["warnings"].to_string();
    assert!(
        said.contains("egress-guard: metadata.annotations[egress-guard.io/default-timeout]")
            && said.contains("using the default timeout")
            && said.contains("egress-guard: added default timeout 15s to spec.http[0]"),
        "{said}"
    );
    // An opt-out with an unusable value elsewhere still warns without a patch.
    let mut opted = fixture_json("mutate-create-virtualservice-v1-github-api");
    opted["request"]["object"]["metadata"]["annotations"]["egress-guard.io/default-timeout"] =
        json!("-3s");
    let unpatched = TestServer::start_with(common::Options {
        allowlist: "hosts: [api.github.com]\n".to_owned(),
        ..common::Options::default()
    })
    .await;
    let r = unpatched
        .review("/mutate", serde_json::to_vec(&opted).unwrap())
        .await;
    assert!(response(&r).get("patch").is_none(), "{r}");
    assert!(
        response(&r)["warnings"]
            .to_string()
            .contains("metadata.annotations[egress-guard.io/default-timeout]"),
        "{r}"
    );
    assert_eq!(
        common::metric(&s.metrics_text().await, "egress_guard_timeouts_added_total"),
        Some(2.0)
    );
}

#[tokio::test]
async fn v1alpha3_virtual_services_get_a_timeout_when_in_scope() {
    let name = "mutate-create-virtualservice-v1alpha3-reviews";
    // `reviews` is a mesh-internal short name: out of the example's `external` scope.
    let example = TestServer::start().await;
    let review = example.review("/mutate", fixture(name)).await;
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(
        response(&review)["uid"],
        fixture_json(name)["request"]["uid"]
    );
    assert_eq!(response(&review)["allowed"], true);
    assert!(response(&review).get("patch").is_none(), "{review}");

    let all = TestServer::start_with(common::Options {
        allowlist: "hosts: [api.github.com]\ndefaultTimeout: 7s\ntimeoutScope: all\n".into(),
        ..Default::default()
    })
    .await;
    let review = all.review("/mutate", fixture(name)).await;
    let r = response(&review);
    assert_eq!(r["uid"], fixture_json(name)["request"]["uid"]);
    assert_eq!(r["patchType"], "JSONPatch");
    let patch = decoded_patch(r);
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/spec/http/0/timeout", "value": "7s"}])
    );
    let mut object = fixture_json(name)["request"]["object"].clone();
    json_patch::patch(
        &mut object,
        &serde_json::from_value::<json_patch::Patch>(patch).unwrap(),
    )
    .unwrap();
    assert_eq!(object["spec"]["http"][0]["timeout"], "7s");
    assert_eq!(object["apiVersion"], "networking.istio.io/v1alpha3");
}

/// The stripe fixture moved to `namespace`, with `exportTo` replaced.
fn stripe_in(namespace: &str, export_to: Value) -> Vec<u8> {
    let mut review = fixture_json("validate-create-serviceentry-v1beta1-stripe");
    review["request"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    review["request"]["object"]["spec"]["exportTo"] = export_to;
    serde_json::to_vec(&review).unwrap()
}

#[tokio::test]
async fn a_namespace_grant_applies_only_in_its_namespace_and_unexported() {
    let s = TestServer::start().await;
    // As captured: api.stripe.com in `default`, where the example grants nothing.
    let name = "validate-create-serviceentry-v1beta1-stripe";
    let review = s.review("/validate", fixture(name)).await;
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    let r = response(&review);
    assert_eq!(r["uid"], fixture_json(name)["request"]["uid"]);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("egress-guard denied ServiceEntry default/stripe: EG101 spec.hosts[0] \"api.stripe.com\""),
        "{msg}"
    );

    // In `payments`, which is granted api.stripe.com, with exportTo ["."]: allowed.
    let review = s
        .review("/validate", stripe_in("payments", json!(["."])))
        .await;
    assert_eq!(response(&review)["allowed"], true, "{review}");
    // The same grant exported to every namespace: denied.
    let review = s
        .review("/validate", stripe_in("payments", json!(["*"])))
        .await;
    let msg = response(&review)["status"]["message"].as_str().unwrap();
    assert!(msg.contains("EG105 spec.hosts[0]"), "{msg}");
}

#[tokio::test]
async fn every_warning_says_it_is_egress_guards() {
    // A grant ending within 14 days warns; the warning comes from the engine.
    let soon = egress_guard::unix_now() + 3 * 86_400;
    let date = time_date(soon);
    let s = TestServer::start_with(common::Options {
        allowlist: format!("hosts: [{{host: api.github.com, expires: \"{date}\"}}]\n"),
        ..Default::default()
    })
    .await;
    let review = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-github-api"),
        )
        .await;
    let r = response(&review);
    assert_eq!(r["allowed"], true);
    let warnings = r["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("ends within")),
        "{warnings:?}"
    );
    for w in warnings {
        let w = w.as_str().unwrap();
        assert!(w.starts_with("egress-guard: "), "{w}");
        assert!(
            !w["egress-guard: ".len()..].contains("egress-guard: "),
            "{w}"
        );
    }
}

/// `YYYY-MM-DD` of a Unix time (UTC), for an `expires` date.
fn time_date(t: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(t).unwrap().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The platform's `help` joins every denial and audit warning, filled in for the
/// object; a namespace's own replaces the global one.
#[tokio::test]
async fn denials_and_audit_warnings_carry_the_platforms_help() {
    let help = "egress grants: #platform-egress ({namespace} {kind}/{name} wants {host}, {code})";
    let s = TestServer::start_with(common::Options {
        allowlist: format!(
            "hosts: [api.github.com]\nhelp: \"{help}\"\nnamespaces:\n  audited:\n    mode: audit\n    help: \"see https://wiki.example/egress for {{host}}\"\n"
        ),
        ..Default::default()
    })
    .await;
    let review = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-exfil"),
        )
        .await;
    let r = response(&review);
    assert_eq!(r["allowed"], false);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.ends_with(
            ". egress grants: #platform-egress (default ServiceEntry/exfil wants upload.evil.example.org, EG101)"
        ),
        "{msg}"
    );

    let mut audited = fixture_json("validate-create-serviceentry-v1-exfil");
    audited["request"]["namespace"] = json!("audited");
    audited["request"]["object"]["metadata"]["namespace"] = json!("audited");
    // Exported to its own namespace only, or the enforcing ones would see it (EG107).
    audited["request"]["object"]["spec"]["exportTo"] = json!(["."]);
    let review = s
        .review("/validate", serde_json::to_vec(&audited).unwrap())
        .await;
    let r = response(&review);
    assert_eq!(r["allowed"], true);
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(warnings[0].contains("EG101"), "{warnings:?}");
    assert_eq!(
        warnings.last().copied(),
        Some("egress-guard: see https://wiki.example/egress for upload.evil.example.org"),
        "{warnings:?}"
    );

    // Nothing wrong, nothing said.
    let review = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-github-api"),
        )
        .await;
    let r = response(&review);
    assert_eq!(r["allowed"], true);
    assert!(r["warnings"].is_null(), "{r}");
}

/// A grant under `namespaces: {team-*: …}` reaches every namespace whose name starts
/// with `team-`, and no other.
#[tokio::test]
async fn a_namespace_prefix_grants_to_every_team_namespace() {
    let s = TestServer::start_with(common::Options {
        allowlist: "namespaces:\n  team-*:\n    hosts: [upload.evil.example.org]\n".to_owned(),
        ..Default::default()
    })
    .await;
    for (ns, allowed) in [
        ("team-payments", true),
        ("team-x", true),
        ("teamx", false),
        ("default", false),
    ] {
        let mut review = fixture_json("validate-create-serviceentry-v1-exfil");
        review["request"]["namespace"] = json!(ns);
        review["request"]["object"]["metadata"]["namespace"] = json!(ns);
        // Namespace grants hold for objects the namespace keeps to itself.
        review["request"]["object"]["spec"]["exportTo"] = json!(["."]);
        let answer = s
            .review("/validate", serde_json::to_vec(&review).unwrap())
            .await;
        assert_eq!(response(&answer)["allowed"], allowed, "{ns}: {answer}");
    }
}
