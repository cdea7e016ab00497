//! `egress-guard grants --namespace NS`: what a namespace may reach, without a ticket.
//! Reads the allowlist (the ConfigMap, with the caller's own credentials; the install's
//! Role `egress-guard-allowlist-reader` lets every authenticated user read it) and
//! prints the global and the namespace's own grants with their ports, owners, reasons
//! and expiry, and the namespace's mode and settings.
//!
//! The allowlist is validated by the engine's parser first; the entries are then read
//! back from the same text as written, because the compiled indexes do not keep them
//! in order.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::args::{AllowlistConfigMapArgs, NowArg, OutputFormat};
use crate::policy::allowlist::Expiry;
use crate::policy::{Allowlist, Mode};

/// `grants` flags.
#[derive(Debug, Clone, Args)]
pub struct GrantsArgs {
    /// The namespace whose grants to show.
    #[arg(long, short)]
    pub namespace: String,
    /// Read the allowlist from this file instead of the ConfigMap.
    #[arg(long)]
    pub allowlist_file: Option<PathBuf>,
    /// The allowlist ConfigMap, when no file is given.
    #[command(flatten)]
    pub allowlist: AllowlistConfigMapArgs,
    /// Mark entries expired as of this time (RFC 3339, or a date) instead of now.
    #[arg(long, value_name = "TIME")]
    pub now: Option<NowArg>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// What a namespace may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grants {
    /// The namespace.
    pub namespace: String,
    /// The `prefix*` entry that applies, when the namespace has none of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// `enforce` or `audit`.
    pub mode: Mode,
    /// Listed in `exemptNamespaces`: nothing is checked there.
    pub exempt: bool,
    /// The default route timeout added there, if any.
    pub default_timeout: Option<String>,
    /// May a Sidecar there use `ALLOW_ANY` or `egressProxy`.
    pub allow_any_outbound: bool,
    /// May EnvoyFilters be created there.
    pub allow_envoy_filter: bool,
    /// May workloads there opt out of capture.
    pub allow_capture_opt_out: bool,
    /// Grants for every namespace.
    pub global: Vec<Grant>,
    /// Grants for this namespace only.
    #[serde(rename = "namespace_grants")]
    pub local: Vec<Grant>,
}

/// One host or network entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// `host` or `cidr`.
    pub kind: &'static str,
    /// The host pattern or network, as written.
    pub value: String,
    /// Only these ports (`None`: every port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u64>>,
    /// Who asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it stops granting, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// It no longer grants.
    pub expired: bool,
}

/// The grants of `ns` in the allowlist `text`, with entries expired at `now` marked.
pub fn grants(text: &str, ns: &str, now: i64) -> anyhow::Result<Grants> {
    let allowlist = Allowlist::from_yaml(text)?;
    let limits = crate::policy::yaml::manifest_limits(text.len());
    let doc: Value = crate::policy::yaml::from_str(text, limits)
        .map_err(|e| anyhow::anyhow!("reading the allowlist's entries: {e}"))?;
    let key = allowlist.namespace_key(ns);
    let own = key.map_or(&Value::Null, |k| &doc["namespaces"][k]);
    let policy = allowlist.namespace(ns);
    Ok(Grants {
        namespace: ns.to_owned(),
        entry: key.filter(|k| *k != ns).map(|k| format!("namespaces.{k}")),
        mode: allowlist.mode_for(ns),
        exempt: allowlist.exempt_namespaces.contains(ns),
        default_timeout: allowlist.default_timeout_for(ns).map(|d| d.to_string()),
        allow_any_outbound: policy.is_some_and(|p| p.allow_any_outbound),
        allow_envoy_filter: allowlist.may_envoy_filter(ns),
        allow_capture_opt_out: allowlist.may_opt_out(ns),
        global: entries(&doc, now),
        local: entries(own, now),
    })
}

