//! Gateway API XBackend (`gateway.networking.x-k8s.io`): with istiod's alpha Gateway
//! API support on, an XBackend of type ExternalHostname becomes a DNS-resolved
//! ServiceEntry for its hostname, visible to the whole mesh. Its host is judged like a
//! ServiceEntry host, on its port, as exported everywhere.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::judge::{Context, EgressRef, Findings, Reach};
use crate::policy::matcher::PortSet;
use crate::policy::spec::{Object, Str, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec<'a> {
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

pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, .. }) = out.decoded::<Object<Spec<'_>>>(object.get()) else {
        return;
    };
    let host = &spec.external_hostname.hostname;
    if host.is_empty() {
        return;
    }
    let ports: Vec<u16> = u16::try_from(spec.port.port).into_iter().collect();
    let ports = PortSet::new(ports);
    let path = || "spec.externalHostname.hostname".to_owned();
    out.egress(
        cx,
        EgressRef::new(&path, host, Reach::Dialled)
            .on(Some(&ports))
            .exported(true),
    );
}
