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
use super::host::HostPattern;
use super::istio::{self, Failure};

mod destination_rule;
mod gateway;
mod service_entry;
mod sidecar;
mod virtual_service;

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

    /// Applies the partial-wildcard policy: a warning, or a denial under `strict` (or
    /// where Istio itself rejects them, `always_deny`).
    pub fn partial_wildcard(
        &mut self,
        cx: &Context<'_>,
        path: &str,
        value: &str,
        pattern: &HostPattern,
        always_deny: bool,
    ) {
        if !istio::partial_wildcard(pattern) {
            return;
        }
        if cx.allowlist.strict || always_deny {
            self.violation(
                Code::PartialWildcard,
                path,
                value,
                "partial wildcards are not supported; use \"*.domain\"",
            );
        } else {
            self.warnings.push(format!(
                "{path}: partial wildcard {value:?} is not supported by Istio and matches unpredictably"
            ));
        }
    }

    /// Adds an egress reference to a host, unless it stays inside the mesh.
    pub fn host_ref(
        &mut self,
        cx: &Context<'_>,
        path: String,
        value: &str,
        host: HostPattern,
        ports: &[u16],
        exported: bool,
    ) {
        if cx.allowlist.is_internal(&host) {
            return;
        }
        // Destinations and VirtualService hosts may be IP literals: match them as networks.
        let ip = match &host {
            HostPattern::Exact(h) => h.parse::<std::net::IpAddr>().ok(),
            _ => None,
        };
        let target = ip.map_or(Target::Host(host), |ip| Target::Net(IpNet::from(ip)));
        self.refs.push(EgressRef {
            path,
            value: value.to_owned(),
            target,
            ports: ports.to_vec(),
            exported_beyond_namespace: exported,
        });
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

/// Decodes `spec` into a kind's struct; a type error becomes an `EG219` violation
/// naming the field.
fn decode<T: DeserializeOwned + Default>(spec: &RawValue, out: &mut Findings) -> Option<T> {
    let mut de = serde_json::Deserializer::from_str(spec.get());
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." {
                "spec".to_owned()
            } else {
                format!("spec.{path}")
            };
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

/// Runs the kind's extraction and validity rules over one spec.
pub fn inspect(kind: Kind, spec: &RawValue, cx: &Context<'_>) -> Findings {
    let mut out = Findings::default();
    match kind {
        Kind::ServiceEntry => {
            if let Some(s) = decode(spec, &mut out) {
                service_entry::inspect(&s, cx, &mut out);
            }
        }
        Kind::VirtualService => {
            if let Some(s) = decode(spec, &mut out) {
                virtual_service::inspect(&s, cx, &mut out);
            }
        }
        Kind::DestinationRule => {
            if let Some(s) = decode(spec, &mut out) {
                destination_rule::inspect(&s, cx, &mut out);
            }
        }
        Kind::Gateway => {
            if let Some(s) = decode(spec, &mut out) {
                gateway::inspect(&s, cx, &mut out);
            }
        }
        Kind::Sidecar => {
            if let Some(s) = decode(spec, &mut out) {
                sidecar::inspect(&s, cx, &mut out);
            }
        }
    }
    out
}

/// Checks every `exportTo` entry (`validateExportTo`) and says whether the object is
/// visible outside `namespace`. No `exportTo` means the mesh default: everywhere.
fn export_to(values: &[String], cx: &Context<'_>, out: &mut Findings) -> bool {
    let mut seen = std::collections::HashSet::new();
    for (i, v) in values.iter().enumerate() {
        let path = || format!("spec.exportTo[{i}]");
        out.rule(path, v, istio::export_to_entry(v));
        if !seen.insert(v.as_str()) {
            out.violation(Code::InvalidExportTo, path(), v, "duplicate exportTo entry");
        }
    }
    if values.iter().any(|v| v == "*") && values.len() > 1 {
        out.violation(
            Code::InvalidExportTo,
            "spec.exportTo",
            &values.join(","),
            "\"*\" cannot be combined with other exportTo entries",
        );
    }
    if values.iter().any(|v| v == "~") && values.len() > 1 {
        out.violation(
            Code::InvalidExportTo,
            "spec.exportTo",
            &values.join(","),
            "\"~\" cannot be combined with other exportTo entries",
        );
    }
    values.is_empty()
        || values
            .iter()
            .any(|v| !(v == "." || v == "~" || v == cx.namespace))
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
