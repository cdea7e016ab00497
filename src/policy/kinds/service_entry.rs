//! ServiceEntry: hosts, addresses and endpoints are all egress; MESH_INTERNAL does not
//! exempt anything. Validity mirrors Istio's `ValidateServiceEntry` and the CRD rules.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Context, Findings, HostEgress, Port, export_to, null_default};
use crate::policy::decision::Code;
use crate::policy::istio::{self, Resolution};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Spec {
    #[serde(deserialize_with = "null_default")]
    hosts: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    addresses: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    ports: Vec<Port>,
    #[serde(deserialize_with = "null_default")]
    resolution: String,
    #[serde(deserialize_with = "null_default")]
    location: String,
    #[serde(deserialize_with = "null_default")]
    endpoints: Vec<Endpoint>,
    workload_selector: Option<IgnoredAny>,
    #[serde(deserialize_with = "null_default")]
    export_to: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Endpoint {
    #[serde(deserialize_with = "null_default")]
    address: String,
    #[serde(deserialize_with = "null_default")]
    network: String,
    #[serde(deserialize_with = "null_default")]
    ports: BTreeMap<String, i64>,
}

pub(super) fn inspect(spec: &Spec, cx: &Context<'_>, out: &mut Findings) {
    let exported = export_to(&spec.export_to, cx, true, false, out);
    out.rule(
        || "spec.location".to_owned(),
        &spec.location,
        istio::location(&spec.location),
    );
    let resolution = out.rule(
        || "spec.resolution".to_owned(),
        &spec.resolution,
        istio::resolution(&spec.resolution),
    );
    out.rule(
        || "spec.workloadSelector".to_owned(),
        "",
        istio::selector_or_endpoints(spec.workload_selector.is_some(), !spec.endpoints.is_empty()),
    );
    let ports = check_ports(spec, resolution, out);
    check_hosts(spec, resolution, &ports, exported, cx, out);

    for (i, raw) in spec.addresses.iter().enumerate() {
        let path = || format!("spec.addresses[{i}]");
        let Some(net) = out.rule(path, raw, istio::ip_subnet(raw)) else {
            continue;
        };
        if let Some(res) = resolution {
            out.rule(path, raw, istio::address_for(res, raw.contains('/')));
        }
        out.net_ref(path(), raw, net, exported);
    }

    if let Some(res) = resolution {
        out.rule(
            || "spec.endpoints".to_owned(),
            "",
            istio::endpoint_count(res, spec.endpoints.len()),
        );
    }
    if resolution == Some(Resolution::Static)
        && spec.endpoints.is_empty()
        && spec.workload_selector.is_none()
    {
        out.warnings.push(
            "spec.endpoints: STATIC resolution without endpoints or workloadSelector matches nothing"
                .to_owned(),
        );
    }
    for (i, ep) in spec.endpoints.iter().enumerate() {
        check_endpoint(i, ep, resolution, &ports, exported, cx, out);
    }
}

/// What the hosts and endpoints need to know about the ports.
struct Ports<'a> {
    /// Valid port numbers, for port-restricted allowlist entries.
    numbers: Vec<u16>,
    /// Declared port names, valid or not, as Istio collects them.
    names: HashSet<&'a str>,
}

/// Ports (`ValidateServiceEntry`): 1–65535, DNS-label names, known protocols, unique
/// numbers and names, protocols that fit the resolution and the number of hosts.
fn check_ports<'a>(
    spec: &'a Spec,
    resolution: Option<Resolution>,
    out: &mut Findings,
) -> Ports<'a> {
    let mut numbers = Vec::with_capacity(spec.ports.len());
    let mut seen_numbers = HashSet::new();
    let mut seen_names = HashSet::new();
    let mut multi_host_reported = false;
    for (i, port) in spec.ports.iter().enumerate() {
        let base = format!("spec.ports[{i}]");
        let number = port.number.to_string();
        if let Some(n) = out.rule(
            || format!("{base}.number"),
            &number,
            istio::port_number(port.number),
        ) {
            numbers.push(n);
        }
        if !seen_numbers.insert(port.number) {
            out.violation(
                Code::DuplicatePort,
                format!("{base}.number"),
                &number,
                "port number is not unique",
            );
        }
        out.rule(
            || format!("{base}.name"),
            &port.name,
            istio::port_name(&port.name),
        );
        if !seen_names.insert(port.name.as_str()) {
            out.violation(
                Code::DuplicatePort,
                format!("{base}.name"),
                &port.name,
                "port name is not unique",
            );
        }
        let protocol = || format!("{base}.protocol");
        out.rule(protocol, &port.protocol, istio::protocol(&port.protocol));
        if let Some(tp) = port.target_port {
            out.rule(
                || format!("{base}.targetPort"),
                &tp.to_string(),
                istio::port_number(tp),
            );
        }
        let Some(res) = resolution else { continue };
        if res == Resolution::DynamicDns {
            out.rule(
                protocol,
                &port.protocol,
                istio::dynamic_dns_protocol(&port.protocol),
            );
        }
        // Istio reports the first such port only.
        if !multi_host_reported {
            multi_host_reported = out
                .rule(
                    protocol,
                    &port.protocol,
                    istio::multi_host_port(spec.hosts.len(), res, &port.protocol),
                )
                .is_none();
        }
    }
    Ports {
        numbers,
        names: seen_names,
    }
}

