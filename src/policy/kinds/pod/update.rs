//! A Pod UPDATE (no subresource): what a running pod can still be changed in, judged
//! against the pod as it was admitted (`oldObject`).
//!
//! The apiserver lets an UPDATE change a running pod's container images, labels and
//! annotations (and a few scheduling fields). Capture is set up when the pod starts, so
//! most of these change nothing egress-guard judges. What does:
//! - an injected container's image: the kubelet restarts it with the new image, as the
//!   proxy's UID, which the capture rules let out (EG307 unless one of `proxyImages`);
//! - `sidecar.istio.io/status`: the record of which containers are the injector's,
//!   which ambient capture and egress-guard itself read later (EG304);
//! - `istio.io/dataplane-mode`: ambient capture follows the pod's label while it runs
//!   (EG304 for `none`, or for removing `ambient`);
//! - `proxy.istio.io/config`: the agent reads it from the pod's annotations when the
//!   proxy (re)starts, so a changed one is judged as at creation.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    DATAPLANE_MODE, GATEWAY_MANAGED, Identity, Meta, PROXY, PROXY_CONTAINERS, PROXY_UID, STATUS,
    proxy_config, with_defaults,
};
use crate::policy::decision::Code;
use crate::policy::judge::{Context, Findings};
use crate::policy::spec::{self, Str, Streamed, null_default};

/// The parts of a pod an UPDATE can change that are read here.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Images<'a> {
    #[serde(deserialize_with = "null_default")]
    security_context: Identity,
    #[serde(borrow)]
    containers: Streamed<'a, Image<'a>>,
    #[serde(borrow)]
    init_containers: Streamed<'a, Image<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Image<'a> {
    #[serde(borrow, default, deserialize_with = "null_default")]
    name: Str<'a>,
    #[serde(borrow, default, deserialize_with = "null_default")]
    image: Str<'a>,
    #[serde(default, deserialize_with = "null_default")]
    security_context: Option<Identity>,
}

type Pod<'a> = spec::Object<Images<'a>, super::Read>;

/// Judges a Pod UPDATE: the change from `old` to `new`.
pub(super) fn judge(new: &RawValue, old: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(n) = out.decoded::<Pod<'_>>(new.get()) else {
        return;
    };
    // The stored pod decoded when it was admitted; one that does not now is judged as
    // a pod without injected containers (every image change is then the tenant's).
    let o = spec::decode::<Pod<'_>>(old.get()).unwrap_or_default();
    status(&o.metadata, &n.metadata, out);
    let may_opt_out = cx.allowlist.may_opt_out(cx.namespace);
    if !may_opt_out {
        dataplane_mode(&o.metadata, &n.metadata, out);
    }
    let config = proxy_config::ANNOTATION;
    if o.metadata.annotations.get(config) != n.metadata.annotations.get(config) {
        proxy_config::judge_annotation(&n.metadata.annotations, &String::new, cx, out);
    }
    if may_opt_out {
        return;
    }
    // The containers that are the proxy's, as the pod was admitted with them: the ones
    // the injector listed, a gateway's proxy, and any that is named as the proxy's or
    // runs as its identity (the kubelet restarts it with the new image as that UID).
    let mut proxies = super::injected(&o.metadata);
    if o.metadata.labels.get(GATEWAY_MANAGED).is_some() && !proxies.contains(&PROXY) {
        proxies.push(PROXY);
    }
    let defaults = (
        o.spec.security_context.run_as_user,
        o.spec.security_context.run_as_group,
    );
    let is_proxy = |c: &Image<'_>| {
        let ids = c.security_context.as_ref();
        let (user, group) = with_defaults(
            (
                ids.and_then(|i| i.run_as_user),
                ids.and_then(|i| i.run_as_group),
            ),
            defaults,
        );
        proxies.contains(&&*c.name)
            || PROXY_CONTAINERS.contains(&&*c.name)
            || user == Some(PROXY_UID)
            || group == Some(PROXY_UID)
    };
    for (field, new_list, old_list) in [
        ("containers", &n.spec.containers, &o.spec.containers),
        (
            "initContainers",
            &n.spec.init_containers,
            &o.spec.init_containers,
        ),
    ] {
        let at = format!("spec.{field}");
        let mut before: Vec<(String, String)> = Vec::new();
        let _ = old_list.walk(&|| at.clone(), |_, c| {
            if is_proxy(&c) {
                before.push((c.name.to_string(), c.image.to_string()));
            }
            std::ops::ControlFlow::Continue(())
        });
        out.each(new_list, &at, |i, c, out| {
            if !out.charge(1 + c.name.len() + c.image.len()) {
                return;
            }
            let Some((_, was)) = before.iter().find(|(name, _)| **name == *c.name) else {
                return;
            };
            if *was == *c.image {
                return;
            }
            if image_allowed(&c.image, cx) {
                return;
            }
            out.record(
                Code::ProxyReplaced,
                || format!("{at}[{i}].image"),
                &*c.image,
                &format!(
                    "changes the image of the running pod's {} container: the kubelet restarts it with this image as the proxy, whose traffic the capture rules let through",
                    &*c.name
                ),
            );
        });
    }
}

/// True when the allowlist's `proxyImages` names `image`: an upgrade the platform
/// approved. Without `proxyImages` no image change of a running proxy is approved.
fn image_allowed(image: &str, cx: &Context<'_>) -> bool {
    let allowed = &cx.allowlist.proxy_images;
    !allowed.is_empty() && allowed.iter().any(|p| image.starts_with(&**p))
}

/// The injector's record, rewritten after admission.
fn status(old: &Meta, new: &Meta, out: &mut Findings<'_>) {
    let (was, is) = (old.annotations.get(STATUS), new.annotations.get(STATUS));
    if was != is {
        out.record(
            Code::SidecarDisabled,
            || format!("metadata.annotations[{STATUS}]"),
            is.unwrap_or_default(),
            "rewrites the injector's record of a running pod's proxy containers: only what the pod was admitted with says which containers are the proxy's",
        );
    }
}

/// Ambient capture follows the running pod's label.
fn dataplane_mode(old: &Meta, new: &Meta, out: &mut Findings<'_>) {
    let (was, is) = (
        old.labels.get(DATAPLANE_MODE),
        new.labels.get(DATAPLANE_MODE),
    );
    if was == is {
        return;
    }
    let why = match is {
        Some(v) if v.eq_ignore_ascii_case("none") => "takes the running pod out of ambient capture",
        None if was.is_some_and(|v| v == "ambient") => {
            "removes the label that put the running pod in ambient capture"
        }
        _ => return,
    };
    out.record(
        Code::SidecarDisabled,
        || format!("metadata.labels[{DATAPLANE_MODE}]"),
        is.unwrap_or_default(),
        why,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_approved_images_replace_a_running_proxy() {
        let none = crate::policy::allowlist::Allowlist::from_yaml("hosts: [api.github.com]")
            .unwrap_or_else(|e| panic!("{e}"));
        let cx = Context::new(&none, "team-a");
        assert!(!image_allowed("docker.io/istio/proxyv2:1.28.1", &cx));
        let listed = crate::policy::allowlist::Allowlist::from_yaml(
            "proxyImages: [\"docker.io/istio/proxyv2:\"]\nhosts: [api.github.com]",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cx = Context::new(&listed, "team-a");
        assert!(image_allowed("docker.io/istio/proxyv2:1.28.1", &cx));
        assert!(!image_allowed("registry.example.com/evil:1", &cx));
    }
}
