//! Sidecar: `outboundTrafficPolicy.mode: ALLOW_ANY` and `egressProxy` open egress to
//! every destination, so they are bypass violations unless the namespace is granted
//! `allowAnyOutbound`. Validity mirrors Istio's `validateSidecar` for the egress
//! listeners and `validateSidecarOutboundTrafficPolicy`.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::policy::decision::Code;
use crate::policy::istio;
use crate::policy::judge::{Context, EgressRef, Findings, Reach, is_ip_literal};
use crate::policy::review_hash::Set;
use crate::policy::spec::{Destination, Object, Port, Str, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    egress: Vec<EgressListener<'a>>,
    #[serde(deserialize_with = "null_default")]
    ingress: Vec<IgnoredAny>,
    #[serde(borrow)]
    outbound_traffic_policy: Option<OutboundTrafficPolicy<'a>>,
    inbound_connection_pool: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct EgressListener<'a> {
    #[serde(borrow)]
    port: Option<Port<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    bind: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    capture_mode: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    hosts: Vec<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct OutboundTrafficPolicy<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    mode: Str<'a>,
    #[serde(borrow)]
    egress_proxy: Option<Destination<'a>>,
}

pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, .. }) = out.decoded::<Object<Spec<'_>>>(object.get()) else {
        return;
    };
    let any_set = !spec.egress.is_empty()
        || !spec.ingress.is_empty()
        || spec.outbound_traffic_policy.is_some()
        || spec.inbound_connection_pool.is_some();
    // Istio stops here: there is nothing else to check.
    if out
        .rule(|| "spec".to_owned(), "", istio::sidecar_not_empty(any_set))
        .is_none()
    {
        return;
    }
    egress_listeners(&spec, cx, out);
    if let Some(otp) = &spec.outbound_traffic_policy {
        outbound_traffic_policy(otp, cx, out);
    }
}

/// `egress[]` (`validateSidecar`): one catch-all listener without a port, last; ports
/// valid and unique per IP-bound listener, unix sockets unique; hosts
/// `namespace/host`, with Istio's duplicate warnings.
fn egress_listeners(spec: &Spec<'_>, cx: &Context<'_>, out: &mut Findings<'_>) {
    let mut catch_all_found = false;
    let mut ports = Set::default();
    let mut sockets = Set::default();
    let last = spec.egress.len().saturating_sub(1);
    for (i, listener) in spec.egress.iter().enumerate() {
        if !out.charge(1 + listener.hosts.len()) {
            return;
        }
        let base = || format!("spec.egress[{i}]");
        match &listener.port {
            None if catch_all_found => {
                out.record(
                    Code::InvalidPort,
                    || format!("{}.port", base()),
                    "",
                    "sidecar: egress can have only one listener with empty port",
                );
                continue;
            }
            None if i != last => out.record(
                Code::InvalidPort,
                || format!("{}.port", base()),
                "",
                "sidecar: the egress listener with empty port should be the last listener in the list",
            ),
            None => catch_all_found = true,
            Some(p) => {
                let path = || format!("{}.port", base());
                out.rules(
                    path,
                    &p.number.to_string(),
                    istio::sidecar_egress_port(p.number, &p.name, &p.protocol, &listener.bind, &listener.capture_mode),
                );
                if p.target_port.is_some_and(|tp| tp > 0) {
                    out.record(
                        Code::InvalidPort,
                        || format!("{}.targetPort", path()),
                        "",
                        "targetPort has no impact on Sidecars",
                    );
                }
                let unique = if p.number == 0 {
                    sockets.insert(&*listener.bind)
                } else {
                    ports.insert(p.number)
                };
                if !unique {
                    out.record(
                        Code::DuplicatePort,
                        path,
                        p.number,
                        "sidecar: ports on IP bound listeners and unix domain socket binds must be unique",
                    );
                }
            }
        }
        let hosts = || format!("{}.hosts", base());
        if listener.hosts.is_empty() {
            out.record(
                Code::MissingField,
                hosts,
                "",
                "egress listener must have at least one host",
            );
        }
        for (j, raw) in listener.hosts.iter().enumerate() {
            out.rule(
                || format!("{}[{j}]", hosts()),
                raw,
                istio::sidecar_egress_host(raw),
            );
        }
        istio::sidecar_duplicate_hosts(&listener.hosts, cx.namespace, |j, warning| {
            out.warn(|| {
                let path = j.map_or_else(hosts, |j| format!("{}[{j}]", hosts()));
                format!("{path}: {warning}")
            });
        });
    }
}

/// `outboundTrafficPolicy`: ALLOW_ANY and `egressProxy` are bypasses unless the namespace
/// is granted `allowAnyOutbound`; validity mirrors `validateSidecarOutboundTrafficPolicy`.
fn outbound_traffic_policy(
    otp: &OutboundTrafficPolicy<'_>,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let mode_path = || "spec.outboundTrafficPolicy.mode".to_owned();
    let known_mode = out
        .rule(mode_path, &otp.mode, istio::outbound_mode(&otp.mode))
        .is_some();
    let allow_any = otp.mode == "ALLOW_ANY";
    let granted = cx
        .allowlist
        .namespace(cx.namespace)
        .is_some_and(|n| n.allow_any_outbound);
    if allow_any && !granted {
        out.record(
            Code::AllowAnyOutbound,
            mode_path,
            &otp.mode,
            &format!(
                "ALLOW_ANY lets workloads reach any host; namespace {} is not granted allowAnyOutbound",
                cx.namespace
            ),
        );
    }
    let Some(proxy) = &otp.egress_proxy else {
        return;
    };
    let proxy_path = || "spec.outboundTrafficPolicy.egressProxy".to_owned();
    if !granted {
        out.record(
            Code::EgressProxy,
            proxy_path,
            &proxy.host,
            &format!(
                "egressProxy forwards unknown egress; namespace {} is not granted allowAnyOutbound",
                cx.namespace
            ),
        );
    }
    let host_path = || format!("{}.host", proxy_path());
    // Istio checks the proxy only once the mode is known to be ALLOW_ANY.
    if known_mode
        && out
            .rule(proxy_path, &proxy.host, istio::egress_proxy_mode(&otp.mode))
            .is_some()
    {
        out.rule(
            host_path,
            &proxy.host,
            istio::egress_proxy_host(&proxy.host),
        );
        match &proxy.port {
            None => out.record(
                Code::MissingField,
                || format!("{}.port", proxy_path()),
                "",
                "egressProxy port must be set",
            ),
            Some(p) => {
                // `validateDestination`; the host's FQDN check above covers more.
                out.port(|| format!("{}.port.number", proxy_path()), p.number);
                if !proxy.subset.is_empty() {
                    out.rule(
                        || format!("{}.subset", proxy_path()),
                        &proxy.subset,
                        istio::subset_name(&proxy.subset),
                    );
                }
            }
        }
    }
    if istio::egress_proxy_host(&proxy.host).is_ok() || is_ip_literal(&proxy.host) {
        out.egress(cx, EgressRef::new(&host_path, &proxy.host, Reach::Dialled));
    }
}
