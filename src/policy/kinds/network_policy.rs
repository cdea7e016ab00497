//! Kubernetes NetworkPolicy. The platform relies on NetworkPolicy for what no proxy
//! sees (UDP, the proxy's own UID, init containers before capture), and policies are
//! additive: a tenant's own policy that allows egress to an address re-opens it for
//! the pods it selects. Every `ipBlock` a tenant allows egress to must therefore be
//! allowed (or inside the cluster), and a rule without `to` allows every address.
//! Pod and namespace selectors stay inside the cluster.

use ipnet::IpNet;
use serde::Deserialize;

use super::{Context, Findings, Str, null_default};
use crate::policy::decision::Code;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Spec<'a> {
    #[serde(borrow)]
    policy_types: Option<Vec<Str<'a>>>,
    #[serde(borrow, deserialize_with = "null_default")]
    egress: Vec<EgressRule<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EgressRule<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    to: Vec<Peer<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Peer<'a> {
    #[serde(borrow)]
    ip_block: Option<IpBlock<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IpBlock<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    cidr: Str<'a>,
}

/// Every address, as a rule without `to` allows.
const EVERYWHERE: [&str; 2] = ["0.0.0.0/0", "::/0"];

pub(super) fn inspect(spec: &Spec<'_>, cx: &Context<'_>, out: &mut Findings<'_>) {
    // Listed policy types decide; without them, egress rules make it an egress policy.
    if let Some(types) = &spec.policy_types
        && !types.iter().any(|t| &**t == "Egress")
    {
        return;
    }
    let everywhere: Vec<(&str, IpNet)> = EVERYWHERE
        .iter()
        .filter_map(|e| Some((*e, e.parse().ok()?)))
        .collect();
    for (i, rule) in spec.egress.iter().enumerate() {
        if !out.charge(1 + rule.to.len()) {
            return;
        }
        if rule.to.is_empty() {
            for (text, net) in &everywhere {
                out.net_ref(cx, || format!("spec.egress[{i}]"), text, *net, false);
            }
            continue;
        }
        for (j, peer) in rule.to.iter().enumerate() {
            let Some(block) = &peer.ip_block else {
                continue;
            };
            let path = || format!("spec.egress[{i}].to[{j}].ipBlock.cidr");
            match block.cidr.parse::<IpNet>() {
                Ok(net) => out.net_ref(cx, path, &block.cidr, net, false),
                Err(_) => out.record(
                    Code::InvalidSpec,
                    path,
                    &block.cidr,
                    "not a CIDR (the apiserver requires one)",
                ),
            }
        }
    }
}
