//! Test harness: a real egress-guard server on 127.0.0.1:0 (listeners kept, never
//! re-bound), certificates generated per test into a tempdir, and HTTPS clients that
//! trust exactly that CA.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egress_guard::server::tls::TlsPaths;
use egress_guard::server::{self, AppState, Metrics, ServeConfig};
use egress_guard::source::PolicyStore;
use serde_json::Value;
use tokio::sync::oneshot;

/// The fixtures captured from a real kube-apiserver.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/admission/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fixture as JSON, for tests that modify it.
pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// Writes a CA and a localhost serving certificate into `dir`.
pub fn write_certs(dir: &Path) -> egress_guard::certs::CertSet {
    let set = egress_guard::certs::generate(
        &["localhost".to_owned()],
        &["127.0.0.1".parse().unwrap()],
        30,
    )
    .unwrap();
    egress_guard::certs::write(dir, &set).unwrap();
    set
}

/// Options for [`TestServer::start_with`].
pub struct Options {
    /// Allowlist YAML (written to `allowlist.yaml` in the tempdir).
    pub allowlist: String,
    /// Require client certificates signed by this CA bundle.
    pub client_ca: Option<PathBuf>,
    /// Spawn the allowlist file watcher.
    pub watch_allowlist: bool,
    /// Per-request read deadline.
    pub request_timeout: Duration,
    /// Drain time after shutdown.
    pub shutdown_grace: Duration,
    /// Open connections before new ones are refused.
    pub max_connections: usize,
    /// Request-body bytes held at once.
    pub max_inflight_bytes: usize,
    /// Deadline for large reviews.
    pub review_deadline: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allowlist: egress_guard::policy::allowlist::EXAMPLE.to_owned(),
            client_ca: None,
            watch_allowlist: false,
            request_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            max_connections: 1024,
            max_inflight_bytes: 64 * 1024 * 1024,
            review_deadline: Duration::from_secs(2),
        }
    }
}

/// A running server and what is needed to talk to it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub store: Arc<PolicyStore>,
    pub metrics: Metrics,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server with the embedded example allowlist.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts a server with the given options.
    pub async fn start_with(opts: Options) -> Self {
        egress_guard::install_crypto_provider();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into()))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        write_certs(dir.path());
        let allowlist_path = dir.path().join("allowlist.yaml");
        std::fs::write(&allowlist_path, &opts.allowlist).unwrap();

        let metrics = Metrics::new();
        let store = PolicyStore::new(metrics.clone());
        egress_guard::source::file::load_initial(&allowlist_path, &store).unwrap();
        if opts.watch_allowlist {
            tokio::spawn(egress_guard::source::file::watch_file(
                allowlist_path,
                store.clone(),
                Duration::from_secs(30),
            ));
        }
        let mut cfg = ServeConfig::new(TlsPaths {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: opts.client_ca,
        });
        cfg.request_timeout = opts.request_timeout;
        cfg.shutdown_grace = opts.shutdown_grace;
        cfg.max_connections = opts.max_connections;
        cfg.max_inflight_bytes = opts.max_inflight_bytes;
        cfg.review_deadline = opts.review_deadline;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ops_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ops_addr = ops_listener.local_addr().unwrap();
        let state = AppState::new(store.clone(), metrics.clone(), &cfg);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(cfg, state, listener, ops_listener, async {
            let _ = rx.await;
        }));
        let s = Self {
            addr,
            ops_addr,
            dir,
            store,
            metrics,
            shutdown: Some(tx),
            task: Some(task),
        };
        s.wait_ready().await;
        s
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("ca.crt")).unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops_addr)
    }

    /// An HTTPS client trusting this server's CA.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.ca_pem(), None)
    }

    /// Polls /readyz until it answers 200.
    pub async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let url = self.ops_url("/readyz");
        eventually(Duration::from_secs(10), || {
            let http = http.clone();
            let url = url.clone();
            async move { matches!(http.get(&url).send().await, Ok(r) if r.status() == 200) }
        })
        .await;
    }

    /// POSTs a body to /validate or /mutate and returns the response review.
    pub async fn review(&self, path: &str, body: Vec<u8>) -> Value {
        let resp = self
            .client()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.json().await.unwrap()
    }

    pub async fn metrics_text(&self) -> String {
        reqwest::get(self.ops_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Triggers graceful shutdown and waits for the server to stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await.unwrap(),
            None => Ok(()),
        }
    }

    /// Triggers shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A rustls client config trusting `ca_pem`, optionally presenting a client identity.
pub fn rustls_client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    egress_guard::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(cert)
                .map(Result::unwrap)
                .collect();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key).unwrap())
                .unwrap()
        }
    }
}

/// A reqwest client using exactly that TLS configuration.
pub fn client_trusting(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(rustls_client_config(ca_pem, identity))
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls `check` every 20 ms until it is true; panics after `deadline`.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replaces a fixture request's object spec (and oldObject spec when present).
pub fn with_spec(mut review: Value, spec: Value) -> Vec<u8> {
    review["request"]["object"]["spec"] = spec;
    serde_json::to_vec(&review).unwrap()
}

/// The value of one series in Prometheus text, e.g.
/// `metric(text, r#"egress_guard_allowlist_reloads_total{result="error"}"#)`; `None` when
/// the series is absent.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Reads from `stream` until `end` has been received (or the stream ends); panics after
/// `deadline`. Returns everything read.
pub async fn read_until<S>(stream: &mut S, end: &[u8], deadline: Duration) -> Vec<u8>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt as _;
    let mut buf = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while !buf.ends_with(end) {
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            buf.push(byte[0]);
        }
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or_else(|_| panic!("{end:?} not received within {deadline:?}"));
    buf
}
