//! egress-guard: a validating and mutating admission webhook that guards egress in
//! Istio meshes.
//!
//! The arrows point one way: `server → admission → policy`, `server → logging →
//! admission`, `source → policy`,
//! `check → policy`, `audit → check → policy`, `audit → source` (`--watch`),
//! `grants → policy`; `server`, `source` and `audit` record into [`metrics`]. [`policy`] is pure and imports none of the others.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![warn(missing_docs)]

pub mod admission;
pub mod args;
pub mod audit;
pub mod certs;
pub mod check;
pub mod cli;
pub mod grants;
pub mod log_writer;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod registration;
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

/// Initialises `tracing`: see [`logging::init`].
pub fn init_tracing(format: cli::LogFormat, filter: &str) -> Option<log_writer::LogGuard> {
    logging::init(format, filter)
}
