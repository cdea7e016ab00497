//! One module per kind: decode the fields egress-guard reads (typed, borrowed from the
//! object's JSON), apply Istio's validity rules, and judge every egress reference with
//! its field path as it is found ([`Findings`]).
//!
//! v1, v1beta1 and v1alpha3 share one shape for these fields, so one decoder serves all.

use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::budget::Budget;
use super::decision::Code;
use super::istio;
use super::timeouts;

mod borrowed;
mod findings;
mod meta;

mod destination_rule;
mod gateway;
mod service_entry;
mod sidecar;
mod virtual_service;

pub use borrowed::Str;
pub use findings::{
    Context, Findings, HostEgress, HostField, MAX_VIOLATIONS, MAX_WARNINGS, Target, is_ip_literal,
    target,
};
pub use meta::{Meta, Pairs};
pub use virtual_service::HttpRouteInfo;

/// The kinds egress-guard judges.
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
                &format!("spec does not decode: {inner}"),
            );
            None
        }
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
    out.finish()
}

/// Checks `exportTo` (`validateExportTo`) and says whether the object is visible
/// outside `namespace`. No `exportTo` means the mesh default: everywhere.
fn export_to(
    values: &[Str<'_>],
    cx: &Context<'_>,
    service_entry: bool,
    workload_selector: bool,
    out: &mut Findings<'_>,
) -> bool {
    let scope = istio::ExportScope {
        namespace: cx.namespace,
        service_entry,
        workload_selector,
    };
    for (i, (code, message)) in istio::export_to(values, scope) {
        match i.and_then(|i| values.get(i).map(|v| (i, v))) {
            Some((i, v)) => out.violation(code, format!("spec.exportTo[{i}]"), v, &message),
            None => out.violation(code, "spec.exportTo", "", &message),
        }
    }
    values.is_empty()
        || values
            .iter()
            .any(|v| !(*v == "." || *v == "~" || **v == *cx.namespace))
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
