//! Gateway API XBackend (`gateway.networking.x-k8s.io`): with istiod's alpha Gateway
//! API support on, an XBackend of type ExternalHostname becomes a DNS-resolved
//! ServiceEntry for its hostname, visible to the whole mesh. Its host is judged like a
//! ServiceEntry host, on its port, as exported everywhere.

use serde::Deserialize;

use super::{Context, Findings, Str, null_default};
use crate::policy::matcher::PortSet;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Spec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    external_hostname: ExternalHostname<'a>,
    #[serde(deserialize_with = "null_default")]
    port: BackendPort,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ExternalHostname<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    hostname: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BackendPort {
    port: i64,
}

pub(super) fn inspect(spec: &Spec<'_>, cx: &Context<'_>, out: &mut Findings<'_>) {
    let host = &spec.external_hostname.hostname;
    if host.is_empty() {
        return;
    }
    let ports: Vec<u16> = u16::try_from(spec.port.port).into_iter().collect();
    let ports = PortSet::new(ports);
    let path = || "spec.externalHostname.hostname".to_owned();
    out.host_ref(cx, path, host, Some(&ports), true);
}
