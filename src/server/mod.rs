//! `egress-guard serve`: HTTPS `/validate` and `/mutate`, plain-HTTP `/metrics`,
//! `/healthz` and `/readyz`, certificate reload and graceful shutdown.
//!
//! A request is read (bounded in size and time), decoded, judged synchronously by
//! `policy::evaluate` against one lock-free snapshot of the allowlist, and answered.

mod run;
pub mod tls;

pub use run::{run, shutdown_signal};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use http_body_util::BodyExt;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::admission::{self, Endpoint, Outcome};
pub use crate::metrics::Metrics;
use crate::source::PolicyStore;
use tls::TlsPaths;

/// Largest accepted AdmissionReview body (the apiserver's own request limit is 3 MiB).
pub const BODY_LIMIT: usize = 3 * 1024 * 1024;

/// Server settings, built by the CLI or directly by tests.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Serving certificate, key and optional client CA.
    pub tls: TlsPaths,
    /// Time allowed for a request's headers and body, and for the TLS handshake.
    pub request_timeout: Duration,
    /// Requests processed at once.
    pub max_concurrency: usize,
    /// How long in-flight requests may take after shutdown starts.
    pub shutdown_grace: Duration,
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
}

impl AppState {
    /// State over a store and its metrics.
    pub fn new(store: Arc<PolicyStore>, metrics: Metrics, request_timeout: Duration) -> Self {
        Self {
            store,
            metrics,
            tls_loaded: Arc::new(AtomicBool::new(false)),
            shutting_down: Arc::new(AtomicBool::new(false)),
            request_timeout,
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
pub fn router(state: AppState, max_concurrency: usize) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        // Bodies are read by `read_body` with its own limit and deadline.
        .layer(DefaultBodyLimit::disable())
        .layer(GlobalConcurrencyLimitLayer::new(max_concurrency.max(1)))
        .with_state(state)
}

/// The operations routes (served over plain HTTP on a separate port).
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn validate(State(st): State<AppState>, req: Request) -> Response {
    review(Endpoint::Validate, st, req).await
}

async fn mutate(State(st): State<AppState>, req: Request) -> Response {
    review(Endpoint::Mutate, st, req).await
}

/// A request rejected before evaluation: status, metric reason, message.
struct Rejection(StatusCode, &'static str, String);

async fn review(endpoint: Endpoint, st: AppState, req: Request) -> Response {
    let started = Instant::now();
    let body = match read_body(&st, req).await {
        Ok(b) => b,
        Err(Rejection(status, reason, message)) => {
            st.metrics
                .record_bad_request(endpoint, reason, started.elapsed());
            tracing::warn!(endpoint = endpoint.as_str(), reason, %message, "request rejected");
            return (status, format!("{message}\n")).into_response();
        }
    };
    judge(endpoint, &st, &body, started)
}

/// Checks the content type, then reads the body within the size limit and deadline.
async fn read_body(st: &AppState, req: Request) -> Result<Bytes, Rejection> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(Rejection(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("content type must be application/json, got {content_type:?}"),
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(req.into_body(), BODY_LIMIT);
    match tokio::time::timeout(st.request_timeout, limited.collect()).await {
        Err(_) => Err(Rejection(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("request body not received within {:?}", st.request_timeout),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Rejection(
            StatusCode::BAD_REQUEST,
            "body",
            format!("reading request body: {e}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn too_large() -> Rejection {
    Rejection(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("request body larger than {BODY_LIMIT} bytes"),
    )
}

/// Answers one review through the pipeline, then records it and writes its log line.
fn judge(endpoint: Endpoint, st: &AppState, body: &[u8], started: Instant) -> Response {
    let loaded = st.store.current();
    let reviewed = admission::review(
        endpoint,
        body,
        loaded.as_ref().map(|l| &l.allowlist),
        &crate::policy::Env::default(),
    );
    let elapsed = started.elapsed();
    match &reviewed.outcome {
        Outcome::Judged(j) => {
            st.metrics.record_review(endpoint, j, elapsed);
            let d = &j.decision;
            let codes: Vec<&str> = d.violations.iter().map(|v| v.code.as_str()).collect();
            // One line per decision carrying the whole request context. No span: the
            // line is the only event of a review. Request strings are escaped and cut,
            // so a crafted uid or kind cannot forge or flood log lines.
            tracing::info!(
                uid = %Clean(&j.uid),
                endpoint = endpoint.as_str(),
                operation = j.operation.as_str(),
                kind = %Clean(&j.kind),
                namespace = %Clean(&j.namespace),
                name = %Clean(&j.name),
                dry_run = j.dry_run,
                decision = j.answer.as_str(),
                mode = d.mode.as_str(),
                codes = %codes.join(","),
                patched = d.patched_routes.len(),
                allowlist_revision = loaded.as_ref().map_or("", |l| l.revision.as_str()),
                elapsed_us = elapsed.as_micros() as u64,
                "admission decision"
            );
        }
        Outcome::Rejected(r) => {
            st.metrics.record_bad_request(endpoint, r.reason, elapsed);
            tracing::warn!(
                endpoint = endpoint.as_str(),
                reason = r.reason,
                uid = %Clean(r.uid.as_deref().unwrap_or_default()),
                message = %Clean(&r.message),
                "review not judged"
            );
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

/// Request text for a log line: control characters escaped, at most [`Clean::MAX`]
/// characters, so a value from the request body can neither break a text-format line
/// nor flood the log.
struct Clean<'a>(&'a str);

impl Clean<'_> {
    const MAX: usize = 256;
}

impl std::fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for (i, c) in self.0.chars().enumerate() {
            if i == Self::MAX {
                return f.write_char('…');
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
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

    let handle: Handle<std::net::SocketAddr> = Handle::new();
    let mut server = axum_server::from_tcp_rustls(listener, rustls)
        .context("HTTPS listener")?
        .map(|acceptor| acceptor.handshake_timeout(cfg.request_timeout))
        .first_request_timeout(cfg.request_timeout)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(cfg.request_timeout);
    let app = router(state.clone(), cfg.max_concurrency);

    ops_listener
        .set_nonblocking(true)
        .context("metrics listener")?;
    let ops_listener =
        tokio::net::TcpListener::from_std(ops_listener).context("metrics listener")?;
    let (ops_stop_tx, ops_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ops = tokio::spawn(
        axum::serve(ops_listener, ops_router(state.clone()))
            .with_graceful_shutdown(async {
                let _ = ops_stop_rx.await;
            })
            .into_future(),
    );

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
    let _ = ops_stop_tx.send(());
    let _ = ops.await;
    tracing::info!("server stopped");
    result.context("HTTPS server")
}
