//! Gateway: server hosts are egress only on egress gateways (selector matches one of the
//! allowlist's `egressGatewaySelectors`). Validity mirrors Istio's `validateGateway` /
//! `validateServer`.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{Context, Findings, null_default};
use crate::policy::decision::Code;
use crate::policy::istio;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Spec {
    #[serde(deserialize_with = "null_default")]
    selector: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    servers: Vec<Server>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Server {
    #[serde(deserialize_with = "null_default")]
    hosts: Vec<String>,
    port: Option<Port>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Port {
    number: i64,
    #[serde(deserialize_with = "null_default")]
    name: String,
    #[serde(deserialize_with = "null_default")]
    protocol: String,
}

pub(super) fn inspect(spec: &Spec, cx: &Context<'_>, out: &mut Findings) {
    let egress = cx.allowlist.is_egress_selector(&spec.selector);
    if spec.servers.is_empty() {
        out.violation(
            Code::MissingField,
            "spec.servers",
            "",
            "gateway must have at least one server",
        );
    }
    let mut port_names = HashSet::new();
    for (i, server) in spec.servers.iter().enumerate() {
        let base = format!("spec.servers[{i}]");
        match &server.port {
            None => out.violation(
                Code::MissingField,
                format!("{base}.port"),
                "",
                "server port is required",
            ),
            Some(p) => {
                out.rule(
                    || format!("{base}.port.number"),
                    &p.number.to_string(),
                    istio::port_number(p.number),
                );
                if out
                    .rule(
                        || format!("{base}.port.name"),
                        &p.name,
                        istio::port_name(&p.name),
                    )
                    .is_some()
                    && !port_names.insert(p.name.as_str())
                {
                    out.violation(
                        Code::DuplicatePort,
                        format!("{base}.port.name"),
                        &p.name,
                        "port names must be unique across servers",
                    );
                }
                out.rule(
                    || format!("{base}.port.protocol"),
                    &p.protocol,
                    istio::protocol(&p.protocol),
                );
            }
        }
        if server.hosts.is_empty() {
            out.violation(
                Code::MissingField,
                format!("{base}.hosts"),
                "",
                "server must have at least one host",
            );
        }
        for (j, raw) in server.hosts.iter().enumerate() {
            let path = format!("{base}.hosts[{j}]");
            let (ns, name) = match raw.split_once('/') {
                Some((ns, name)) => (Some(ns), name),
                None => (None, raw.as_str()),
            };
            if let Some(ns) = ns
                && out
                    .rule(
                        || path.clone(),
                        raw,
                        istio::host_namespace(ns, Code::InvalidGatewayRef),
                    )
                    .is_none()
            {
                continue;
            }
            let Some(host) = out.rule(|| path.clone(), raw, istio::wildcard_domain(name)) else {
                continue;
            };
            // Istio rejects partial wildcards in Gateway hosts outright.
            out.partial_wildcard(cx, &path, raw, &host, true);
            if egress {
                out.host_ref(cx, path, name, host, &[], false);
            }
        }
    }
}
