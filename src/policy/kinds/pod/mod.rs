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
use serde_json::value::RawValue;

mod container;
mod host;
pub(super) mod injected;
pub(crate) mod session;
mod update;

use super::proxy_config;
use crate::policy::allowlist::Disposition;
use crate::policy::decision::Code;
use crate::policy::judge::{Context, EgressRef, Findings, Reach, kube_ip};
use crate::policy::matcher::PortSet;
use crate::policy::spec::{self, Keys, Str, Streamed, null_default};
use container::Container;
use injected::{INIT, Injection, NAMES as PROXY_CONTAINERS, PROXY, PROXY_UID, VALIDATION};

/// Pod metadata as the pod checks read it.
type Meta = spec::Meta<Read>;

/// DNS, as a nameserver is reached.
const DNS_PORT: u16 = 53;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct PodSpec<'a> {
    host_network: bool,
    #[serde(deserialize_with = "null_default")]
    security_context: Identity,
    // Judged one at a time: a list as long as the body allows is not a struct per
    // element.
    #[serde(borrow)]
    containers: Streamed<'a, Container<'a>>,
    #[serde(borrow)]
    init_containers: Streamed<'a, Container<'a>>,
    #[serde(borrow)]
    ephemeral_containers: Streamed<'a, Container<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    dns_config: DnsConfig<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    host_aliases: Vec<HostAlias<'a>>,
    #[serde(rename = "hostPID", deserialize_with = "null_default")]
    host_pid: bool,
    #[serde(borrow, deserialize_with = "null_default")]
    volumes: Vec<host::Volume<'a>>,
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

/// What the pod-level checks need to know of every container before any is judged.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Named<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    name: Str<'a>,
    #[serde(deserialize_with = "null_default")]
    security_context: Option<Identity>,
}

/// The user and group a pod or container runs as.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Identity {
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
}

/// A pod template: `spec.template` of the workload kinds.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Template<'a> {
    #[serde(deserialize_with = "null_default")]
    metadata: Meta,
    #[serde(borrow, deserialize_with = "null_default")]
    spec: PodSpec<'a>,
}

/// Where the pod being judged comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A pod as the apiserver is about to store it: after injection.
    Pod,
    /// A workload's template: before injection, which happens per pod.
    Template,
}

/// The labels and annotations the pod checks read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Read;

impl Keys for Read {
    const KEYS: &'static [&'static str] = &[
        INJECT,
        DATAPLANE_MODE,
        STATUS,
        EXCLUDE_RANGES,
        EXCLUDE_PORTS,
        EXCLUDE_INTERFACES,
        INCLUDE_RANGES,
        INTERCEPTION_MODE,
        TEMPLATES,
        PROXY_IMAGE,
        BOOTSTRAP_OVERRIDE,
        OVERRIDES,
        USER_VOLUME_MOUNT,
        NATIVE_SIDECAR,
        GATEWAY_MANAGED,
        proxy_config::ANNOTATION,
    ];
}

/// A pod.
pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    if let (Some(old), false) = (cx.old, cx.ephemeral_only) {
        update::judge(object, old, cx, out);
        return;
    }
    let Some(o) = out.decoded::<spec::Object<PodSpec<'_>, Read>>(object.get()) else {
        return;
    };
    // `kubectl debug`: which containers are the proxy's, and whether the pod is a
    // gateway's, is what the pod was admitted with, never a later edit of the tenant's.
    let admitted = cx
        .old
        .filter(|_| cx.ephemeral_only)
        .and_then(|old| spec::decode::<spec::Object<serde::de::IgnoredAny, Read>>(old.get()).ok());
    judge_pod_spec(
        admitted.as_ref().map_or(&o.metadata, |a| &a.metadata),
        &o.spec,
        Source::Pod,
        &|| String::new(),
        cx,
        out,
    );
}

/// A workload's pod template at `base` (`spec.template.` or
/// `spec.jobTemplate.spec.template.`).
pub(crate) fn judge_template(
    t: &Template<'_>,
    base: &str,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    judge_pod_spec(
        &t.metadata,
        &t.spec,
        Source::Template,
        &|| base.to_owned(),
        cx,
        out,
    );
}

