//! Command-line interface: `serve`, `check`, `audit`, `grants` and `certs`.

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
    Serve(Box<ServeArgs>),
    /// Evaluate manifests offline against an allowlist and print verdicts and patches.
    Check(CheckArgs),
    /// Report which live Istio objects in a cluster an allowlist would deny or patch;
    /// with --watch, keep reporting them as PolicyReports.
    Audit(AuditArgs),
    /// Print what a namespace may reach: the global and its own allowlist grants.
    Grants(crate::grants::GrantsArgs),
    /// Write a self-signed CA and a serving certificate for development or manual installs.
    Certs(CertsArgs),
    /// Print the allowlist's JSON Schema (for editors and CI), or with --kinds the
    /// table of the kinds egress-guard judges.
    Schema(SchemaArgs),
    /// Check a cluster before (and after) installing: Kubernetes version, Istio's CRDs,
    /// the registered webhook configurations and their caBundle, ready endpoints, and
    /// the allowlist's clusterNetworks against the cluster's addresses.
    Preflight(crate::registration::preflight::PreflightArgs),
    /// Remove what the server registered, first: the binding that lets it register,
    /// then its webhook configurations. Then delete the install (kubectl delete -k).
    Uninstall(UninstallArgs),
}

/// The allowlist ConfigMap a command reads with the caller's kubeconfig.
#[derive(Debug, Clone, Args)]
pub struct AllowlistConfigMapArgs {
    /// The ConfigMap holding the allowlist, read with your kubeconfig.
    #[arg(
        long = "allowlist-configmap",
        value_name = "NAMESPACE/NAME",
        default_value = "egress-guard/egress-guard-allowlist"
    )]
    pub configmap: ObjectRef,
    /// Key of the allowlist in the ConfigMap.
    #[arg(long = "allowlist-key", default_value = "allowlist.yaml")]
    pub key: String,
}

/// `uninstall` flags.
#[derive(Debug, Clone, Args)]
pub struct UninstallArgs {
    /// The namespace egress-guard is installed in.
    #[arg(long, default_value = "egress-guard")]
    pub namespace: String,
    /// The ClusterRoleBinding that lets the server register its configurations.
    #[arg(long, default_value = "egress-guard-register")]
    pub binding: String,
}

/// How `serve` registers its own webhook configurations.
#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    /// The Validating- and MutatingWebhookConfigurations to register once the server is
    /// ready (an allowlist, its TLS pair, a ready endpoint behind the Service), with the
    /// caBundle and namespace filled in, and to keep registered.
    #[arg(long, env = "EGRESS_GUARD_REGISTER_WEBHOOKS", value_name = "FILE")]
    pub register_webhooks: Option<PathBuf>,
    /// The CA bundle (PEM) set on every entry (default: ca.crt beside --tls-cert).
    #[arg(long, env = "EGRESS_GUARD_WEBHOOK_CA_BUNDLE", value_name = "FILE")]
    pub webhook_ca_bundle: Option<PathBuf>,
    /// The ClusterRole the configurations belong to: deleting it (kubectl delete -k, a
    /// GitOps prune) makes the garbage collector delete them.
    #[arg(long, env = "EGRESS_GUARD_WEBHOOK_OWNER", value_name = "CLUSTERROLE")]
    pub webhook_owner: Option<String>,
    /// Call this base URL instead of the Service (out-of-cluster and development).
    #[arg(long, env = "EGRESS_GUARD_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// The server's namespace: its Service's, and the one its webhooks spare.
    #[arg(long, env = "POD_NAMESPACE", default_value = "egress-guard")]
    pub namespace: String,
    /// Re-apply the configurations at least this often.
    #[arg(long, env = "EGRESS_GUARD_REGISTER_INTERVAL", default_value = "60s")]
    pub register_interval: DurationArg,
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
    /// Memory large reviews may use at once while judged, estimated at 100 times their
    /// body (the measured worst case of decoding, see README "Hostile input bounds");
    /// more wait, within the review deadline. One review always fits.
    #[arg(long, env = "EGRESS_GUARD_REVIEW_MEMORY", default_value_t = 256 * 1024 * 1024)]
    pub review_memory: usize,
    /// Time a large review may take before it is answered as too complex (EG901).
    #[arg(long, env = "EGRESS_GUARD_REVIEW_DEADLINE", default_value = "2s")]
    pub review_deadline: DurationArg,
    /// The ConfigMap holding the allowlist, whose edits are validated as allowlists
    /// (default: the --allowlist-configmap one). Name it when serving from a mounted file.
    #[arg(
        long,
        env = "EGRESS_GUARD_VALIDATE_CONFIGMAP",
        value_name = "NAMESPACE/NAME"
    )]
    pub validate_configmap: Option<ObjectRef>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "EGRESS_GUARD_SHUTDOWN_GRACE", default_value = "20s")]
    pub shutdown_grace: DurationArg,
    /// Self-registration of the webhook configurations.
    #[command(flatten)]
    pub register: RegisterArgs,
}

