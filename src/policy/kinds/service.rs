//! Kubernetes Services. Istio turns every Service into a mesh service, so two of their
//! fields send traffic out: `type: ExternalName` (a DNS cluster for `externalName`,
//! which also answers in-cluster DNS with a CNAME) and `externalIPs` (kube-proxy and
//! Istio both capture traffic to them, so a tenant can claim anyone's address).

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Context, Export, Findings, Meta, Str, export_scope, kube_ip, null_default};
use crate::policy::istio;
use crate::policy::matcher::PortSet;

/// Istio's annotation that limits which namespaces see a Service.
pub(super) const EXPORT_TO: &str = "networking.istio.io/exportTo";

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Spec<'a> {
    #[serde(rename = "type", borrow, deserialize_with = "null_default")]
    kind: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    external_name: Str<'a>,
    #[serde(rename = "externalIPs", borrow, deserialize_with = "null_default")]
    external_ips: Vec<Str<'a>>,
    #[serde(deserialize_with = "null_default")]
    ports: Vec<ServicePort>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServicePort {
    port: i64,
    #[serde(rename = "targetPort")]
    _target_port: Option<IgnoredAny>,
}

pub(super) fn inspect(spec: &Spec<'_>, meta: &Meta, cx: &Context<'_>, out: &mut Findings<'_>) {
    out.export = match meta.annotations.get(EXPORT_TO) {
        None => Export::Everywhere,
        Some(list) => export_scope(list.split(',').map(str::trim), cx),
    };
    let exported = out.export.beyond_namespace();
    let ports = PortSet::new(
        spec.ports
            .iter()
            .filter_map(|p| istio::port_number(p.port).ok())
            .collect(),
    );
    out.charge(spec.ports.len() + spec.external_name.len());
    if spec.kind == "ExternalName" && !spec.external_name.is_empty() {
        out.resolved_ref(
            cx,
            || "spec.externalName".to_owned(),
            &spec.external_name,
            Some(&ports),
            exported,
        );
    }
    for (i, raw) in spec.external_ips.iter().enumerate() {
        if !out.charge(raw.len()) {
            return;
        }
        if let Some(ip) = kube_ip(raw) {
            out.net_ref(
                cx,
                || format!("spec.externalIPs[{i}]"),
                raw,
                ip.into(),
                exported,
            );
        }
    }
}
