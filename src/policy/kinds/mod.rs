//! One module per Istio kind: decode the fields we read from `spec`, apply Istio's
//! validity rules, and yield every egress reference with its field path.
//!
//! v1, v1beta1 and v1alpha3 share one shape for these fields, so one decoder serves all.

use std::fmt;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::allowlist::Allowlist;
use super::decision::{Code, Violation};
use super::host::{self, HostPattern};
use super::istio::{self, Failure};
use super::timeouts;

mod meta;

mod destination_rule;
mod gateway;
mod service_entry;
mod sidecar;
mod virtual_service;

pub use meta::{Meta, Pairs};
pub use virtual_service::HttpRouteInfo;

/// The Istio networking kinds egress-guard understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `ServiceEntry`
    ServiceEntry,
    /// `VirtualService`
    VirtualService,
    /// `DestinationRule`
    DestinationRule,
    /// `Gateway`
    Gateway,
    /// `Sidecar`
    Sidecar,
}

/// The API group all five kinds live in.
pub const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::ServiceEntry,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Gateway,
        Kind::Sidecar,
    ];

    /// Maps an API group and kind to one of ours; any version of the group qualifies.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Kind> {
        if group != ISTIO_NETWORKING_GROUP {
            return None;
        }
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// Maps an `apiVersion` (`group/version`) and kind, as found in manifests.
    pub fn from_api_version(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        Kind::from_group_kind(group, kind)
    }

    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServiceEntry => "ServiceEntry",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Gateway => "Gateway",
            Kind::Sidecar => "Sidecar",
        }
    }

    /// The plural resource name, as used in API paths.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::ServiceEntry => "serviceentries",
            Kind::VirtualService => "virtualservices",
            Kind::DestinationRule => "destinationrules",
            Kind::Gateway => "gateways",
            Kind::Sidecar => "sidecars",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an egress reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A host name or wildcard.
    Host(HostPattern),
    /// An IP address (as a /32 or /128) or a CIDR.
    Net(IpNet),
}

/// One place in a resource that can send traffic out of the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRef {
    /// Field path, e.g. `spec.hosts[0]`.
    pub path: String,
    /// The value as written.
    pub value: String,
    /// What it points at.
    pub target: Target,
    /// ServiceEntry ports the host is declared on (empty: not port-specific).
    pub ports: Vec<u16>,
    /// True when a namespace-only grant would leak: a ServiceEntry visible beyond its
    /// own namespace.
    pub exported_beyond_namespace: bool,
}

/// How a host field sends traffic: on which ports, and whether a namespace grant leaks.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostEgress<'a> {
    /// ServiceEntry ports (empty: not port-specific).
    pub ports: &'a [u16],
    /// The object is visible beyond its own namespace.
    pub exported: bool,
}

/// What [`Findings::host_field`] found.
#[derive(Debug, Clone, Copy)]
pub struct HostField {
    /// The host passed the field's syntax rule.
    pub valid: bool,
    /// It was recorded as egress leaving the mesh.
    pub external: bool,
}

/// What is needed from outside the object to judge it.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The allowlist in force.
    pub allowlist: &'a Allowlist,
    /// The object's namespace.
    pub namespace: &'a str,
}

/// Everything one kind module finds in one object.
#[derive(Debug, Default)]
pub struct Findings {
    /// References to check against the allowlist.
    pub refs: Vec<EgressRef>,
    /// Validity and bypass violations.
    pub violations: Vec<Violation>,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
    /// VirtualService http routes, for the timeout mutation.
    pub http_routes: Vec<HttpRouteInfo>,
    /// The VirtualService's `egress-guard.io/default-timeout` annotation.
    pub timeout_annotation: Option<String>,
}

impl Findings {
    /// Records a violation.
    pub fn violation(
        &mut self,
        code: Code,
        path: impl Into<String>,
        value: &str,
        message: impl Into<String>,
    ) {
        self.violations.push(Violation {
            code,
            path: path.into(),
            value: value.to_owned(),
            message: message.into(),
        });
    }

