//! `egress-guard serve`: HTTPS `/validate` and `/mutate`, plain-HTTP `/metrics`,
//! `/healthz` and `/readyz`, certificate reload and graceful shutdown.
//!
//! A request's body is read within a deadline and a global byte budget, then answered
//! by [`admission::review`] against one lock-free snapshot of the allowlist. Small
//! reviews (every real one) are judged inline: their cost is bounded by their size.
//! Larger ones are judged on the blocking pool under a deadline that cancels the
//! engine. Probes and metrics are served by their own thread, so no review can delay
//! them.

mod body;
mod limits;
mod ops;
mod run;
pub mod tls;

pub use run::{RegisterArgs, ServeArgs, run, shutdown_signal};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use tokio::sync::Semaphore;

use crate::admission::{self, Endpoint, Outcome, Reviewed};
pub use crate::metrics::Metrics;
use crate::policy::{AllowlistSource, Env};
use crate::source::{Loaded, PolicyStore};
pub use limits::ByteBudget;
use limits::ConnectionCap;
pub use ops::ops_router;
use tls::TlsPaths;

/// Largest accepted AdmissionReview body (the apiserver's own request limit is 3 MiB).
pub const BODY_LIMIT: usize = 3 * 1024 * 1024;
/// Bodies up to this size are judged inline on the async worker: real reviews are a few
/// KiB, and the engine's cost is linear in the body, so this bounds the inline work to
/// well under a millisecond.
pub const INLINE_BODY: usize = 16 * 1024;

/// Server settings, built by the CLI or directly by tests.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Serving certificate, key and optional client CA.
    pub tls: TlsPaths,
    /// Time allowed for a request's headers and body, and for the TLS handshake.
    pub request_timeout: Duration,
    /// Large reviews (over [`INLINE_BODY`]) queued or in evaluation at once; more are
    /// answered 503. Small reviews are judged inline and need no slot.
    pub max_concurrency: usize,
    /// Open connections; more are closed on accept.
    pub max_connections: usize,
    /// Request-body bytes held at once across all connections; past it, 503.
    pub max_inflight_bytes: usize,
    /// Memory large reviews may use at once while judged (estimated from the body).
    pub review_memory: usize,
    /// Time a large review may take, waiting for a slot included, before it is
    /// answered as too complex to evaluate.
    pub review_deadline: Duration,
    /// How long in-flight requests may take after shutdown starts.
    pub shutdown_grace: Duration,
    /// The allowlist's own ConfigMap, validated as an allowlist when it is written.
    pub allowlist_source: Option<AllowlistSource>,
}

impl ServeConfig {
    /// Defaults for everything but the TLS files.
    pub fn new(tls: TlsPaths) -> Self {
        Self {
            tls,
            request_timeout: Duration::from_secs(10),
            max_concurrency: 1024,
            max_connections: 1024,
            max_inflight_bytes: 64 * 1024 * 1024,
            review_memory: 256 * 1024 * 1024,
            review_deadline: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(20),
            allowlist_source: None,
        }
    }
}

/// Shared state of both routers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The allowlist in force.
    pub store: Arc<PolicyStore>,
    /// Metrics.
    pub metrics: Metrics,
    tls_loaded: Arc<AtomicBool>,
    shutting_down: Arc<AtomicBool>,
    request_timeout: Duration,
    review_deadline: Duration,
    bytes: ByteBudget,
    slots: Arc<Semaphore>,
    /// Large reviews judged at once on the blocking pool: about one per core, so a
    /// burst of hostile bodies queues instead of thrashing.
    heavy: Arc<Semaphore>,
    /// Estimated memory of the large reviews being judged, in KiB.
    memory: Arc<Semaphore>,
    memory_kib: usize,
    allowlist_source: Option<Arc<AllowlistSource>>,
}

/// Estimated peak memory of judging a body, per body byte: decoding a list of tiny
/// elements (`{}` routes, ports, containers) into typed structs costs up to ~96 times
/// their bytes (bench/hostile.sh).
const MEMORY_PER_BODY_BYTE: usize = 100;

