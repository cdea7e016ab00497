//! ServiceEntry: hosts, addresses and endpoints are all egress; MESH_INTERNAL does not
//! exempt anything. Validity mirrors Istio's `ValidateServiceEntry` and the CRD rules.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::policy::decision::Code;
use crate::policy::host::HostPattern;
use crate::policy::istio::{self, Resolution};
use crate::policy::judge::{Context, EgressRef, ExportOf, Findings, HostEgress, Reach};
use crate::policy::matcher::PortSet;
use crate::policy::review_hash::{Map, Set};
use crate::policy::spec::{Keys, Object, Port, Str, Streamed, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    hosts: Vec<Str<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    addresses: Vec<Str<'a>>,
    // Judged one at a time (see `Streamed`): a port list is as long as the body allows.
    #[serde(borrow)]
    ports: Streamed<'a, Port<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    resolution: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    location: Str<'a>,
    // Judged one at a time, like the ports.
    #[serde(borrow)]
    endpoints: Streamed<'a, Endpoint<'a>>,
    workload_selector: Option<IgnoredAny>,
    #[serde(borrow, deserialize_with = "null_default")]
    export_to: Streamed<'a, Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Endpoint<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    address: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    network: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    ports: BTreeMap<Str<'a>, i64>,
}

/// The metadata a ServiceEntry's judge reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Read;

impl Keys for Read {
    const KEYS: &'static [&'static str] = &[USE_WAYPOINT];
}

pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object {
        spec,
        metadata: meta,
    }) = out.decoded::<Object<Spec<'_>, Read>>(object.get())
    else {
        return;
    };
    let spec = &spec;
    let of = ExportOf {
        service_entry: true,
        workload_selector: false,
    };
    let exported = out.export_to(&spec.export_to, of, cx);
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
    let dialled = Dialled::of(spec, resolution);
    check_hosts(spec, resolution, dialled, &ports, exported, cx, out);
    if resolution == Some(Resolution::DynamicDns) {
        out.rule(
            || "spec.location".to_owned(),
            &spec.location,
            istio::dynamic_dns_waypoint(&spec.location, meta.labels.get(USE_WAYPOINT)),
        );
    }
    if resolution == Some(Resolution::None) && spec.addresses.is_empty() {
        any_address(spec, &ports, cx, out);
    }

    for (i, raw) in spec.addresses.iter().enumerate() {
        if !out.charge(raw.len()) {
            return;
        }
        let path = || format!("spec.addresses[{i}]");
        let Some(net) = out.rule(path, raw, istio::ip_subnet(raw)) else {
            continue;
        };
        if let Some(res) = resolution {
            out.rule(path, raw, istio::address_for(res, raw.contains('/')));
        }
        // A VIP: clients connect to it, the proxy to the endpoints or the resolved hosts.
        // Only NONE forwards to the address the client dialled, which lies in these.
        let vip = dialled == Dialled::Endpoints
            || matches!(
                resolution,
                Some(Resolution::Dns | Resolution::DnsRoundRobin)
            );
        let reach = if vip {
            Reach::MatchKey
        } else {
            Reach::Net(net)
        };
        out.egress(cx, EgressRef::new(&path, raw, reach).exported(exported));
    }

    if let Some(res) = resolution {
        // The rules only tell none, one and more apart: count up to two.
        let mut seen = 0;
        spec.endpoints.retyped::<IgnoredAny>().any(|_| {
            seen += 1;
            seen > 1
        });
        out.rule(
            || "spec.endpoints".to_owned(),
            "",
            istio::endpoint_count(res, seen),
        );
    }
    if resolution == Some(Resolution::Static)
        && spec.endpoints.is_empty()
        && spec.workload_selector.is_none()
    {
        out.warn(|| {
            "spec.endpoints: STATIC resolution without endpoints or workloadSelector matches nothing"
                .to_owned()
        });
    }
    out.each(&spec.endpoints, "spec.endpoints", |i, ep, out| {
        if out.charge(ep.address.len() + ep.ports.len()) {
            check_endpoint(i, &ep, resolution, &ports, exported, cx, out);
        }
    });
}

/// What the proxy connects to for this entry. The hosts and addresses are what a client
/// matches (Host, SNI, VIP); they are dialled only where nothing else says where to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialled {
    /// The hosts (DNS without endpoints: resolved; DYNAMIC_DNS: resolved per request;
    /// NONE: the address the client resolved them to) and the addresses.
    Hosts,
    /// The endpoints, or the workloads a selector picks (STATIC; DNS or DNS_ROUND_ROBIN
    /// with endpoints: `ClientSideLB` clusters of the endpoints, pilot's
    /// serviceentry conversion). The hosts and addresses are match keys only, and the
    /// endpoints are judged each.
    Endpoints,
}

