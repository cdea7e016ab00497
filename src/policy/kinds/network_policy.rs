//! Kubernetes NetworkPolicy. The platform relies on NetworkPolicy for what no proxy
//! sees (UDP, the proxy's own UID, init containers before capture), and policies are
//! additive: a tenant's own policy that allows egress to an address re-opens it for
//! the pods it selects. Every `ipBlock` a tenant allows egress to must therefore be
//! allowed (or inside the cluster), and a rule without `to` allows every address.
//! Pod and namespace selectors stay inside the cluster.

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::decision::Code;
use crate::policy::judge::{Context, EgressRef, Findings, Reach};
use crate::policy::spec::{Object, Str, Streamed, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec<'a> {
    #[serde(borrow)]
    policy_types: Option<Vec<Str<'a>>>,
    // Rules and peers are judged one at a time: a list as long as the body allows is
    // not a struct per element.
    #[serde(borrow)]
    egress: Streamed<'a, EgressRule<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EgressRule<'a> {
    #[serde(borrow)]
    to: Streamed<'a, Peer<'a>>,
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

/// The verdict of a rule without `to`, to repeat: the violations kept (code, value,
/// message) and how many past the kept hundred were only counted.
type Repeat = (Vec<(Code, String, String)>, usize);

/// Every address, as a rule without `to` allows.
const EVERYWHERE: [&str; 2] = ["0.0.0.0/0", "::/0"];

pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    // An UPDATE may not weaken the platform's backstop, whatever the new rules allow.
    if let Some(old) = cx.old {
        judge_backstop(old, Some(object), cx, out);
    }
    let Some(Object { spec, .. }) = out.decoded::<Object<Spec<'_>>>(object.get()) else {
        return;
    };
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
    // A rule without `to` gets the same verdict each time: judged for the first, then
    // repeated (its violations, or the count of those past the kept hundred).
    let mut open: Option<Repeat> = None;
    out.each(&spec.egress, "spec.egress", |i, rule, out| {
        if !out.charge(1) {
            return;
        }
        let at = || format!("spec.egress[{i}]");
        if rule.to.is_empty() {
            match &open {
                Some((kept, omitted)) => {
                    for (code, value, message) in kept {
                        out.record(*code, at, value, message);
                    }
                    out.omit_many(*omitted);
                }
                None => {
                    let before = (out.violations.len(), out.omitted);
                    for (text, net) in &everywhere {
                        out.egress(cx, EgressRef::new(&at, text, Reach::Net(*net)));
                    }
                    let kept = out.violations.get(before.0..).unwrap_or_default();
                    let kept = kept
                        .iter()
                        .map(|v| (v.code, v.value.clone(), v.message.clone()))
                        .collect();
                    open = Some((kept, out.omitted - before.1));
                }
            }
            return;
        }
        let to = format!("spec.egress[{i}].to");
        out.each(&rule.to, &to, |j, peer, out| {
            if !out.charge(1) {
                return;
            }
            let Some(block) = &peer.ip_block else {
                return;
            };
            if !out.charge(block.cidr.len()) {
                return;
            }
            let path = || format!("{to}[{j}].ipBlock.cidr");
            match block.cidr.parse::<IpNet>() {
                Ok(net) => {
                    out.egress(cx, EgressRef::new(&path, &block.cidr, Reach::Net(net)));
                }
                Err(_) => out.record(
                    Code::InvalidSpec,
                    path,
                    &*block.cidr,
                    "not a CIDR (the apiserver requires one)",
                ),
            }
        });
    });
}

/// The label that marks the platform's backstop NetworkPolicy in a tenant namespace
/// (`deploy/networkpolicy/tenant/`).
pub(crate) const BACKSTOP: &str = "egress-guard.io/backstop";

/// The backstop's labels, and its spec as written, for comparing two versions.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Backstop<'a> {
    #[serde(deserialize_with = "null_default")]
    metadata: crate::policy::spec::Meta<BackstopKeys>,
    #[serde(borrow)]
    spec: Option<&'a RawValue>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BackstopKeys;

impl crate::policy::spec::Keys for BackstopKeys {
    const KEYS: &'static [&'static str] = &[BACKSTOP];
}

/// An UPDATE (`new` is `Some`) or DELETE (`None`) of the stored policy `old`: the
/// backstop may be changed only by the allowlist's `trustedWriters` (the platform's
/// own deployer). An edit that leaves its spec and its label as they were passes.
pub(crate) fn judge_backstop(
    old: &RawValue,
    new: Option<&RawValue>,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    if cx.trusted_writer {
        return;
    }
    let Ok(was) = crate::policy::spec::decode::<Backstop<'_>>(old.get()) else {
        return;
    };
    let Some(label) = was.metadata.labels.get(BACKSTOP) else {
        return;
    };
    let why = match new {
        None => "deletes the platform's backstop NetworkPolicy, which limits what no proxy sees",
        Some(new) => {
            let Some(is) = out.decoded::<Backstop<'_>>(new.get()) else {
                return;
            };
            let same_spec = match (was.spec, is.spec) {
                (Some(a), Some(b)) => {
                    a.get() == b.get()
                        || serde_json::from_str::<serde_json::Value>(a.get()).ok()
                            == serde_json::from_str::<serde_json::Value>(b.get()).ok()
                }
                (a, b) => a.is_none() && b.is_none(),
            };
            if same_spec && is.metadata.labels.get(BACKSTOP) == Some(label) {
                return;
            }
            "changes the platform's backstop NetworkPolicy, which limits what no proxy sees"
        }
    };
    out.record(
        Code::BackstopChanged,
        || format!("metadata.labels[{BACKSTOP}]"),
        label,
        &format!("{why}: only the allowlist's trustedWriters may"),
    );
}