fn judge_pod_spec(
    meta: &Meta,
    spec: &PodSpec<'_>,
    source: Source,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    // Telemetry and control-plane addresses are egress wherever the pod runs.
    proxy_config::judge_annotation(&meta.annotations, base, cx, out);
    let may_opt_out = cx.allowlist.may_opt_out(cx.namespace);
    if !cx.ephemeral_only {
        resolver(spec, base, cx, out);
    }
    if may_opt_out {
        // Capture is the namespace's own business; the kubelet's connections are not.
        kubelet_connections(spec, base, cx, out);
        return;
    }
    // A debug container in a gateway's or waypoint's pod is judged as that pod's: the
    // label is what istiod wrote when egress-guard admitted the pod.
    let gateway =
        (cx.trusted_writer || cx.ephemeral_only) && meta.labels.get(GATEWAY_MANAGED).is_some();
    if !cx.ephemeral_only {
        metadata(meta, gateway, base, cx, out);
        if spec.host_network {
            out.record(
                Code::SidecarDisabled,
                || format!("{}spec.hostNetwork", base()),
                "true",
                "a pod on the host network gets no sidecar and no capture",
            );
        }
        host::judge(spec.host_pid, &spec.volumes, base, out);
    }
    // A container list that does not decode has been reported; the object is then
    // denied for it, and its containers cannot be judged.
    let Some(mut pod) = PodView::new(meta, spec, source, gateway, base, cx, out) else {
        return;
    };
    let all = [
        (Field::Init, &spec.init_containers),
        (Field::Main, &spec.containers),
        (Field::Ephemeral, &spec.ephemeral_containers),
    ];
    // The proxy's identity (what istio-init exempts, what no other container may run
    // as) is read off its container before any container is judged. Under
    // ephemeral_only only the new ephemeral containers are judged, against the
    // identity the running pod's containers give the proxy.
    if !pod.learn_proxy_identity(&all[..2], base, out) {
        return;
    }
    let lists = if cx.ephemeral_only {
        &all[2..]
    } else {
        &all[..]
    };
    for &(field, list) in lists {
        if !containers(&mut pod, field, list, base, cx, out) {
            return;
        }
    }
    if !cx.ephemeral_only {
        forged_status(meta, &pod, base, out);
    }
    if let Some(name) = &pod.uncaptured {
        out.record(
            Code::CaptureExcluded,
            || format!("{}metadata.annotations[{TEMPLATES}]", base()),
            name,
            "the gateway template installs no capture rules: only the gateway's proxy may run in its pods, and this container would run uncaptured",
        );
    }
}

/// The kubelet's connections for every container, when nothing else of the pod is
/// judged (a namespace granted `allowCaptureOptOut`).
fn kubelet_connections(
    spec: &PodSpec<'_>,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    for (field, list) in [
        (Field::Init, &spec.init_containers),
        (Field::Main, &spec.containers),
    ] {
        let at = format!("{}spec.{}", base(), field.as_str());
        let decoded = out.each(list, &at, |i, c: Container<'_>, out| {
            let path = || format!("{at}[{i}]");
            container::kubelet_connections(&c, &path, spec.host_network, cx, out);
        });
        if !decoded {
            return;
        }
    }
}

/// True when `inject.istio.io/templates` asks for the `gateway` template, alone or
/// with templates that capture.
fn asks_gateway_template(meta: &Meta, cx: &Context<'_>) -> bool {
    let Some(v) = meta.annotations.get(TEMPLATES) else {
        return false;
    };
    let known = &cx.allowlist.injection_templates;
    let mut gateway = false;
    for t in v.split(',').map(str::trim) {
        if t == GATEWAY_TEMPLATE {
            gateway = true;
        } else if !known.iter().any(|k| **k == *t) {
            return false;
        }
    }
    gateway
}

/// Whether a template's init containers will run before `istio-init` installs the
/// capture rules, as the injector will lay its pods out: not with Istio CNI (the rules
/// exist before any container), not with native sidecars (`istio-init` is put first);
/// otherwise the injector appends `istio-init` after them. The pod's
/// `sidecar.istio.io/nativeSidecar` annotation overrides the mesh's setting, as it does
/// for the injector.
fn template_inits_before_capture(meta: &Meta, cx: &Context<'_>) -> bool {
    use crate::policy::allowlist::NativeSidecars;
    let mesh = cx.allowlist.mesh;
    if mesh.cni {
        return false;
    }
    let native = match meta.annotations.get(NATIVE_SIDECAR) {
        Some("false") => false,
        Some("true") => true,
        _ => match mesh.native_sidecars {
            NativeSidecars::True => true,
            NativeSidecars::False => false,
            // Istio turns them on from Kubernetes 1.33. The engine does not know the
            // cluster's version: `auto` reads as 1.33 or newer, and a mesh on an older
            // one says `false`.
            NativeSidecars::Auto => true,
        },
    };
    !native
}