    /// Records the outcome of a rule: a violation on failure, the value on success.
    pub fn rule<T>(
        &mut self,
        path: impl Fn() -> String,
        value: &str,
        r: Result<T, Failure>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err((code, message)) => {
                self.violation(code, path(), value, message);
                None
            }
        }
    }

    /// Records every failure of a rule that can fail several ways.
    pub fn rules(&mut self, path: impl Fn() -> String, value: &str, failures: Vec<Failure>) {
        for (code, message) in failures {
            self.violation(code, path(), value, message);
        }
    }

    /// Applies the partial-wildcard policy to a ServiceEntry, VirtualService or
    /// DestinationRule host (`ValidatePartialWildCard`): Istio only warns, which has
    /// caused outages, so `strict` denies. Warnings start with the code.
    pub fn partial_wildcard(&mut self, cx: &Context<'_>, path: &str, value: &str) {
        if !istio::is_partial_wildcard(value) {
            return;
        }
        if cx.allowlist.strict {
            self.violation(
                Code::PartialWildcard,
                path,
                value,
                "partial wildcards are denied in strict mode; use \"*.domain\"",
            );
        } else {
            self.warnings.push(format!(
                "{} {path}: partial wildcard {value:?} matches unpredictably (Istio only warns); use \"*.domain\"",
                Code::PartialWildcard
            ));
        }
    }

    /// The sequence every host field goes through: Istio's syntax rule for the field,
    /// the partial-wildcard policy when the field allows them (`partial_policy`), and an
    /// egress reference when the host is where traffic can go (`egress`). A host that
    /// fails the syntax rule is still an egress reference when it is an IP literal: an
    /// address traffic can reach.
    pub fn host_field(
        &mut self,
        cx: &Context<'_>,
        path: String,
        raw: &str,
        syntax: Result<(), Failure>,
        partial_policy: bool,
        egress: Option<HostEgress<'_>>,
    ) -> HostField {
        let valid = self.rule(|| path.clone(), raw, syntax).is_some();
        if valid && partial_policy {
            self.partial_wildcard(cx, &path, raw);
        }
        let external = match egress {
            Some(e) if valid || is_ip_literal(raw) => {
                self.host_ref(cx, path, raw, e.ports, e.exported)
            }
            _ => false,
        };
        HostField { valid, external }
    }

    /// Adds an egress reference to a host as written in the resource, unless it stays
    /// inside the mesh; says whether it was added. IP literals (`10.0.0.1`, `1.2.3.4.`)
    /// are checked as addresses.
    pub fn host_ref(
        &mut self,
        cx: &Context<'_>,
        path: String,
        value: &str,
        ports: &[u16],
        exported: bool,
    ) -> bool {
        self.push_ref(cx, path, value, target(value), ports, exported)
    }

    /// Adds an egress reference to a name that is matched as a name even when it looks
    /// like an IP address: a TLS SNI is sent to the server, it is not where traffic goes.
    pub fn name_ref(&mut self, cx: &Context<'_>, path: String, value: &str) -> bool {
        let target = Target::Host(HostPattern::from_accepted(value));
        self.push_ref(cx, path, value, target, &[], false)
    }

    fn push_ref(
        &mut self,
        cx: &Context<'_>,
        path: String,
        value: &str,
        target: Target,
        ports: &[u16],
        exported: bool,
    ) -> bool {
        if !is_external(&target, cx) {
            return false;
        }
        self.refs.push(EgressRef {
            path,
            value: value.to_owned(),
            target,
            ports: ports.to_vec(),
            exported_beyond_namespace: exported,
        });
        true
    }

    /// Adds an egress reference to an address or network.
    pub fn net_ref(&mut self, path: String, value: &str, net: IpNet, exported: bool) {
        self.refs.push(EgressRef {
            path,
            value: value.to_owned(),
            target: Target::Net(net),
            ports: Vec::new(),
            exported_beyond_namespace: exported,
        });
    }
}

/// What a host string Istio accepts points at: an address when it is an IP literal
/// (after normalisation, so `1.2.3.4.` too), otherwise a host pattern.
fn target(raw: &str) -> Target {
    match istio::parse_ip(&host::normalize(raw)) {
        Some(ip) => Target::Net(IpNet::from(ip)),
        None => Target::Host(HostPattern::from_accepted(raw)),
    }
}

/// True unless the target is an internal host (allowlist `internalDomains`, short names).
fn is_external(target: &Target, cx: &Context<'_>) -> bool {
    match target {
        Target::Host(h) => !cx.allowlist.is_internal(h),
        Target::Net(_) => true,
    }
}

