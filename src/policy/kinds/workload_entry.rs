//! WorkloadEntry and WorkloadGroup templates: the address is where traffic goes once a
//! ServiceEntry's `workloadSelector` or a Kubernetes Service's selector picks the entry
//! up, so it is egress like a ServiceEntry endpoint. Validity mirrors Istio's
//! `validateWorkloadEntry`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::decision::Code;
use crate::policy::istio;
use crate::policy::judge::{Context, EgressRef, Export, Findings, Reach};
use crate::policy::matcher::PortSet;
use crate::policy::spec::{Object, Str, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Spec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    address: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    ports: BTreeMap<Str<'a>, i64>,
    #[serde(borrow, deserialize_with = "null_default")]
    network: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GroupSpec<'a> {
    #[serde(borrow)]
    template: Option<Spec<'a>>,
}

/// A WorkloadEntry.
pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, .. }) = out.decoded::<Object<Spec<'_>>>(object.get()) else {
        return;
    };
    // Entries back Services, which the mesh sees everywhere unless they say otherwise.
    out.export = Export::Everywhere;
    entry(&spec, "spec", true, cx, out);
}

/// A WorkloadGroup: the template has no address of its own (istiod fills in the
/// registering workload's), but one written there is judged all the same.
pub(crate) fn judge_group(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, .. }) = out.decoded::<Object<GroupSpec<'_>>>(object.get()) else {
        return;
    };
    out.export = Export::Everywhere;
    match &spec.template {
        None => out.violation(
            Code::MissingField,
            "spec.template",
            "",
            "template is required",
        ),
        Some(t) => entry(t, "spec.template", false, cx, out),
    }
}

fn entry(
    spec: &Spec<'_>,
    base: &str,
    address_required: bool,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let path = || format!("{base}.address");
    let addr = &*spec.address;
    out.charge(addr.len() + spec.ports.len());
    if addr.is_empty() {
        if address_required && spec.network.is_empty() {
            out.record(Code::MissingField, path, "", "address is required");
        }
    } else if let Some(socket) = addr.strip_prefix(istio::UNIX_PREFIX) {
        out.rule(path, addr, istio::unix_address(socket));
        if !spec.ports.is_empty() {
            out.record(
                Code::InvalidEndpoint,
                || format!("{base}.ports"),
                "",
                "unix endpoints must not include ports",
            );
        }
    } else {
        let mut numbers = Vec::with_capacity(spec.ports.len());
        for (name, &number) in &spec.ports {
            out.rule(
                || format!("{base}.ports.{name}"),
                name,
                istio::port_name(name),
            );
            numbers.extend(out.port(|| format!("{base}.ports.{name}"), number));
        }
        let ports = PortSet::new(numbers);
        let valid = istio::parse_ip(addr).is_some()
            || out
                .rule(
                    path,
                    addr,
                    istio::fqdn(addr).map_err(|_| {
                        (
                            Code::InvalidEndpoint,
                            "address is neither an IP address nor an FQDN".into(),
                        )
                    }),
                )
                .is_some();
        if valid {
            out.egress(
                cx,
                EgressRef::new(&path, addr, Reach::ClusterDns).on(Some(&ports)),
            );
        }
    }
}
