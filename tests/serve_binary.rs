//! `egress-guard serve` as deployed: the built binary on 127.0.0.1:0. The slots for
//! large reviews (`--max-concurrency`), the per-decision log line, a serving
//! certificate mounted from a Secret (kubelet's `..data` symlink swap) and a serving
//! chain with an intermediate CA.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{ServeBinary, ServeCommand, fixture, fixture_json, read_until};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A raw TLS connection to the server.
async fn connect(s: &ServeBinary) -> Tls {
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(common::rustls_client_config(
        s.ca_pem(),
        None,
    )));
    let tcp = tokio::net::TcpStream::connect(s.https).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tls.connect(name, tcp).await.unwrap()
}

/// Request headers for a review body of `len` bytes.
fn head(len: usize, expect_continue: bool) -> String {
    format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{}Content-Length: {len}\r\n\r\n",
        if expect_continue {
            "Expect: 100-continue\r\n"
        } else {
            ""
        }
    )
}

/// Reads a response's status line and headers.
async fn response_head(stream: &mut Tls) -> String {
    let bytes = read_until(stream, b"\r\n\r\n", Duration::from_secs(15)).await;
    String::from_utf8(bytes).unwrap()
}

/// A review of `hosts` unlisted ServiceEntry hosts: over 16 KiB, so the server judges
/// it on the blocking pool, in one of `--max-concurrency` slots.
fn large_review(hosts: usize) -> Vec<u8> {
    let hosts: Vec<String> = (0..hosts).map(|i| format!("h{i}.evil.example")).collect();
    let body = common::with_spec(
        fixture_json("validate-create-serviceentry-v1-exfil"),
        json!({"hosts": hosts, "resolution": "DNS"}),
    );
    assert!(body.len() > egress_guard::server::INLINE_BODY);
    body
}

/// Sends two copies of a large review on two connections so that both bodies complete
/// together (all but the last byte first, then both last bytes), and returns each
/// answer's status line.
async fn two_large_reviews_at_once(s: &ServeBinary, body: &[u8]) -> [String; 2] {
    let (last, most) = body.split_last().unwrap();
    let mut streams = [connect(s).await, connect(s).await];
    for stream in &mut streams {
        stream
            .write_all(head(body.len(), false).as_bytes())
            .await
            .unwrap();
        stream.write_all(most).await.unwrap();
        stream.flush().await.unwrap();
    }
    for stream in &mut streams {
        stream.write_all(&[*last]).await.unwrap();
        stream.flush().await.unwrap();
    }
    let [a, b] = &mut streams;
    let (a, b) = tokio::join!(response_head(a), response_head(b));
    [a, b]
}

fn status_line(head: &str) -> &str {
    head.lines().next().unwrap_or_default()
}

#[tokio::test]
async fn max_concurrency_bounds_large_reviews_in_evaluation_not_uploads() {
    // The deadline is far away: a slot is held for the whole evaluation.
    let s = ServeCommand::new()
        .args(["--max-concurrency", "1", "--review-deadline", "60s"])
        .spawn()
        .await;
    s.wait_ready().await;
    let busy = r#"egress_guard_bad_requests_total{reason="busy"}"#;

    // A large upload that stalls after its headers holds no slot: another large review
    // is judged meanwhile.
    let big = large_review(120_000);
    let mut stalled = connect(&s).await;
    stalled
        .write_all(head(big.len(), true).as_bytes())
        .await
        .unwrap();
    stalled.flush().await.unwrap();
    let interim = response_head(&mut stalled).await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    stalled.write_all(&big[..big.len() / 2]).await.unwrap();
    stalled.flush().await.unwrap();
    let review = s.review("/validate", large_review(2_000)).await;
    assert_eq!(review["response"]["allowed"], false, "judged, not refused");
    assert_eq!(s.metric(busy).await, 0.0);
    drop(stalled);

    // Two large reviews whose bodies complete together: one is judged, the other finds
    // the only slot taken and is refused at once.
    let mut statuses = two_large_reviews_at_once(&s, &big).await;
    statuses.sort();
    assert_eq!(
        statuses.each_ref().map(|h| status_line(h)),
        ["HTTP/1.1 200 OK", "HTTP/1.1 503 Service Unavailable"],
        "{statuses:?}"
    );
    assert_eq!(s.metric(busy).await, 1.0);
}

#[tokio::test]
async fn with_two_slots_two_large_reviews_are_judged_together() {
    // The control for the test above: the same two reviews, one more slot.
    let s = ServeCommand::new()
        .args(["--max-concurrency", "2", "--review-deadline", "60s"])
        .spawn()
        .await;
    s.wait_ready().await;
    let statuses = two_large_reviews_at_once(&s, &large_review(120_000)).await;
    assert_eq!(
        statuses.each_ref().map(|h| status_line(h)),
        ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"],
        "{statuses:?}"
    );
}

