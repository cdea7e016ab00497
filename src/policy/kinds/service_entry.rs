//! ServiceEntry: hosts, addresses and endpoints are all egress; MESH_INTERNAL does not
//! exempt anything. Validity mirrors Istio's `validateServiceEntry`.

use std::collections::HashSet;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Context, Findings, export_to, null_default};
use crate::policy::decision::Code;
use crate::policy::istio;

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
    endpoints: Vec<Endpoint>,
    workload_selector: Option<IgnoredAny>,
    #[serde(deserialize_with = "null_default")]
    export_to: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Port {
    number: i64,
    #[serde(deserialize_with = "null_default")]
    protocol: String,
    #[serde(deserialize_with = "null_default")]
    name: String,
    target_port: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Endpoint {
    #[serde(deserialize_with = "null_default")]
    address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    None,
    Static,
    Dns,
    DnsRoundRobin,
}

pub(super) fn inspect(spec: &Spec, cx: &Context<'_>, out: &mut Findings) {
    let exported = export_to(&spec.export_to, cx, out);
    let resolution = match spec.resolution.as_str() {
        "" | "NONE" => Some(Resolution::None),
        "STATIC" => Some(Resolution::Static),
        "DNS" => Some(Resolution::Dns),
        "DNS_ROUND_ROBIN" => Some(Resolution::DnsRoundRobin),
        other => {
            out.violation(
                Code::ResolutionConflict,
                "spec.resolution",
                other,
                "unknown resolution (NONE, STATIC, DNS or DNS_ROUND_ROBIN)",
            );
            None
        }
    };

    let ports = check_ports(spec, out);

    if spec.hosts.is_empty() {
        out.violation(
            Code::MissingField,
            "spec.hosts",
            "",
            "service entry must have at least one host",
        );
    }
    for (i, raw) in spec.hosts.iter().enumerate() {
        let path = format!("spec.hosts[{i}]");
        let Some(host) = out.rule(|| path.clone(), raw, istio::service_entry_host(raw)) else {
            continue;
        };
        out.partial_wildcard(cx, &path, raw, &host, false);
        let dns_without_endpoints = matches!(
            resolution,
            Some(Resolution::Dns | Resolution::DnsRoundRobin)
        ) && spec.endpoints.is_empty();
        if host.is_wildcard() && dns_without_endpoints {
            out.violation(
                Code::WildcardNotAllowed,
                path.clone(),
                raw,
                "wildcard host is not allowed with DNS resolution and no endpoints",
            );
        }
        out.host_ref(cx, path, raw, host, &ports, exported);
    }

    for (i, raw) in spec.addresses.iter().enumerate() {
        let path = format!("spec.addresses[{i}]");
        let Some(net) = out.rule(|| path.clone(), raw, istio::address(raw)) else {
            continue;
        };
        let is_cidr = net.prefix_len() < net.max_prefix_len();
        if is_cidr && !matches!(resolution, Some(Resolution::None | Resolution::Static)) {
            out.violation(
                Code::ResolutionConflict,
                path.clone(),
                raw,
                "CIDR addresses are allowed only with NONE or STATIC resolution",
            );
        }
        out.net_ref(path, raw, net, exported);
    }

    if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
        out.violation(
            Code::SelectorWithEndpoints,
            "spec.workloadSelector",
            "",
            "only one of workloadSelector or endpoints may be set",
        );
    }
    match resolution {
        Some(Resolution::None) if !spec.endpoints.is_empty() => out.violation(
            Code::ResolutionConflict,
            "spec.endpoints",
            "",
            "no endpoints may be given with NONE resolution",
        ),
        Some(Resolution::Static)
            if spec.endpoints.is_empty() && spec.workload_selector.is_none() =>
        {
            out.warnings.push(
                "spec.endpoints: STATIC resolution without endpoints or workloadSelector matches nothing"
                    .to_owned(),
            );
        }
        Some(Resolution::DnsRoundRobin) if spec.endpoints.len() > 1 => out.violation(
            Code::ResolutionConflict,
            "spec.endpoints",
            "",
            "DNS_ROUND_ROBIN allows at most one endpoint",
        ),
        _ => {}
    }

    for (i, ep) in spec.endpoints.iter().enumerate() {
        let path = format!("spec.endpoints[{i}].address");
        let raw = ep.address.as_str();
        if istio::unix_socket(raw) {
            continue;
        }
        let valid = match resolution {
            Some(Resolution::Static) => out.rule(|| path.clone(), raw, istio::static_endpoint(raw)),
            _ => out.rule(|| path.clone(), raw, istio::dns_endpoint(raw)),
        };
        if valid.is_none() {
            continue;
        }
        if let Ok(net) = istio::address(raw) {
            out.net_ref(path, raw, net, exported);
        } else if let Ok(host) = raw.parse() {
            out.host_ref(cx, path, raw, host, &ports, exported);
        }
    }
}

/// Validates ports and returns their numbers (`ValidatePort`, `ValidatePortName`,
/// `ValidateProtocol`, unique numbers and names).
fn check_ports(spec: &Spec, out: &mut Findings) -> Vec<u16> {
    let mut numbers = Vec::with_capacity(spec.ports.len());
    let mut seen_numbers = HashSet::new();
    let mut seen_names = HashSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let base = format!("spec.ports[{i}]");
        if let Some(n) = out.rule(
            || format!("{base}.number"),
            &port.number.to_string(),
            istio::port_number(port.number),
        ) {
            if !seen_numbers.insert(n) {
                out.violation(
                    Code::DuplicatePort,
                    format!("{base}.number"),
                    &n.to_string(),
                    "port number is not unique",
                );
            }
            numbers.push(n);
        }
        if out
            .rule(
                || format!("{base}.name"),
                &port.name,
                istio::port_name(&port.name),
            )
            .is_some()
            && !seen_names.insert(port.name.as_str())
        {
            out.violation(
                Code::DuplicatePort,
                format!("{base}.name"),
                &port.name,
                "port name is not unique",
            );
        }
        out.rule(
            || format!("{base}.protocol"),
            &port.protocol,
            istio::protocol(&port.protocol),
        );
        if let Some(tp) = port.target_port {
            out.rule(
                || format!("{base}.targetPort"),
                &tp.to_string(),
                istio::port_number(tp),
            );
        }
    }
    numbers
}
