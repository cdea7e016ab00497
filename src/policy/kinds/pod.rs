//! Pods and the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets,
//! Jobs and CronJobs: whether the workload's traffic passes its sidecar at all.
//!
//! Each capture opt-out Istio offers is a way around every other check, so in a
//! namespace not granted `allowCaptureOptOut` they are denied: injection disabled, the
//! host network, excluded ranges, ports or interfaces, a narrowed include list,
//! interception mode NONE, injection templates without capture, an application
//! container running as the proxy's UID or GID (the capture rules let the proxy's own
//! traffic through by UID and GID), one that can rewrite the packet filter, and a proxy
//! replaced or pointed at another control plane. The validating webhook sees pods after
//! the injector: the containers it lists in `sidecar.istio.io/status` are the proxy's.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::proxy_config;
use super::{Context, Findings, Meta, Str, null_default};
use crate::policy::decision::Code;

/// The UID and GID Istio's capture rules exempt (`--uid-owner` / `--gid-owner`).
pub const PROXY_UID: i64 = 1337;
/// The containers the injector adds.
const PROXY_CONTAINERS: [&str; 3] = ["istio-proxy", "istio-init", "istio-validation"];

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct PodSpec<'a> {
    host_network: bool,
    #[serde(deserialize_with = "null_default")]
    security_context: Identity,
    #[serde(borrow, deserialize_with = "null_default")]
    containers: Vec<Container<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    init_containers: Vec<Container<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    ephemeral_containers: Vec<Container<'a>>,
}

/// The user and group a pod or container runs as.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Identity {
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Container<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    name: Str<'a>,
    #[serde(borrow)]
    image: Option<Str<'a>>,
    command: Option<IgnoredAny>,
    args: Option<IgnoredAny>,
    #[serde(borrow)]
    security_context: Option<SecurityContext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SecurityContext<'a> {
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    privileged: Option<bool>,
    #[serde(borrow)]
    capabilities: Option<Capabilities<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Capabilities<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    add: Vec<Str<'a>>,
}

/// A pod template: `spec.template` of the workload kinds.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Template<'a> {
    #[serde(deserialize_with = "null_default")]
    metadata: Meta,
    #[serde(borrow, deserialize_with = "null_default")]
    spec: PodSpec<'a>,
}

/// The `spec` of Deployment, StatefulSet, DaemonSet, ReplicaSet and Job.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WorkloadSpec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    template: Template<'a>,
}

/// The `spec` of a CronJob.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct CronJobSpec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    job_template: JobTemplate<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JobTemplate<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    spec: WorkloadSpec<'a>,
}

impl<'a> CronJobSpec<'a> {
    pub(super) fn template(&self) -> &Template<'a> {
        &self.job_template.spec.template
    }
}

impl<'a> WorkloadSpec<'a> {
    pub(super) fn template(&self) -> &Template<'a> {
        &self.template
    }
}

/// Where the pod being judged comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A pod as the apiserver is about to store it: after injection.
    Pod,
    /// A workload's template: before injection, which happens per pod.
    Template,
}

/// A pod.
pub(super) fn inspect_pod(
    meta: &Meta,
    spec: &PodSpec<'_>,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    judge(meta, spec, Source::Pod, &|| String::new(), cx, out);
}

/// A workload's pod template at `base` (`spec.template.` or
/// `spec.jobTemplate.spec.template.`).
pub(super) fn inspect_template(
    t: &Template<'_>,
    base: &str,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    judge(
        &t.metadata,
        &t.spec,
        Source::Template,
        &|| base.to_owned(),
        cx,
        out,
    );
}

fn judge(
    meta: &Meta,
    spec: &PodSpec<'_>,
    source: Source,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    // Telemetry and control-plane addresses are egress wherever the pod runs.
    proxy_config::inspect(&meta.annotations, base, cx, out);
    if cx.allowlist.may_opt_out(cx.namespace) {
        return;
    }
    if cx.ephemeral_only {
        containers(
            spec,
            "ephemeralContainers",
            &spec.ephemeral_containers,
            source,
            meta,
            base,
            out,
        );
        return;
    }
    metadata(meta, base, cx, out);
    if spec.host_network {
        out.violation(
            Code::SidecarDisabled,
            format!("{}spec.hostNetwork", base()),
            "true",
            "a pod on the host network gets no sidecar and no capture",
        );
    }
    for (field, list) in [
        ("initContainers", &spec.init_containers),
        ("containers", &spec.containers),
        ("ephemeralContainers", &spec.ephemeral_containers),
    ] {
        containers(spec, field, list, source, meta, base, out);
    }
    proxy_images(spec, source, meta, base, cx, out);
}

