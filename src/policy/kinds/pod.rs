//! Pods and the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets,
//! Jobs and CronJobs: whether the workload's traffic passes its sidecar at all.
//!
//! Each capture opt-out Istio offers is a way around every other check, so in a
//! namespace not granted `allowCaptureOptOut` they are denied: injection disabled, the
//! host network, excluded ranges, ports or interfaces, a narrowed include list,
//! interception mode NONE, injection templates without capture, an application
//! container running as the proxy's UID or GID (the capture rules let the proxy's own
//! traffic through by UID and GID), one that can rewrite the packet filter, and a proxy
//! replaced or pointed at another control plane, and init containers that run before
//! the capture rules exist. The validating webhook sees pods after the injector: the
//! containers it lists in `sidecar.istio.io/status` are the proxy's.
//!
//! The pod's resolver and `/etc/hosts` are the proxy's too, so `dnsConfig` nameservers
//! and `hostAliases` addresses are egress wherever the pod runs.
//!
//! Istio's Gateway API controller writes gateway Deployments with injection off and its
//! own `istio-proxy`; written by a trusted writer and labelled as managed, that proxy
//! is the gateway's, not a tenant's opt-out.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::proxy_config;
use super::{Context, Findings, Meta, Str, kube_ip, null_default};
use crate::policy::allowlist::Disposition;
use crate::policy::decision::Code;
use crate::policy::matcher::PortSet;

/// The UID and GID Istio's capture rules exempt (`--uid-owner` / `--gid-owner`).
pub const PROXY_UID: i64 = 1337;
/// The containers the injector adds.
const PROXY_CONTAINERS: [&str; 3] = [PROXY, INIT, VALIDATION];
const PROXY: &str = "istio-proxy";
/// Installs the capture rules, as an init container (without the CNI plugin).
const INIT: &str = "istio-init";
/// Checks the rules the CNI plugin installed before any container ran.
const VALIDATION: &str = "istio-validation";
/// DNS, as a nameserver is reached.
const DNS_PORT: u16 = 53;

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
    #[serde(borrow, deserialize_with = "null_default")]
    dns_config: DnsConfig<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    host_aliases: Vec<HostAlias<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DnsConfig<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    nameservers: Vec<Str<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    searches: Vec<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HostAlias<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    ip: Str<'a>,
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
    #[serde(borrow, deserialize_with = "null_default")]
    env: Vec<EnvVar<'a>>,
    env_from: Option<IgnoredAny>,
    volume_mounts: Option<IgnoredAny>,
    working_dir: Option<IgnoredAny>,
    lifecycle: Option<IgnoredAny>,
    liveness_probe: Option<Probe>,
    readiness_probe: Option<Probe>,
    startup_probe: Option<Probe>,
    #[serde(borrow)]
    security_context: Option<SecurityContext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EnvVar<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    name: Str<'a>,
}

/// Only whether it runs a command in the container matters.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Probe {
    exec: Option<IgnoredAny>,
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
    let pod = PodView::new(meta, spec, source, cx);
    if cx.ephemeral_only {
        if !cx.allowlist.may_opt_out(cx.namespace) {
            let list = &spec.ephemeral_containers;
            containers(&pod, "ephemeralContainers", list, base, out);
        }
        return;
    }
    resolver(spec, base, cx, out);
    if cx.allowlist.may_opt_out(cx.namespace) {
        return;
    }
    metadata(meta, pod.gateway, base, cx, out);
    forged_status(meta, spec, pod.source, base, out);
    if spec.host_network {
        out.record(
            Code::SidecarDisabled,
            || format!("{}spec.hostNetwork", base()),
            "true",
            "a pod on the host network gets no sidecar and no capture",
        );
    }
    for (field, list) in [
        ("initContainers", &spec.init_containers),
        ("containers", &spec.containers),
        ("ephemeralContainers", &spec.ephemeral_containers),
    ] {
        containers(&pod, field, list, base, out);
    }
    before_capture(&pod, spec, meta, base, cx, out);
    proxy_images(&pod, spec, base, cx, out);
}

/// What the checks need to know about the pod beyond one container.
struct PodView<'m> {
    source: Source,
    /// The containers the injector added (pods only).
    injected: Vec<&'m str>,
    /// A gateway Istio's Gateway API controller deployed: its `istio-proxy` is the
    /// gateway's proxy and injection is off by design.
    gateway: bool,
    /// The pod's own user and group defaults.
    defaults: (Option<i64>, Option<i64>),
    /// The users and groups the capture rules let through: the proxy's.
    proxy_users: Vec<i64>,
    proxy_groups: Vec<i64>,
}