/// A point in time for `--now`: an RFC 3339 time, or a date (its midnight, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NowArg(pub i64);

impl FromStr for NowArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let e: crate::policy::allowlist::Expiry = s.parse()?;
        // A date expires at the end of its day; as "now" it means its start.
        Ok(Self(if s.len() == 10 { e.at - 86_400 } else { e.at }))
    }
}

/// How `check` and `audit` judge objects besides the allowlist.
#[derive(Debug, Clone, Args)]
pub struct JudgeArgs {
    /// Name the allowlist entry that grants each host and address.
    #[arg(long)]
    pub explain: bool,
    /// Judge as of this time (RFC 3339, or a date) instead of now: previews which
    /// objects lose egress when entries expire.
    #[arg(long, value_name = "TIME")]
    pub now: Option<NowArg>,
    /// The ConfigMap that holds the allowlist: a manifest of it is judged as an
    /// allowlist (its `--allowlist-key`), as the webhook does.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        default_value = "egress-guard/egress-guard-allowlist"
    )]
    pub validate_configmap: ObjectRef,
}

/// `check` flags.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Allowlist YAML file; the embedded example allowlist when omitted.
    #[arg(long)]
    pub allowlist: Option<PathBuf>,
    /// An older allowlist: report only the objects whose verdict or violations change
    /// between it and --allowlist (exit 1 when something becomes denied).
    #[arg(long, value_name = "OLD")]
    pub against: Option<PathBuf>,
    /// Key of the allowlist in the ConfigMap named by --validate-configmap.
    #[arg(long, default_value = "allowlist.yaml")]
    pub allowlist_key: String,
    /// Explain, time and allowlist ConfigMap.
    #[command(flatten)]
    pub judge: JudgeArgs,
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
    /// Allowlist YAML file (instead of a ConfigMap); the embedded example when no source
    /// is set. Watched for changes with --watch.
    #[arg(long, visible_alias = "allowlist-file", conflicts_with_all = ["allowlist_configmap"])]
    pub allowlist: Option<PathBuf>,
    /// ConfigMap holding the allowlist (watched with --watch).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub allowlist_configmap: Option<ObjectRef>,
    /// Key of the allowlist in the ConfigMap.
    #[arg(long, default_value = "allowlist.yaml")]
    pub allowlist_key: String,
    /// An older allowlist file: report only the objects whose verdict or violations
    /// change between it and the allowlist (exit 1 when something becomes denied).
    #[arg(long, value_name = "OLD", conflicts_with = "against_configmap")]
    pub against: Option<PathBuf>,
    /// Compare with the allowlist in this ConfigMap (the live one) instead of a file.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub against_configmap: Option<ObjectRef>,
    /// Explain, time and allowlist ConfigMap.
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Only this namespace (default: all namespaces).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Continuous audit.
    #[command(flatten)]
    pub watch: crate::audit::watch::WatchArgs,
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

/// `egress-guard schema`.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Print the kinds table as JSON (group, kind, plural, versions, webhook entry and
    /// operations, …): what `deploy/` must register and the audit role must list.
    #[arg(long)]
    pub kinds: bool,
}