/// Which container list of a pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Init,
    Main,
    Ephemeral,
}

impl Field {
    fn as_str(self) -> &'static str {
        match self {
            Field::Init => "initContainers",
            Field::Main => "containers",
            Field::Ephemeral => "ephemeralContainers",
        }
    }
}

/// What the checks need to know about the pod beyond one container.
struct PodView<'m> {
    source: Source,
    /// The containers the injector added, as the status annotation lists them (a
    /// template has one when it is `istioctl kube-inject` output).
    injected: Vec<&'m str>,
    /// A gateway Istio's Gateway API controller deployed: its `istio-proxy` is the
    /// gateway's proxy and injection is off by design.
    gateway: bool,
    /// The pod's own user and group defaults.
    defaults: (Option<i64>, Option<i64>),
    /// The users and groups the capture rules let through: 1337, and what the proxy
    /// runs as once its container has been read.
    proxy_users: Vec<i64>,
    proxy_groups: Vec<i64>,
    /// Some container or init container is named `istio-proxy`.
    has_proxy: bool,
    /// How many init containers run before the capture rules exist.
    before_capture: usize,
    /// The pod shares the node's network namespace.
    host_network: bool,
    /// The pod asks for the `gateway` injection template, which installs no capture: the
    /// pod is a gateway when its only container is the proxy.
    gateway_template: bool,
    /// The first container of a gateway-template pod that is not the proxy.
    uncaptured: Option<String>,
}

impl<'m> PodView<'m> {
    /// The pod-level facts; the containers are read for them only where `istio-init`
    /// decides which init containers run before capture. `None` when the init
    /// container list does not decode (reported).
    fn new(
        meta: &'m Meta,
        spec: &PodSpec<'_>,
        source: Source,
        gateway: bool,
        base: &dyn Fn() -> String,
        cx: &Context<'_>,
        out: &mut Findings<'_>,
    ) -> Option<Self> {
        let injected = injected(meta);
        let defaults = (
            spec.security_context.run_as_user,
            spec.security_context.run_as_group,
        );
        // A template's pods are injected one by one: all its init containers run first
        // when the mesh lays pods out that way (`sidecar.istio.io/nativeSidecar:
        // "false"`, or the mesh settings). Otherwise, and on a pod, the init containers
        // ordered before the injected `istio-init` (the injector puts it last unless the
        // proxy runs as a native sidecar; with the CNI plugin, shown by
        // `istio-validation`, the rules exist before any container starts). An injected
        // template (`istioctl kube-inject` output) gets the later of both: its pods run
        // as laid out where the namespace has no injection, and are injected afresh
        // where it has.
        let before_capture =
            if source == Source::Template && template_inits_before_capture(meta, cx) {
                usize::MAX
            } else if injected.contains(&VALIDATION) {
                0
            } else if injected.contains(&INIT) {
                let at = format!("{}spec.initContainers", base());
                let mut init_at = None;
                let names = spec.init_containers.retyped::<Named<'_>>();
                let decoded = out.each(&names, &at, |i, c, out| {
                    if out.charge(1 + c.name.len()) && init_at.is_none() && &*c.name == INIT {
                        init_at = Some(i);
                    }
                });
                if !decoded {
                    return None;
                }
                init_at.unwrap_or(0)
            } else {
                0
            };
        Some(PodView {
            source,
            injected,
            gateway,
            defaults,
            proxy_users: vec![PROXY_UID],
            proxy_groups: vec![PROXY_UID],
            has_proxy: false,
            before_capture,
            host_network: spec.host_network,
            gateway_template: asks_gateway_template(meta, cx),
            uncaptured: None,
        })
    }

