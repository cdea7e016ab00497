//! The "bare ceiling" for load tests: HTTPS `POST /validate` that parses the body as a
//! `serde_json::Value` and answers a fixed allowed AdmissionReview echoing the uid.
//! No policy, metrics or logging; the same rustls configuration (ring, HTTP/1.1-only
//! ALPN, built by `egress_guard::server::tls::server_config`), the same allocator
//! (jemalloc) and the same multi-threaded tokio runtime as `egress-guard serve`.
//!
//! `cargo run --release --example bare-server -- --listen 127.0.0.1:9443 \
//!     --tls-cert certs/tls.crt --tls-key certs/tls.key [--floor]`
//!
//! `--floor` is the floor no webhook can go below: the same stack reads the whole body
//! and answers a constant AdmissionReview without parsing it (its uid is empty, which an
//! apiserver would refuse; load generators do not look).
//!
//! `GET /readyz` answers `ready` (over HTTPS) once the listener is up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use egress_guard::server::tls::{TlsPaths, server_config};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Args {
    listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    floor: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut listen: SocketAddr = "127.0.0.1:9443".parse()?;
    let (mut cert, mut key, mut floor) = (None, None, false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = value()?.parse().context("--listen")?,
            "--tls-cert" => cert = Some(PathBuf::from(value()?)),
            "--tls-key" => key = Some(PathBuf::from(value()?)),
            "--floor" => floor = true,
            other => bail!(
                "unexpected argument {other:?}; usage: bare-server --listen ADDR --tls-cert PEM --tls-key PEM [--floor]"
            ),
        }
    }
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Args {
            listen,
            cert,
            key,
            floor,
        }),
        _ => bail!("--tls-cert and --tls-key are required"),
    }
}

fn main() -> anyhow::Result<()> {
    egress_guard::install_crypto_provider();
    let args = args()?;
    let tls = server_config(&TlsPaths {
        cert: args.cert,
        key: args.key,
        client_ca: None,
    })
    .context("loading TLS material")?;
    let rustls = RustlsConfig::from_config(Arc::new(tls));
    let app = Router::new()
        .route(
            "/validate",
            if args.floor {
                post(floor)
            } else {
                post(validate)
            },
        )
        .route("/readyz", get(|| async { "ready\n" }));
    // The same runtime as `egress-guard serve` (src/main.rs).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mode = if args.floor { " (floor)" } else { "" };
        eprintln!("bare-server{mode} listening on https://{}", args.listen);
        axum_server::bind_rustls(args.listen, rustls)
            .serve(app.into_make_service())
            .await
    })?;
    Ok(())
}

async fn validate(body: Bytes) -> Response {
    let review: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let uid = review["request"]["uid"].as_str().unwrap_or_default();
    let api_version = review["apiVersion"]
        .as_str()
        .unwrap_or("admission.k8s.io/v1");
    let answer = serde_json::json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    });
    match serde_json::to_vec(&answer) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Reads the body (axum collects it before the handler runs) and answers a constant.
async fn floor(body: Bytes) -> Response {
    const ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;
    std::hint::black_box(body.len());
    ([(header::CONTENT_TYPE, "application/json")], ANSWER).into_response()
}