impl AppState {
    /// State over a store and its metrics, with the limits of `cfg`.
    pub fn new(store: Arc<PolicyStore>, metrics: Metrics, cfg: &ServeConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let memory_kib = (cfg.review_memory / 1024).clamp(1, u32::MAX as usize);
        Self {
            store,
            metrics,
            tls_loaded: Arc::new(AtomicBool::new(false)),
            shutting_down: Arc::new(AtomicBool::new(false)),
            request_timeout: cfg.request_timeout,
            review_deadline: cfg.review_deadline,
            bytes: ByteBudget::new(cfg.max_inflight_bytes),
            slots: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
            heavy: Arc::new(Semaphore::new(cores)),
            memory: Arc::new(Semaphore::new(memory_kib)),
            memory_kib,
            allowlist_source: cfg.allowlist_source.clone().map(Arc::new),
        }
    }

    /// The engine's view of the edge for one review: the clock and the allowlist's
    /// ConfigMap.
    fn env(&self) -> Env<'_> {
        Env {
            now: Some(crate::unix_now()),
            allowlist_source: self.allowlist_source.as_deref(),
            ..Env::default()
        }
    }

    /// Ready once TLS material and a valid allowlist are loaded, until shutdown.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::Relaxed) {
            Err("shutting down")
        } else if !self.tls_loaded.load(Ordering::Relaxed) {
            Err("TLS material not loaded")
        } else if !self.store.is_loaded() {
            Err("no valid allowlist loaded")
        } else {
            Ok(())
        }
    }
}

/// The webhook routes (served over HTTPS).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        // Bodies are read by `body::read` with its own limits and deadline.
        .layer(DefaultBodyLimit::disable())
        // Shared, not cloned per request: a clone bumps a dozen reference counts that
        // every core then fights over.
        .with_state(Arc::new(state))
}

async fn validate(State(st): State<Arc<AppState>>, req: Request) -> Response {
    handle(Endpoint::Validate, &st, req).await
}

async fn mutate(State(st): State<Arc<AppState>>, req: Request) -> Response {
    handle(Endpoint::Mutate, &st, req).await
}

async fn handle(endpoint: Endpoint, st: &AppState, req: Request) -> Response {
    let started = Instant::now();
    // The bytes stay counted against the budget until the answer is sent.
    let (body, _bytes) = match body::read(st, req).await {
        Ok(b) => b,
        Err(body::Rejection(status, reason, message)) => {
            st.metrics
                .record_bad_request(endpoint, reason, started.elapsed());
            tracing::warn!(endpoint = endpoint.as_str(), reason, %message, "request rejected");
            return (status, format!("{message}\n")).into_response();
        }
    };
    if body.len() <= INLINE_BODY {
        // A borrowed view of the allowlist: no reference count to bump per review.
        let loaded = st.store.current_guard();
        let reviewed = admission::review(endpoint, &body, allowlist(&loaded), &st.env());
        return finish(endpoint, st, reviewed, loaded.as_deref(), started);
    }
    let Ok(slot) = st.slots.clone().try_acquire_owned() else {
        st.metrics
            .record_bad_request(endpoint, "busy", started.elapsed());
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many large reviews in progress\n",
        )
            .into_response();
    };
    let loaded = st.store.current();
    let reviewed = judge_offloaded(endpoint, st, body, loaded.clone()).await;
    drop(slot);
    finish(endpoint, st, reviewed, loaded.as_deref(), started)
}

fn allowlist(loaded: &Option<Arc<Loaded>>) -> Option<&crate::policy::Allowlist> {
    loaded.as_ref().map(|l| &l.allowlist)
}