    /// Notes a container named `istio-proxy` at `at`: the injector runs the proxy, and
    /// exempts it from capture, as the UID and GID it picked (on OpenShift the top of
    /// the namespace's range, not 1337).
    fn saw_proxy(&mut self, at: (Field, usize), ids: (Option<i64>, Option<i64>)) {
        if at.0 == Field::Ephemeral {
            return;
        }
        self.has_proxy = true;
        if !self.injected.contains(&PROXY) {
            return;
        }
        let (user, group) = with_defaults(ids, self.defaults);
        let new_user = user.filter(|u| !self.proxy_users.contains(u));
        let new_group = group.filter(|g| !self.proxy_groups.contains(g));
        self.proxy_users.extend(new_user);
        self.proxy_groups.extend(new_group);
    }

    /// Reads the proxy's identity off `lists` before any container is judged; false
    /// when a list does not decode (reported).
    fn learn_proxy_identity(
        &mut self,
        lists: &[(Field, &Streamed<'_, Container<'_>>)],
        base: &dyn Fn() -> String,
        out: &mut Findings<'_>,
    ) -> bool {
        lists.iter().all(|&(field, list)| {
            let at = format!("{}spec.{}", base(), field.as_str());
            out.each(&list.retyped::<Named<'_>>(), &at, |i, c, out| {
                if out.charge(1 + c.name.len()) && &*c.name == PROXY {
                    let ids = c.security_context.unwrap_or_default();
                    self.saw_proxy((field, i), (ids.run_as_user, ids.run_as_group));
                }
            })
        })
    }

    /// True for a container that is the proxy (or its init containers), not the
    /// workload's.
    fn is_proxy(&self, name: &str) -> bool {
        self.injected.contains(&name) || (self.gateway && (name == PROXY || name == AGENTGATEWAY))
    }
}

/// A container's effective user and group.
fn identity(c: &Container<'_>, defaults: (Option<i64>, Option<i64>)) -> (Option<i64>, Option<i64>) {
    let sc = c.security_context.as_deref();
    let ids = (
        sc.and_then(|s| s.run_as_user),
        sc.and_then(|s| s.run_as_group),
    );
    with_defaults(ids, defaults)
}

