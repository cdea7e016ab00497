//! VirtualService: hosts (when bound to the mesh) and every route destination and
//! mirror are egress. Validity mirrors Istio's `ValidateVirtualService` and
//! `validateHTTPRoute` for those fields; the http routes are also summarised for the
//! timeout mutation.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::policy::decision::Code;
use crate::policy::istio::{self, VirtualServiceBinding};
use crate::policy::judge::{Context, ExportOf, Findings, HostEgress, is_external};
use crate::policy::spec::{
    Destination, Keys, Object, Str, StrList, StrView, Streamed, null_default,
};
use crate::policy::timeouts::{self, HttpRouteInfo, Routes};

/// The metadata a VirtualService's judge reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Read;

impl Keys for Read {
    const KEYS: &'static [&'static str] = &[timeouts::ANNOTATION];
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec<'a> {
    // Kept as spans of the object's text (`StrList`): 8 bytes per host or name.
    hosts: StrList,
    gateways: StrList,
    // Routes are the lists a tenant can make as long as the body allows: judged one at
    // a time (see `Streamed`).
    #[serde(borrow)]
    http: Streamed<'a, HttpRoute<'a>>,
    #[serde(borrow)]
    tcp: Streamed<'a, TcpRoute<'a>>,
    #[serde(borrow)]
    tls: Streamed<'a, TlsRoute<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    export_to: Streamed<'a, Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct HttpRoute<'a> {
    #[serde(rename = "match", deserialize_with = "null_default")]
    matches: Vec<RouteMatch>,
    // One route's destinations and mirrors can fill the body too: judged one at a time.
    #[serde(borrow)]
    route: Streamed<'a, RouteDestination<'a>>,
    redirect: Option<IgnoredAny>,
    direct_response: Option<IgnoredAny>,
    delegate: Option<IgnoredAny>,
    fault: Option<IgnoredAny>,
    rewrite: Option<IgnoredAny>,
    // Boxed, as `retries`: a route is moved while it is decoded and judged, and this
    // keeps it small.
    #[serde(borrow)]
    mirror: Option<Box<Destination<'a>>>,
    #[serde(borrow)]
    mirrors: Streamed<'a, Mirror<'a>>,
    #[serde(borrow)]
    timeout: Option<Str<'a>>,
    #[serde(borrow)]
    retries: Option<Box<Retries<'a>>>,
}

/// The part of an HTTP or TCP match that names gateways.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RouteMatch {
    gateways: StrList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TcpRoute<'a> {
    #[serde(rename = "match", deserialize_with = "null_default")]
    matches: Vec<RouteMatch>,
    #[serde(borrow)]
    route: Streamed<'a, RouteDestination<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TlsRoute<'a> {
    #[serde(rename = "match", deserialize_with = "null_default")]
    matches: Vec<TlsMatch>,
    #[serde(borrow)]
    route: Streamed<'a, RouteDestination<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TlsMatch {
    sni_hosts: StrList,
    gateways: StrList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RouteDestination<'a> {
    #[serde(borrow)]
    destination: Option<Destination<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Mirror<'a> {
    #[serde(borrow)]
    destination: Option<Destination<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Retries<'a> {
    attempts: i64,
    #[serde(borrow)]
    per_try_timeout: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    retry_on: Str<'a>,
    retry_remote_localities: Option<IgnoredAny>,
    #[serde(borrow)]
    backoff: Option<Str<'a>>,
}

/// Judges a VirtualService and summarises its http routes for the timeout mutation.
pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let text = object.get();
    let Some(Object { spec, metadata }) = out.decoded::<Object<Spec<'_>, Read>>(text) else {
        return;
    };
    let mut routes = Routes {
        annotation: metadata
            .annotations
            .get(timeouts::ANNOTATION)
            .map(str::to_owned),
        http: Vec::new(),
    };
    judge_spec(&spec, text, &mut routes, cx, out);
    out.timeouts = Some(routes);
}

