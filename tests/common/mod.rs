//! Test harness: a real egress-guard server on 127.0.0.1:0 (listeners kept, never
//! re-bound), certificates generated per test into a tempdir, and HTTPS clients that
//! trust exactly that CA.

#![allow(dead_code)]

pub mod apiserver;
pub mod corpus;
pub mod verdicts;

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
    /// The allowlist ConfigMap validated as an allowlist (as deployed).
    pub allowlist_source: Option<egress_guard::policy::AllowlistSource>,
    /// Serve this certificate and key instead of a fresh localhost one (the one a real
    /// apiserver trusts, see [`apiserver::Kube::webhook_cert`]).
    pub tls: Option<(PathBuf, PathBuf)>,
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
            allowlist_source: Some(egress_guard::policy::AllowlistSource {
                configmap: "egress-guard/egress-guard-allowlist".parse().unwrap(),
                key: "allowlist.yaml".to_owned(),
            }),
            tls: None,
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
                egress_guard::source::file::Hangups::install(),
            ));
        }
        let (cert, key) = opts
            .tls
            .unwrap_or_else(|| (dir.path().join("tls.crt"), dir.path().join("tls.key")));
        let mut cfg = ServeConfig::new(TlsPaths {
            cert,
            key,
            client_ca: opts.client_ca,
        });
        cfg.request_timeout = opts.request_timeout;
        cfg.shutdown_grace = opts.shutdown_grace;
        cfg.max_connections = opts.max_connections;
        cfg.max_inflight_bytes = opts.max_inflight_bytes;
        cfg.review_deadline = opts.review_deadline;
        cfg.allowlist_source = opts.allowlist_source;
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

/// The certificate chain a TLS server at `addr` presents for `localhost`, to a client
/// trusting `ca_pem`. `Err` when the handshake fails.
pub async fn peer_certificates(
    addr: SocketAddr,
    ca_pem: &[u8],
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, std::io::Error> {
    let tls = tokio_rustls::TlsConnector::from(Arc::new(rustls_client_config(ca_pem, None)));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tls.connect(name, tcp).await?;
    let (_, session) = stream.get_ref();
    Ok(session
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect())
}

/// The DER of every certificate in a PEM text, in order.
pub fn pem_certs(pem: &[u8]) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}

// === the built binary ===

/// `egress-guard serve` on 127.0.0.1:0 (both ports), to be configured and spawned.
pub struct ServeCommand {
    cmd: std::process::Command,
    dir: tempfile::TempDir,
    ca: Vec<u8>,
}

impl ServeCommand {
    /// With a fresh localhost certificate written into `<tempdir>/tls/`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let set = write_certs(&tls);
        Self::build(
            dir,
            &tls.join("tls.crt"),
            &tls.join("tls.key"),
            set.ca_cert.as_bytes(),
        )
    }

    /// With the given serving certificate and key; clients trust `ca_pem`.
    pub fn with_tls(cert: &Path, key: &Path, ca_pem: &[u8]) -> Self {
        Self::build(tempfile::tempdir().unwrap(), cert, key, ca_pem)
    }

    fn build(dir: tempfile::TempDir, cert: &Path, key: &Path, ca_pem: &[u8]) -> Self {
        // For the test's own clients, including plain `reqwest::get`.
        egress_guard::install_crypto_provider();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_egress-guard"));
        // A clean environment: no EGRESS_GUARD_* or KUBECONFIG from the caller.
        cmd.env_clear()
            .env("HOME", dir.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        Self {
            cmd,
            dir,
            ca: ca_pem.to_vec(),
        }
    }

    /// A tempdir that lives as long as the server, for allowlists and kubeconfigs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Adds a flag with a path value.
    pub fn arg_path(mut self, flag: &str, path: &Path) -> Self {
        self.cmd.arg(flag).arg(path);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Starts the process and waits (up to 20 s) for it to log the addresses it bound.
    pub async fn spawn(mut self) -> ServeBinary {
        let mut child = self.cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = ServeBinary {
            child,
            https: SocketAddr::from(([0, 0, 0, 0], 0)),
            metrics: SocketAddr::from(([0, 0, 0, 0], 0)),
            dir: self.dir,
            ca: self.ca,
            log,
        };
        let line = server.wait_for_log("egress-guard serving").await;
        server.https = bound_address(&line, "https");
        server.metrics = bound_address(&line, "metrics");
        server
    }
}

/// `name=ADDR` in a text log line, or the field `name` of a JSON one.
fn bound_address(line: &str, name: &str) -> SocketAddr {
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return v[name].as_str().unwrap().parse().unwrap();
    }
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
        .parse()
        .unwrap()
}

/// A running `egress-guard serve` process; killed when dropped.
pub struct ServeBinary {
    child: std::process::Child,
    /// The bound HTTPS address.
    pub https: SocketAddr,
    /// The bound metrics and probes address.
    pub metrics: SocketAddr,
    dir: tempfile::TempDir,
    ca: Vec<u8>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for ServeBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeBinary {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The tempdir given to [`ServeCommand::dir`].
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA clients trust.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.metrics)
    }

    /// An HTTPS client trusting the server's CA.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.ca, None)
    }

    /// POSTs a review body and returns the HTTP status and the JSON answer.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .client()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, json)
    }

    /// POSTs a review body, asserts 200 and returns the answer.
    pub async fn review(&self, path: &str, body: Vec<u8>) -> Value {
        let (status, review) = self.post(path, body).await;
        assert_eq!(status, 200, "{path}: {review}");
        review
    }

    /// GETs an operations path: status and body.
    pub async fn ops_get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(self.ops_url(path)).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub async fn metrics_text(&self) -> String {
        self.ops_get("/metrics").await.1
    }

    /// The value of one metric series, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics_text().await, series).unwrap_or(0.0)
    }

    /// Polls /readyz until it answers 200.
    pub async fn wait_ready(&self) {
        let url = self.ops_url("/readyz");
        eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move { matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200) }
        })
        .await;
    }

    /// Every stderr line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) for a stderr line containing `what` and returns the first.
    pub async fn wait_for_log(&self, what: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(what)) {
                return line;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no log line with {what:?}:\n{}",
                self.log().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal with `kill -SIG PID`.
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {}", self.pid());
    }

    /// Waits (up to 10 s) until the process has a handler installed for signal number
    /// `signo` (Linux: the `SigCgt` mask in /proc), so that sending it cannot hit the
    /// default action.
    pub async fn wait_for_signal_handler(&self, signo: u32) {
        let status = format!("/proc/{}/status", self.pid());
        eventually(Duration::from_secs(10), || {
            let caught = std::fs::read_to_string(&status)
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("SigCgt:"))
                        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
                })
                .unwrap_or(0);
            async move { caught & (1 << (signo - 1)) != 0 }
        })
        .await;
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// A kubeconfig in `dir` for an API server at `server` (plain HTTP, no credentials).
pub fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
users:
- name: fake
  user: {{}}
"
    );
    std::fs::write(&path, text).unwrap();
    path
}