impl Dialled {
    fn of(spec: &Spec<'_>, resolution: Option<Resolution>) -> Self {
        match resolution {
            Some(Resolution::Static) => Dialled::Endpoints,
            Some(Resolution::Dns | Resolution::DnsRoundRobin) if !spec.endpoints.is_empty() => {
                Dialled::Endpoints
            }
            // An unknown resolution is denied already; its hosts are judged all the same.
            _ => Dialled::Hosts,
        }
    }
}

/// The label that puts a ServiceEntry behind a waypoint.
pub(crate) const USE_WAYPOINT: &str = "istio.io/use-waypoint";

/// What the hosts and endpoints need to know about the ports.
struct Ports<'a> {
    /// Valid port numbers: where clients connect.
    numbers: PortSet,
    /// Where the proxy connects: each port's `targetPort`, or its number.
    targets: PortSet,
    /// The same by port name, for endpoints that map names to ports of their own.
    target_by_name: Map<Cow<'a, str>, u16>,
    /// Declared port names, valid or not, as Istio collects them.
    names: Set<Cow<'a, str>>,
}

/// `resolution: NONE` without `addresses`: Istio installs a wildcard listener on each
/// port and forwards to the original destination address, so the hosts are only match
/// keys (chosen by the client's Host or SNI) and the entry opens these ports to every
/// address. Allowed only where the namespace may reach every address anyway.
fn any_address(spec: &Spec<'_>, ports: &Ports<'_>, cx: &Context<'_>, out: &mut Findings<'_>) {
    if cx.may_reach_any_address() {
        return;
    }
    let shown: Vec<String> = ports
        .numbers
        .as_slice()
        .iter()
        .take(5)
        .map(u16::to_string)
        .collect();
    let more = if ports.numbers.as_slice().len() > shown.len() {
        ", …"
    } else {
        ""
    };
    out.violation(
        Code::AnyAddress,
        "spec.resolution",
        if spec.resolution.is_empty() { "NONE" } else { &spec.resolution },
        &format!(
            "resolution NONE without addresses forwards to whatever address the client dials: any IP on port(s) {}{more}; set addresses, or resolve the hosts (DNS, or DYNAMIC_DNS for wildcards)",
            shown.join(", ")
        ),
    );
}

/// Ports (`ValidateServiceEntry`): 1–65535, DNS-label names, known protocols, unique
/// numbers and names, protocols that fit the resolution and the number of hosts.
fn check_ports<'a>(
    spec: &'a Spec<'_>,
    resolution: Option<Resolution>,
    out: &mut Findings<'_>,
) -> Ports<'a> {
    let mut numbers = Vec::new();
    let mut targets = Vec::new();
    let mut target_by_name = Map::default();
    let mut seen_numbers = Set::default();
    let mut seen_names = Set::default();
    let mut multi_host_reported = false;
    out.each(&spec.ports, "spec.ports", |i, port, out| {
        if !out.charge(1 + port.name.len() + port.protocol.len()) {
            return;
        }
        let base = || format!("spec.ports[{i}]");
        let target = port.target_port.and_then(|tp| istio::port_number(tp).ok());
        match istio::port_number(port.number) {
            Ok(n) => {
                numbers.push(n);
                let t = target.unwrap_or(n);
                targets.push(t);
                target_by_name.insert(port.name.0.clone(), t);
            }
            Err((code, message)) => {
                out.record(code, || format!("{}.number", base()), port.number, &message)
            }
        }
        if !seen_numbers.insert(port.number) {
            out.record(
                Code::DuplicatePort,
                || format!("{}.number", base()),
                port.number,
                "port number is not unique",
            );
        }
        out.rule(
            || format!("{}.name", base()),
            &port.name,
            istio::port_name(&port.name),
        );
        if !seen_names.insert(port.name.0.clone()) {
            out.record(
                Code::DuplicatePort,
                || format!("{}.name", base()),
                &port.name,
                "port name is not unique",
            );
        }
        let protocol = || format!("{}.protocol", base());
        out.rule(protocol, &port.protocol, istio::protocol(&port.protocol));
        if let Some(tp) = port.target_port {
            out.rule(
                || format!("{}.targetPort", base()),
                tp,
                istio::port_number(tp),
            );
        }
        let Some(res) = resolution else { return };
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
    });
    Ports {
        numbers: PortSet::new(numbers),
        targets: PortSet::new(targets),
        target_by_name,
        names: seen_names,
    }
}

