//! The kinds egress-guard judges, in one table: for each, its API names, the function
//! that judges it, the metadata keys it reads, where it says who sees it, what an
//! UPDATE must leave alone to be waived, whether the control plane's own writes are
//! trusted, and how the webhook receives it. Everything else that depends on the kind
//! (the engine's rules, the decoder's kept keys, `deploy/`'s webhook rules and audit
//! role, `egress-guard schema --kinds`) reads this table.
//!
//! Adding a kind: a module in `kinds/` with `judge(object, cx, out)`, and one entry in
//! [`kinds!`] below (which makes the [`Kind`] variant and its [`KindRow`] together).
//! The test against `deploy/` then fails until the webhook rules follow.

use std::fmt;

use serde::Serialize;
use serde_json::value::RawValue;

use super::judge::{Context, Findings};
use super::kinds::*;
use super::spec::Keys;

/// Judges one object of a kind: decodes what it reads, applies Istio's validity rules
/// and records every egress reference.
pub type Judge = fn(&RawValue, &Context<'_>, &mut Findings<'_>);

/// How the apiserver sends a kind to the webhook.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Webhook {
    /// The validating entry (`webhooks[].name`) that receives it.
    pub entry: &'static str,
    /// The operations registered for the object itself.
    pub operations: &'static [&'static str],
    /// Subresources registered too, with their operations.
    pub subresources: &'static [(&'static str, &'static [&'static str])],
    /// Also sent to `/mutate`.
    pub mutate: bool,
}

/// One row of the kinds table.
#[derive(Clone, Copy, Serialize)]
pub struct KindRow {
    /// API group (empty for the core group).
    pub group: &'static str,
    /// The Kubernetes kind name.
    pub name: &'static str,
    /// The plural resource name, as used in API paths.
    pub plural: &'static str,
    /// Served versions, newest first.
    pub versions: &'static [&'static str],
    /// The judge.
    #[serde(skip)]
    pub judge: Judge,
    /// The label and annotation keys the judge reads.
    pub keys: &'static [&'static str],
    /// Where the object says who sees it (the path `EG107` names).
    pub export_field: &'static str,
    /// The top-level fields an UPDATE must leave unchanged to be waived.
    pub compared: &'static [&'static str],
    /// Writes by the allowlist's `trustedWriters` are the control plane's own.
    pub trusted_writers: bool,
    /// How the webhook receives it.
    pub webhook: Webhook,
}

impl fmt::Debug for KindRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindRow")
            .field("group", &self.group)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The webhook entries of `deploy/`.
pub mod entry {
    /// Istio configuration, Services, NetworkPolicies, XBackends.
    pub const CONFIG: &str = "validate.egress-guard.io";
    /// Endpoints and EndpointSlices written by hand.
    pub const ENDPOINTS: &str = "endpoints.validate.egress-guard.io";
    /// Pods and the workloads with pod templates.
    pub const WORKLOADS: &str = "workloads.validate.egress-guard.io";
    /// The allowlist's ConfigMap.
    pub const ALLOWLIST: &str = "allowlist.validate.egress-guard.io";
}

const CREATE_UPDATE: &[&str] = &["CREATE", "UPDATE"];
const ISTIO: &str = "networking.istio.io";
const ISTIO_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SPEC: &[&str] = &["spec"];
const NAMESPACE: &str = "metadata.namespace";
const EXPORT_TO: &str = "spec.exportTo";

/// Received by `entry` on CREATE and UPDATE of the object itself.
const fn receives(entry: &'static str) -> Webhook {
    Webhook {
        entry,
        operations: CREATE_UPDATE,
        subresources: &[],
        mutate: false,
    }
}

/// A row for a kind the `validate.egress-guard.io` entry receives on CREATE and UPDATE,
/// compared by its `spec`, visible where its namespace says, reading no metadata.
const fn config(
    group: &'static str,
    name: &'static str,
    plural: &'static str,
    versions: &'static [&'static str],
    judge: Judge,
) -> KindRow {
    KindRow {
        group,
        name,
        plural,
        versions,
        judge,
        keys: &[],
        export_field: NAMESPACE,
        compared: SPEC,
        trusted_writers: false,
        webhook: receives(entry::CONFIG),
    }
}