impl<'m> PodView<'m> {
    fn new(meta: &'m Meta, spec: &PodSpec<'_>, source: Source, cx: &Context<'_>) -> Self {
        let injected = injected(meta, source);
        let gateway = cx.trusted_writer && meta.labels.get(GATEWAY_MANAGED).is_some();
        let defaults = (
            spec.security_context.run_as_user,
            spec.security_context.run_as_group,
        );
        let (mut proxy_users, mut proxy_groups) = (vec![PROXY_UID], vec![PROXY_UID]);
        // The injector runs the proxy, and exempts it from capture, as the UID and GID
        // it picked (on OpenShift the top of the namespace's range, not 1337).
        for c in spec.containers.iter().chain(&spec.init_containers) {
            if &*c.name == PROXY && injected.contains(&PROXY) {
                let (user, group) = identity(c, defaults);
                proxy_users.extend(user);
                proxy_groups.extend(group);
            }
        }
        PodView {
            source,
            injected,
            gateway,
            defaults,
            proxy_users,
            proxy_groups,
        }
    }

    /// True for a container that is the proxy (or its init containers), not the
    /// workload's.
    fn is_proxy(&self, name: &str) -> bool {
        self.injected.contains(&name) || (self.gateway && name == PROXY)
    }
}

/// A container's effective user and group.
fn identity(c: &Container<'_>, defaults: (Option<i64>, Option<i64>)) -> (Option<i64>, Option<i64>) {
    let sc = c.security_context.as_ref();
    (
        sc.and_then(|s| s.run_as_user).or(defaults.0),
        sc.and_then(|s| s.run_as_group).or(defaults.1),
    )
}

/// The pod's resolver, which the proxy uses for the hosts it sends approved traffic to:
/// a nameserver answers them with any address (only the cluster DNS, `clusterDns`, is
/// trusted inside the cluster: any pod can serve DNS behind a cluster IP); a search
/// domain is tried first for every name (`ndots:5`), so it is judged as a wildcard over
/// its names; a `hostAliases` entry is `/etc/hosts` (loopback stays in the pod).
fn resolver(
    spec: &PodSpec<'_>,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let dns = PortSet::new(vec![DNS_PORT]);
    for (i, ns) in spec.dns_config.nameservers.iter().enumerate() {
        let path = || format!("{}spec.dnsConfig.nameservers[{i}]", base());
        match kube_ip(ns) {
            Some(ip) if cx.allowlist.cluster_dns.contains(&ip) => {}
            Some(ip) if cx.allowlist.in_cluster(&ip.into()) => out.record(
                Code::AddressNotAllowed,
                path,
                ns,
                "an in-cluster nameserver other than the cluster DNS (clusterDns) may be any pod's resolver, and answers the proxy's lookups",
            ),
            Some(ip) => out.net_ref(cx, path, ns, ip.into(), false),
            None => {
                out.host_ref(cx, path, ns, Some(&dns), false);
            }
        }
    }
    for (i, domain) in spec.dns_config.searches.iter().enumerate() {
        if !out.charge(domain.len()) {
            return;
        }
        let domain = domain.trim_end_matches('.');
        if domain.is_empty() {
            continue;
        }
        let path = || format!("{}spec.dnsConfig.searches[{i}]", base());
        out.host_ref(cx, path, &format!("*.{domain}"), None, false);
    }
    for (i, alias) in spec.host_aliases.iter().enumerate() {
        let path = || format!("{}spec.hostAliases[{i}].ip", base());
        match kube_ip(&alias.ip) {
            Some(ip) if ip.is_loopback() => {}
            Some(ip) => out.net_ref(cx, path, &alias.ip, ip.into(), false),
            None => {
                out.host_ref(cx, path, &alias.ip, None, false);
            }
        }
    }
}

