//! egress-guard: a validating and mutating admission webhook that guards egress in
//! Istio meshes.
//!
//! The arrows point one way: `server → admission → policy`, `source → policy`,
//! `check → policy`, `audit → check → policy`; `server` and `source` both record into
//! [`metrics`]. [`policy`] is pure and imports none of the others.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![warn(missing_docs)]

pub mod admission;
pub mod audit;
pub mod certs;
pub mod check;
pub mod cli;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod source;

/// The wall clock, seconds since the epoch: the "now" the edges pass to the engine for
/// allowlist entries that expire.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Installs the process-wide rustls crypto provider (ring) once.
pub fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Initialises `tracing` with text or JSON lines on stderr, written by a background
/// thread: a request never waits on the stderr lock. Keep the guard alive until exit;
/// dropping it flushes. Under extreme load, lines beyond the buffer are dropped rather
/// than slowing admission.
pub fn init_tracing(
    format: cli::LogFormat,
    filter: &str,
) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    server::set_json_logs(format == cli::LogFormat::Json);
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let _ = match format {
        cli::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        cli::LogFormat::Text => builder.try_init(),
    };
    guard
}