/// Judges `spec`, decoded from the object's JSON `text`.
fn judge_spec(
    spec: &Spec<'_>,
    text: &str,
    summary: &mut Routes,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let hosts = spec.hosts.view(text);
    let gateways = spec.gateways.view(text);
    let of = ExportOf {
        service_entry: false,
        workload_selector: false,
    };
    out.export_to(&spec.export_to, of, cx);
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
                    &format!(
                        "a virtual service without hosts is a delegate, which must not set {field}"
                    ),
                );
            }
        }
    }
    gateway_names(gateways, &|| "spec.gateways".to_owned(), out);
    let applies_to_gateway = !gateways.is_empty() && !gateways.iter().any(|g| g == "mesh");
    let mut sni = false;
    // A bad element is reported once, by this first walk.
    let tls_decodes = out.each(&spec.tls, "spec.tls", |_, t, _| {
        sni |= t.matches.iter().any(|m| !m.sni_hosts.is_empty());
    });
    let binding = VirtualServiceBinding {
        applies_to_gateway,
        applies_to_mesh: !applies_to_gateway,
        sni,
    };
    check_hosts(hosts, binding, cx, out);
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        out.violation(
            Code::MissingField,
            "spec.http",
            "",
            "http, tcp or tls must be provided in virtual service",
        );
    }

    out.each(&spec.http, "spec.http", |i, route, out| {
        http_route(i, &route, delegate, text, summary, cx, out);
    });
    out.each(&spec.tcp, "spec.tcp", |i, route, out| {
        out.charge(1);
        let base = || format!("spec.tcp[{i}]");
        for (k, m) in route.matches.iter().enumerate() {
            gateway_names(
                m.gateways.view(text),
                &|| format!("{}.match[{k}].gateways", base()),
                out,
            );
        }
        routes(&base, &route.route, "TCP route is required", cx, out);
    });
    if tls_decodes {
        tls_routes(spec, hosts, gateways, text, cx, out);
    }
}

/// `tls[]`: SNI hosts (valid, and each a subset of some VirtualService host) and their
/// destinations.
fn tls_routes(
    spec: &Spec<'_>,
    hosts: StrView<'_>,
    gateways: StrView<'_>,
    text: &str,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    // Istio validates SNI hosts as gateway-bound unless `mesh` is listed, even with no
    // gateways at all (`isGateway`).
    let sni_gateway = !gateways.iter().any(|g| g == "mesh");
    let subsets = istio::HostSubsets::new(hosts);
    out.each(&spec.tls, "spec.tls", |i, route, out| {
        out.charge(1);
        let base = || format!("spec.tls[{i}]");
        if route.matches.is_empty() {
            out.record(
                Code::MissingField,
                || format!("{}.match", base()),
                "",
                "TLS route must have at least one match condition",
            );
        }
        for (k, m) in route.matches.iter().enumerate() {
            let mbase = || format!("{}.match[{k}]", base());
            if m.sni_hosts.is_empty() {
                out.record(
                    Code::MissingField,
                    || format!("{}.sniHosts", mbase()),
                    "",
                    "TLS match must have at least one SNI host",
                );
            }
            for (j, sni) in m.sni_hosts.view(text).iter().enumerate() {
                if !out.charge(sni.len()) {
                    return;
                }
                let path = || format!("{}.sniHosts[{j}]", mbase());
                match out.rule(path, sni, istio::sni_host(sni, sni_gateway)) {
                    Some(Some(w)) => out.warn(|| format!("{}: {w}", path())),
                    Some(None) => {
                        out.rule(path, sni, subsets.sni_subset(sni));
                    }
                    None => {}
                }
            }
            gateway_names(
                m.gateways.view(text),
                &|| format!("{}.gateways", mbase()),
                out,
            );
        }
        routes(&base, &route.route, "TLS route is required", cx, out);
    });
}

/// `spec.hosts`: validity, overlaps, the partial-wildcard policy, and egress when the
/// VirtualService applies to the mesh.
fn check_hosts(
    hosts: StrView<'_>,
    binding: VirtualServiceBinding,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let mut all_valid = true;
    // Hosts are what a client's Host or SNI is matched against; where traffic goes is
    // the destinations' registry entries. No egress verdict, only validity.
    let egress = Some(HostEgress::MATCH_KEY);
    for (i, raw) in hosts.iter().enumerate() {
        if !out.charge(raw.len()) {
            return;
        }
        let syntax = istio::virtual_service_host(raw, binding);
        all_valid &= out
            .host_field(cx, || format!("spec.hosts[{i}]"), raw, syntax, true, egress)
            .valid;
    }
    // Istio only looks for overlaps when every host is valid.
    if all_valid {
        for found in istio::overlapping_hosts(hosts) {
            let j = found.index;
            let value = hosts.get(j).unwrap_or_default();
            out.found(|| format!("spec.hosts[{j}]"), value, &found);
        }
    }
}

