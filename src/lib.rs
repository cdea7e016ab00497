//! egress-guard: a validating and mutating admission webhook that guards egress in
//! Istio meshes.
//!
//! The arrows point one way: `server → admission → policy`, `source → policy`,
//! `check → policy`, `audit → policy`. [`policy`] is pure and imports none of the others.

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
pub mod policy;
pub mod server;
pub mod source;

/// Installs the process-wide rustls crypto provider (ring) once.
pub fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Initialises `tracing` with text or JSON lines.
pub fn init_tracing(format: cli::LogFormat, filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        cli::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        cli::LogFormat::Text => builder.try_init(),
    };
}
