//! Endpoints and EndpointSlices written by hand for a Service without a selector: Istio
//! sends the Service's traffic to whatever addresses they list. The control plane's
//! own writers (the endpoint controllers, which copy pod addresses) are trusted by the
//! engine before this module runs; everyone else's addresses must be the cluster's own
//! or allowed.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::istio;
use crate::policy::judge::{Context, EgressRef, Export, Findings, Reach};
use crate::policy::matcher::PortSet;
use crate::policy::spec::{Str, null_default};

/// A core `Endpoints` object (its fields are at the top level, not under `spec`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EndpointsObject<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    subsets: Vec<Subset<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Subset<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    addresses: Vec<Address<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    not_ready_addresses: Vec<Address<'a>>,
    #[serde(deserialize_with = "null_default")]
    ports: Vec<EndpointPort>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Address<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    ip: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EndpointPort {
    port: i64,
}

/// A `discovery.k8s.io` EndpointSlice (fields at the top level too).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SliceObject<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    address_type: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    endpoints: Vec<SliceEndpoint<'a>>,
    #[serde(deserialize_with = "null_default")]
    ports: Vec<EndpointPort>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SliceEndpoint<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    addresses: Vec<Str<'a>>,
}

fn port_set(ports: &[EndpointPort]) -> PortSet {
    PortSet::new(
        ports
            .iter()
            .filter_map(|p| istio::port_number(p.port).ok())
            .collect(),
    )
}

/// Core Endpoints: every ready and not-ready address.
pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(o) = out.decoded::<EndpointsObject<'_>>(object.get()) else {
        return;
    };
    // They back a Service, which the mesh sees everywhere unless it says otherwise.
    out.export = Export::Everywhere;
    for (i, subset) in o.subsets.iter().enumerate() {
        let ports = port_set(&subset.ports);
        for (field, list) in [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ] {
            for (j, a) in list.iter().enumerate() {
                if !out.charge(a.ip.len()) {
                    return;
                }
                let path = || format!("subsets[{i}].{field}[{j}].ip");
                address(&a.ip, &ports, path, cx, out);
            }
        }
    }
}

/// An EndpointSlice: IP addresses, or names for `addressType: FQDN`.
pub(crate) fn judge_slice(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(o) = out.decoded::<SliceObject<'_>>(object.get()) else {
        return;
    };
    out.export = Export::Everywhere;
    let ports = port_set(&o.ports);
    let fqdn = o.address_type == "FQDN";
    for (i, ep) in o.endpoints.iter().enumerate() {
        for (j, a) in ep.addresses.iter().enumerate() {
            if !out.charge(a.len()) {
                return;
            }
            let path = || format!("endpoints[{i}].addresses[{j}]");
            if fqdn {
                out.egress(
                    cx,
                    EgressRef::new(&path, a, Reach::Dialled).on(Some(&ports)),
                );
            } else {
                address(a, &ports, path, cx, out);
            }
        }
    }
}

/// One endpoint address: judged as the address it is (Kubernetes has validated it).
fn address(
    raw: &str,
    ports: &PortSet,
    path: impl Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    if istio::parse_ip(raw).is_some() {
        out.egress(
            cx,
            EgressRef::new(&path, raw, Reach::Dialled).on(Some(ports)),
        );
    }
}
