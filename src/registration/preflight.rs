//! `egress-guard preflight`: what must hold on a cluster before egress-guard judges it,
//! checked with the caller's kubeconfig. Each check prints one line; any failure makes
//! the exit code 1.

use std::fmt::Write as _;

use anyhow::Context as _;
use clap::Args;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, Client};

use super::desired::{self, Configuration, INSTANCE};
use crate::args::AllowlistConfigMapArgs;

/// The Istio kinds egress-guard cannot work without: what tenants write to reach out.
const ISTIO_CRDS: [&str; 4] = [
    "serviceentries.networking.istio.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "sidecars.networking.istio.io",
];

/// `preflight` flags.
#[derive(Debug, Clone, Args)]
pub struct PreflightArgs {
    /// The namespace egress-guard is installed in (its configurations' instance label).
    #[arg(long, default_value = "egress-guard")]
    pub namespace: String,
    /// The allowlist whose clusterNetworks are checked.
    #[command(flatten)]
    pub allowlist: AllowlistConfigMapArgs,
    /// The oldest Kubernetes minor version accepted (deploy/ needs matchConditions and
    /// the preStop sleep action).
    #[arg(long, default_value = "1.30", value_name = "1.MINOR")]
    pub min_kubernetes: String,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It holds.
    Ok(String),
    /// It does not: egress-guard would lock the cluster or judge it wrongly.
    Fail(String),
    /// Could not be told from the API; says what to check by hand.
    Warn(String),
}

/// Runs every check and prints them; 0 when none failed, 1 otherwise.
pub async fn run(args: &PreflightArgs) -> anyhow::Result<u8> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (kubeconfig or in-cluster config)")?;
    let outcomes = checks(&client, args).await;
    let mut out = String::new();
    for o in &outcomes {
        let (tag, text) = match o {
            Outcome::Ok(t) => ("ok  ", t),
            Outcome::Fail(t) => ("FAIL", t),
            Outcome::Warn(t) => ("warn", t),
        };
        let _ = writeln!(out, "{tag} {text}");
    }
    print!("{out}");
    Ok(u8::from(
        outcomes.iter().any(|o| matches!(o, Outcome::Fail(_))),
    ))
}

/// Every check, in order; an API error fails the check it belongs to, not the run.
pub async fn checks(client: &Client, args: &PreflightArgs) -> Vec<Outcome> {
    let mut out = vec![version(client, &args.min_kubernetes).await];
    out.push(istio_crds(client).await);
    out.extend(registered(client, &args.namespace).await);
    out.extend(cluster_networks(client, args).await);
    out
}

fn minor(v: &str) -> Option<u32> {
    let rest = v.strip_prefix("1.")?;
    rest.split('.').next()?.parse().ok()
}

async fn version(client: &Client, min: &str) -> Outcome {
    let Some(want) = minor(min) else {
        return Outcome::Fail(format!("--min-kubernetes {min:?} is not 1.MINOR"));
    };
    match client.apiserver_version().await {
        // Providers append to the minor ("28+").
        Ok(info) => match info.minor.trim_end_matches('+').parse::<u32>() {
            Ok(m) if info.major == "1" && m >= want => {
                Outcome::Ok(format!("Kubernetes {} (>= {min})", info.git_version))
            }
            _ => Outcome::Fail(format!(
                "Kubernetes {} is older than {min}: deploy/ uses webhook matchConditions and the preStop sleep action",
                info.git_version
            )),
        },
        Err(e) => Outcome::Fail(format!("reading the server version: {e}")),
    }
}

async fn istio_crds(client: &Client) -> Outcome {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let mut missing = Vec::new();
    for name in ISTIO_CRDS {
        match api.get_opt(name).await {
            Ok(Some(_)) => {}
            Ok(None) => missing.push(name),
            Err(e) => return Outcome::Fail(format!("reading CRD {name}: {e}")),
        }
    }
    if missing.is_empty() {
        Outcome::Ok("Istio's CRDs are installed".into())
    } else {
        Outcome::Fail(format!(
            "Istio CRDs missing: {} (install Istio first)",
            missing.join(", ")
        ))
    }
}