/// The labels and annotations that turn capture off or replace the proxy.
fn metadata(meta: &Meta, base: &dyn Fn() -> String, cx: &Context<'_>, out: &mut Findings<'_>) {
    let at = |field: &str, key: &str| format!("{}metadata.{field}[{key}]", base());
    // The label wins over the legacy annotation; only "false" disables injection.
    let inject_label = meta.labels.get(INJECT);
    let (field, inject) = match inject_label {
        Some(v) => ("labels", Some(v)),
        None => ("annotations", meta.annotations.get(INJECT)),
    };
    if inject == Some("false") {
        out.violation(
            Code::SidecarDisabled,
            at(field, INJECT),
            "false",
            "sidecar injection is disabled: the workload's traffic leaves without the proxy",
        );
    }
    if meta.labels.get(DATAPLANE_MODE) == Some("none") {
        out.violation(
            Code::SidecarDisabled,
            at("labels", DATAPLANE_MODE),
            "none",
            "the ambient data plane is turned off for this workload",
        );
    }
    let ann = &meta.annotations;
    if let Some(ranges) = ann.get(EXCLUDE_RANGES) {
        for range in ranges.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            if !out.charge(range.len()) {
                return;
            }
            let covered = range
                .parse::<ipnet::IpNet>()
                .is_ok_and(|n| cx.allowlist.net_allowed(cx.namespace, &n, cx.now));
            if !covered {
                out.violation(
                    Code::CaptureExcluded,
                    at("annotations", EXCLUDE_RANGES),
                    range,
                    "traffic to this range bypasses the sidecar; only allowed CIDRs and the cluster's networks may be excluded",
                );
            }
        }
    }
    for key in [EXCLUDE_PORTS, EXCLUDE_INTERFACES] {
        if let Some(v) = ann.get(key).filter(|v| !v.trim().is_empty()) {
            out.violation(
                Code::CaptureExcluded,
                at("annotations", key),
                v,
                "traffic on these bypasses the sidecar",
            );
        }
    }
    if let Some(v) = ann.get(INCLUDE_RANGES)
        && !captures_everything(v)
    {
        out.violation(
            Code::CaptureExcluded,
            at("annotations", INCLUDE_RANGES),
            v,
            "traffic outside these ranges bypasses the sidecar; use \"*\"",
        );
    }
    if ann.get(INTERCEPTION_MODE) == Some("NONE") {
        out.violation(
            Code::CaptureExcluded,
            at("annotations", INTERCEPTION_MODE),
            "NONE",
            "interception mode NONE installs no capture rules",
        );
    }
    if let Some(v) = ann.get(TEMPLATES)
        && v.split(',').map(str::trim).any(|t| t != "sidecar")
    {
        out.violation(
            Code::CaptureExcluded,
            at("annotations", TEMPLATES),
            v,
            "only the sidecar injection template captures the workload's traffic",
        );
    }
    for key in [PROXY_IMAGE, BOOTSTRAP_OVERRIDE] {
        if let Some(v) = ann.get(key) {
            out.violation(
                Code::ProxyReplaced,
                at("annotations", key),
                v,
                "replaces the proxy or its bootstrap, which then decides where traffic goes",
            );
        }
    }
    if let Some(v) = ann.get(OVERRIDES)
        && overrides_replace_proxy(v)
    {
        out.violation(
            Code::ProxyReplaced,
            at("annotations", OVERRIDES),
            v,
            "overrides the image, command or arguments of an injected container",
        );
    }
}

/// True when an `includeOutboundIPRanges` value still captures every address.
fn captures_everything(v: &str) -> bool {
    let ranges: Vec<&str> = v.split(',').map(str::trim).collect();
    ranges.contains(&"*") || (ranges.contains(&"0.0.0.0/0") && ranges.contains(&"::/0"))
}

/// True when a `sidecar.istio.io/overrides` value changes what an injected container
/// runs. The injector applies these on top of its template.
fn overrides_replace_proxy(v: &str) -> bool {
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct Overrides<'a> {
        #[serde(borrow)]
        containers: Vec<Container<'a>>,
        #[serde(borrow)]
        init_containers: Vec<Container<'a>>,
    }
    match serde_json::from_str::<Overrides<'_>>(v) {
        Ok(o) => o
            .containers
            .iter()
            .chain(&o.init_containers)
            .any(replaces_what_runs),
        // The injector refuses what it cannot parse; nothing was overridden.
        Err(_) => false,
    }
}

