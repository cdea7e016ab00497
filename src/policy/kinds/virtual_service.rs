//! VirtualService: hosts (when bound to the mesh) and every route destination and
//! mirror are egress. Validity mirrors Istio's `validateVirtualService` for those
//! fields; the http routes are also summarised for the timeout mutation.

use serde::Deserialize;

use super::{Context, Findings, null_default};
use crate::policy::decision::Code;
use crate::policy::istio;

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
    tcp: Vec<L4Route>,
    #[serde(deserialize_with = "null_default")]
    tls: Vec<L4Route>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct HttpRoute {
    #[serde(deserialize_with = "null_default")]
    route: Vec<RouteDestination>,
    mirror: Option<Destination>,
    #[serde(deserialize_with = "null_default")]
    mirrors: Vec<Mirror>,
    timeout: Option<String>,
    retries: Option<Retries>,
    delegate: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct L4Route {
    #[serde(deserialize_with = "null_default")]
    route: Vec<RouteDestination>,
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
#[serde(default)]
struct Destination {
    #[serde(deserialize_with = "null_default")]
    host: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Retries {
    per_try_timeout: Option<String>,
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
    for (i, gw) in spec.gateways.iter().enumerate() {
        out.rule(|| format!("spec.gateways[{i}]"), gw, istio::gateway_ref(gw));
    }
    let bound_to_mesh = spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh");

    // No hosts means a delegate VirtualService (Istio's default); it may not bind gateways.
    if spec.hosts.is_empty() && !spec.gateways.is_empty() {
        out.violation(
            Code::MissingField,
            "spec.hosts",
            "",
            "virtual service must have at least one host (a delegate may not set gateways)",
        );
    }
    for (i, raw) in spec.hosts.iter().enumerate() {
        let path = format!("spec.hosts[{i}]");
        let Some(host) = out.rule(
            || path.clone(),
            raw,
            istio::virtual_service_host(raw, bound_to_mesh),
        ) else {
            continue;
        };
        out.partial_wildcard(cx, &path, raw, &host, false);
        if bound_to_mesh {
            out.host_ref(cx, path, raw, host, &[], false);
        }
    }

    for (i, route) in spec.http.iter().enumerate() {
        let base = format!("spec.http[{i}]");
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
        if let Some(t) = route
            .retries
            .as_ref()
            .and_then(|r| r.per_try_timeout.as_ref())
        {
            out.rule(
                || format!("{base}.retries.perTryTimeout"),
                t,
                istio::duration(t),
            );
        }
        out.http_routes.push(HttpRouteInfo {
            index: i,
            has_timeout: route.timeout.is_some(),
            forwards: !route.route.is_empty() && route.delegate.is_none(),
            external,
        });
    }
    for (field, routes) in [("tcp", &spec.tcp), ("tls", &spec.tls)] {
        for (i, route) in routes.iter().enumerate() {
            for (j, rd) in route.route.iter().enumerate() {
                let path = format!("spec.{field}[{i}].route[{j}].destination");
                destination(rd.destination.as_ref(), path, cx, out);
            }
        }
    }
}

/// Checks one destination (`validateDestination`) and records it as egress; returns
/// true when it leaves the mesh.
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
    let path = format!("{path}.host");
    let raw = d.host.as_str();
    let Some(host) = out.rule(|| path.clone(), raw, istio::destination_host(raw)) else {
        return false;
    };
    let external = !cx.allowlist.is_internal(&host);
    out.host_ref(cx, path, raw, host, &[], false);
    external
}
