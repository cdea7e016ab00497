//! Command-line interface: `serve`, `check`, `audit` and `certs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Validating and mutating admission webhook that guards egress in Istio meshes.
#[derive(Debug, Parser)]
#[command(name = "egress-guard", version, about, propagate_version = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "EGRESS_GUARD_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `egress_guard=debug`.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "EGRESS_GUARD_LOG_LEVEL"
    )]
    pub log_level: String,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook (HTTPS /validate and /mutate; plain-HTTP metrics and probes).
    Serve(ServeArgs),
    /// Evaluate manifests offline against an allowlist and print verdicts and patches.
    Check(CheckArgs),
    /// Report which live Istio objects in a cluster an allowlist would deny or patch.
    Audit(AuditArgs),
    /// Write a self-signed CA and a serving certificate for development or manual installs.
    Certs(CertsArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Report output format for `check` and `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable report.
    Text,
    /// One JSON document.
    Json,
}

pub use crate::policy::ObjectRef;

/// A duration flag such as `10s` or `500ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub std::time::Duration);

impl FromStr for DurationArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let d: crate::policy::duration::Duration = s.parse().map_err(|e| format!("{e}"))?;
        Ok(Self(d.into()))
    }
}

/// Where the allowlist comes from (shared by `serve` and `audit`).
#[derive(Debug, Clone, Args)]
pub struct AllowlistArgs {
    /// Allowlist YAML file, watched for changes (works with kubelet's ConfigMap symlink swap).
    #[arg(
        long,
        env = "EGRESS_GUARD_ALLOWLIST_FILE",
        conflicts_with = "allowlist_configmap"
    )]
    pub allowlist_file: Option<PathBuf>,
    /// ConfigMap holding the allowlist, watched through the Kubernetes API.
    #[arg(
        long,
        env = "EGRESS_GUARD_ALLOWLIST_CONFIGMAP",
        value_name = "NAMESPACE/NAME"
    )]
    pub allowlist_configmap: Option<ObjectRef>,
    /// Key of the allowlist in the ConfigMap.
    #[arg(
        long,
        env = "EGRESS_GUARD_ALLOWLIST_KEY",
        default_value = "allowlist.yaml"
    )]
    pub allowlist_key: String,
}

/// `serve` flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTPS address for /validate and /mutate.
    #[arg(long, env = "EGRESS_GUARD_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address for /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "EGRESS_GUARD_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,
    /// Serving certificate chain (PEM). Reloaded when the file changes.
    #[arg(long, env = "EGRESS_GUARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving private key (PEM). Reloaded when the file changes.
    #[arg(long, env = "EGRESS_GUARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM): when set, clients must present a certificate it signed.
    #[arg(long, env = "EGRESS_GUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Where a development certificate is generated (or reused) when no --tls-cert is given.
    #[arg(long, env = "EGRESS_GUARD_CERTS_DIR", default_value = "certs")]
    pub certs_dir: PathBuf,
    /// The allowlist source; with none, the embedded example allowlist is used.
    #[command(flatten)]
    pub allowlist: AllowlistArgs,
    /// Time allowed to read a request's headers and body.
    #[arg(long, env = "EGRESS_GUARD_REQUEST_TIMEOUT", default_value = "10s")]
    pub request_timeout: DurationArg,
    /// Large reviews (over 16 KiB) queued or in evaluation at once; more get 503.
    /// Smaller reviews are judged inline and need no slot.
    #[arg(long, env = "EGRESS_GUARD_MAX_CONCURRENCY", default_value_t = 1024)]
    pub max_concurrency: usize,
    /// Open connections; more are closed on accept, before the TLS handshake.
    #[arg(long, env = "EGRESS_GUARD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Request-body bytes held in memory at once across all connections; past it, 503.
    #[arg(long, env = "EGRESS_GUARD_MAX_INFLIGHT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_inflight_bytes: usize,
    /// Time a large review may take before it is answered as too complex (EG901).
    #[arg(long, env = "EGRESS_GUARD_REVIEW_DEADLINE", default_value = "2s")]
    pub review_deadline: DurationArg,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "EGRESS_GUARD_SHUTDOWN_GRACE", default_value = "20s")]
    pub shutdown_grace: DurationArg,
}

/// `check` flags.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Allowlist YAML file; the embedded example allowlist when omitted.
    #[arg(long)]
    pub allowlist: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Namespace for objects that do not name one.
    #[arg(long, short, default_value = "default")]
    pub namespace: String,
    /// Manifest files or directories (YAML, multi-document, JSON, `List`); `-` reads stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `audit` flags.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Allowlist YAML file (instead of a ConfigMap); the embedded example when no source is set.
    #[arg(long, conflicts_with_all = ["allowlist_configmap"])]
    pub allowlist: Option<PathBuf>,
    /// ConfigMap holding the allowlist.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub allowlist_configmap: Option<ObjectRef>,
    /// Key of the allowlist in the ConfigMap.
    #[arg(long, default_value = "allowlist.yaml")]
    pub allowlist_key: String,
    /// Only this namespace (default: all namespaces).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `certs` flags.
#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Service name of the webhook (for the certificate's DNS names).
    #[arg(long, default_value = "egress-guard")]
    pub service: String,
    /// Namespace of the webhook Service.
    #[arg(long, default_value = "egress-guard")]
    pub namespace: String,
    /// Output directory.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// Validity of the serving certificate in days (at most the CA's ten years).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
