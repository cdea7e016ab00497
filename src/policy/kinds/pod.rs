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
use serde_json::value::RawValue;

use super::proxy_config;
use crate::policy::allowlist::Disposition;
use crate::policy::decision::Code;
use crate::policy::judge::{Context, EgressRef, Findings, Reach, kube_ip};
use crate::policy::matcher::PortSet;
use crate::policy::spec::{self, Keys, Str, Streamed, null_default};

/// Pod metadata as the pod checks read it.
type Meta = spec::Meta<Read>;

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
    // Boxed: a container is moved while it is decoded and judged, and this is most of
    // its size.
    #[serde(borrow)]
    security_context: Option<Box<SecurityContext<'a>>>,
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
    let Some(o) = out.decoded::<spec::Object<PodSpec<'_>, Read>>(object.get()) else {
        return;
    };
    judge_pod_spec(
        &o.metadata,
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
        return;
    }
    let gateway = cx.trusted_writer && meta.labels.get(GATEWAY_MANAGED).is_some();
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
    }
    // A container list that does not decode has been reported; the object is then
    // denied for it, and its containers cannot be judged.
    let Some(mut pod) = PodView::new(meta, spec, source, gateway, base, out) else {
        return;
    };
    let all = [
        (Field::Init, &spec.init_containers),
        (Field::Main, &spec.containers),
        (Field::Ephemeral, &spec.ephemeral_containers),
    ];
    let lists = if cx.ephemeral_only {
        // Only the new ephemeral containers are judged, against the proxy's identity
        // as the running pod's containers give it.
        if !pod.learn_proxy_identity(&all[..2], base, out) {
            return;
        }
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
        pod.judge_before_proxy(lists, base, out);
    }
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
    /// The containers the injector added (pods only).
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
    /// Where the proxy's container is (list and index), once read: the containers
    /// before it were judged against 1337 alone.
    proxy_at: Option<(Field, usize)>,
    /// Some container or init container is named `istio-proxy`.
    has_proxy: bool,
    /// How many init containers run before the capture rules exist.
    before_capture: usize,
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
        out: &mut Findings<'_>,
    ) -> Option<Self> {
        let injected = injected(meta, source);
        let defaults = (
            spec.security_context.run_as_user,
            spec.security_context.run_as_group,
        );
        // Init containers ordered before the injected `istio-init` (the injector puts
        // it last unless the proxy runs as a native sidecar; with the CNI plugin, shown
        // by `istio-validation`, the rules exist before any container starts). In a
        // template: all of them when `sidecar.istio.io/nativeSidecar: "false"` asks for
        // that order.
        let before_capture = match source {
            Source::Pod if injected.contains(&VALIDATION) => 0,
            Source::Pod if injected.contains(&INIT) => {
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
            }
            Source::Pod => 0,
            Source::Template if meta.annotations.get(NATIVE_SIDECAR) == Some("false") => usize::MAX,
            Source::Template => 0,
        };
        Some(PodView {
            source,
            injected,
            gateway,
            defaults,
            proxy_users: vec![PROXY_UID],
            proxy_groups: vec![PROXY_UID],
            proxy_at: None,
            has_proxy: false,
            before_capture,
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
        if new_user.is_some() || new_group.is_some() {
            self.proxy_users.extend(new_user);
            self.proxy_groups.extend(new_group);
            self.proxy_at = Some(at);
        }
    }

    /// Reads the proxy's identity off `lists` before any container is judged; false
    /// when a list does not decode (reported).
    fn learn_proxy_identity(
        &mut self,
        lists: &[(Field, &Streamed<'_, Container<'_>>)],
        base: &dyn Fn() -> String,
        out: &mut Findings<'_>,
    ) -> bool {
        let decoded = lists.iter().all(|&(field, list)| {
            let at = format!("{}spec.{}", base(), field.as_str());
            out.each(&list.retyped::<Named<'_>>(), &at, |i, c, out| {
                if out.charge(1 + c.name.len()) && &*c.name == PROXY {
                    let ids = c.security_context.unwrap_or_default();
                    self.saw_proxy((field, i), (ids.run_as_user, ids.run_as_group));
                }
            })
        });
        // Every container judged from here on is judged knowing the proxy's identity.
        self.proxy_at = None;
        decoded
    }

    /// The identity check again for the containers walked before the proxy's own, now
    /// that what it runs as is known (only when that is not just 1337: the injector's
    /// default needs no second walk).
    fn judge_before_proxy(
        &self,
        lists: &[(Field, &Streamed<'_, Container<'_>>)],
        base: &dyn Fn() -> String,
        out: &mut Findings<'_>,
    ) {
        let Some((proxy_field, proxy_index)) = self.proxy_at else {
            return;
        };
        if self.gateway {
            return;
        }
        let late = |known: &[i64]| -> Vec<i64> {
            known
                .iter()
                .copied()
                .filter(|id| *id != PROXY_UID)
                .collect()
        };
        let (users, groups) = (late(&self.proxy_users), late(&self.proxy_groups));
        for &(field, list) in lists {
            let at = format!("{}spec.{}", base(), field.as_str());
            // Every list decoded on the first walk, so this one reports nothing new.
            out.each(&list.retyped::<Named<'_>>(), &at, |i, c, out| {
                let before = field != proxy_field || i < proxy_index;
                if !before || !out.charge(1 + c.name.len()) || self.is_proxy(&c.name) {
                    return;
                }
                let ids = c.security_context.unwrap_or_default();
                let ids = with_defaults((ids.run_as_user, ids.run_as_group), self.defaults);
                let path = || format!("{at}[{i}]");
                runs_as_proxy(ids, (&users, &groups), &path, out);
            });
            if field == proxy_field {
                break;
            }
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
    let sc = c.security_context.as_deref();
    let ids = (
        sc.and_then(|s| s.run_as_user),
        sc.and_then(|s| s.run_as_group),
    );
    with_defaults(ids, defaults)
}

/// A container's own user and group, or the pod's where it sets none.
fn with_defaults(
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
    pod: &PodView<'_>,
    base: &dyn Fn() -> String,
    out: &mut Findings<'_>,
) {
    let Some(status) = meta.annotations.get(STATUS) else {
        return;
    };
    if pod.source == Source::Template || !pod.has_proxy {
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
        containers: Streamed<'a, Container<'a>>,
        #[serde(borrow)]
        init_containers: Streamed<'a, Container<'a>>,
    }
    // The injector refuses what it cannot parse; nothing was overridden then.
    let Ok(o) = serde_json::from_str::<Overrides<'_>>(v) else {
        return false;
    };
    let replaces = |list: &Streamed<'_, Container<'_>>| list.any(|c| replaces_what_runs(&c));
    match (replaces(&o.containers), replaces(&o.init_containers)) {
        (Some(a), Some(b)) => a || b,
        _ => false,
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
        containers: Streamed<'s, &'s str>,
        #[serde(borrow)]
        init_containers: Streamed<'s, &'s str>,
    }
    if source == Source::Template {
        return Vec::new();
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

/// Each container of `list`, one at a time: its identity and privileges; for init
/// containers, whether they run before capture; for the proxy's, its image.
/// Returns false when the list does not decode (reported).
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
        if field == Field::Init && i < pod.before_capture {
            before_capture(pod, &c, &path, cx, out);
        }
        if &*c.name == PROXY {
            pod.saw_proxy((field, i), identity(&c, (None, None)));
        }
        if pod.is_proxy(&c.name) {
            if field != Field::Ephemeral {
                proxy_image(pod, &c, &path, cx, out);
            }
            return;
        }
        judge_container(pod, &c, &path, out);
    })
}

/// A workload's container: whether it runs as the proxy, can change the capture rules,
/// or (in a gateway's pod, or named like an injected one in a template) should not be
/// there at all.
fn judge_container(
    pod: &PodView<'_>,
    c: &Container<'_>,
    path: &dyn Fn() -> String,
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
                &*c.name,
                &format!("changes what {what} runs, its environment, files or identity (the injector merges this container into its own)"),
            );
        }
        return;
    }
    let ids = identity(c, pod.defaults);
    runs_as_proxy(ids, (&pod.proxy_users, &pod.proxy_groups), path, out);
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
            &*c.name,
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

/// With `proxyImages` configured, the proxy containers of a pod must run one of them:
/// a pod can otherwise bring its own "istio-proxy".
fn proxy_image(
    pod: &PodView<'_>,
    c: &Container<'_>,
    path: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let allowed = &cx.allowlist.proxy_images;
    if allowed.is_empty() || pod.source == Source::Template {
        return;
    }
    let image = c.image.as_deref().unwrap_or_default();
    if !allowed.iter().any(|p| image.starts_with(&**p)) {
        out.record(
            Code::ProxyReplaced,
            || format!("{}.image", path()),
            image,
            "not one of the allowlist's proxyImages",
        );
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
