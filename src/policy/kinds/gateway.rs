//! Gateway: server hosts are egress only on egress gateways, decided by whether the
//! selector selects the egress gateway pods (the allowlist's `egressGatewayLabels`).
//! Validity mirrors Istio's `validateGateway` / `validateServer`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::decision::Code;
use crate::policy::istio;
use crate::policy::judge::{Context, EgressRef, Findings, Reach, is_ip_literal};
use crate::policy::review_hash::Set;
use crate::policy::spec::{Object, Port, Str, Streamed, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Spec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    selector: BTreeMap<Str<'a>, Str<'a>>,
    // Judged one at a time (see `Streamed`): a server list is as long as the body allows.
    #[serde(borrow)]
    servers: Streamed<'a, Server<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Server<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    hosts: Vec<Str<'a>>,
    #[serde(borrow)]
    port: Option<Port<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    bind: Str<'a>,
}

pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, .. }) = out.decoded::<Object<Spec<'_>>>(object.get()) else {
        return;
    };
    let selector = spec.selector.iter().map(|(k, v)| (&**k, &**v));
    let egress = cx.allowlist.is_egress_selector(selector);
    if spec.servers.is_empty() {
        out.violation(
            Code::MissingField,
            "spec.servers",
            "",
            "gateway must have at least one server",
        );
    }
    let mut port_names: Set<Cow<'_, str>> = Set::default();
    out.each(&spec.servers, "spec.servers", |i, server, out| {
        if !out.charge(1 + server.bind.len()) {
            return;
        }
        let base = || format!("spec.servers[{i}]");
        match &server.port {
            None => out.record(
                Code::MissingField,
                || format!("{}.port", base()),
                "",
                "server port is required",
            ),
            Some(p) => {
                server_port(&base, p, &server.bind, out);
                if !port_names.insert(p.name.0.clone()) {
                    out.record(
                        Code::DuplicatePort,
                        || format!("{}.port.name", base()),
                        &p.name,
                        "port names must be unique across servers",
                    );
                }
            }
        }
        server_bind(&base, &server, out);
        if server.hosts.is_empty() {
            out.record(
                Code::MissingField,
                || format!("{}.hosts", base()),
                "",
                "server must have at least one host",
            );
        }
        for (j, raw) in server.hosts.iter().enumerate() {
            if !out.charge(raw.len()) {
                return;
            }
            let path = || format!("{}.hosts[{j}]", base());
            let checked = istio::gateway_server_host(raw);
            // A partial wildcard is denied but still a host the allowlist must cover.
            let referable = matches!(checked, Ok(()) | Err((Code::PartialWildcard, _)));
            out.rule(path, raw, checked);
            // Egress is the host part, without the `namespace/` prefix.
            let name = raw.split_once('/').map_or(&**raw, |(_, h)| h);
            if egress && (referable || is_ip_literal(name)) {
                out.egress(cx, EgressRef::new(&path, name, Reach::Dialled));
            }
        }
    });
}

/// A server port (`validateServerPort`): a known protocol, a name, a number in 1–65535
/// unless the server binds a unix socket, and no `targetPort`.
fn server_port(base: &dyn Fn() -> String, p: &Port<'_>, bind: &str, out: &mut Findings<'_>) {
    if p.number > 0 || !bind.starts_with(istio::UNIX_PREFIX) {
        out.port(|| format!("{}.port.number", base()), p.number);
    }
    out.rule(
        || format!("{}.port.name", base()),
        &p.name,
        istio::server_port_name(&p.name),
    );
    out.rule(
        || format!("{}.port.protocol", base()),
        &p.protocol,
        istio::server_protocol(&p.protocol),
    );
    if let Some(tp) = p.target_port.filter(|tp| *tp > 0) {
        out.record(
            Code::InvalidPort,
            || format!("{}.port.targetPort", base()),
            tp,
            "targetPort has no impact on Gateways",
        );
    }
}

/// `bind` (`validateServerBind`): a unix socket path with port number 0, or an IP.
fn server_bind(base: &dyn Fn() -> String, server: &Server<'_>, out: &mut Findings<'_>) {
    let path = || format!("{}.bind", base());
    let number = server.port.as_ref().map_or(0, |p| p.number);
    out.rules(path, &server.bind, istio::server_bind(&server.bind, number));
}
