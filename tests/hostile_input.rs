//! Hostile input over real HTTPS: reviews that used to crash, stall or bloat the
//! server, and the resource bounds around them (deadline, probes, connection cap, body
//! byte budget, HTTP/2, idle connections, metric labels).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Options, TestServer, fixture_json, with_spec};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn vs_review() -> Value {
    fixture_json("validate-create-virtualservice-v1-github-api")
}

/// Posts `body` to /validate and returns the status and the parsed review, if any.
async fn post(s: &TestServer, body: Vec<u8>) -> (u16, Option<Value>) {
    let resp = s
        .client()
        .post(s.url("/validate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("server answers");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    (status, serde_json::from_slice(&bytes).ok())
}

/// Posts `body` to /validate, which must answer 200 with a review, and returns the
/// review's status message.
async fn judged(s: &TestServer, body: Vec<u8>) -> String {
    let (status, review) = post(s, body).await;
    assert_eq!(status, 200);
    codes(&review.expect("an AdmissionReview"))
}

fn codes(review: &Value) -> String {
    review["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn dashes_in_durations_neither_crash_nor_stall_the_server() {
    let s = TestServer::start().await;
    // Used to overflow the stack: 12,000 dashes in the timeout annotation.
    let mut review = vs_review();
    review["request"]["object"]["metadata"]["annotations"] =
        json!({"egress-guard.io/default-timeout": format!("{}1s", "-".repeat(12_000))});
    let (status, body) = post(&s, serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body.unwrap()["response"]["allowed"], true);
    // Used to cost 2^26 parses per route: 26 dashes in ten routes' timeouts and retries.
    let t = format!("{}1s", "-".repeat(26));
    let routes: Vec<Value> = (0..10)
        .map(|_| {
            json!({"route": [{"destination": {"host": "api.github.com"}}], "timeout": t,
            "retries": {"attempts": 1, "perTryTimeout": t}})
        })
        .collect();
    let body = with_spec(
        vs_review(),
        json!({"hosts": ["api.github.com"], "http": routes}),
    );
    let msg = judged(&s, body).await;
    assert!(msg.contains("EG210"), "invalid durations are denied: {msg}");
    // The server is still there.
    assert_eq!(
        post(&s, serde_json::to_vec(&vs_review()).unwrap()).await.0,
        200
    );
}

#[tokio::test]
async fn formerly_quadratic_shapes_are_answered_with_correct_verdicts() {
    let s = TestServer::start().await;
    // 40,000 short VirtualService hosts, two of them duplicates.
    let mut hosts: Vec<String> = (0..40_000).map(|i| format!("h{i}")).collect();
    hosts.push("h7".into());
    let body = with_spec(
        vs_review(),
        json!({"hosts": hosts, "gateways": ["gw"], "http": [{"route": [{"destination": {"host": "h1"}}]}]}),
    );
    let msg = judged(&s, body).await;
    assert!(msg.contains("EG221 spec.hosts[40000]"), "{msg}");

    // A DestinationRule SNI of 300,000 dots.
    let mut dr = fixture_json("validate-create-destinationrule-v1-github-api");
    dr["request"]["object"]["spec"]["trafficPolicy"] =
        json!({"tls": {"mode": "SIMPLE", "sni": ".".repeat(300_000)}});
    let msg = judged(&s, serde_json::to_vec(&dr).unwrap()).await;
    assert!(msg.contains("EG101 spec.trafficPolicy.tls.sni"), "{msg}");

    // A ServiceEntry with 10,000 hosts and 10,000 ports (a port-restricted entry).
    let ports: Vec<Value> = (1..=10_000)
        .map(|n| json!({"number": n, "name": format!("p{n}"), "protocol": "HTTP"}))
        .collect();
    let hosts: Vec<String> = (0..10_000).map(|_| "db.example.com".to_owned()).collect();
    let body = with_spec(
        fixture_json("validate-create-serviceentry-v1-github-api"),
        json!({"hosts": hosts, "ports": ports, "resolution": "DNS"}),
    );
    let msg = judged(&s, body).await;
    assert!(msg.contains("EG104") && msg.contains("more"), "{msg}");

    // 10,000 IP endpoints, each with its own port map, × 10,000 named ports: an address
    // is judged on every port, so no endpoint walks the ports (that walk spent the
    // whole work budget: EG901).
    let ports: Vec<Value> = (1..=10_000)
        .map(|n| json!({"number": n, "name": format!("p{n}"), "protocol": "TCP"}))
        .collect();
    let endpoints: Vec<Value> = (0..10_000)
        .map(|_| json!({"address": "8.8.8.8", "ports": {"p1": 1}}))
        .collect();
    let body = with_spec(
        fixture_json("validate-create-serviceentry-v1-github-api"),
        json!({"hosts": ["upload.evil.example.org"], "resolution": "STATIC",
            "location": "MESH_EXTERNAL", "ports": ports, "endpoints": endpoints}),
    );
    let msg = judged(&s, body).await;
    assert!(msg.contains("EG103 spec.endpoints[0].address"), "{msg}");
    assert!(!msg.contains("EG901"), "{msg}");

    // 100,000 empty http routes: each is missing its destination (EG211), reported for
    // the first hundred and counted after.
    let routes = vec![json!({}); 100_000];
    let body = with_spec(
        vs_review(),
        json!({"hosts": ["api.github.com"], "http": routes}),
    );
    let msg = judged(&s, body).await;
    assert!(
        msg.contains("EG211 spec.http[0]") && msg.contains("more"),
        "{msg}"
    );
}

#[tokio::test]
async fn answers_stay_small_whatever_the_request() {
    let s = TestServer::start().await;
    let mut review = fixture_json("validate-create-serviceentry-v1-exfil");
    review["request"]["object"]["spec"]["exportTo"] = json!(vec!["\""; 400_000]);
    review["request"]["object"]["spec"]["hosts"] = json!(
        (0..5)
            .map(|i| format!("{i}{}", "a.".repeat(20_000)))
            .collect::<Vec<_>>()
    );
    let body = serde_json::to_vec(&review).unwrap();
    assert!(body.len() > 1_000_000);
    let resp = s
        .client()
        .post(s.url("/validate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer = resp.bytes().await.unwrap();
    assert!(answer.len() < 4096, "answer of {} bytes", answer.len());
}

#[tokio::test]
async fn a_review_past_its_deadline_is_denied_as_too_complex() {
    let s = TestServer::start_with(Options {
        review_deadline: Duration::from_millis(1),
        ..Options::default()
    })
    .await;
    // Large enough to be judged off the async workers, where the deadline applies.
    let hosts: Vec<String> = (0..20_000).map(|i| format!("h{i}.evil.example")).collect();
    let body = with_spec(
        fixture_json("validate-create-serviceentry-v1-exfil"),
        json!({"hosts": hosts, "resolution": "DNS"}),
    );
    let (status, review) = post(&s, body).await;
    assert_eq!(status, 200);
    let review = review.unwrap();
    assert_eq!(review["response"]["allowed"], false);
    assert!(codes(&review).contains("EG901"), "{review}");
    let uid = fixture_json("validate-create-serviceentry-v1-exfil")["request"]["uid"].clone();
    assert_eq!(review["response"]["uid"], uid);
    common::eventually(Duration::from_secs(5), || async {
        s.metrics_text()
            .await
            .contains("egress_guard_review_budget_exceeded_total 1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_the_server_is_busy_with_large_reviews() {
    let s = Arc::new(TestServer::start().await);
    let hosts: Vec<String> = (0..120_000).map(|i| format!("h{i}.evil.example")).collect();
    let body = with_spec(
        fixture_json("validate-create-serviceentry-v1-exfil"),
        json!({"hosts": hosts, "resolution": "DNS"}),
    );
    let busy: Vec<_> = (0..6)
        .map(|_| {
            let (s, body) = (s.clone(), body.clone());
            tokio::spawn(async move { post(&s, body).await.0 })
        })
        .collect();
    // While those run, every probe is answered promptly.
    let http = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let r = http.get(s.ops_url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for b in busy {
        let status = b.await.unwrap();
        assert!([200, 503].contains(&status), "{status}");
    }
    // kubelet's probe timeout is 2 s; a probe stuck behind reviews took tens of seconds.
    assert!(
        slowest < Duration::from_secs(1),
        "slowest probe {slowest:?}"
    );
}

#[tokio::test]
async fn http2_by_prior_knowledge_is_refused() {
    let s = TestServer::start().await;
    let h2 = reqwest::Client::builder()
        .tls_backend_preconfigured(common::rustls_client_config(&s.ca_pem(), None))
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = h2
        .post(s.url("/validate"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&vs_review()).unwrap())
        .send()
        .await;
    assert!(
        r.is_err(),
        "HTTP/2 was accepted: {:?}",
        r.map(|r| r.version())
    );
}

/// An open TLS connection to the server.
async fn tls_stream(s: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let cfg = common::rustls_client_config(&s.ca_pem(), None);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_before_tls() {
    let s = TestServer::start_with(Options {
        max_connections: 3,
        ..Options::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tls_stream(&s).await);
    }
    // The fourth is accepted by the kernel and closed at once: the handshake fails.
    let cfg = common::rustls_client_config(&s.ca_pem(), None);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    assert!(connector.connect(name, tcp).await.is_err());
    assert!(
        s.metrics_text()
            .await
            .contains("egress_guard_connections_rejected_total 1")
    );
    // Closing one frees a slot.
    drop(held.pop());
    common::eventually(Duration::from_secs(5), || async {
        s.client()
            .post(s.url("/validate"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&vs_review()).unwrap())
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn stalled_uploads_hold_only_the_bytes_they_sent() {
    let s = TestServer::start_with(Options {
        max_inflight_bytes: 256 * 1024,
        request_timeout: Duration::from_secs(3),
        ..Options::default()
    })
    .await;
    // Declares 3 MiB, sends 200 KiB, stalls.
    let mut stalled = tls_stream(&s).await;
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        3 * 1024 * 1024 - 1
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&vec![b' '; 200 * 1024]).await.unwrap();
    stalled.flush().await.unwrap();
    // A normal review still fits in what is left of the budget.
    let (status, _) = post(&s, serde_json::to_vec(&vs_review()).unwrap()).await;
    assert_eq!(status, 200);
    // One that does not fit is refused at once, not queued.
    let big = with_spec(vs_review(), json!({"hosts": vec!["a.example"; 12_000]}));
    assert!(big.len() > 60 * 1024);
    let (status, _) = post(&s, big.clone()).await;
    assert_eq!(status, 503);
    // The stalled upload times out and gives its bytes back.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut answer)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(post(&s, big).await.0, 200);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let s = TestServer::start_with(Options {
        request_timeout: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    let mut conn = tls_stream(&s).await;
    let body = serde_json::to_vec(&vs_review()).unwrap();
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body).await.unwrap();
    // Read the answer, then keep the connection idle: the server closes it.
    let mut all = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut all)).await;
    assert!(closed.is_ok(), "idle connection still open after 5 s");
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn metric_labels_from_requests_stay_bounded() {
    let s = TestServer::start().await;
    for i in 0..200 {
        let mut review = fixture_json("validate-create-serviceentry-v1-exfil");
        review["request"]["kind"]["kind"] = json!(format!("{}{i}", "K".repeat(5_000)));
        review["request"]["namespace"] = json!(format!("{}-{i}\n", "n".repeat(5_000)));
        let (status, _) = post(&s, serde_json::to_vec(&review).unwrap()).await;
        assert_eq!(status, 200);
    }
    let text = s.metrics_text().await;
    assert!(text.len() < 64 * 1024, "/metrics is {} bytes", text.len());
    assert!(text.contains("kind=\"other\""));
}

#[tokio::test]
async fn yaml_bombs_in_a_proxy_config_are_denied_fast_and_the_server_stays_up() {
    let s = TestServer::start().await;
    // Each level multiplies by ten: a billion scalars from 400 bytes. It killed the
    // server (all memory) when the annotation was expanded into a tree.
    let mut bomb = String::from("a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n");
    for i in 1..9 {
        let p = i - 1;
        let refs = vec![format!("*a{p}"); 10].join(",");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let deep = format!("tracing: {}{}", "[".repeat(50_000), "]".repeat(50_000));
    for config in [bomb, deep] {
        let mut review = fixture_json("validate-create-pod-v1-app-injected");
        review["request"]["object"]["metadata"]["annotations"]["proxy.istio.io/config"] =
            json!(config);
        let started = Instant::now();
        let (status, body) = post(&s, serde_json::to_vec(&review).unwrap()).await;
        let body = body.expect("a review");
        assert_eq!(status, 200);
        assert_eq!(body["response"]["allowed"], false, "{body}");
        assert!(codes(&body).contains("EG307"), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let (status, body) = post(&s, serde_json::to_vec(&vs_review()).unwrap()).await;
    assert_eq!(
        (status, body.unwrap()["response"]["allowed"].clone()),
        (200, json!(true))
    );
}

#[tokio::test]
async fn options_and_user_groups_are_skipped_not_decoded() {
    let s = TestServer::start().await;
    // Two million tiny maps: 500 MiB as a tree, never built now. Past serde_json's
    // nesting limit it would be a 400, so it is wide, not deep.
    let mut review = vs_review();
    let wide = format!("[{}{{}}]", "{},".repeat(200_000));
    let wide: Value = serde_json::from_str(&wide).unwrap();
    review["request"]["options"] = json!({"kind": "CreateOptions", "x": wide});
    review["request"]["userInfo"]["groups"] = json!(vec!["system:authenticated"; 50_000]);
    let (status, body) = post(&s, serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body.unwrap()["response"]["allowed"], true);
}