/// The `admission decision` lines of a JSON log.
fn decisions(s: &ServeBinary) -> Vec<Value> {
    s.log()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "admission decision")
        .collect()
}

/// Waits for the decision line of request `uid` (the log is written by a background
/// thread).
async fn decision_of(s: &ServeBinary, uid: &str) -> Value {
    let start = Instant::now();
    loop {
        if let Some(line) = decisions(s).into_iter().find(|d| d["uid"] == uid) {
            return line;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no decision line for {uid}:\n{}",
            s.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_decision_is_logged_with_its_request_context() {
    let s = ServeCommand::new()
        .args(["--log-format", "json"])
        .spawn()
        .await;
    s.wait_ready().await;
    // (endpoint, fixture, expected fields)
    let cases = [
        (
            "validate",
            "validate-create-serviceentry-v1-exfil",
            json!({"operation": "CREATE", "kind": "ServiceEntry", "namespace": "default",
                   "name": "exfil", "dry_run": false, "decision": "deny",
                   "codes": "EG101", "patched": 0, "user": "e2e-admin",
                   "values": "EG101 spec.hosts[0]=upload.evil.example.org"}),
        ),
        (
            "validate",
            "validate-create-serviceentry-v1-dryrun-github-api",
            json!({"operation": "CREATE", "kind": "ServiceEntry", "namespace": "default",
                   "name": "github-api", "dry_run": true, "decision": "allow",
                   "codes": "", "patched": 0, "values": ""}),
        ),
        (
            "mutate",
            "mutate-create-virtualservice-v1-github-api",
            json!({"operation": "CREATE", "kind": "VirtualService", "namespace": "default",
                   "name": "github-api", "dry_run": false, "decision": "patch",
                   "codes": "", "patched": 1}),
        ),
        (
            "validate",
            "validate-delete-serviceentry-v1-github-api",
            json!({"operation": "DELETE", "kind": "ServiceEntry", "namespace": "rig-check",
                   "name": "github-api", "dry_run": false, "decision": "skip",
                   "codes": "", "patched": 0}),
        ),
    ];
    for (endpoint, name, want) in cases {
        let review = s.review(&format!("/{endpoint}"), fixture(name)).await;
        let uid = fixture_json(name)["request"]["uid"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(review["response"]["uid"], uid);
        let line = decision_of(&s, &uid).await;
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["endpoint"], endpoint, "{name}: {line}");
        assert_eq!(line["mode"], "enforce", "{name}: {line}");
        assert_eq!(line["allowlist_revision"], "embedded", "{name}: {line}");
        assert!(line["elapsed_us"].as_u64().is_some(), "{name}: {line}");
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&line[field], value, "{name}: {field} in {line}");
        }
    }
    assert_eq!(decisions(&s).len(), 4, "one line per decision");
}

#[tokio::test]
async fn a_uid_with_a_newline_cannot_forge_a_text_log_line() {
    let s = ServeCommand::new()
        .args(["--log-format", "text"])
        .spawn()
        .await;
    s.wait_ready().await;
    let mut review = fixture_json("validate-create-serviceentry-v1-exfil");
    let uid = "forged\n2026-01-01T00:00:00Z  INFO egress_guard::server: admission decision decision=\"allow\"";
    review["request"]["uid"] = json!(uid);
    let answer = s
        .review("/validate", serde_json::to_vec(&review).unwrap())
        .await;
    assert_eq!(answer["response"]["uid"], uid, "the answer echoes it as is");
    assert_eq!(answer["response"]["allowed"], false);

    let line = s.wait_for_log("uid=\"forged").await;
    assert!(
        line.contains(r#"uid="forged\n2026-01-01T00:00:00Z"#),
        "{line}"
    );
    // The forged field stays inside the quoted uid; the real one follows it.
    assert!(
        line.contains(r#"admission decision decision=\"allow\"""#),
        "{line}"
    );
    assert!(line.contains(" decision=\"deny\" "), "{line}");
    let log = s.log();
    let mentions: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("2026-01-01T00:00:00Z"))
        .collect();
    assert_eq!(mentions, [&line], "the uid stays on its own line");
    assert!(!log.iter().any(|l| l.starts_with("2026-01-01T00:00:00Z")));
}

// === serving certificates ===

/// Lays out `dir` the way kubelet mounts a Secret: `tls.crt -> ..data/tls.crt`,
/// `tls.key -> ..data/tls.key`, `..data -> ..<version>/`, the `..data` link replaced
/// atomically by renaming a new link over it.
fn kubelet_publish(dir: &Path, version: &str, set: &egress_guard::certs::CertSet) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir(&versioned).unwrap();
    std::fs::write(versioned.join("tls.crt"), &set.cert).unwrap();
    std::fs::write(versioned.join("tls.key"), &set.key).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

fn localhost_set() -> egress_guard::certs::CertSet {
    egress_guard::certs::generate(
        &["localhost".to_owned()],
        &["127.0.0.1".parse().unwrap()],
        30,
    )
    .unwrap()
}

#[tokio::test]
async fn follows_a_kubelet_secret_symlink_swap() {
    let mount = tempfile::tempdir().unwrap();
    let (v1, v2) = (localhost_set(), localhost_set());
    kubelet_publish(mount.path(), "2026_01_01_00_00_00.1", &v1);
    let both_cas = format!("{}{}", v1.ca_cert, v2.ca_cert);
    let s = ServeCommand::with_tls(
        &mount.path().join("tls.crt"),
        &mount.path().join("tls.key"),
        both_cas.as_bytes(),
    )
    .spawn()
    .await;
    s.wait_ready().await;
    let leaf =
        |set: &egress_guard::certs::CertSet| common::pem_certs(set.cert.as_bytes())[0].clone();
    let presented = common::peer_certificates(s.https, both_cas.as_bytes())
        .await
        .unwrap();
    assert_eq!(presented, [leaf(&v1)]);

    kubelet_publish(mount.path(), "2026_01_01_00_00_00.2", &v2);
    let (addr, cas, want) = (s.https, both_cas.clone(), leaf(&v2));
    common::eventually(Duration::from_secs(10), || {
        let (cas, want) = (cas.clone(), want.clone());
        async move {
            common::peer_certificates(addr, cas.as_bytes())
                .await
                .is_ok_and(|chain| chain == [want])
        }
    })
    .await;
    // Served by the new certificate, to a client that trusts only the new CA.
    let review = common::client_trusting(v2.ca_cert.as_bytes(), None)
        .post(s.url("/validate"))
        .header("content-type", "application/json")
        .body(fixture("validate-create-serviceentry-v1-github-api"))
        .send()
        .await
        .unwrap();
    assert_eq!(review.status(), 200);
    assert!(
        common::peer_certificates(s.https, v1.ca_cert.as_bytes())
            .await
            .is_err(),
        "the old CA no longer verifies new handshakes"
    );
    assert_eq!(
        s.metric(r#"egress_guard_tls_reloads_total{result="success"}"#)
            .await,
        2.0
    );
    assert_eq!(
        s.metric(r#"egress_guard_tls_reloads_total{result="error"}"#)
            .await,
        0.0,
        "never a half-swapped pair"
    );
}

/// A root CA, an intermediate it signed, and a localhost leaf the intermediate signed:
/// (root PEM, leaf + intermediate PEM, leaf key PEM).
fn chain_through_an_intermediate() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_params = |name: &str, depth: u8| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(depth));
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    };
    let root =
        CertifiedIssuer::self_signed(ca_params("test root", 1), KeyPair::generate().unwrap())
            .unwrap();
    let intermediate = CertifiedIssuer::signed_by(
        ca_params("test intermediate", 0),
        KeyPair::generate().unwrap(),
        &root,
    )
    .unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&key, &intermediate).unwrap();
    (
        root.pem(),
        format!("{}{}", leaf.pem(), intermediate.pem()),
        key.serialize_pem(),
    )
}

