//! Kubernetes Services. Istio turns every Service into a mesh service, so two of their
//! fields send traffic out: `type: ExternalName` (a DNS cluster for `externalName`,
//! which also answers in-cluster DNS with a CNAME) and `externalIPs` (kube-proxy and
//! Istio both capture traffic to them, so a tenant can claim anyone's address).

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::policy::istio;
use crate::policy::judge::{Context, EgressRef, Export, Findings, Reach, export_scope, kube_ip};
use crate::policy::matcher::PortSet;
use crate::policy::spec::{Keys, Object, Str, null_default};

/// Istio's annotation that limits which namespaces see a Service.
pub(crate) const EXPORT_TO: &str = "networking.istio.io/exportTo";

/// The metadata a Service's judge reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Read;

impl Keys for Read {
    const KEYS: &'static [&'static str] = &[EXPORT_TO];
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec<'a> {
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

pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, metadata }) = out.decoded::<Object<Spec<'_>, Read>>(object.get())
    else {
        return;
    };
    out.export = match metadata.annotations.get(EXPORT_TO) {
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
        let path = || "spec.externalName".to_owned();
        let r = EgressRef::new(&path, &spec.external_name, Reach::ClusterDns);
        out.egress(cx, r.on(Some(&ports)).exported(exported));
    }
    for (i, raw) in spec.external_ips.iter().enumerate() {
        if !out.charge(raw.len()) {
            return;
        }
        if let Some(ip) = kube_ip(raw) {
            let path = || format!("spec.externalIPs[{i}]");
            let r = EgressRef::new(&path, raw, Reach::Net(ip.into()));
            out.egress(cx, r.exported(exported));
        }
    }
}
