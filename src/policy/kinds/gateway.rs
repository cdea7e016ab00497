//! Gateway: server hosts are egress only on egress gateways (selector matches one of the
//! allowlist's `egressGatewaySelectors`). Validity mirrors Istio's `validateGateway` /
//! `validateServer`.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{Context, Findings, Port, is_ip_literal, null_default};
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
    #[serde(deserialize_with = "null_default")]
    bind: String,
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
                server_port(&base, p, &server.bind, out);
                if !port_names.insert(p.name.as_str()) {
                    out.violation(
                        Code::DuplicatePort,
                        format!("{base}.port.name"),
                        &p.name,
                        "port names must be unique across servers",
                    );
                }
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
            let checked = istio::gateway_server_host(raw);
            // A partial wildcard is denied but still a host the allowlist must cover.
            let referable = matches!(checked, Ok(()) | Err((Code::PartialWildcard, _)));
            out.rule(|| path.clone(), raw, checked);
            // Egress is the host part, without the `namespace/` prefix.
            let name = raw.split_once('/').map_or(raw.as_str(), |(_, h)| h);
            if egress && (referable || is_ip_literal(name)) {
                out.host_ref(cx, path, name, &[], false);
            }
        }
    }
}

/// A server port (`validateServerPort`): a known protocol, a name, and a number in
/// 1–65535 unless the server binds a unix socket.
fn server_port(base: &str, p: &Port, bind: &str, out: &mut Findings) {
    if p.number > 0 || !bind.starts_with(istio::UNIX_PREFIX) {
        out.rule(
            || format!("{base}.port.number"),
            &p.number.to_string(),
            istio::port_number(p.number),
        );
    }
    out.rule(
        || format!("{base}.port.name"),
        &p.name,
        istio::server_port_name(&p.name),
    );
    out.rule(
        || format!("{base}.port.protocol"),
        &p.protocol,
        istio::server_protocol(&p.protocol),
    );
}
