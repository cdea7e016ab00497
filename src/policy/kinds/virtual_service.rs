//! VirtualService: hosts (when bound to the mesh) and every route destination and
//! mirror are egress. Validity mirrors Istio's `ValidateVirtualService` and
//! `validateHTTPRoute` for those fields; the http routes are also summarised for the
//! timeout mutation.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Context, Destination, Findings, HostEgress, export_to, null_default};
use crate::policy::decision::Code;
use crate::policy::istio::{self, VirtualServiceBinding};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Spec {
    #[serde(deserialize_with = "null_default")]
    hosts: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    gateways: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    http: Vec<HttpRoute>,
    #[serde(deserialize_with = "null_default")]
    tcp: Vec<TcpRoute>,
    #[serde(deserialize_with = "null_default")]
    tls: Vec<TlsRoute>,
    #[serde(deserialize_with = "null_default")]
    export_to: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct HttpRoute {
    #[serde(rename = "match", deserialize_with = "null_default")]
    matches: Vec<RouteMatch>,
    #[serde(deserialize_with = "null_default")]
    route: Vec<RouteDestination>,
    redirect: Option<IgnoredAny>,
    direct_response: Option<IgnoredAny>,
    delegate: Option<IgnoredAny>,
    mirror: Option<Destination>,
    #[serde(deserialize_with = "null_default")]
    mirrors: Vec<Mirror>,
    timeout: Option<String>,
    retries: Option<Retries>,
}

/// The part of an HTTP or TCP match that names gateways.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RouteMatch {
    #[serde(deserialize_with = "null_default")]
    gateways: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TcpRoute {
    #[serde(rename = "match", deserialize_with = "null_default")]
    matches: Vec<RouteMatch>,
    #[serde(deserialize_with = "null_default")]
    route: Vec<RouteDestination>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TlsRoute {
    #[serde(rename = "match", deserialize_with = "null_default")]
    matches: Vec<TlsMatch>,
    #[serde(deserialize_with = "null_default")]
    route: Vec<RouteDestination>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TlsMatch {
    #[serde(deserialize_with = "null_default")]
    sni_hosts: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    gateways: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RouteDestination {
    destination: Option<Destination>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Mirror {
    destination: Option<Destination>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Retries {
    attempts: i64,
    per_try_timeout: Option<String>,
    #[serde(deserialize_with = "null_default")]
    retry_on: String,
    retry_remote_localities: Option<IgnoredAny>,
    backoff: Option<String>,
}

/// What the timeout mutation needs to know about one `http[]` route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRouteInfo {
    /// Index in `spec.http`.
    pub index: usize,
    /// The route already sets `timeout` (any value, even an invalid one).
    pub has_timeout: bool,
    /// The route forwards somewhere (has `route` destinations); redirects, direct
    /// responses and delegates have nothing to time out.
    pub forwards: bool,
    /// At least one destination leaves the mesh.
    pub external: bool,
}

pub(super) fn inspect(spec: &Spec, cx: &Context<'_>, out: &mut Findings) {
    export_to(&spec.export_to, cx, false, false, out);
    // No hosts means a delegate, which only makes sense as plain HTTP routes.
    let delegate = spec.hosts.is_empty();
    if delegate {
        for (field, set) in [
            ("gateways", !spec.gateways.is_empty()),
            ("tcp", !spec.tcp.is_empty()),
            ("tls", !spec.tls.is_empty()),
        ] {
            if set {
                out.violation(
                    Code::MissingField,
                    "spec.hosts",
                    "",
                    format!(
                        "a virtual service without hosts is a delegate, which must not set {field}"
                    ),
                );
            }
        }
    }
    gateway_names(&spec.gateways, "spec.gateways", out);
    let applies_to_gateway =
        !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == "mesh");
    let binding = VirtualServiceBinding {
        applies_to_gateway,
        applies_to_mesh: !applies_to_gateway,
        sni: spec
            .tls
            .iter()
            .any(|t| t.matches.iter().any(|m| !m.sni_hosts.is_empty())),
    };
    check_hosts(spec, binding, cx, out);
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        out.violation(
            Code::MissingField,
            "spec.http",
            "",
            "http, tcp or tls must be provided in virtual service",
        );
    }

    for (i, route) in spec.http.iter().enumerate() {
        http_route(i, route, delegate, cx, out);
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        let base = format!("spec.tcp[{i}]");
        for (k, m) in route.matches.iter().enumerate() {
            gateway_names(&m.gateways, &format!("{base}.match[{k}].gateways"), out);
        }
        routes(&base, &route.route, "TCP route is required", cx, out);
    }
    // Istio validates SNI hosts as gateway-bound unless `mesh` is listed, even with no
    // gateways at all (`isGateway`).
    let sni_gateway = !spec.gateways.iter().any(|g| g == "mesh");
    for (i, route) in spec.tls.iter().enumerate() {
        let base = format!("spec.tls[{i}]");
        if route.matches.is_empty() {
            out.violation(
                Code::MissingField,
                format!("{base}.match"),
                "",
                "TLS route must have at least one match condition",
            );
        }
        for (k, m) in route.matches.iter().enumerate() {
            let mbase = format!("{base}.match[{k}]");
            if m.sni_hosts.is_empty() {
                out.violation(
                    Code::MissingField,
                    format!("{mbase}.sniHosts"),
                    "",
                    "TLS match must have at least one SNI host",
                );
            }
            for (j, sni) in m.sni_hosts.iter().enumerate() {
                let path = || format!("{mbase}.sniHosts[{j}]");
                if let Some(Some(w)) = out.rule(path, sni, istio::sni_host(sni, sni_gateway)) {
                    out.warnings.push(format!("{}: {w}", path()));
                }
            }
            gateway_names(&m.gateways, &format!("{mbase}.gateways"), out);
        }
        routes(&base, &route.route, "TLS route is required", cx, out);
    }
}

/// `spec.hosts`: validity, overlaps, the partial-wildcard policy, and egress when the
/// VirtualService applies to the mesh.
fn check_hosts(spec: &Spec, binding: VirtualServiceBinding, cx: &Context<'_>, out: &mut Findings) {
    let mut all_valid = true;
    let egress = binding.applies_to_mesh.then_some(HostEgress::default());
    for (i, raw) in spec.hosts.iter().enumerate() {
        let syntax = istio::virtual_service_host(raw, binding);
        all_valid &= out
            .host_field(cx, format!("spec.hosts[{i}]"), raw, syntax, true, egress)
            .valid;
    }
    // Istio only looks for overlaps when every host is valid.
    if all_valid {
        for (j, (code, message)) in istio::overlapping_hosts(&spec.hosts) {
            let value = spec.hosts.get(j).map_or("", String::as_str);
            out.violation(code, format!("spec.hosts[{j}]"), value, message);
        }
    }
}

/// One `http[]` route (`validateHTTPRoute`), recorded for the timeout mutation.
fn http_route(i: usize, route: &HttpRoute, delegate: bool, cx: &Context<'_>, out: &mut Findings) {
    let base = format!("spec.http[{i}]");
    for (k, m) in route.matches.iter().enumerate() {
        gateway_names(&m.gateways, &format!("{base}.match[{k}].gateways"), out);
    }
    let shape = istio::HttpRouteShape {
        root: route.delegate.is_some() && !delegate,
        routes: route.route.len(),
        redirect: route.redirect.is_some(),
        direct_response: route.direct_response.is_some(),
        mirror: route.mirror.is_some(),
        mirrors: route.mirrors.len(),
    };
    out.rules(|| base.clone(), "", istio::http_route_conflict(&shape));

    let mut external = false;
    for (j, rd) in route.route.iter().enumerate() {
        let path = format!("{base}.route[{j}].destination");
        external |= destination(rd.destination.as_ref(), path, cx, out);
    }
    if let Some(m) = &route.mirror {
        destination(Some(m), format!("{base}.mirror"), cx, out);
    }
    for (j, m) in route.mirrors.iter().enumerate() {
        let path = format!("{base}.mirrors[{j}].destination");
        destination(m.destination.as_ref(), path, cx, out);
    }
    if let Some(t) = &route.timeout {
        out.rule(|| format!("{base}.timeout"), t, istio::duration(t));
    }
    if let Some(r) = &route.retries {
        retries(&format!("{base}.retries"), r, out);
    }
    out.http_routes.push(HttpRouteInfo {
        index: i,
        has_timeout: route.timeout.is_some(),
        forwards: !route.route.is_empty() && route.delegate.is_none(),
        external,
    });
}

/// A retry policy (`ValidateHTTPRetry`): the policy itself and its two durations.
fn retries(base: &str, r: &Retries, out: &mut Findings) {
    let policy = istio::Retry {
        attempts: r.attempts,
        per_try_timeout: r.per_try_timeout.is_some(),
        retry_on: &r.retry_on,
        retry_remote_localities: r.retry_remote_localities.is_some(),
    };
    out.rules(|| base.to_owned(), "", istio::http_retry(&policy));
    for (field, value) in [
        ("perTryTimeout", &r.per_try_timeout),
        ("backoff", &r.backoff),
    ] {
        if let Some(t) = value {
            out.rule(|| format!("{base}.{field}"), t, istio::duration(t));
        }
    }
}

/// A TCP or TLS route's destinations, which are required.
fn routes(
    base: &str,
    route: &[RouteDestination],
    required: &str,
    cx: &Context<'_>,
    out: &mut Findings,
) {
    if route.is_empty() {
        out.violation(Code::MissingField, format!("{base}.route"), "", required);
    }
    for (j, rd) in route.iter().enumerate() {
        let path = format!("{base}.route[{j}].destination");
        destination(rd.destination.as_ref(), path, cx, out);
    }
}

/// Gateway references (`validateGatewayNames`) at `path[i]`.
fn gateway_names(names: &[String], path: &str, out: &mut Findings) {
    for (i, (code, message)) in istio::gateway_names(names) {
        let value = names.get(i).map_or("", String::as_str);
        out.violation(code, format!("{path}[{i}]"), value, message);
    }
}

/// Checks one destination (`validateDestination`) and records it as egress; returns
/// true when it leaves the mesh. An IP host is invalid but still checked as an address.
fn destination(
    d: Option<&Destination>,
    path: String,
    cx: &Context<'_>,
    out: &mut Findings,
) -> bool {
    let Some(d) = d else {
        out.violation(Code::MissingField, path, "", "destination is required");
        return false;
    };
    if !d.subset.is_empty() {
        out.rule(
            || format!("{path}.subset"),
            &d.subset,
            istio::subset_name(&d.subset),
        );
    }
    if let Some(p) = &d.port {
        out.rule(
            || format!("{path}.port.number"),
            &p.number.to_string(),
            istio::port_number(p.number),
        );
    }
    let raw = d.host.as_str();
    let syntax = istio::destination_host(raw);
    out.host_field(
        cx,
        format!("{path}.host"),
        raw,
        syntax,
        false,
        Some(HostEgress::default()),
    )
    .external
}