/// Judges a large review on the blocking pool. Past the deadline the engine is told to
/// stop and the review is answered as too complex to evaluate.
async fn judge_offloaded(
    endpoint: Endpoint,
    st: &AppState,
    body: Bytes,
    loaded: Option<Arc<Loaded>>,
) -> Reviewed {
    let cancel = Arc::new(AtomicBool::new(false));
    let work = {
        let (body, loaded, cancel) = (body.clone(), loaded.clone(), cancel.clone());
        let (heavy, memory) = (st.heavy.clone(), st.memory.clone());
        let source = st.allowlist_source.clone();
        // One review always fits, however large its estimate.
        let kib = (body.len().saturating_mul(MEMORY_PER_BODY_BYTE) / 1024).clamp(1, st.memory_kib);
        async move {
            let reserved = memory
                .acquire_many_owned(u32::try_from(kib).ok()?)
                .await
                .ok()?;
            let permit = (heavy.acquire_owned().await.ok()?, reserved);
            tokio::task::spawn_blocking(move || {
                // Held until the work itself ends, not until the answer: past the
                // deadline the review is answered but still runs until it notices the
                // cancel, and must keep its core.
                let _heavy = permit;
                let env = Env {
                    cancel: Some(&cancel),
                    now: Some(crate::unix_now()),
                    allowlist_source: source.as_deref(),
                    ..Env::default()
                };
                admission::review(endpoint, &body, allowlist(&loaded), &env)
            })
            .await
            .ok()
        }
    };
    match tokio::time::timeout(st.review_deadline, work).await {
        Ok(Some(reviewed)) => reviewed,
        _ => {
            cancel.store(true, Ordering::Relaxed);
            admission::too_complex(endpoint, &body, allowlist(&loaded))
        }
    }
}

/// Records one answered review, writes its log line, and builds the HTTP response.
fn finish(
    endpoint: Endpoint,
    st: &AppState,
    reviewed: Reviewed,
    loaded: Option<&Loaded>,
    started: Instant,
) -> Response {
    let elapsed = started.elapsed();
    match &reviewed.outcome {
        Outcome::Judged(j) => {
            st.metrics.record_review(endpoint, j, elapsed);
            let revision = loaded.map_or("", |l| l.revision.as_str());
            crate::logging::decision(endpoint, j, revision, elapsed);
        }
        Outcome::Rejected(r) => {
            st.metrics.record_bad_request(endpoint, r.reason, elapsed);
            crate::logging::not_judged(endpoint, r);
        }
    }
    let status = StatusCode::from_u16(reviewed.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if reviewed.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        Body::from(reviewed.body),
    )
        .into_response()
}

/// Runs both servers on already-bound listeners until `shutdown` resolves, then stops
/// accepting, marks itself unready and lets in-flight requests finish within the grace.
pub async fn serve(
    cfg: ServeConfig,
    state: AppState,
    listener: std::net::TcpListener,
    ops_listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let serving = tls::load(&cfg.tls).context("loading TLS material")?;
    let rustls = RustlsConfig::from_config(Arc::new(serving.config));
    state.metrics.record_tls_reload(true);
    state.metrics.record_tls_expiry(serving.not_after);
    tls::warn_if_expiring(serving.not_after);
    state.tls_loaded.store(true, Ordering::Relaxed);
    let reload = tokio::spawn(tls::reload_on_change(
        cfg.tls.clone(),
        rustls.clone(),
        state.metrics.clone(),
    ));

    // Probes and metrics on their own thread and runtime: a busy webhook cannot make
    // kubelet restart the pod.
    let ops = ops::spawn(ops_listener, state.clone()).context("metrics listener")?;

    let handle: Handle<std::net::SocketAddr> = Handle::new();
    let (cap, metrics) = (cfg.max_connections, state.metrics.clone());
    let mut server = axum_server::from_tcp_rustls(listener, rustls)
        .context("HTTPS listener")?
        .map(|acceptor| {
            ConnectionCap::new(
                acceptor.handshake_timeout(cfg.request_timeout),
                cap,
                metrics,
            )
        })
        .first_request_timeout(cfg.request_timeout)
        // The apiserver speaks HTTP/1.1 to webhooks; HTTP/2 would add streams and
        // windows to bound for no client that uses them.
        .http1_only()
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        // Also closes keep-alive connections idle for longer than this.
        .header_read_timeout(cfg.request_timeout)
        .max_buf_size(64 * 1024);
    let app = router(state.clone());

    let stopper = {
        let handle = handle.clone();
        let state = state.clone();
        let grace = cfg.shutdown_grace;
        tokio::spawn(async move {
            shutdown.await;
            state.shutting_down.store(true, Ordering::Relaxed);
            tracing::info!(
                grace_s = grace.as_secs_f64(),
                "shutting down: draining in-flight requests"
            );
            handle.graceful_shutdown(Some(grace));
        })
    };

    let result = server.serve(app.into_make_service()).await;
    stopper.abort();
    reload.abort();
    ops.stop();
    tracing::info!("server stopped");
    result.context("HTTPS server")
}
