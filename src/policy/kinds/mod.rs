//! One module per kind: decode the fields egress-guard reads (typed, borrowed from the
//! object's JSON), apply Istio's validity rules, and judge every egress reference with
//! its field path as it is found ([`Findings`]).
//!
//! v1, v1beta1 and v1alpha3 share one shape for these fields, so one decoder serves all.

use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::Mode;
use super::budget::Budget;
use super::istio;
use super::timeouts;

mod borrowed;
mod findings;
mod meta;

mod backend;
mod destination_rule;
mod endpoints;
mod envoy_filter;
mod fetches;
mod gateway;
mod network_policy;
mod pod;
mod proxy_config;
mod service;
mod service_entry;
mod sidecar;
mod str_list;
mod streamed;
mod url;
mod virtual_service;
mod workload_entry;

pub use borrowed::Str;
pub use findings::{
    Context, Export, Findings, HostEgress, HostField, MAX_VIOLATIONS, MAX_WARNINGS, Target,
    is_ip_literal, kube_ip, target,
};
pub use meta::{Meta, Pairs};
pub use str_list::{StrList, StrView};
pub use streamed::Streamed;
pub use virtual_service::HttpRouteInfo;

/// The kinds egress-guard judges: every namespaced object a tenant can create that
/// decides where mesh traffic may go, or whether a workload's traffic passes its proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `networking.istio.io` ServiceEntry
    ServiceEntry,
    /// `networking.istio.io` VirtualService
    VirtualService,
    /// `networking.istio.io` DestinationRule
    DestinationRule,
    /// `networking.istio.io` Gateway
    Gateway,
    /// `networking.istio.io` Sidecar
    Sidecar,
    /// `networking.istio.io` WorkloadEntry
    WorkloadEntry,
    /// `networking.istio.io` WorkloadGroup
    WorkloadGroup,
    /// `networking.istio.io` EnvoyFilter
    EnvoyFilter,
    /// `extensions.istio.io` WasmPlugin
    WasmPlugin,
    /// `security.istio.io` RequestAuthentication
    RequestAuthentication,
    /// `networking.istio.io` ProxyConfig
    ProxyConfig,
    /// `extensions.istio.io` TrafficExtension
    TrafficExtension,
    /// core Pod
    Pod,
    /// core Service
    Service,
    /// core Endpoints
    Endpoints,
    /// `discovery.k8s.io` EndpointSlice
    EndpointSlice,
    /// `apps` Deployment
    Deployment,
    /// `apps` StatefulSet
    StatefulSet,
    /// `apps` DaemonSet
    DaemonSet,
    /// `apps` ReplicaSet
    ReplicaSet,
    /// `batch` Job
    Job,
    /// `batch` CronJob
    CronJob,
    /// `networking.k8s.io` NetworkPolicy
    NetworkPolicy,
    /// `gateway.networking.x-k8s.io` XBackend
    XBackend,
    /// core ConfigMap: only the one holding the allowlist is judged.
    ConfigMap,
}

/// The API group of the Istio networking kinds.
pub const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";

/// Versions of the Istio networking kinds, newest first.
const ISTIO_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];