/// The labels and annotations that turn capture off or replace the proxy.
fn metadata(
    meta: &Meta,
    gateway: bool,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let at = |field: &str, key: &str| format!("{}metadata.{field}[{key}]", base());
    // The label wins over the legacy annotation; only "false" disables injection.
    let inject_label = meta.labels.get(INJECT);
    let (field, inject) = match inject_label {
        Some(v) => ("labels", Some(v)),
        None => ("annotations", meta.annotations.get(INJECT)),
    };
    if inject == Some("false") && !gateway {
        out.violation(
            Code::SidecarDisabled,
            at(field, INJECT),
            "false",
            "sidecar injection is disabled: the workload's traffic leaves without the proxy",
        );
    }
    if meta.labels.get(DATAPLANE_MODE) == Some("none") && !gateway {
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
    if let Some(v) = ann.get(TEMPLATES) {
        let known = &cx.allowlist.injection_templates;
        if v.split(',')
            .map(str::trim)
            .any(|t| !known.iter().any(|k| **k == *t))
        {
            out.violation(
                Code::CaptureExcluded,
                at("annotations", TEMPLATES),
                v,
                "names an injection template that is not one of the allowlist's injectionTemplates, which capture the workload's traffic",
            );
        }
    }
    for key in [PROXY_IMAGE, BOOTSTRAP_OVERRIDE, USER_VOLUME_MOUNT] {
        if let Some(v) = ann.get(key).filter(|v| !is_empty_json(v)) {
            out.violation(
                Code::ProxyReplaced,
                at("annotations", key),
                v,
                "replaces the proxy, its bootstrap or the files it reads, which then decide where traffic goes",
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
            "overrides what an injected container runs, its environment or its files",
        );
    }
}

/// `sidecar.istio.io/status` is the injector's record that it added the proxy. Ambient
/// capture skips any pod that carries it, as a sidecar pod: on a pod without the
/// proxy it claims, or in a template (the injector writes it on pods, never on
/// templates), it takes the workload out of both data planes.
fn forged_status(
    meta: &Meta,
    spec: &PodSpec<'_>,
    source: Source,
    base: &dyn Fn() -> String,
    out: &mut Findings<'_>,
) {
    let Some(status) = meta.annotations.get(STATUS) else {
        return;
    };
    let has_proxy = spec
        .containers
        .iter()
        .chain(&spec.init_containers)
        .any(|c| &*c.name == PROXY);
    if source == Source::Template || !has_proxy {
        out.record(
            Code::SidecarDisabled,
            || format!("{}metadata.annotations[{STATUS}]", base()),
            status,
            "claims an injected sidecar the pod does not have: ambient capture skips it, and no sidecar captures it",
        );
    }
}

/// An annotation value that sets nothing: empty, `{}` or `[]`.
fn is_empty_json(v: &str) -> bool {
    matches!(v.trim(), "" | "{}" | "[]")
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

/// Whether a container merged over an injected one changes what it runs, as whom, with
/// which files or environment: an image other than the injector's `auto`, a command,
/// arguments, hooks or exec probes (run as the proxy, whose traffic is not captured),
/// environment beyond node metadata (`istio-iptables` and `pilot-agent` read their
/// settings from it), mounts over its files, or another identity or privileges.
/// Resources and ports are left to the workload.
fn replaces_what_runs(c: &Container<'_>) -> bool {
    let probes = [&c.liveness_probe, &c.readiness_probe, &c.startup_probe];
    c.image.as_ref().is_some_and(|i| **i != *"auto")
        || c.command.is_some()
        || c.args.is_some()
        || c.env.iter().any(|e| !e.name.starts_with("ISTIO_META_"))
        || c.env_from.is_some()
        || c.volume_mounts.is_some()
        || c.working_dir.is_some()
        || c.lifecycle.is_some()
        || probes
            .iter()
            .any(|p| p.as_ref().is_some_and(|p| p.exec.is_some()))
        || c.security_context.as_ref().is_some_and(|sc| {
            sc.run_as_user.is_some()
                || sc.run_as_group.is_some()
                || sc.privileged == Some(true)
                || sc
                    .capabilities
                    .as_ref()
                    .is_some_and(|caps| !caps.add.is_empty())
        })
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
    // At most the three proxy names, each once, however long the lists are.
    serde_json::from_str::<Status<'_>>(status)
        .map(|s| {
            let listed =
                |name: &&str| s.containers.contains(name) || s.init_containers.contains(name);
            PROXY_CONTAINERS.into_iter().filter(listed).collect()
        })
        .unwrap_or_default()
}

/// Each container's identity and privileges.
fn containers(
    pod: &PodView<'_>,
    field: &str,
    list: &[Container<'_>],
    base: &dyn Fn() -> String,
    out: &mut Findings<'_>,
) {
    for (i, c) in list.iter().enumerate() {
        if !out.charge(1 + c.name.len()) {
            return;
        }
        let path = || format!("{}spec.{field}[{i}]", base());
        if pod.is_proxy(&c.name) {
            continue;
        }
        // A gateway's pod has injection off: only its proxy may run there (istiod merges
        // a tenant's parametersRef ConfigMap into the Deployment it writes).
        if pod.gateway {
            out.record(
                Code::SidecarDisabled,
                path,
                &c.name,
                "runs in a gateway pod, which has no sidecar capture: only the gateway's proxy may run there",
            );
            continue;
        }
        // In a template, a container named like an injected one customises it: the
        // injector merges its fields into the real one.
        if pod.source == Source::Template && PROXY_CONTAINERS.contains(&&*c.name) {
            if replaces_what_runs(c) {
                let (code, what) = if &*c.name == PROXY {
                    (Code::ProxyReplaced, "the proxy")
                } else {
                    (
                        Code::CaptureExcluded,
                        "the container that installs the capture rules",
                    )
                };
                out.record(
                    code,
                    path,
                    &c.name,
                    &format!("changes what {what} runs, its environment, files or identity (the injector merges this container into its own)"),
                );
            }
            continue;
        }
        let (user, group) = identity(c, pod.defaults);
        for (what, id, exempt) in [
            ("runAsUser", user, &pod.proxy_users),
            ("runAsGroup", group, &pod.proxy_groups),
        ] {
            if let Some(id) = id.filter(|id| exempt.contains(id)) {
                out.record(
                    Code::ProxyIdentity,
                    || format!("{}.securityContext.{what}", path()),
                    id,
                    "runs as the proxy's identity, whose traffic the capture rules let through",
                );
            }
        }
        let sc = c.security_context.as_ref();
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
            out.record(
                Code::NetAdmin,
                || format!("{}.securityContext", path()),
                &c.name,
                "can rewrite the pod's packet filter and remove the capture rules",
            );
        }
    }
}

/// Init containers that run before the capture rules exist reach any host directly.
/// In a pod: those ordered before the injected `istio-init` (the injector puts it last
/// unless the proxy runs as a native sidecar; with the CNI plugin, shown by
/// `istio-validation`, the rules exist before any container starts). In a template:
/// any init container when `sidecar.istio.io/nativeSidecar: "false"` asks for that order.
fn before_capture(
    pod: &PodView<'_>,
    spec: &PodSpec<'_>,
    meta: &Meta,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let first_captured = match pod.source {
        Source::Pod if pod.injected.contains(&VALIDATION) => return,
        Source::Pod => match spec.init_containers.iter().position(|c| &*c.name == INIT) {
            Some(at) if pod.injected.contains(&INIT) => at,
            _ => return,
        },
        Source::Template if meta.annotations.get(NATIVE_SIDECAR) == Some("false") => {
            spec.init_containers.len()
        }
        Source::Template => return,
    };
    for (i, c) in spec.init_containers[..first_captured].iter().enumerate() {
        if pod.is_proxy(&c.name) || PROXY_CONTAINERS.contains(&&*c.name) {
            continue;
        }
        let path = format!("{}spec.initContainers[{i}]", base());
        let message = "runs before istio-init installs the capture rules: its traffic reaches any host directly";
        match cx.allowlist.init_containers_before_capture {
            Disposition::Deny => out.violation(Code::CaptureExcluded, path, &c.name, message),
            Disposition::Warn => {
                out.warn(|| format!("{path}: init container {:?} {message}", &*c.name))
            }
        }
    }
}

/// With `proxyImages` configured, the proxy containers of a pod must run one of them:
/// a pod can otherwise bring its own "istio-proxy".
fn proxy_images(
    pod: &PodView<'_>,
    spec: &PodSpec<'_>,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let allowed = &cx.allowlist.proxy_images;
    if allowed.is_empty() || pod.source == Source::Template {
        return;
    }
    for (field, list) in [
        ("initContainers", &spec.init_containers),
        ("containers", &spec.containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            if !pod.is_proxy(&c.name) {
                continue;
            }
            let image = c.image.as_deref().unwrap_or_default();
            if !allowed.iter().any(|p| image.starts_with(&**p)) {
                out.record(
                    Code::ProxyReplaced,
                    || format!("{}spec.{field}[{i}].image", base()),
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
const USER_VOLUME_MOUNT: &str = "sidecar.istio.io/userVolumeMount";
const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
const GATEWAY_MANAGED: &str = "gateway.istio.io/managed";
