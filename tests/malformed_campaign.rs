//! Malformed-input campaign against the real binary over HTTPS (loopback only, bounded
//! in count and time): 10,000 requests mutated from the captured apiserver bodies,
//! slow bodies that stall mid-upload, and connections that never send. The server must
//! answer or close every one within its request timeout, keep answering well-formed
//! requests correctly, and return to its starting memory.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUESTS: usize = 10_000;
const WORKERS: usize = 16;
/// The server's `--request-timeout` for this campaign.
const SERVER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client waits before calling a request hung.
const CLIENT_DEADLINE: Duration = Duration::from_secs(8);

struct Server {
    child: Child,
    https: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--certs-dir")
            .arg(dir.path())
            .args(["--request-timeout", "2s", "--max-concurrency", "64"])
            .args([
                "--log-format",
                "json",
                "--log-level",
                "warn,egress_guard::server::run=info",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Drain stderr for the server's lifetime; report the bound address once.
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && let Some(addr) = v["https"].as_str()
                {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let https = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server reported its address");
        Self { child, https, dir }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn client(&self) -> reqwest::Client {
        let ca = std::fs::read(self.dir.path().join("ca.crt")).unwrap();
        common::client_trusting(&ca, None)
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/validate", self.https.port())
    }
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One campaign request: body, content type, and whether it is the untouched fixture.
struct Case {
    body: Vec<u8>,
    content_type: Option<&'static str>,
    valid: bool,
}

/// Every object path (as a list of keys/indexes) in a JSON value.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(json!(k));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(json!(i));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn edit(root: &mut Value, path: &[Value], f: impl FnOnce(&mut Value, &Value)) {
    let (last, parents) = path.split_last().unwrap();
    let mut cur = root;
    for p in parents {
        cur = match p {
            Value::String(k) => &mut cur[k.as_str()],
            _ => &mut cur[p.as_u64().unwrap() as usize],
        };
    }
    f(cur, last);
}

fn mutate(rng: &mut Rng, fixtures: &[Vec<u8>]) -> Case {
    let base = &fixtures[rng.below(fixtures.len())];
    let json_ct = Some("application/json");
    let case = |body, content_type| Case {
        body,
        content_type,
        valid: false,
    };
    match rng.below(20) {
        0..=2 => case(base[..rng.below(base.len())].to_vec(), json_ct),
        3..=5 => {
            let mut b = base.clone();
            for _ in 0..=rng.below(8) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            case(b, json_ct)
        }
        6..=8 => {
            let mut v: Value = serde_json::from_slice(base).unwrap();
            let mut all = Vec::new();
            paths(&v, &mut Vec::new(), &mut all);
            let path = all[rng.below(all.len())].clone();
            edit(&mut v, &path, |parent, last| match (parent, last) {
                (Value::Object(m), Value::String(k)) => {
                    m.remove(k);
                }
                (Value::Array(a), Value::Number(n)) => {
                    let i = n.as_u64().unwrap() as usize;
                    if i < a.len() {
                        a.remove(i);
                    }
                }
                _ => {}
            });
            case(serde_json::to_vec(&v).unwrap(), json_ct)
        }
        9..=11 => {
            let mut v: Value = serde_json::from_slice(base).unwrap();
            let mut all = Vec::new();
            paths(&v, &mut Vec::new(), &mut all);
            let path = all[rng.below(all.len())].clone();
            let replacement = [
                json!(null),
                json!(0),
                json!("x"),
                json!([]),
                json!({}),
                json!(true),
                json!(-1),
                json!(1e308),
                json!("\u{1F600}"),
            ][rng.below(9)]
            .clone();
            edit(&mut v, &path, |parent, last| match last {
                Value::String(k) => parent[k.as_str()] = replacement,
                n => parent[n.as_u64().unwrap() as usize] = replacement,
            });
            case(serde_json::to_vec(&v).unwrap(), json_ct)
        }
        12 => {
            let mut v: Value = serde_json::from_slice(base).unwrap();
            let depth = 50 + rng.below(500);
            let nested = format!("{}{{}}{}", "[".repeat(depth), "]".repeat(depth));
            v["request"]["object"]["spec"] = json!("PLACEHOLDER");
            let text = serde_json::to_string(&v)
                .unwrap()
                .replace("\"PLACEHOLDER\"", &nested);
            case(text.into_bytes(), json_ct)
        }
        13 => {
            let mut b = base.clone();
            let i = rng.below(b.len());
            b.splice(i..i, [0xff, 0xfe, 0xc3, 0x28]);
            case(b, json_ct)
        }
        14 => {
            let ct = [
                Some("text/plain"),
                Some("application/yaml"),
                None,
                Some("application/json-patch+json"),
            ][rng.below(4)];
            case(base.clone(), ct)
        }
        15 => {
            let n = rng.below(4096);
            case((0..n).map(|_| rng.next() as u8).collect(), json_ct)
        }
        16 if rng.below(40) == 0 => {
            let mut b = base.clone();
            b.resize(3 * 1024 * 1024 + 1 + rng.below(1024), b' ');
            case(b, json_ct)
        }
        _ => Case {
            body: base.clone(),
            content_type: json_ct,
            valid: true,
        },
    }
}

/// A connection that sends headers and part of a body, then stalls: the server must
/// close it (or answer 408) within its request timeout.
async fn stalled_upload(s_addr: SocketAddr, ca: Vec<u8>) -> Duration {
    let tls = tokio_rustls::TlsConnector::from(Arc::new(common::rustls_client_config(&ca, None)));
    let tcp = tokio::net::TcpStream::connect(s_addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tls.connect(name, tcp).await.unwrap();
    let start = Instant::now();
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"kind\":")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(CLIENT_DEADLINE, stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "stalled upload was not closed within {CLIENT_DEADLINE:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    start.elapsed()
}

/// A TCP connection that never sends a byte: the server must drop it after the
/// handshake timeout.
async fn silent_connection(addr: SocketAddr) -> Duration {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(CLIENT_DEADLINE, tcp.read(&mut buf)).await;
    assert!(
        read.is_ok(),
        "silent connection was not closed within {CLIENT_DEADLINE:?}"
    );
    start.elapsed()
}

async fn exfil_is_denied(s: &Server) {
    let resp = s
        .client()
        .post(s.url())
        .header("content-type", "application/json")
        .body(common::fixture("validate-create-serviceentry-v1-exfil"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_ten_thousand_malformed_requests() {
    egress_guard::install_crypto_provider();
    let mut server = Server::start();
    let names = [
        "validate-create-serviceentry-v1-github-api",
        "validate-create-serviceentry-v1-exfil",
        "mutate-create-virtualservice-v1-github-api",
        "validate-create-gateway-v1-egress",
        "validate-create-sidecar-v1-default",
        "validate-update-virtualservice-v1-github-api",
        "validate-delete-serviceentry-v1-github-api",
        "validate-create-serviceentry-v1-review-v1beta1-exfil",
    ];
    let fixtures: Arc<Vec<Vec<u8>>> = Arc::new(names.iter().map(|n| common::fixture(n)).collect());

    // Warm up with the same mix so the baseline includes the allocator's steady state.
    let run = |count: usize, seed: u64| {
        let fixtures = fixtures.clone();
        let url = server.url();
        let clients: Vec<reqwest::Client> = (0..WORKERS).map(|_| server.client()).collect();
        let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
            u16,
            usize,
        >::new()));
        let wrong = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(w, client)| {
                let (fixtures, url, statuses, wrong) = (
                    fixtures.clone(),
                    url.clone(),
                    statuses.clone(),
                    wrong.clone(),
                );
                tokio::spawn(async move {
                    let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    for _ in 0..count / WORKERS {
                        let case = mutate(&mut rng, &fixtures);
                        let mut req = client.post(&url).body(case.body.clone());
                        if let Some(ct) = case.content_type {
                            req = req.header("content-type", ct);
                        }
                        let resp = tokio::time::timeout(CLIENT_DEADLINE, req.send())
                            .await
                            .expect("request hung past the client deadline");
                        // A closed connection is an acceptable answer to garbage; a hang is not.
                        let Ok(resp) = resp else { continue };
                        let status = resp.status().as_u16();
                        *statuses.lock().unwrap().entry(status).or_default() += 1;
                        assert!(
                            [200, 400, 408, 413, 415].contains(&status),
                            "unexpected status {status}"
                        );
                        let body = resp.bytes().await.unwrap_or_default();
                        if case.valid {
                            let v: Value = serde_json::from_slice(&body).unwrap();
                            let sent: Value = serde_json::from_slice(&case.body).unwrap();
                            if v["response"]["uid"] != sent["request"]["uid"] {
                                wrong.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        async move {
            for t in tasks {
                t.await.expect("campaign worker panicked");
            }
            let statuses = statuses.lock().unwrap().clone();
            (statuses, wrong.load(Ordering::Relaxed))
        }
    };

    let started = Instant::now();
    let ca = std::fs::read(server.dir.path().join("ca.crt")).unwrap();
    let addr = server.https;
    let hostile = |stalled: usize, silent: usize| {
        let stalls: Vec<_> = (0..stalled)
            .map(|_| tokio::spawn(stalled_upload(addr, ca.clone())))
            .collect();
        let silent: Vec<_> = (0..silent)
            .map(|_| tokio::spawn(silent_connection(addr)))
            .collect();
        async move {
            for s in stalls {
                let took = s.await.unwrap();
                assert!(
                    took <= SERVER_TIMEOUT + Duration::from_secs(3),
                    "stalled upload held for {took:?}"
                );
            }
            for s in silent {
                let took = s.await.unwrap();
                assert!(
                    took <= SERVER_TIMEOUT + Duration::from_secs(3),
                    "silent connection held for {took:?}"
                );
            }
        }
    };

    // Warm up with the same mix, so the baseline includes the allocator's steady state
    // for this traffic; a leak shows as growth over it.
    let warm_hostile = hostile(20, 200);
    let (_, wrong) = run(2_000, 7).await;
    assert_eq!(wrong, 0);
    warm_hostile.await;
    exfil_is_denied(&server).await;
    let baseline = server.rss_kib();

    // Slow uploads and silent connections run alongside the main campaign.
    let main_hostile = hostile(20, 200);
    let (statuses, wrong) = run(REQUESTS, 42).await;
    assert_eq!(wrong, 0, "well-formed requests answered for the wrong uid");
    let answered: usize = statuses.values().sum();
    assert!(
        answered >= REQUESTS * 9 / 10,
        "only {answered} answered: {statuses:?}"
    );
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 1_000,
        "{statuses:?}"
    );

    main_hostile.await;

    assert!(server.alive(), "the server process died");
    exfil_is_denied(&server).await;

    // Memory returns to within 10% of the warmed-up baseline (jemalloc purges lazily).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rss = server.rss_kib();
    while rss > baseline + baseline / 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss = server.rss_kib();
    }
    assert!(
        rss <= baseline + baseline / 10,
        "RSS {rss} KiB did not return within 10% of the baseline {baseline} KiB"
    );
    eprintln!(
        "campaign: {REQUESTS} requests in {:?}, statuses {statuses:?}, RSS baseline {baseline} KiB, end {rss} KiB",
        started.elapsed()
    );
}