/// The `hosts` and `cidrs` of one level, in the order written.
fn entries(level: &Value, now: i64) -> Vec<Grant> {
    let list = |key: &str| level[key].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (kind, key) in [("host", "hosts"), ("cidr", "cidrs")] {
        for e in list(key) {
            let text = |f: &str| match &e[f] {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            };
            let (value, expires) = match &e {
                Value::String(s) => (s.clone(), None),
                _ => (text(kind).unwrap_or_default(), text("expires")),
            };
            let expired = expires
                .as_deref()
                .and_then(|x| x.parse::<Expiry>().ok())
                .is_some_and(|x| x.at <= now);
            out.push(Grant {
                kind,
                value,
                ports: e["ports"]
                    .as_array()
                    .map(|p| p.iter().filter_map(Value::as_u64).collect()),
                owner: text("owner").filter(|_| e.is_object()),
                reason: text("reason").filter(|_| e.is_object()),
                expires,
                expired,
            });
        }
    }
    out
}

impl Grants {
    /// The text or JSON the command prints.
    pub fn render(&self, format: OutputFormat) -> String {
        if format == OutputFormat::Json {
            let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
            s.push('\n');
            return s;
        }
        let mut out = String::new();
        let _ = write!(
            out,
            "namespace {}: mode {}",
            self.namespace,
            self.mode.as_str()
        );
        if let Some(e) = &self.entry {
            let _ = write!(out, " (by {e})");
        }
        if self.exempt {
            out.push_str(", exempt (nothing is checked)");
        }
        if let Some(t) = &self.default_timeout {
            let _ = write!(out, ", default route timeout {t}");
        }
        out.push('\n');
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(
            out,
            "allowAnyOutbound: {}, allowEnvoyFilter: {}, allowCaptureOptOut: {}",
            yes_no(self.allow_any_outbound),
            yes_no(self.allow_envoy_filter),
            yes_no(self.allow_capture_opt_out)
        );
        for (title, list) in [
            ("grants for every namespace", &self.global),
            ("grants for this namespace only", &self.local),
        ] {
            let _ = writeln!(out, "{title}:");
            if list.is_empty() {
                out.push_str("  (none)\n");
            }
            for g in list {
                let _ = write!(out, "  {} {}", g.kind, g.value);
                if let Some(p) = &g.ports {
                    let ports: Vec<String> = p.iter().map(u64::to_string).collect();
                    let _ = write!(out, " ports {}", ports.join(","));
                }
                for (label, v) in [("owner", &g.owner), ("reason", &g.reason)] {
                    if let Some(v) = v {
                        let _ = write!(out, " {label} {v:?}");
                    }
                }
                if let Some(x) = &g.expires {
                    let _ = write!(out, " expires {x}");
                    if g.expired {
                        out.push_str(" (expired: grants nothing)");
                    }
                }
                out.push('\n');
            }
        }
        out
    }
}

/// Runs `grants`; returns the exit code.
pub async fn run(args: &GrantsArgs) -> anyhow::Result<u8> {
    let text = match &args.allowlist_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading allowlist {}", path.display()))?,
        None => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API (kubeconfig or in-cluster config)")?;
            crate::audit::configmap_text(&client, &args.allowlist.configmap, &args.allowlist.key)
                .await
                .context(
                    "the allowlist (the Role egress-guard-allowlist-reader lets every authenticated user read its ConfigMap)",
                )?
        }
    };
    let now = args.now.map_or_else(crate::unix_now, |n| n.0);
    let g = grants(&text, &args.namespace, now).context("the allowlist")?;
    print!("{}", g.render(args.output));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOWLIST: &str = r#"
mode: enforce
defaultTimeout: 15s
exemptNamespaces: [istio-system]
hosts:
  - api.github.com
  - {host: "*.googleapis.com", ports: [443], owner: platform, reason: CHG-1}
cidrs:
  - 203.0.113.0/24
namespaces:
  payments:
    mode: audit
    allowEnvoyFilter: true
    hosts:
      - {host: hooks.slack.com, owner: team-payments, reason: CHG-42, expires: 2026-12-10}
      - api.stripe.com
    cidrs:
      - {cidr: 198.51.100.7/32, expires: "2030-01-01T00:00:00Z"}
  other:
    hosts: [secret.example.com]