/// A workload kind: its pod template becomes pods.
const fn workload(
    group: &'static str,
    name: &'static str,
    plural: &'static str,
    judge: Judge,
) -> KindRow {
    KindRow {
        keys: <pod::Read as Keys>::KEYS,
        webhook: receives(entry::WORKLOADS),
        ..config(group, name, plural, &["v1"], judge)
    }
}

/// Declares [`Kind`] and [`KINDS`] from one list, so that every variant has its row.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $kind:ident => $row:expr, )+) => {
        /// The kinds egress-guard judges: every namespaced object a tenant can create
        /// that decides where mesh traffic may go, or whether a workload's traffic
        /// passes its proxy.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $( $(#[$doc])* $kind, )+
        }

        /// The kinds table, one row per [`Kind`] in the same order.
        pub const KINDS: &[KindRow] = &[ $( $row, )+ ];

        impl Kind {
            /// Every kind, in table order.
            pub const ALL: [Kind; KINDS.len()] = [ $( Kind::$kind, )+ ];
        }
    };
}

kinds! {
    /// `networking.istio.io` ServiceEntry
    ServiceEntry => KindRow {
        keys: <service_entry::Read as Keys>::KEYS,
        export_field: EXPORT_TO,
        ..config(ISTIO, "ServiceEntry", "serviceentries", ISTIO_VERSIONS, service_entry::judge)
    },
    /// `networking.istio.io` VirtualService
    VirtualService => KindRow {
        keys: <virtual_service::Read as Keys>::KEYS,
        export_field: EXPORT_TO,
        webhook: Webhook { mutate: true, ..receives(entry::CONFIG) },
        ..config(ISTIO, "VirtualService", "virtualservices", ISTIO_VERSIONS, virtual_service::judge)
    },
    /// `networking.istio.io` DestinationRule
    DestinationRule => KindRow {
        export_field: EXPORT_TO,
        ..config(ISTIO, "DestinationRule", "destinationrules", ISTIO_VERSIONS, destination_rule::judge)
    },
    /// `networking.istio.io` Gateway
    Gateway => config(ISTIO, "Gateway", "gateways", ISTIO_VERSIONS, gateway::judge),
    /// `networking.istio.io` Sidecar
    Sidecar => config(ISTIO, "Sidecar", "sidecars", ISTIO_VERSIONS, sidecar::judge),
    /// `networking.istio.io` WorkloadEntry
    /// Judged whoever writes it: istiod's auto-registration copies the address from the
    /// connecting proxy's metadata, which the tenant's pod sets.
    WorkloadEntry => config(ISTIO, "WorkloadEntry", "workloadentries", ISTIO_VERSIONS, workload_entry::judge),
    /// `networking.istio.io` WorkloadGroup
    WorkloadGroup => config(ISTIO, "WorkloadGroup", "workloadgroups", ISTIO_VERSIONS, workload_entry::judge_group),
    /// `networking.istio.io` EnvoyFilter
    EnvoyFilter => config(ISTIO, "EnvoyFilter", "envoyfilters", &["v1alpha3"], envoy_filter::judge),
    /// `extensions.istio.io` WasmPlugin
    WasmPlugin => config("extensions.istio.io", "WasmPlugin", "wasmplugins", &["v1alpha1"], wasm::judge_plugin),
    /// `security.istio.io` RequestAuthentication
    RequestAuthentication => config(
        "security.istio.io",
        "RequestAuthentication",
        "requestauthentications",
        &["v1", "v1beta1"],
        request_authentication::judge,
    ),
    /// `networking.istio.io` ProxyConfig
    ProxyConfig => config(ISTIO, "ProxyConfig", "proxyconfigs", &["v1beta1"], proxy_config::judge),
    /// `extensions.istio.io` TrafficExtension
    TrafficExtension => config(
        "extensions.istio.io",
        "TrafficExtension",
        "trafficextensions",
        &["v1alpha1"],
        wasm::judge_extension,
    ),
    /// core Pod
    Pod => KindRow {
        webhook: Webhook {
            entry: entry::WORKLOADS,
            operations: CREATE_UPDATE,
            subresources: &[
                ("ephemeralcontainers", &["UPDATE"]),
                ("exec", &["CONNECT"]),
                ("attach", &["CONNECT"]),
            ],
            mutate: false,
        },
        ..workload("", "Pod", "pods", pod::judge)
    },
    /// core Service
    Service => KindRow {
        keys: <service::Read as Keys>::KEYS,
        export_field: "metadata.annotations[networking.istio.io/exportTo]",
        ..config("", "Service", "services", &["v1"], service::judge)
    },
    /// core Endpoints
    Endpoints => KindRow {
        compared: &["subsets"],
        trusted_writers: true,
        webhook: receives(entry::ENDPOINTS),
        ..config("", "Endpoints", "endpoints", &["v1"], endpoints::judge)
    },
    /// `discovery.k8s.io` EndpointSlice
    EndpointSlice => KindRow {
        compared: &["addressType", "endpoints", "ports"],
        trusted_writers: true,
        webhook: receives(entry::ENDPOINTS),
        ..config("discovery.k8s.io", "EndpointSlice", "endpointslices", &["v1"], endpoints::judge_slice)
    },
    /// `apps` Deployment
    Deployment => workload("apps", "Deployment", "deployments", workload::judge),
    /// `apps` StatefulSet
    StatefulSet => workload("apps", "StatefulSet", "statefulsets", workload::judge),
    /// `apps` DaemonSet
    DaemonSet => workload("apps", "DaemonSet", "daemonsets", workload::judge),
    /// `apps` ReplicaSet
    ReplicaSet => workload("apps", "ReplicaSet", "replicasets", workload::judge),
    /// A core kind with a pod template, which kube-controller-manager turns into pods.
    /// (No controller turns a PodTemplate object into pods, so those are not judged.)
    ReplicationController => workload("", "ReplicationController", "replicationcontrollers", workload::judge),
    /// `batch` Job
    Job => workload("batch", "Job", "jobs", workload::judge),
    /// `batch` CronJob
    CronJob => workload("batch", "CronJob", "cronjobs", workload::judge_cron_job),
    /// `networking.k8s.io` NetworkPolicy
    NetworkPolicy => KindRow {
        webhook: Webhook {
            operations: &["CREATE", "UPDATE", "DELETE"],
            ..receives(entry::CONFIG)
        },
        ..config("networking.k8s.io", "NetworkPolicy", "networkpolicies", &["v1"], network_policy::judge)
    },
    /// `gateway.networking.x-k8s.io` XBackend
    XBackend => config("gateway.networking.x-k8s.io", "XBackend", "xbackends", &["v1alpha1"], backend::judge),
    /// core ConfigMap: only the one holding the allowlist is judged.
    ConfigMap => KindRow {
        webhook: receives(entry::ALLOWLIST),
        ..config("", "ConfigMap", "configmaps", &["v1"], configmap::judge)
    },
}

