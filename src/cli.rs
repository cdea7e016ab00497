//! Command-line interface: `serve`, `check`, `audit`, `grants` and `certs`.

use clap::{Parser, Subcommand, ValueEnum};

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
    Serve(Box<crate::server::ServeArgs>),
    /// Evaluate manifests offline against an allowlist and print verdicts and patches.
    Check(crate::check::CheckArgs),
    /// Report which live Istio objects in a cluster an allowlist would deny or patch;
    /// with --watch, keep reporting them as PolicyReports.
    Audit(crate::audit::AuditArgs),
    /// Print what a namespace may reach: the global and its own allowlist grants.
    Grants(crate::grants::GrantsArgs),
    /// Write a self-signed CA and a serving certificate for development or manual installs.
    Certs(crate::certs::CertsArgs),
    /// Print the allowlist's JSON Schema (for editors and CI), or with --kinds the
    /// table of the kinds egress-guard judges.
    Schema(SchemaArgs),
    /// Check a cluster before (and after) installing: Kubernetes version, Istio's CRDs,
    /// the registered webhook configurations and their caBundle, ready endpoints, and
    /// the allowlist's clusterNetworks against the cluster's addresses.
    Preflight(crate::registration::preflight::PreflightArgs),
    /// Remove what the server registered, first: the binding that lets it register,
    /// then its webhook configurations. Then delete the install (kubectl delete -k).
    Uninstall(crate::registration::UninstallArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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