fn check_hosts(
    spec: &Spec<'_>,
    resolution: Option<Resolution>,
    dialled: Dialled,
    ports: &Ports<'_>,
    exported: bool,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
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
    // Resolved hosts are where the proxy connects (through cluster DNS, so a Service
    // name of another namespace is not trusted), on the target ports; otherwise hosts
    // are names clients use, on the declared ports.
    let egress = if dialled == Dialled::Endpoints {
        HostEgress {
            reach: Reach::MatchKey,
            ports: None,
            exported,
        }
    } else if dns_without_endpoints {
        HostEgress {
            reach: Reach::ClusterDns,
            ports: Some(&ports.targets),
            exported,
        }
    } else {
        HostEgress {
            reach: Reach::Dialled,
            ports: Some(&ports.numbers),
            exported,
        }
    };
    for (i, raw) in spec.hosts.iter().enumerate() {
        if !out.charge(raw.len()) {
            return;
        }
        let path = || format!("spec.hosts[{i}]");
        let syntax = istio::service_entry_host(raw);
        if !out
            .host_field(cx, path, raw, syntax, !dynamic, Some(egress))
            .valid
        {
            continue;
        }
        if dynamic {
            out.rule(path, raw, istio::dynamic_dns_host(raw));
            // Resolved per request from the Host header: a wildcard over pod DNS names
            // reaches whatever address a name spells, one over Service names whatever
            // host any namespace's ExternalName points at.
            if cx
                .allowlist
                .covers_resolvable(&HostPattern::from_accepted(raw))
                && !cx
                    .allowlist
                    .grants_everything(cx.namespace, &ports.numbers, cx.now)
            {
                out.record(
                    Code::AnyAddress,
                    path,
                    raw,
                    "DYNAMIC_DNS over a wildcard that covers pod or Service DNS names resolves any address a client names, and follows any namespace's ExternalName",
                );
            }
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
    ep: &Endpoint<'_>,
    resolution: Option<Resolution>,
    ports: &Ports<'_>,
    exported: bool,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let path = || format!("spec.endpoints[{i}].address");
    let raw = &*ep.address;
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
        _ => return endpoint_ref(path, raw, None, ports, exported, cx, out),
    }
    for (name, &number) in &ep.ports {
        out.rule(
            || format!("spec.endpoints[{i}].ports.{name}"),
            number,
            istio::endpoint_port(name, number, &ports.names),
        );
    }
    if !unix {
        endpoint_ref(path, raw, Some(ep), ports, exported, cx, out);
    }
}

/// The ports the proxy connects to on one endpoint: for each service port, the
/// endpoint's own port of that name, else the service port's target.
fn endpoint_ports(ep: &Endpoint<'_>, ports: &Ports<'_>, out: &mut Findings<'_>) -> PortSet {
    // A walk over every service port for each endpoint: charged at what it costs (a
    // lookup and a sort per port), so that endpoints × ports stays within the budget's
    // time, not only its count.
    out.charge(ports.target_by_name.len().saturating_mul(PORT_WALK_UNITS));
    let effective = ports
        .target_by_name
        .iter()
        .map(|(name, target)| {
            ep.ports
                .get(&**name)
                .and_then(|p| istio::port_number(*p).ok())
                .unwrap_or(*target)
        })
        .collect();
    PortSet::new(effective)
}

/// Budget units per service port walked for one endpoint's own port map.
const PORT_WALK_UNITS: usize = 8;

/// Endpoint addresses are egress whatever the verdict: IPs and CIDRs as networks (on
/// any port), host names when they are FQDNs, on the ports the proxy connects to
/// there, worked out only for them.
fn endpoint_ref(
    path: impl Fn() -> String,
    raw: &str,
    ep: Option<&Endpoint<'_>>,
    ports: &Ports<'_>,
    exported: bool,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    if let Ok(net) = istio::ip_subnet(raw) {
        out.egress(
            cx,
            EgressRef::new(&path, raw, Reach::Net(net)).exported(exported),
        );
    } else if istio::fqdn(raw).is_ok() {
        let own;
        let effective = match ep {
            Some(ep) if !ep.ports.is_empty() => {
                own = endpoint_ports(ep, ports, out);
                &own
            }
            _ => &ports.targets,
        };
        let r = EgressRef::new(&path, raw, Reach::ClusterDns);
        out.egress(cx, r.on(Some(effective)).exported(exported));
    }
}