"#;

    fn at(date: &str) -> i64 {
        date.parse::<Expiry>().unwrap().at
    }

    #[test]
    fn a_namespace_sees_the_global_grants_and_its_own_only() {
        let g = grants(ALLOWLIST, "payments", at("2026-12-01")).unwrap();
        assert_eq!(g.mode, Mode::Audit);
        assert!(!g.exempt && g.allow_envoy_filter && !g.allow_any_outbound);
        assert_eq!(g.default_timeout.as_deref(), Some("15s"));
        let values = |l: &[Grant]| l.iter().map(|g| g.value.clone()).collect::<Vec<_>>();
        assert_eq!(
            values(&g.global),
            ["api.github.com", "*.googleapis.com", "203.0.113.0/24"]
        );
        assert_eq!(
            values(&g.local),
            ["hooks.slack.com", "api.stripe.com", "198.51.100.7/32"]
        );
        let gapis = &g.global[1];
        assert_eq!(gapis.ports, Some(vec![443]));
        assert_eq!(gapis.owner.as_deref(), Some("platform"));
        assert_eq!(gapis.reason.as_deref(), Some("CHG-1"));
        let slack = &g.local[0];
        assert_eq!(slack.expires.as_deref(), Some("2026-12-10"));
        assert!(!slack.expired);
        let text = g.render(OutputFormat::Text);
        assert!(!text.contains("secret.example.com"), "{text}");
        assert!(
            text.contains("namespace payments: mode audit, default route timeout 15s"),
            "{text}"
        );
        assert!(
            text.contains("  host hooks.slack.com owner \"team-payments\" reason \"CHG-42\" expires 2026-12-10\n"),
            "{text}"
        );
        assert!(
            text.contains("  host *.googleapis.com ports 443 owner \"platform\""),
            "{text}"
        );
    }

    #[test]
    fn expired_entries_are_marked_and_other_namespaces_see_only_the_global_ones() {
        let g = grants(ALLOWLIST, "payments", at("2026-12-11")).unwrap();
        assert!(g.local[0].expired, "a date grants through its whole day");
        assert!(!g.local[2].expired);
        assert!(
            g.render(OutputFormat::Text)
                .contains("expires 2026-12-10 (expired: grants nothing)")
        );
        let none = grants(ALLOWLIST, "team-a", 0).unwrap();
        assert_eq!(none.mode, Mode::Enforce);
        assert!(none.local.is_empty());
        assert!(
            none.render(OutputFormat::Text)
                .contains("grants for this namespace only:\n  (none)\n")
        );
        let exempt = grants(ALLOWLIST, "istio-system", 0).unwrap();
        assert!(exempt.exempt);
        let json: Value = serde_json::from_str(&g.render(OutputFormat::Json)).unwrap();
        assert_eq!(json["namespace_grants"][0]["owner"], "team-payments");
        assert_eq!(
            json["global"][0],
            serde_json::json!({"kind": "host", "value": "api.github.com", "expired": false})
        );
    }

    #[test]
    fn a_prefix_entry_is_shown_as_the_namespaces_own_with_its_key() {
        let text = "namespaces:\n  team-*:\n    hosts: [api.slack.com]\n    mode: audit\n";
        let g = grants(text, "team-a", 0).unwrap();
        assert_eq!(g.entry.as_deref(), Some("namespaces.team-*"));
        assert_eq!(g.mode, Mode::Audit);
        assert_eq!(g.local[0].value, "api.slack.com");
        assert!(
            g.render(OutputFormat::Text)
                .starts_with("namespace team-a: mode audit (by namespaces.team-*)")
        );
        assert!(grants(text, "other", 0).unwrap().local.is_empty());
    }

    #[test]
    fn an_invalid_allowlist_is_an_error_not_a_listing() {
        let e = grants("hosts: [\"bad host\"]\n", "x", 0).unwrap_err();
        assert!(format!("{e:#}").contains("bad host"), "{e:#}");
    }
}
