//! Sidecar: `outboundTrafficPolicy.mode: ALLOW_ANY` and `egressProxy` open egress to
//! every destination, so they are bypass violations unless the namespace is granted
//! `allowAnyOutbound`. Validity mirrors Istio's `validateSidecar` for these fields.

use serde::Deserialize;

use super::{Context, Findings, null_default};
use crate::policy::decision::Code;
use crate::policy::istio;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Spec {
    #[serde(deserialize_with = "null_default")]
    egress: Vec<EgressListener>,
    outbound_traffic_policy: Option<OutboundTrafficPolicy>,
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
    egress_proxy: Option<EgressProxy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EgressProxy {
    #[serde(deserialize_with = "null_default")]
    host: String,
}

pub(super) fn inspect(spec: &Spec, cx: &Context<'_>, out: &mut Findings) {
    for (i, listener) in spec.egress.iter().enumerate() {
        if listener.hosts.is_empty() {
            out.violation(
                Code::MissingField,
                format!("spec.egress[{i}].hosts"),
                "",
                "egress listener must have at least one host",
            );
        }
        for (j, raw) in listener.hosts.iter().enumerate() {
            let path = format!("spec.egress[{i}].hosts[{j}]");
            let Some((ns, name)) = raw.split_once('/') else {
                out.violation(
                    Code::InvalidSidecarHost,
                    path,
                    raw,
                    "egress host must be of the form namespace/host",
                );
                continue;
            };
            if out
                .rule(
                    || path.clone(),
                    raw,
                    istio::host_namespace(ns, Code::InvalidSidecarHost),
                )
                .is_none()
            {
                continue;
            }
            if let Err((_, reason)) = istio::wildcard_domain(name) {
                out.violation(Code::InvalidSidecarHost, path, raw, reason);
            }
        }
    }

    let Some(otp) = &spec.outbound_traffic_policy else {
        return;
    };
    let allow_any = otp.mode == "ALLOW_ANY";
    if !matches!(otp.mode.as_str(), "" | "ALLOW_ANY" | "REGISTRY_ONLY") {
        out.violation(
            Code::InvalidSpec,
            "spec.outboundTrafficPolicy.mode",
            &otp.mode,
            "mode must be REGISTRY_ONLY or ALLOW_ANY",
        );
    }
    let granted = cx
        .allowlist
        .namespace(cx.namespace)
        .is_some_and(|n| n.allow_any_outbound);
    if allow_any && !granted {
        out.violation(
            Code::AllowAnyOutbound,
            "spec.outboundTrafficPolicy.mode",
            &otp.mode,
            format!("ALLOW_ANY lets workloads reach any host; namespace {} is not granted allowAnyOutbound", cx.namespace),
        );
    }
    if let Some(proxy) = &otp.egress_proxy {
        if !allow_any {
            out.violation(
                Code::EgressProxyWithoutAllowAny,
                "spec.outboundTrafficPolicy.egressProxy",
                &proxy.host,
                "egressProxy requires outboundTrafficPolicy mode ALLOW_ANY",
            );
        }
        if !granted {
            out.violation(
                Code::EgressProxy,
                "spec.outboundTrafficPolicy.egressProxy",
                &proxy.host,
                format!("egressProxy forwards unknown egress; namespace {} is not granted allowAnyOutbound", cx.namespace),
            );
        }
        let path = "spec.outboundTrafficPolicy.egressProxy.host".to_owned();
        if let Some(host) = out.rule(
            || path.clone(),
            &proxy.host,
            istio::destination_host(&proxy.host),
        ) {
            out.host_ref(cx, path, &proxy.host, host, &[], false);
        }
    }
}