fn check_hosts(
    spec: &Spec,
    resolution: Option<Resolution>,
    ports: &Ports<'_>,
    exported: bool,
    cx: &Context<'_>,
    out: &mut Findings,
) {
    if spec.hosts.is_empty() {
        out.violation(
            Code::MissingField,
            "spec.hosts",
            "",
            "service entry must have at least one host",
        );
    }
    // DNS without endpoints resolves the hosts themselves.
    let dns_without_endpoints = matches!(
        resolution,
        Some(Resolution::Dns | Resolution::DnsRoundRobin)
    ) && spec.endpoints.is_empty();
    let dynamic = resolution == Some(Resolution::DynamicDns);
    let egress = HostEgress {
        ports: &ports.numbers,
        exported,
    };
    for (i, raw) in spec.hosts.iter().enumerate() {
        let path = || format!("spec.hosts[{i}]");
        let syntax = istio::service_entry_host(raw);
        if !out
            .host_field(cx, path(), raw, syntax, !dynamic, Some(egress))
            .valid
        {
            continue;
        }
        if dynamic {
            out.rule(path, raw, istio::dynamic_dns_host(raw));
        }
        if dns_without_endpoints {
            out.rule(path, raw, istio::dns_host_without_endpoints(raw));
        }
    }
}

/// One endpoint (`validateWorkloadEntry` for STATIC, the DNS branch of
/// `ValidateServiceEntry` otherwise), recorded as egress when it names an address or
/// a host.
fn check_endpoint(
    i: usize,
    ep: &Endpoint,
    resolution: Option<Resolution>,
    ports: &Ports<'_>,
    exported: bool,
    cx: &Context<'_>,
    out: &mut Findings,
) {
    let path = || format!("spec.endpoints[{i}].address");
    let raw = ep.address.as_str();
    let unix = raw.starts_with(istio::UNIX_PREFIX);
    match resolution {
        Some(Resolution::Static) => {
            out.rule(
                path,
                raw,
                istio::static_endpoint(raw, !ep.network.is_empty()),
            );
            if unix {
                out.rule(
                    path,
                    raw,
                    istio::unix_endpoint(ep.ports.len(), ports.names.len()),
                );
            }
        }
        Some(Resolution::Dns | Resolution::DnsRoundRobin) => {
            out.rule(path, raw, istio::dns_endpoint(raw));
        }
        // NONE and DYNAMIC_DNS forbid endpoints altogether (`endpoint_count`).
        _ => return check_endpoint_refs(path(), raw, &ports.numbers, exported, cx, out),
    }
    for (name, &number) in &ep.ports {
        out.rule(
            || format!("spec.endpoints[{i}].ports.{name}"),
            &number.to_string(),
            istio::endpoint_port(name, number, &ports.names),
        );
    }
    if !unix {
        check_endpoint_refs(path(), raw, &ports.numbers, exported, cx, out);
    }
}

/// Endpoint addresses are egress whatever the verdict: IPs and CIDRs as networks, host
/// names when they are FQDNs.
fn check_endpoint_refs(
    path: String,
    raw: &str,
    ports: &[u16],
    exported: bool,
    cx: &Context<'_>,
    out: &mut Findings,
) {
    if let Ok(net) = istio::ip_subnet(raw) {
        out.net_ref(path, raw, net, exported);
    } else if istio::fqdn(raw).is_ok() {
        out.host_ref(cx, path, raw, ports, exported);
    }
}