/// Each kind's API group, name, plural and served versions (newest first): the one
/// table that maps the API onto [`Kind`].
const TABLE: [(Kind, &str, &str, &str, &[&str]); 25] = [
    (
        Kind::ServiceEntry,
        ISTIO_NETWORKING_GROUP,
        "ServiceEntry",
        "serviceentries",
        ISTIO_VERSIONS,
    ),
    (
        Kind::VirtualService,
        ISTIO_NETWORKING_GROUP,
        "VirtualService",
        "virtualservices",
        ISTIO_VERSIONS,
    ),
    (
        Kind::DestinationRule,
        ISTIO_NETWORKING_GROUP,
        "DestinationRule",
        "destinationrules",
        ISTIO_VERSIONS,
    ),
    (
        Kind::Gateway,
        ISTIO_NETWORKING_GROUP,
        "Gateway",
        "gateways",
        ISTIO_VERSIONS,
    ),
    (
        Kind::Sidecar,
        ISTIO_NETWORKING_GROUP,
        "Sidecar",
        "sidecars",
        ISTIO_VERSIONS,
    ),
    (
        Kind::WorkloadEntry,
        ISTIO_NETWORKING_GROUP,
        "WorkloadEntry",
        "workloadentries",
        ISTIO_VERSIONS,
    ),
    (
        Kind::WorkloadGroup,
        ISTIO_NETWORKING_GROUP,
        "WorkloadGroup",
        "workloadgroups",
        ISTIO_VERSIONS,
    ),
    (
        Kind::EnvoyFilter,
        ISTIO_NETWORKING_GROUP,
        "EnvoyFilter",
        "envoyfilters",
        &["v1alpha3"],
    ),
    (
        Kind::WasmPlugin,
        "extensions.istio.io",
        "WasmPlugin",
        "wasmplugins",
        &["v1alpha1"],
    ),
    (
        Kind::RequestAuthentication,
        "security.istio.io",
        "RequestAuthentication",
        "requestauthentications",
        &["v1", "v1beta1"],
    ),
    (
        Kind::ProxyConfig,
        ISTIO_NETWORKING_GROUP,
        "ProxyConfig",
        "proxyconfigs",
        &["v1beta1"],
    ),
    (
        Kind::TrafficExtension,
        "extensions.istio.io",
        "TrafficExtension",
        "trafficextensions",
        &["v1alpha1"],
    ),
    (Kind::Pod, "", "Pod", "pods", &["v1"]),
    (Kind::Service, "", "Service", "services", &["v1"]),
    (Kind::Endpoints, "", "Endpoints", "endpoints", &["v1"]),
    (
        Kind::EndpointSlice,
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        &["v1"],
    ),
    (
        Kind::Deployment,
        "apps",
        "Deployment",
        "deployments",
        &["v1"],
    ),
    (
        Kind::StatefulSet,
        "apps",
        "StatefulSet",
        "statefulsets",
        &["v1"],
    ),
    (Kind::DaemonSet, "apps", "DaemonSet", "daemonsets", &["v1"]),
    (
        Kind::ReplicaSet,
        "apps",
        "ReplicaSet",
        "replicasets",
        &["v1"],
    ),
    (Kind::Job, "batch", "Job", "jobs", &["v1"]),
    (Kind::CronJob, "batch", "CronJob", "cronjobs", &["v1"]),
    (
        Kind::NetworkPolicy,
        "networking.k8s.io",
        "NetworkPolicy",
        "networkpolicies",
        &["v1"],
    ),
    (
        Kind::XBackend,
        "gateway.networking.x-k8s.io",
        "XBackend",
        "xbackends",
        &["v1alpha1"],
    ),
    (Kind::ConfigMap, "", "ConfigMap", "configmaps", &["v1"]),
];

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 25] = {
        let mut all = [Kind::ServiceEntry; 25];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    fn row(
        self,
    ) -> (
        Kind,
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
    ) {
        // Every variant has exactly one row (`kinds_table_is_complete` checks it).
        TABLE
            .iter()
            .copied()
            .find(|r| r.0 == self)
            .unwrap_or((self, "", "", "", &[]))
    }

    /// Maps an API group and kind to one of ours; any served version qualifies.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Kind> {
        TABLE
            .iter()
            .find(|r| r.1 == group && r.2 == kind)
            .map(|r| r.0)
    }

    /// Maps an `apiVersion` (`group/version`, or just `v1` for the core group) and kind,
    /// as found in manifests.
    pub fn from_api_version(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        Kind::from_group_kind(group, kind)
    }

    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        self.row().2
    }

    /// The API group (empty for the core group).
    pub fn group(self) -> &'static str {
        self.row().1
    }

    /// The plural resource name, as used in API paths.
    pub fn plural(self) -> &'static str {
        self.row().3
    }

    /// Served versions, newest first.
    pub fn versions(self) -> &'static [&'static str] {
        self.row().4
    }

    /// True for the workload kinds whose pod template becomes pods.
    pub fn has_pod_template(self) -> bool {
        matches!(
            self,
            Kind::Deployment
                | Kind::StatefulSet
                | Kind::DaemonSet
                | Kind::ReplicaSet
                | Kind::Job
                | Kind::CronJob
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object as a kind module reads it: slim metadata and its typed `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, bound(deserialize = "S: Deserialize<'de> + Default"))]
struct Object<S> {
    #[serde(deserialize_with = "null_default")]
    metadata: Meta,
    #[serde(deserialize_with = "null_default")]
    spec: S,
}

/// Decodes an object into a kind's struct; a type error becomes an `EG219` violation
/// naming the field.
fn decode<'a, T: Deserialize<'a> + Default>(
    object: &'a RawValue,
    out: &mut Findings<'_>,
) -> Option<T> {
    decode_at(object.get(), "", out)
}

/// Decodes JSON `text` found at path `at` (empty: a whole object); a type error becomes
/// an `EG219` violation naming the field under `at`.
fn decode_at<'a, T: Deserialize<'a>>(text: &'a str, at: &str, out: &mut Findings<'_>) -> Option<T> {
    // Plain serde_json first: tracking the path costs as much as the decode itself, and
    // is only needed to name the field of an object that does not decode.
    if let Ok(v) = serde_json::from_str::<T>(text) {
        return Some(v);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = match (at, inner.as_str()) {
                ("", ".") => "spec".to_owned(),
                ("", p) => p.to_owned(),
                (a, ".") => a.to_owned(),
                (a, p) if p.starts_with('[') => format!("{a}{p}"),
                (a, p) => format!("{a}.{p}"),
            };
            out.invalid_spec(&path, &e.into_inner().to_string());
            None
        }
    }
}

/// Decodes `object` as a `T` and runs `judge` on it; a decode error is already an
/// `EG219` violation.
fn with<'a, T: Deserialize<'a> + Default>(
    object: &'a RawValue,
    out: &mut Findings<'_>,
    judge: impl FnOnce(&T, &mut Findings<'_>),
) {
    if let Some(v) = decode::<T>(object, out) {
        judge(&v, out);
    }
}

/// Runs the kind's extraction and validity rules over one object, within `budget`.
pub fn inspect<'b>(
    kind: Kind,
    object: &RawValue,
    cx: &Context<'_>,
    budget: Budget<'b>,
) -> Findings<'b> {
    let mut out = Findings::new(budget);
    out.charge(object.get().len());
    let o = &mut out;
    match kind {
        Kind::ServiceEntry => with(object, o, |x: &Object<service_entry::Spec<'_>>, o| {
            service_entry::inspect(&x.spec, &x.metadata, cx, o)
        }),
        Kind::VirtualService => with(object, o, |x: &Object<virtual_service::Spec<'_>>, o| {
            o.timeout_annotation = x
                .metadata
                .annotations
                .get(timeouts::ANNOTATION)
                .map(str::to_owned);
            virtual_service::inspect(&x.spec, object.get(), cx, o)
        }),
        Kind::DestinationRule => with(object, o, |x: &Object<destination_rule::Spec<'_>>, o| {
            destination_rule::inspect(&x.spec, cx, o)
        }),
        Kind::Gateway => with(object, o, |x: &Object<gateway::Spec<'_>>, o| {
            gateway::inspect(&x.spec, cx, o)
        }),
        Kind::Sidecar => with(object, o, |x: &Object<sidecar::Spec<'_>>, o| {
            sidecar::inspect(&x.spec, cx, o)
        }),
        Kind::WorkloadEntry => with(object, o, |x: &Object<workload_entry::Spec<'_>>, o| {
            workload_entry::inspect(&x.spec, cx, o)
        }),
        Kind::WorkloadGroup => with(object, o, |x: &Object<workload_entry::GroupSpec<'_>>, o| {
            workload_entry::inspect_group(&x.spec, cx, o)
        }),
        Kind::EnvoyFilter => envoy_filter::inspect(cx, o),
        Kind::WasmPlugin => with(object, o, |x: &Object<fetches::WasmSpec<'_>>, o| {
            fetches::inspect_wasm(&x.spec, cx, o)
        }),
        Kind::RequestAuthentication => with(object, o, |x: &Object<fetches::AuthnSpec<'_>>, o| {
            fetches::inspect_authn(&x.spec, cx, o)
        }),
        Kind::ProxyConfig => with(
            object,
            o,
            |x: &Object<proxy_config::ResourceSpec<'_>>, o| {
                proxy_config::inspect_resource(&x.spec, cx, o)
            },
        ),
        Kind::TrafficExtension => with(object, o, |x: &Object<fetches::ExtensionSpec<'_>>, o| {
            fetches::inspect_extension(&x.spec, cx, o)
        }),
        Kind::NetworkPolicy => with(object, o, |x: &Object<network_policy::Spec<'_>>, o| {
            network_policy::inspect(&x.spec, cx, o)
        }),
        Kind::XBackend => with(object, o, |x: &Object<backend::Spec<'_>>, o| {
            backend::inspect(&x.spec, cx, o)
        }),
        Kind::Service => with(object, o, |x: &Object<service::Spec<'_>>, o| {
            service::inspect(&x.spec, &x.metadata, cx, o)
        }),
        Kind::Endpoints => with(object, o, |x: &endpoints::EndpointsObject<'_>, o| {
            endpoints::inspect(x, cx, o)
        }),
        Kind::EndpointSlice => with(object, o, |x: &endpoints::SliceObject<'_>, o| {
            endpoints::inspect_slice(x, cx, o)
        }),
        Kind::Pod => with(object, o, |x: &Object<pod::PodSpec<'_>>, o| {
            pod::inspect_pod(&x.metadata, &x.spec, cx, o)
        }),
        Kind::CronJob => with(object, o, |x: &Object<pod::CronJobSpec<'_>>, o| {
            pod::inspect_template(x.spec.template(), "spec.jobTemplate.spec.template.", cx, o)
        }),
        Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::ReplicaSet | Kind::Job => {
            with(object, o, |x: &Object<pod::WorkloadSpec<'_>>, o| {
                pod::inspect_template(x.spec.template(), "spec.template.", cx, o)
            })
        }
        // Only the allowlist's own ConfigMap is judged, by the engine itself.
        Kind::ConfigMap => {}
    }
    out.finish()
}

/// Checks `exportTo` (`validateExportTo`) one entry at a time, records who the object
/// is visible to, and says whether that goes beyond its namespace. No `exportTo` means
/// the mesh default: everywhere.
fn export_to(
    values: &Streamed<'_, Str<'_>>,
    cx: &Context<'_>,
    service_entry: bool,
    workload_selector: bool,
    out: &mut Findings<'_>,
) -> bool {
    let mut check = istio::ExportTo::new(istio::ExportScope {
        namespace: cx.namespace,
        service_entry,
        workload_selector,
    });
    let mut scope = ExportScopeBuilder::default();
    let decoded = values.each("spec.exportTo", out, |i, v, out| {
        if !out.charge(1 + v.len()) {
            return;
        }
        scope.add(&v, cx);
        if let Some(found) = check.entry(i, &v.0) {
            out.found(|| format!("spec.exportTo[{i}]"), &v, &found);
        }
    });
    if decoded {
        for (code, message) in check.finish() {
            out.violation(code, "spec.exportTo", "", &message);
        }
    }
    out.export = scope.finish();
    out.export.beyond_namespace()
}

/// Who an object with these `exportTo` values is visible to.
fn export_scope<'v>(values: impl Iterator<Item = &'v str>, cx: &Context<'_>) -> Export {
    let mut scope = ExportScopeBuilder::default();
    for v in values {
        scope.add(v, cx);
    }
    scope.finish()
}

/// [`export_scope`] one value at a time.
#[derive(Debug, Default)]
struct ExportScopeBuilder {
    any: bool,
    everywhere: bool,
    others: bool,
    enforced: bool,
}

impl ExportScopeBuilder {
    fn add(&mut self, v: &str, cx: &Context<'_>) {
        self.any = true;
        if v == "*" {
            self.everywhere = true;
        } else if !(v == "." || v == "~" || v == cx.namespace) {
            self.others = true;
            // One namespace in enforce mode decides it; the rest need no lookup.
            self.enforced = self.enforced || cx.allowlist.mode_for(v) == Mode::Enforce;
        }
    }

    fn finish(self) -> Export {
        match self {
            Self { any: false, .. }
            | Self {
                everywhere: true, ..
            } => Export::Everywhere,
            Self { others: false, .. } => Export::Local,
            Self { enforced, .. } => Export::To { enforced },
        }
    }
}

/// Istio's `Destination`: a route target, a mirror, or a Sidecar's `egressProxy`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Destination<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    host: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    subset: Str<'a>,
    port: Option<PortSelector>,
}

/// A destination port.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PortSelector {
    number: i64,
}

/// A service or server port: ServiceEntry `ports[]`, Gateway `servers[].port`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Port<'a> {
    number: i64,
    #[serde(borrow, deserialize_with = "null_default")]
    protocol: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    name: Str<'a>,
    target_port: Option<i64>,
}

/// Deserializes `null` as the default, as Kubernetes clients treat them alike.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod tests;