/// A container's own user and group, or the pod's where it sets none.
pub(super) fn with_defaults(
    (user, group): (Option<i64>, Option<i64>),
    defaults: (Option<i64>, Option<i64>),
) -> (Option<i64>, Option<i64>) {
    (user.or(defaults.0), group.or(defaults.1))
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
            Some(ip) => {
                out.egress(cx, EgressRef::new(&path, ns, Reach::Net(ip.into())));
            }
            None => {
                out.egress(cx, EgressRef::new(&path, ns, Reach::Dialled).on(Some(&dns)));
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
        let wildcard = format!("*.{domain}");
        out.egress(cx, EgressRef::new(&path, &wildcard, Reach::Dialled));
    }
    for (i, alias) in spec.host_aliases.iter().enumerate() {
        let path = || format!("{}spec.hostAliases[{i}].ip", base());
        match kube_ip(&alias.ip) {
            Some(ip) if ip.is_loopback() => {}
            Some(ip) => {
                out.egress(cx, EgressRef::new(&path, &alias.ip, Reach::Net(ip.into())));
            }
            None => {
                out.egress(cx, EgressRef::new(&path, &alias.ip, Reach::Dialled));
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
                out.record(
                    Code::CaptureExcluded,
                    || at("annotations", EXCLUDE_RANGES),
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
        // The gateway template is judged by what runs in the pod (only the proxy).
        if v.split(',')
            .map(str::trim)
            .any(|t| t != GATEWAY_TEMPLATE && !known.iter().any(|k| **k == *t))
        {
            out.violation(
                Code::CaptureExcluded,
                at("annotations", TEMPLATES),
                v,
                "names an injection template that is not one of the allowlist's injectionTemplates, which capture the workload's traffic",
            );
        }
    }
    if let Some(v) = ann.get(USER_VOLUME_MOUNT).filter(|v| !is_empty_json(v))
        && let Some(why) = user_volume_mount(v)
    {
        out.violation(
            Code::ProxyReplaced,
            at("annotations", USER_VOLUME_MOUNT),
            v,
            &why,
        );
    }
    for key in [PROXY_IMAGE, BOOTSTRAP_OVERRIDE] {
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
        && overrides_replace_proxy(v, cx)
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
/// capture skips any pod that carries it, as a sidecar pod: on a pod or template
/// without the proxy it claims, it takes the workload out of both data planes. A
/// template carries it when it is `istioctl kube-inject` output, proxy included.
fn forged_status(
    meta: &Meta,
    pod: &PodView<'_>,
    base: &dyn Fn() -> String,
    out: &mut Findings<'_>,
) {
    let Some(status) = meta.annotations.get(STATUS) else {
        return;
    };
    if !pod.has_proxy {
        out.record(
            Code::SidecarDisabled,
            || format!("{}metadata.annotations[{STATUS}]", base()),
            status,
            "claims an injected sidecar the pod does not have: ambient capture skips it, and no sidecar captures it",
        );
    }
}

/// Why a `sidecar.istio.io/userVolumeMount` value (a JSON map of volume name to mount)
/// changes what the proxy reads, or `None`: the injector mounts each into `istio-proxy`,
/// so a mount at a new path is the workload's own business.
fn user_volume_mount(v: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Mount<'a> {
        #[serde(borrow, default, deserialize_with = "null_default")]
        mount_path: Str<'a>,
    }
    /// Both spellings Istio's docs and charts use: a list of mounts (each with its
    /// volume's `name`) or a map from the volume's name to its mount.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mounts<'a> {
        #[serde(borrow)]
        List(Vec<Mount<'a>>),
        #[serde(borrow)]
        Map(std::collections::BTreeMap<Str<'a>, Mount<'a>>),
    }
    let mounts = match serde_json::from_str::<Mounts<'_>>(v) {
        Ok(Mounts::List(list)) => list,
        Ok(Mounts::Map(map)) => map.into_values().collect(),
        Err(_) => {
            return Some(
                "the mounts cannot be read, so what they cover cannot be checked".to_owned(),
            );
        }
    };
    mounts.iter().find_map(|m| {
        injected::covers_protected(&m.mount_path).map(|p| {
            format!(
                "mounts {} into the proxy over {p}, which the proxy or its agent reads (bootstrap, identity, binaries)",
                &*m.mount_path
            )
        })
    })
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
fn overrides_replace_proxy(v: &str, cx: &Context<'_>) -> bool {
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct Overrides<'a> {
        #[serde(borrow)]
        containers: Streamed<'a, Container<'a>>,
        #[serde(borrow)]
        init_containers: Streamed<'a, Container<'a>>,
    }
    // The injector refuses what it cannot parse; nothing was overridden then.
    let Ok(o) = serde_json::from_str::<Overrides<'_>>(v) else {
        return false;
    };
    let replaces = |list: &Streamed<'_, Container<'_>>| {
        list.any(|c| injected::customisation(&c, cx).is_some())
    };
    match (replaces(&o.containers), replaces(&o.init_containers)) {
        (Some(a), Some(b)) => a || b,
        _ => false,
    }
}

/// The containers the injector added, as its status annotation lists them; only the
/// proxy's own names count. On a template (`istioctl kube-inject` output) they are held
/// to the injector's shape as on a pod: its pods run them as written where the
/// namespace has no injection, and get the injector's own where it has (the injector
/// strips what the status lists before injecting again).
pub(super) fn injected(meta: &Meta) -> Vec<&str> {
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct Status<'s> {
        #[serde(borrow)]
        containers: Streamed<'s, &'s str>,
        #[serde(borrow)]
        init_containers: Streamed<'s, &'s str>,
    }
    let Some(status) = meta.annotations.get(STATUS) else {
        return Vec::new();
    };
    let Ok(s) = serde_json::from_str::<Status<'_>>(status) else {
        return Vec::new();
    };
    // At most the three proxy names, each once, however long the lists are; a list
    // that does not decode lists nothing, as the injector could not have written it.
    let lists = |name: &str, l: &Streamed<'_, &str>| l.any(|n| n == name) == Some(true);
    PROXY_CONTAINERS
        .into_iter()
        .filter(|name| lists(name, &s.containers) || lists(name, &s.init_containers))
        .collect()
}