#[tokio::test]
async fn serves_a_chain_through_an_intermediate_ca() {
    let (root, chain, key) = chain_through_an_intermediate();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &chain).unwrap();
    std::fs::write(dir.path().join("tls.key"), &key).unwrap();
    let s = ServeCommand::with_tls(
        &dir.path().join("tls.crt"),
        &dir.path().join("tls.key"),
        root.as_bytes(),
    )
    .spawn()
    .await;
    s.wait_ready().await;
    // The client trusts only the root: the handshake succeeds because the server
    // sends the intermediate after the leaf.
    let presented = common::peer_certificates(s.https, root.as_bytes())
        .await
        .unwrap();
    assert_eq!(presented, common::pem_certs(chain.as_bytes()));
    assert_eq!(presented.len(), 2);
    let review = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-github-api"),
        )
        .await;
    assert_eq!(review["response"]["allowed"], true);
}

#[tokio::test]
async fn sighup_never_ends_the_server_whatever_the_allowlist_source() {
    // The embedded allowlist has nothing to reload; SIGHUP used to end the process.
    let s = ServeCommand::new().spawn().await;
    s.wait_ready().await;
    s.wait_for_signal_handler(1).await;
    s.signal("HUP");
    s.wait_for_log("SIGHUP ignored").await;
    let (status, _) = s.ops_get("/healthz").await;
    assert_eq!(status, 200, "still serving after SIGHUP");
    let answer = s
        .review(
            "/validate",
            serde_json::to_vec(&fixture_json("validate-create-serviceentry-v1-exfil")).unwrap(),
        )
        .await;
    assert_eq!(answer["response"]["allowed"], false);
}
