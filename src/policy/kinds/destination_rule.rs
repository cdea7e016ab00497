//! DestinationRule: `spec.host`, every TLS `sni` (top-level, port-level and per subset)
//! and the tunnel `targetHost` are egress. Validity mirrors Istio's
//! `ValidateDestinationRule` for the host, subset names and `exportTo`; `tls.sni` is
//! never validated by Istio, so not here either.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::policy::decision::Code;
use crate::policy::istio;
use crate::policy::judge::{Context, EgressRef, ExportOf, Findings, HostEgress, Reach};
use crate::policy::matcher::PortSet;
use crate::policy::review_hash::Set;
use crate::policy::spec::{Object, Str, Streamed, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    host: Str<'a>,
    #[serde(borrow)]
    traffic_policy: Option<TrafficPolicy<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    subsets: Vec<Subset<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    export_to: Streamed<'a, Str<'a>>,
    workload_selector: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TrafficPolicy<'a> {
    #[serde(borrow)]
    tls: Option<Tls<'a>>,
    #[serde(borrow)]
    load_balancer: Option<LoadBalancer<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    port_level_settings: Vec<PortPolicy<'a>>,
    #[serde(borrow)]
    tunnel: Option<Tunnel<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[serde(rename_all = "camelCase")]
struct PortPolicy<'a> {
    #[serde(borrow)]
    tls: Option<Tls<'a>>,
    #[serde(borrow)]
    load_balancer: Option<LoadBalancer<'a>>,
}

/// `loadBalancer`: only `simple` matters here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoadBalancer<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    simple: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Tls<'a> {
    #[serde(borrow)]
    sni: Option<Str<'a>>,
}

/// `trafficPolicy.tunnel`: the proxy opens a CONNECT (or POST) tunnel to `targetHost`
/// through the destination, so the target host is where traffic goes.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Tunnel<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    target_host: Str<'a>,
    target_port: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Subset<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    name: Str<'a>,
    #[serde(borrow)]
    traffic_policy: Option<TrafficPolicy<'a>>,
}

pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, .. }) = out.decoded::<Object<Spec<'_>>>(object.get()) else {
        return;
    };
    let of = ExportOf {
        service_entry: false,
        workload_selector: spec.workload_selector.is_some(),
    };
    out.export_to(&spec.export_to, of, cx);
    let syntax = istio::destination_rule_host(&spec.host);
    out.host_field(
        cx,
        || "spec.host".to_owned(),
        &spec.host,
        syntax,
        true,
        // The host selects the registry entry the rule applies to: a match key.
        Some(HostEgress::MATCH_KEY),
    );
    if let Some(tp) = &spec.traffic_policy {
        traffic_policy(tp, &|| "spec.trafficPolicy".to_owned(), cx, out);
    }
    let mut names = Set::default();
    for (i, subset) in spec.subsets.iter().enumerate() {
        if !out.charge(subset.name.len()) {
            return;
        }
        let path = || format!("spec.subsets[{i}]");
        if !names.insert(&*subset.name) {
            out.record(
                Code::InvalidSubset,
                || format!("{}.name", path()),
                &subset.name,
                "duplicate subset name",
            );
        }
        out.rule(
            || format!("{}.name", path()),
            &subset.name,
            istio::subset_name(&subset.name),
        );
        if let Some(tp) = &subset.traffic_policy {
            traffic_policy(tp, &|| format!("{}.trafficPolicy", path()), cx, out);
        }
    }
}

fn traffic_policy(
    tp: &TrafficPolicy<'_>,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    if let Some(sni) = tp.tls.as_ref().and_then(|t| t.sni.as_ref()) {
        sni_ref(sni, &|| format!("{}.tls.sni", base()), cx, out);
    }
    passthrough(
        tp.load_balancer.as_ref(),
        &|| format!("{}.loadBalancer.simple", base()),
        cx,
        out,
    );
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        if !out.charge(1) {
            return;
        }
        if let Some(sni) = pl.tls.as_ref().and_then(|t| t.sni.as_ref()) {
            let path = || format!("{}.portLevelSettings[{i}].tls.sni", base());
            sni_ref(sni, &path, cx, out);
        }
        let path = || format!("{}.portLevelSettings[{i}].loadBalancer.simple", base());
        passthrough(pl.load_balancer.as_ref(), &path, cx, out);
    }
    if let Some(t) = &tp.tunnel {
        tunnel(t, &|| format!("{}.tunnel", base()), cx, out);
    }
}

/// `simple: PASSTHROUGH` makes the host's cluster an original-destination cluster: the
/// proxy connects to whatever address the client dialled, whichever host its request
/// names (`ClusterDiscoveryType_ORIGINAL_DST`, pilot/pkg/networking/core/cluster.go), as
/// a ServiceEntry with resolution NONE and no addresses does.
fn passthrough(
    lb: Option<&LoadBalancer<'_>>,
    path: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    if lb.is_some_and(|lb| lb.simple == "PASSTHROUGH") && !cx.may_reach_any_address() {
        out.record(
            Code::AnyAddress,
            path,
            "PASSTHROUGH",
            "PASSTHROUGH load balancing forwards to whatever address the client dials: any IP; use a load balancer that picks the host's own endpoints",
        );
    }
}

/// An SNI is where TLS origination connects. Istio does not validate its syntax, so an
/// unparsable one is not a validity error; it is matched verbatim (only `*` covers it).
fn sni_ref(sni: &str, path: &dyn Fn() -> String, cx: &Context<'_>, out: &mut Findings<'_>) {
    if !sni.is_empty() && out.charge(sni.len()) {
        out.egress(cx, EgressRef::new(path, sni, Reach::Sni));
    }
}

/// `tunnel` (`validateTunnelSettings`): a target host that is an FQDN or an IP, and a
/// port; the host is egress on that port.
fn tunnel(t: &Tunnel<'_>, base: &dyn Fn() -> String, cx: &Context<'_>, out: &mut Findings<'_>) {
    let path = || format!("{}.targetHost", base());
    let port = out
        .port(|| format!("{}.targetPort", base()), t.target_port)
        .map(|p| PortSet::new(vec![p]));
    let raw = &*t.target_host;
    let syntax = if istio::parse_ip(raw).is_some() {
        Ok(())
    } else {
        istio::fqdn(raw)
    };
    let egress = HostEgress {
        ports: port.as_ref(),
        ..HostEgress::DIALLED
    };
    out.host_field(cx, path, raw, syntax, false, Some(egress));
}
