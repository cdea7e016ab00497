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
pub mod log_writer;
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

/// Initialises `tracing` with text or JSON lines on stderr, batched by a background
/// thread ([`log_writer`]): a request never waits on stderr and does not pay a system
/// call per line. Keep the guard alive until exit; dropping it writes what is left.
pub fn init_tracing(format: cli::LogFormat, filter: &str) -> Option<log_writer::LogGuard> {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::fmt::writer::EitherWriter;
    use tracing_subscriber::prelude::*;
    // Per-target levels (`egress_guard=debug,info`): a static filter, checked without
    // the per-event bookkeeping of span-aware filters.
    let targets = filter
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    server::set_json_logs(format == cli::LogFormat::Json);
    let (batch, guard) = match log_writer::batch(std::io::stderr(), log_writer::LINGER) {
        Ok((w, g)) => (Some(w), Some(g)),
        // No thread for the writer: write each line directly.
        Err(_) => (None, None),
    };
    // One writer type for both cases, so that no line pays for a boxed writer.
    let writer = move || match &batch {
        Some(w) => EitherWriter::A(w.clone()),
        None => EitherWriter::B(std::io::stderr()),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(targets);
    let _ = match format {
        cli::LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_current_span(true))
            .try_init(),
        cli::LogFormat::Text => registry.with(layer).try_init(),
    };
    guard
}