/// True when a host should be checked against the allowlist even though a validity rule
/// failed: an IP where a name is required is still an address traffic can go to.
fn is_ip_literal(raw: &str) -> bool {
    matches!(target(raw), Target::Net(_))
}

/// An object as a kind module reads it: slim metadata and its typed `spec`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, bound(deserialize = "S: serde::Deserialize<'de> + Default"))]
struct Object<S> {
    #[serde(deserialize_with = "null_default")]
    metadata: Meta,
    #[serde(deserialize_with = "null_default")]
    spec: S,
}

/// Decodes an object into a kind's struct; a type error becomes an `EG219` violation
/// naming the field.
fn decode<T: DeserializeOwned + Default>(object: &RawValue, out: &mut Findings) -> Option<T> {
    // Plain serde_json first: tracking the path costs as much as the decode itself, and
    // is only needed to name the field of an object that does not decode.
    if let Ok(v) = serde_json::from_str::<T>(object.get()) {
        return Some(v);
    }
    let mut de = serde_json::Deserializer::from_str(object.get());
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { "spec".to_owned() } else { path };
            let inner = e.into_inner();
            out.violation(
                Code::InvalidSpec,
                path,
                "",
                format!("spec does not decode: {inner}"),
            );
            None
        }
    }
}

/// Runs the kind's extraction and validity rules over one object.
pub fn inspect(kind: Kind, object: &RawValue, cx: &Context<'_>) -> Findings {
    let mut out = Findings::default();
    match kind {
        Kind::ServiceEntry => {
            if let Some(o) = decode::<Object<_>>(object, &mut out) {
                service_entry::inspect(&o.spec, cx, &mut out);
            }
        }
        Kind::VirtualService => {
            if let Some(o) = decode::<Object<_>>(object, &mut out) {
                out.timeout_annotation = o
                    .metadata
                    .annotations
                    .get(timeouts::ANNOTATION)
                    .map(str::to_owned);
                virtual_service::inspect(&o.spec, cx, &mut out);
            }
        }
        Kind::DestinationRule => {
            if let Some(o) = decode::<Object<_>>(object, &mut out) {
                destination_rule::inspect(&o.spec, cx, &mut out);
            }
        }
        Kind::Gateway => {
            if let Some(o) = decode::<Object<_>>(object, &mut out) {
                gateway::inspect(&o.spec, cx, &mut out);
            }
        }
        Kind::Sidecar => {
            if let Some(o) = decode::<Object<_>>(object, &mut out) {
                sidecar::inspect(&o.spec, cx, &mut out);
            }
        }
    }
    out
}

/// Checks `exportTo` (`validateExportTo`) and says whether the object is visible
/// outside `namespace`. No `exportTo` means the mesh default: everywhere.
fn export_to(
    values: &[String],
    cx: &Context<'_>,
    service_entry: bool,
    workload_selector: bool,
    out: &mut Findings,
) -> bool {
    let scope = istio::ExportScope {
        namespace: cx.namespace,
        service_entry,
        workload_selector,
    };
    for (i, (code, message)) in istio::export_to(values, scope) {
        match i.and_then(|i| values.get(i).map(|v| (i, v))) {
            Some((i, v)) => out.violation(code, format!("spec.exportTo[{i}]"), v, message),
            None => out.violation(code, "spec.exportTo", &values.join(","), message),
        }
    }
    values.is_empty()
        || values
            .iter()
            .any(|v| !(v == "." || v == "~" || v == cx.namespace))
}

/// Istio's `Destination`: a route target, a mirror, or a Sidecar's `egressProxy`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Destination {
    #[serde(deserialize_with = "null_default")]
    host: String,
    #[serde(deserialize_with = "null_default")]
    subset: String,
    port: Option<PortSelector>,
}

/// A destination port.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PortSelector {
    number: i64,
}

/// A service or server port: ServiceEntry `ports[]`, Gateway `servers[].port`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Port {
    number: i64,
    #[serde(deserialize_with = "null_default")]
    protocol: String,
    #[serde(deserialize_with = "null_default")]
    name: String,
    target_port: Option<i64>,
}

/// Deserializes `null` as the default, as Kubernetes clients treat them alike.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod tests;