/// The configurations the install registered: present, a caBundle on every entry, and
/// a ready endpoint behind every Service they call.
async fn registered(client: &Client, instance: &str) -> Vec<Outcome> {
    let lp = ListParams::default().labels(&format!("{INSTANCE}={instance}"));
    let live = match super::live(client, &lp).await {
        Ok(live) => live,
        Err(e) => return vec![Outcome::Fail(format!("{e:#}"))],
    };
    if live.is_empty() {
        return vec![Outcome::Fail(format!(
            "no webhook configuration registered by the install in {instance}: the server is not \
             ready yet or cannot register (kubectl -n {instance} logs deploy/egress-guard); nothing is judged"
        ))];
    }
    let names: Vec<String> = live.iter().map(Configuration::describe).collect();
    let mut out = vec![Outcome::Ok(format!("registered: {}", names.join(", ")))];
    let missing = desired::missing_ca(&live, None);
    out.push(if missing.is_empty() {
        Outcome::Ok("every webhook entry has a caBundle".into())
    } else {
        Outcome::Fail(format!(
            "without a caBundle (each call fails with x509: unknown authority): {}",
            missing.join(", ")
        ))
    });
    for (namespace, name) in desired::services(&live) {
        out.push(
            match super::endpoints_ready(client, &namespace, &name).await {
                Ok(true) => Outcome::Ok(format!("Service {namespace}/{name} has ready endpoints")),
                Ok(false) => Outcome::Fail(format!(
                    "Service {namespace}/{name} has no ready endpoint: every call fails closed"
                )),
                Err(e) => Outcome::Fail(format!("{e:#}")),
            },
        );
    }
    out
}

/// The allowlist's `clusterNetworks` must hold the cluster's Service and pod addresses:
/// an address outside them is judged as egress, so every in-cluster reference by IP
/// would be denied.
async fn cluster_networks(client: &Client, args: &PreflightArgs) -> Vec<Outcome> {
    let allowlist = match crate::audit::configmap_allowlist(
        client,
        &args.allowlist.configmap,
        &args.allowlist.key,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => return vec![Outcome::Fail(format!("{e:#}"))],
    };
    let mut seen: Vec<(String, IpNet)> = Vec::new();
    match Api::<Service>::namespaced(client.clone(), "default")
        .get_opt("kubernetes")
        .await
    {
        Ok(Some(svc)) => seen.extend(
            svc.spec
                .and_then(|s| s.cluster_ips)
                .into_iter()
                .flatten()
                .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
                .map(|ip| {
                    (
                        "the Service address of default/kubernetes".to_owned(),
                        IpNet::from(ip),
                    )
                }),
        ),
        Ok(None) => {}
        Err(e) => {
            return vec![Outcome::Fail(format!(
                "reading Service default/kubernetes: {e}"
            ))];
        }
    }
    let nodes = match Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l.items,
        Err(e) => return vec![Outcome::Fail(format!("listing nodes: {e}"))],
    };
    let mut pod_cidrs = 0;
    for node in nodes {
        let name = node.metadata.name.unwrap_or_default();
        for cidr in node.spec.and_then(|s| s.pod_cidrs).into_iter().flatten() {
            if let Ok(net) = cidr.parse::<IpNet>() {
                pod_cidrs += 1;
                seen.push((format!("the pod network {cidr} of node {name}"), net));
            }
        }
    }
    let mut out = Vec::new();
    let outside: Vec<&str> = seen
        .iter()
        .filter(|(_, net)| !allowlist.in_cluster(net))
        .map(|(what, _)| what.as_str())
        .collect();
    out.push(if outside.is_empty() {
        Outcome::Ok(format!(
            "the allowlist's clusterNetworks hold {} cluster address(es) checked",
            seen.len()
        ))
    } else {
        Outcome::Fail(format!(
            "outside the allowlist's clusterNetworks (set them to your cluster's): {}",
            outside.join(", ")
        ))
    });
    if pod_cidrs == 0 {
        out.push(Outcome::Warn(
            "no node reports spec.podCIDRs (a CNI with its own IPAM): check by hand that \
             clusterNetworks holds the pod network"
                .into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::minor;

    #[test]
    fn minor_versions_read_as_written() {
        assert_eq!(minor("1.30"), Some(30));
        assert_eq!(minor("1.30.2"), Some(30));
        assert_eq!(minor("2.1"), None);
        assert_eq!(minor("1.x"), None);
    }
}