/// An image other than the injector's `auto`, or a command or arguments.
fn replaces_what_runs(c: &Container<'_>) -> bool {
    c.image.as_ref().is_some_and(|i| **i != *"auto") || c.command.is_some() || c.args.is_some()
}

/// The containers the injector added, as its status annotation lists them; only the
/// proxy's own names count.
fn injected(meta: &Meta, source: Source) -> Vec<&str> {
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct Status<'s> {
        #[serde(borrow)]
        containers: Vec<&'s str>,
        #[serde(borrow)]
        init_containers: Vec<&'s str>,
    }
    if source == Source::Template {
        return Vec::new();
    }
    let Some(status) = meta.annotations.get(STATUS) else {
        return Vec::new();
    };
    serde_json::from_str::<Status<'_>>(status)
        .map(|s| {
            s.containers
                .into_iter()
                .chain(s.init_containers)
                .filter(|n| PROXY_CONTAINERS.contains(n))
                .collect()
        })
        .unwrap_or_default()
}

/// Each container's identity and privileges.
fn containers(
    spec: &PodSpec<'_>,
    field: &str,
    list: &[Container<'_>],
    source: Source,
    meta: &Meta,
    base: &dyn Fn() -> String,
    out: &mut Findings<'_>,
) {
    let injected = injected(meta, source);
    for (i, c) in list.iter().enumerate() {
        if !out.charge(1 + c.name.len()) {
            return;
        }
        let path = || format!("{}spec.{field}[{i}]", base());
        let is_proxy = injected.contains(&&*c.name);
        // In a template, a container named like an injected one customises it: the
        // injector merges its fields into the real proxy.
        if source == Source::Template && PROXY_CONTAINERS.contains(&&*c.name) {
            if replaces_what_runs(c) {
                out.violation(
                    Code::ProxyReplaced,
                    path(),
                    &c.name,
                    "sets the image, command or arguments of a container the injector adds",
                );
            }
            continue;
        }
        if is_proxy {
            continue;
        }
        let sc = c.security_context.as_ref();
        let user = sc
            .and_then(|s| s.run_as_user)
            .or(spec.security_context.run_as_user);
        let group = sc
            .and_then(|s| s.run_as_group)
            .or(spec.security_context.run_as_group);
        for (what, id) in [("runAsUser", user), ("runAsGroup", group)] {
            if id == Some(PROXY_UID) {
                out.violation(
                    Code::ProxyIdentity,
                    format!("{}.securityContext.{what}", path()),
                    &PROXY_UID.to_string(),
                    "runs as the proxy's identity, whose traffic the capture rules let through",
                );
            }
        }
        let privileged = sc.and_then(|s| s.privileged) == Some(true);
        let net_admin = sc
            .and_then(|s| s.capabilities.as_ref())
            .is_some_and(|caps| {
                caps.add.iter().any(|c| {
                    let c = c.trim_start_matches("CAP_");
                    c.eq_ignore_ascii_case("NET_ADMIN") || c.eq_ignore_ascii_case("ALL")
                })
            });
        if privileged || net_admin {
            out.violation(
                Code::NetAdmin,
                format!("{}.securityContext", path()),
                &c.name,
                "can rewrite the pod's packet filter and remove the capture rules",
            );
        }
    }
}

/// With `proxyImages` configured, the injected containers of a pod must run one of
/// them: a pod can otherwise bring its own "istio-proxy".
fn proxy_images(
    spec: &PodSpec<'_>,
    source: Source,
    meta: &Meta,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let allowed = &cx.allowlist.proxy_images;
    if allowed.is_empty() || source == Source::Template {
        return;
    }
    let injected = injected(meta, source);
    for (field, list) in [
        ("initContainers", &spec.init_containers),
        ("containers", &spec.containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            if !injected.contains(&&*c.name) {
                continue;
            }
            let image = c.image.as_deref().unwrap_or_default();
            if !allowed.iter().any(|p| image.starts_with(&**p)) {
                out.violation(
                    Code::ProxyReplaced,
                    format!("{}spec.{field}[{i}].image", base()),
                    image,
                    "not one of the allowlist's proxyImages",
                );
            }
        }
    }
}

const INJECT: &str = "sidecar.istio.io/inject";
const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
const STATUS: &str = "sidecar.istio.io/status";
const EXCLUDE_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
const EXCLUDE_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
const EXCLUDE_INTERFACES: &str = "traffic.sidecar.istio.io/excludeInterfaces";
const INCLUDE_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
const TEMPLATES: &str = "inject.istio.io/templates";
const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
const BOOTSTRAP_OVERRIDE: &str = "sidecar.istio.io/bootstrapOverride";
const OVERRIDES: &str = "sidecar.istio.io/overrides";