impl Kind {
    /// The kind's row.
    pub fn row(self) -> &'static KindRow {
        // `kinds!` makes one row per variant, in variant order.
        &KINDS[self as usize]
    }

    /// Maps an API group and kind to one of ours; any served version qualifies.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.row().group == group && k.row().name == kind)
    }

    /// Maps an `apiVersion` (`group/version`, or just `v1` for the core group) and kind,
    /// as found in manifests.
    pub fn from_api_version(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        Kind::from_group_kind(group, kind)
    }

    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        self.row().name
    }

    /// The API group (empty for the core group).
    pub fn group(self) -> &'static str {
        self.row().group
    }

    /// The plural resource name, as used in API paths.
    pub fn plural(self) -> &'static str {
        self.row().plural
    }

    /// Served versions, newest first.
    pub fn versions(self) -> &'static [&'static str] {
        self.row().versions
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table as JSON, for tools outside Rust (`deploy/check_security.py`).
pub fn table_json() -> String {
    serde_json::to_string_pretty(KINDS).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_back_to_itself() {
        for kind in Kind::ALL {
            assert_eq!(
                Kind::from_group_kind(kind.group(), kind.as_str()),
                Some(kind)
            );
            assert!(!kind.plural().is_empty() && !kind.versions().is_empty());
        }
        assert_eq!(
            Kind::from_api_version("apps/v1", "Deployment"),
            Some(Kind::Deployment)
        );
        assert_eq!(Kind::from_api_version("v1", "Pod"), Some(Kind::Pod));
        assert_eq!(Kind::from_api_version("v1", "Secret"), None);
    }

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in KINDS {
            assert!(seen.insert((r.group, r.name)), "{} twice", r.name);
        }
    }

    #[test]
    fn the_table_renders_for_tools() {
        let v: serde_json::Value = serde_json::from_str(&table_json()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), KINDS.len());
        assert_eq!(v[0]["plural"], "serviceentries");
        assert_eq!(v[0]["webhook"]["entry"], entry::CONFIG);
    }
}
