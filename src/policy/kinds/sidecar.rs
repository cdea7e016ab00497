//! Sidecar: `outboundTrafficPolicy.mode: ALLOW_ANY` and `egressProxy` open egress to
//! every destination, so they are bypass violations unless the namespace is granted
//! `allowAnyOutbound`. Validity mirrors Istio's `validateSidecar` for these fields.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Context, Destination, Findings, is_ip_literal, null_default};
use crate::policy::decision::Code;
use crate::policy::istio;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Spec {
    #[serde(deserialize_with = "null_default")]
    egress: Vec<EgressListener>,
    #[serde(deserialize_with = "null_default")]
    ingress: Vec<IgnoredAny>,
    outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    inbound_connection_pool: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EgressListener {
    #[serde(deserialize_with = "null_default")]
    hosts: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct OutboundTrafficPolicy {
    #[serde(deserialize_with = "null_default")]
    mode: String,
    egress_proxy: Option<Destination>,
}

pub(super) fn inspect(spec: &Spec, cx: &Context<'_>, out: &mut Findings) {
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
    for (i, listener) in spec.egress.iter().enumerate() {
        let base = format!("spec.egress[{i}].hosts");
        if listener.hosts.is_empty() {
            out.violation(
                Code::MissingField,
                &base,
                "",
                "egress listener must have at least one host",
            );
        }
        for (j, raw) in listener.hosts.iter().enumerate() {
            out.rule(
                || format!("{base}[{j}]"),
                raw,
                istio::sidecar_egress_host(raw),
            );
        }
        for (j, warning) in istio::sidecar_duplicate_hosts(&listener.hosts, cx.namespace) {
            let path = j.map_or_else(|| base.clone(), |j| format!("{base}[{j}]"));
            out.warnings.push(format!("{path}: {warning}"));
        }
    }
    if let Some(otp) = &spec.outbound_traffic_policy {
        outbound_traffic_policy(otp, cx, out);
    }
}

/// `outboundTrafficPolicy`: ALLOW_ANY and `egressProxy` are bypasses unless the namespace
/// is granted `allowAnyOutbound`; validity mirrors `validateSidecarOutboundTrafficPolicy`.
fn outbound_traffic_policy(otp: &OutboundTrafficPolicy, cx: &Context<'_>, out: &mut Findings) {
    let mode_path = "spec.outboundTrafficPolicy.mode";
    let known_mode = out
        .rule(
            || mode_path.to_owned(),
            &otp.mode,
            istio::outbound_mode(&otp.mode),
        )
        .is_some();
    let allow_any = otp.mode == "ALLOW_ANY";
    let granted = cx
        .allowlist
        .namespace(cx.namespace)
        .is_some_and(|n| n.allow_any_outbound);
    if allow_any && !granted {
        out.violation(
            Code::AllowAnyOutbound,
            mode_path,
            &otp.mode,
            format!("ALLOW_ANY lets workloads reach any host; namespace {} is not granted allowAnyOutbound", cx.namespace),
        );
    }
    let Some(proxy) = &otp.egress_proxy else {
        return;
    };
    let proxy_path = "spec.outboundTrafficPolicy.egressProxy";
    if !granted {
        out.violation(
            Code::EgressProxy,
            proxy_path,
            &proxy.host,
            format!(
                "egressProxy forwards unknown egress; namespace {} is not granted allowAnyOutbound",
                cx.namespace
            ),
        );
    }
    let host_path = || format!("{proxy_path}.host");
    // Istio checks the proxy only once the mode is known to be ALLOW_ANY.
    if known_mode
        && out
            .rule(
                || proxy_path.to_owned(),
                &proxy.host,
                istio::egress_proxy_mode(&otp.mode),
            )
            .is_some()
    {
        out.rule(
            host_path,
            &proxy.host,
            istio::egress_proxy_host(&proxy.host),
        );
        match &proxy.port {
            None => out.violation(
                Code::MissingField,
                format!("{proxy_path}.port"),
                "",
                "egressProxy port must be set",
            ),
            Some(p) => {
                // `validateDestination`; the host's FQDN check above covers more.
                out.rule(
                    || format!("{proxy_path}.port.number"),
                    &p.number.to_string(),
                    istio::port_number(p.number),
                );
                if !proxy.subset.is_empty() {
                    out.rule(
                        || format!("{proxy_path}.subset"),
                        &proxy.subset,
                        istio::subset_name(&proxy.subset),
                    );
                }
            }
        }
    }
    if istio::egress_proxy_host(&proxy.host).is_ok() || is_ip_literal(&proxy.host) {
        out.host_ref(cx, host_path(), &proxy.host, &[], false);
    }
}