/// Each container of `list`, one at a time: the kubelet's connections for it; its
/// identity and privileges; for init containers, whether they run before capture; for
/// the injected ones, the injector's shape. Returns false when the list does not decode
/// (reported).
fn containers(
    pod: &mut PodView<'_>,
    field: Field,
    list: &Streamed<'_, Container<'_>>,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) -> bool {
    let at = format!("{}spec.{}", base(), field.as_str());
    out.each(list, &at, |i, c, out| {
        if !out.charge(1 + c.name.len()) {
            return;
        }
        let path = || format!("{at}[{i}]");
        container::kubelet_connections(&c, &path, pod.host_network, cx, out);
        let proxy = pod.is_proxy(&c.name);
        // A template's own injected containers are the injector's on re-injection, and
        // in its layout where there is none: they are judged by their shape below.
        let injected_in_template = proxy && pod.source == Source::Template;
        if field == Field::Init && i < pod.before_capture && !injected_in_template {
            before_capture(pod, &c, &path, cx, out);
        }
        if proxy {
            if field != Field::Ephemeral && &*c.name != AGENTGATEWAY {
                let ids = Injection {
                    proxy_users: &pod.proxy_users,
                    proxy_groups: &pod.proxy_groups,
                };
                injected::judge_injected(&c, ids, &path, cx, out);
            }
            return;
        }
        judge_container(pod, &c, &path, cx, out);
    })
}

/// A workload's container: whether it runs as the proxy, can change the capture rules,
/// or (in a gateway's pod, or named like an injected one in a template) should not be
/// there at all.
fn judge_container(
    pod: &mut PodView<'_>,
    c: &Container<'_>,
    path: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    // A gateway's pod has injection off: only its proxy may run there (istiod merges a
    // tenant's parametersRef ConfigMap into the Deployment it writes).
    if pod.gateway {
        out.record(
            Code::SidecarDisabled,
            path,
            &*c.name,
            "runs in a gateway pod, which has no sidecar capture: only the gateway's proxy may run there",
        );
        return;
    }
    // In a template, a container named like an injected one customises it: the
    // injector merges its fields into the real one.
    if pod.source == Source::Template && PROXY_CONTAINERS.contains(&&*c.name) {
        if let Some(what) = injected::customisation(c, cx) {
            let (code, whose) = if &*c.name == PROXY {
                (Code::ProxyReplaced, "the proxy's")
            } else {
                (Code::CaptureExcluded, "the capture rules' installer's")
            };
            out.record(
                code,
                path,
                &*c.name,
                &format!("changes {whose} {what}: the injector merges this container into its own"),
            );
        }
        return;
    }
    // The gateway injection template captures nothing: only its proxy belongs there.
    if pod.gateway_template {
        pod.uncaptured.get_or_insert_with(|| c.name.to_string());
    }
    let ids = identity(c, pod.defaults);
    runs_as_proxy(ids, (&pod.proxy_users, &pod.proxy_groups), path, out);
    if let Some(setting) = c.net_admin() {
        out.record(
            Code::NetAdmin,
            || format!("{}.securityContext", path()),
            setting,
            "can rewrite the pod's packet filter and remove the capture rules",
        );
    }
}

/// A container that runs as one of the proxy's `users` or `groups`: the capture rules
/// let its traffic through.
fn runs_as_proxy(
    (user, group): (Option<i64>, Option<i64>),
    (users, groups): (&[i64], &[i64]),
    path: &dyn Fn() -> String,
    out: &mut Findings<'_>,
) {
    for (what, id, exempt) in [("runAsUser", user, users), ("runAsGroup", group, groups)] {
        if let Some(id) = id.filter(|id| exempt.contains(id)) {
            out.record(
                Code::ProxyIdentity,
                || format!("{}.securityContext.{what}", path()),
                id,
                "runs as the proxy's identity, whose traffic the capture rules let through",
            );
        }
    }
}

/// An init container that runs before the capture rules exist (see
/// [`PodView::before_capture`]) reaches any host directly.
fn before_capture(
    pod: &PodView<'_>,
    c: &Container<'_>,
    path: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    if pod.is_proxy(&c.name) || PROXY_CONTAINERS.contains(&&*c.name) {
        return;
    }
    let message =
        "runs before istio-init installs the capture rules: its traffic reaches any host directly";
    match cx.allowlist.init_containers_before_capture {
        Disposition::Deny => out.record(Code::CaptureExcluded, path, &*c.name, message),
        Disposition::Warn => {
            out.warn(|| format!("{}: init container {:?} {message}", path(), &*c.name))
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
/// The injection template for gateways: the proxy alone, no capture.
const GATEWAY_TEMPLATE: &str = "gateway";
/// The proxy of Istio's agentgateway waypoints, in the pods istiod deploys for them.
const AGENTGATEWAY: &str = "agentgateway";
const GATEWAY_MANAGED: &str = "gateway.istio.io/managed";
