//! Flags more than one command takes: where the allowlist comes from, the allowlist
//! ConfigMap read with the caller's kubeconfig, how `check` and `audit` judge, report
//! formats, and the duration and time values flags parse. Each command's own flags live
//! in its module; `cli` composes them.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, ValueEnum};

pub use crate::policy::ObjectRef;

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

/// Report output format for `check` and `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable report.
    Text,
    /// One JSON document.
    Json,
}

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