/// One `http[]` route (`validateHTTPRoute`), recorded for the timeout mutation.
fn http_route(
    i: usize,
    route: &HttpRoute<'_>,
    delegate: bool,
    text: &str,
    summary: &mut Routes,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    out.charge(1);
    let base = || format!("spec.http[{i}]");
    for (k, m) in route.matches.iter().enumerate() {
        gateway_names(
            m.gateways.view(text),
            &|| format!("{}.match[{k}].gateways", base()),
            out,
        );
    }
    let shape = istio::HttpRouteShape {
        in_delegate: delegate,
        delegate: route.delegate.is_some(),
        route: !route.route.is_empty(),
        redirect: route.redirect.is_some(),
        direct_response: route.direct_response.is_some(),
        fault: route.fault.is_some(),
        rewrite: route.rewrite.is_some(),
        mirror: route.mirror.is_some(),
        mirrors: !route.mirrors.is_empty(),
    };
    istio::http_route_conflict(&shape, &mut |(code, message)| {
        out.record(code, base, "", &message);
    });

    let mut external = false;
    let at = || format!("{}.route", base());
    out.each_at(&route.route, &at, |j, rd, out| {
        let path = || format!("{}.route[{j}].destination", base());
        external |= destination(rd.destination.as_ref(), &path, cx, out);
    });
    if let Some(m) = &route.mirror {
        destination(Some(m), &|| format!("{}.mirror", base()), cx, out);
    }
    let at = || format!("{}.mirrors", base());
    out.each_at(&route.mirrors, &at, |j, m, out| {
        let path = || format!("{}.mirrors[{j}].destination", base());
        destination(m.destination.as_ref(), &path, cx, out);
    });
    if let Some(t) = &route.timeout {
        out.rule(|| format!("{}.timeout", base()), t, istio::duration(t));
    }
    if let Some(r) = &route.retries {
        retries(&|| format!("{}.retries", base()), r, out);
    }
    let info = HttpRouteInfo {
        index: i,
        has_timeout: route.timeout.is_some(),
        forwards: !route.route.is_empty() && route.delegate.is_none(),
        external,
    };
    // Only a route the mutation may patch is kept: a million empty routes keep nothing.
    if info.forwards && !info.has_timeout {
        summary.http.push(info);
    }
}

/// A retry policy (`ValidateHTTPRetry`): the policy itself and its two durations.
fn retries(base: &dyn Fn() -> String, r: &Retries<'_>, out: &mut Findings<'_>) {
    let policy = istio::Retry {
        attempts: r.attempts,
        per_try_timeout: r.per_try_timeout.is_some(),
        retry_on: &r.retry_on,
        retry_remote_localities: r.retry_remote_localities.is_some(),
    };
    out.charge(r.retry_on.len());
    out.rules(base, "", istio::http_retry(&policy));
    for (field, value) in [
        ("perTryTimeout", &r.per_try_timeout),
        ("backoff", &r.backoff),
    ] {
        if let Some(t) = value {
            out.rule(|| format!("{}.{field}", base()), t, istio::duration(t));
        }
    }
}

/// A TCP or TLS route's destinations, which are required.
fn routes(
    base: &dyn Fn() -> String,
    route: &Streamed<'_, RouteDestination<'_>>,
    required: &str,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let at = || format!("{}.route", base());
    if route.is_empty() {
        out.record(Code::MissingField, at, "", required);
    }
    out.each_at(route, &at, |j, rd, out| {
        let path = || format!("{}.route[{j}].destination", base());
        destination(rd.destination.as_ref(), &path, cx, out);
    });
}

/// Gateway references (`validateGatewayNames`) at `path[i]`.
fn gateway_names(names: StrView<'_>, path: &dyn Fn() -> String, out: &mut Findings<'_>) {
    if names.is_empty() || !out.charge(names.len()) {
        return;
    }
    for found in istio::gateway_names(names) {
        let i = found.index;
        let value = names.get(i).unwrap_or_default();
        out.found(|| format!("{}[{i}]", path()), value, &found);
    }
}

/// Checks one destination (`validateDestination`); returns true when it leaves the
/// mesh.
fn destination(
    d: Option<&Destination<'_>>,
    path: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) -> bool {
    let Some(d) = d else {
        out.record(Code::MissingField, path, "", "destination is required");
        return false;
    };
    if !out.charge(d.host.len()) {
        return false;
    }
    if !d.subset.is_empty() {
        out.rule(
            || format!("{}.subset", path()),
            &d.subset,
            istio::subset_name(&d.subset),
        );
    }
    if let Some(p) = &d.port {
        out.port(|| format!("{}.port.number", path()), p.number);
    }
    // A destination selects a registry entry (a ServiceEntry or Service, judged where
    // it is created) and cannot add one: without it the proxy has no cluster to send to.
    // Only its validity counts, and whether it leaves the mesh (the timeout's scope).
    let raw = &*d.host;
    let syntax = istio::destination_host(raw);
    out.rule(|| format!("{}.host", path()), raw, syntax);
    is_external(raw, cx.allowlist)
}
