//! The allowlist: the document parsed ([`model`]), validated and compiled into the
//! lookup indexes the engine uses. Parsing is pure: callers pass the text in, and the
//! clock ("now", for entries that expire) is passed to each lookup.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Deserialize;

use super::decision::Mode;
use super::duration::Duration;
use super::help::Template as HelpTemplate;
use super::host::{self, HostPattern};
use super::matcher::{CidrIndex, Granted, HostIndex, HostMatch, PortSet, Rule};
use super::review_hash::{Map, Set};

mod model;

use model::{CidrList, Doc, HostList};
pub use model::{Disposition, EntryInfo, Expiry, Mesh, NamespaceName, NativeSidecars, schema};

/// The example allowlist shipped in the binary, used when no source is configured.
pub const EXAMPLE: &str = include_str!("../../../examples/allowlist.yaml");

/// An allowlist that failed to load.
#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    /// YAML syntax, an unknown field or a bad value; the message names field and line.
    #[error("invalid allowlist: {message}")]
    Invalid {
        /// What is wrong, and where.
        message: String,
        /// The line at fault, from 1, when known.
        line: Option<u64>,
    },
}

impl AllowlistError {
    /// An error that names no line.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            line: None,
        }
    }

    /// The line of the document at fault, from 1, when known.
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::Invalid { line, .. } => *line,
        }
    }
}

/// Which VirtualService routes get a default timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeoutScope {
    /// Only routes with at least one destination outside the mesh.
    #[default]
    External,
    /// Every http route.
    All,
}

// === compiled form ===

/// Hosts and networks granted at one level (global or one namespace).
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Host entries.
    pub hosts: HostIndex,
    /// CIDR entries.
    pub cidrs: CidrIndex,
}

impl Grants {
    /// One level's indexed lists; their notes join `notes`, named by `scope` (`""` or
    /// `namespaces.<ns>.`).
    fn build(hosts: HostList, cidrs: CidrList, scope: &str, notes: &mut Vec<Note>) -> Self {
        let mut g = Grants {
            hosts: hosts.index,
            cidrs: cidrs.index,
        };
        for (list, renumber) in [(hosts.notes, true), (cidrs.notes, false)] {
            let Ok(offset) = u32::try_from(notes.len()) else {
                continue;
            };
            if offset > 0 && !list.is_empty() {
                let shift = |r: &mut Rule| r.note = r.note.and_then(|n| n.checked_add(offset));
                if renumber {
                    g.hosts.rules_mut(shift);
                } else {
                    g.cidrs.rules_mut(shift);
                }
            }
            notes.extend(list.into_iter().map(|n| Note {
                entry: format!("{scope}{}", n.entry).into(),
                info: n.info,
            }));
        }
        g
    }

    fn len(&self) -> usize {
        self.hosts.len() + self.cidrs.len()
    }
}

/// The owner, reason and expiry of one entry, and which entry it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The entry's position and value, e.g. `namespaces.payments.hosts[0] api.stripe.com`.
    pub entry: Box<str>,
    /// What the entry says about itself.
    pub info: EntryInfo,
}

/// Overrides and grants for one namespace.
#[derive(Debug, Clone, Default)]
pub struct NamespacePolicy {
    /// Extra hosts and networks, usable only by objects in this namespace.
    pub grants: Grants,
    /// Overrides the global mode.
    pub mode: Option<Mode>,
    /// Overrides the global default timeout; `Some(None)` turns it off here.
    pub default_timeout: Option<Option<Duration>>,
    /// May a Sidecar here set `ALLOW_ANY` or `egressProxy`.
    pub allow_any_outbound: bool,
    /// May EnvoyFilters be created here.
    pub allow_envoy_filter: bool,
    /// May workloads here opt out of the sidecar's capture or replace the proxy.
    pub allow_capture_opt_out: bool,
    /// Replaces the global help text here.
    pub help: Option<HelpTemplate>,
}

/// A validated, compiled allowlist. Built once per load, shared read-only.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    /// Global mode.
    pub mode: Mode,
    /// Global default route timeout; `None` = off.
    pub default_timeout: Option<Duration>,
    /// Which routes get the default timeout.
    pub timeout_scope: TimeoutScope,
    /// Treat Istio's outage-prone warnings as denials.
    pub strict: bool,
    /// Namespaces allowed without checks.
    pub exempt_namespaces: Set<String>,
    /// Domains inside the mesh, never checked against the allowlist.
    pub internal_domains: Vec<Box<str>>,
    /// The cluster's own pod, service and node networks: addresses inside them are
    /// not egress.
    pub cluster_networks: CidrIndex,
    /// Users whose writes of EndpointSlices, Endpoints and WorkloadEntries are the
    /// control plane's own (endpoint controllers, istiod auto-registration).
    pub trusted_writers: Set<String>,
    /// The cluster DNS addresses pods may name as nameservers.
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// Image prefixes the injected proxy containers of a pod must use (empty: any).
    pub proxy_images: Vec<Box<str>>,
    /// Injection templates that capture traffic.
    pub injection_templates: Vec<Box<str>>,
    /// Init containers that run before capture: denied or warned about.
    pub init_containers_before_capture: Disposition,
    /// How the mesh installs capture.
    pub mesh: Mesh,
    /// Gateway selectors that mark a Gateway as an egress gateway (selector ⊇ one).
    pub egress_gateway_selectors: Vec<BTreeMap<String, String>>,
    /// Label sets of the egress gateway pods: a Gateway whose selector selects them
    /// (selector ⊆ one) is an egress gateway.
    pub egress_gateway_labels: Vec<BTreeMap<String, String>>,
    /// Grants for every namespace.
    pub global: Grants,
    /// Per-namespace grants and overrides, keyed by name or by `prefix*`.
    pub namespaces: Map<String, NamespacePolicy>,
    /// The `prefix*` keys of `namespaces` with their prefix, longest prefix first.
    pub namespace_prefixes: Vec<(Box<str>, Box<str>)>,
    /// The platform's words on every denial and audit warning.
    pub help: Option<HelpTemplate>,
    /// Owners, reasons and expiries of the entries that have them.
    pub notes: Vec<Note>,
    /// Things worth logging at load time (e.g. a `*` entry).
    pub warnings: Vec<String>,
}

/// Where a reference's permission came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A global entry.
    Global,
    /// Only an entry of the object's own namespace.
    Namespace,
}

/// A lookup result across global and namespace grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Allowed, by which level and which entry.
    Allowed(Grant, Granted<'a>),
    /// Not covered at any level.
    NotCovered,
    /// Covered, but not on some ports.
    PortsDenied {
        /// The first few denied ports.
        first: Vec<u16>,
        /// How many are denied in all.
        count: usize,
        /// The ports the covering entries of that level allow.
        allowed: Vec<u16>,
    },
}

impl Allowlist {
    /// Parses and compiles an allowlist document.
    pub fn from_yaml(text: &str) -> Result<Self, AllowlistError> {
        if text.trim().is_empty() {
            return Err(AllowlistError::invalid("the document is empty"));
        }
        Ok(Self::compile(parse(text)?))
    }

    fn compile(doc: Doc) -> Self {
        let mut warnings = Vec::new();
        let mut notes = Vec::new();
        if doc.hosts.any {
            warnings.push("hosts contains \"*\": every host is allowed".to_owned());
        }
        let internal_domains = doc.internal_domains.map_or_else(
            || vec!["cluster.local".into()],
            |ds| ds.into_iter().map(|d| d.0.0).collect(),
        );
        let namespaces = doc
            .namespaces
            .into_iter()
            .map(|(name, ns)| {
                if ns.hosts.any {
                    warnings.push(format!(
                        "namespaces.{}.hosts contains \"*\": every host is allowed there",
                        name.0.0
                    ));
                }
                let scope = format!("namespaces.{}.", name.0.0);
                let policy = NamespacePolicy {
                    grants: Grants::build(ns.hosts, ns.cidrs, &scope, &mut notes),
                    mode: ns.mode,
                    default_timeout: ns.default_timeout.map(|d| non_zero(d.0)),
                    allow_any_outbound: ns.allow_any_outbound,
                    allow_envoy_filter: ns.allow_envoy_filter,
                    allow_capture_opt_out: ns.allow_capture_opt_out,
                    help: ns.help.map(|h| h.0),
                };
                (name.0.0, policy)
            })
            .collect::<Map<String, NamespacePolicy>>();
        // Longest first: the first prefix a namespace starts with is the most specific.
        let mut namespace_prefixes: Vec<(Box<str>, Box<str>)> = namespaces
            .keys()
            .filter_map(|k| Some((k.strip_suffix('*')?.into(), k.as_str().into())))
            .collect();
        namespace_prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Allowlist {
            namespace_prefixes,
            mode: doc.mode,
            default_timeout: doc.default_timeout.and_then(|d| non_zero(d.0)),
            timeout_scope: doc.timeout_scope,
            strict: doc.strict,
            exempt_namespaces: doc.exempt_namespaces.into_iter().map(|n| n.0.0).collect(),
            internal_domains,
            egress_gateway_selectors: doc.egress_gateway_selectors,
            egress_gateway_labels: doc
                .egress_gateway_labels
                .unwrap_or_else(default_egress_gateway_labels),
            cluster_networks: {
                let mut idx = CidrIndex::default();
                for n in doc.cluster_networks {
                    idx.insert(n.0, Rule::any());
                }
                idx
            },
            injection_templates: doc
                .injection_templates
                .unwrap_or_else(|| vec!["sidecar".to_owned(), "spire".to_owned()])
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
            init_containers_before_capture: doc.init_containers_before_capture,
            mesh: doc.mesh,
            cluster_dns: doc.cluster_dns.map_or_else(
                || vec![std::net::IpAddr::from([10, 96, 0, 10])],
                |ips| ips.into_iter().map(|ip| ip.0).collect(),
            ),
            proxy_images: doc
                .proxy_images
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
            trusted_writers: doc
                .trusted_writers
                .unwrap_or_else(|| {
                    DEFAULT_TRUSTED_WRITERS
                        .iter()
                        .map(|w| (*w).to_owned())
                        .collect()
                })
                .into_iter()
                .collect(),
            global: Grants::build(doc.hosts, doc.cidrs, "", &mut notes),
            namespaces,
            help: doc.help.map(|h| h.0),
            notes,
            warnings,
        }
    }

    /// Total host and CIDR entries, global and per namespace.
    pub fn entries(&self) -> usize {
        self.global.len()
            + self
                .namespaces
                .values()
                .map(|n| n.grants.len())
                .sum::<usize>()
    }

    /// The namespace's policy, if it has one: its own entry, else that of the longest
    /// prefix (`team-*`) it starts with.
    pub fn namespace(&self, ns: &str) -> Option<&NamespacePolicy> {
        self.namespaces.get(self.namespace_key(ns)?)
    }

    /// The key of `namespaces` that applies to `ns`: its name, or the longest
    /// `prefix*` it starts with.
    pub fn namespace_key<'a>(&'a self, ns: &'a str) -> Option<&'a str> {
        if self.namespaces.contains_key(ns) {
            return Some(ns);
        }
        self.namespace_prefixes
            .iter()
            .find(|(prefix, _)| ns.starts_with(&**prefix))
            .map(|(_, key)| &**key)
    }

    /// True when some namespace is in enforce mode: globally, or by its own override.
    pub fn any_enforce(&self) -> bool {
        self.mode == Mode::Enforce
            || self
                .namespaces
                .values()
                .any(|n| n.mode == Some(Mode::Enforce))
    }

    /// The help text for a namespace's objects: its own, else the global one.
    pub fn help_for(&self, ns: &str) -> Option<&HelpTemplate> {
        self.namespace(ns)
            .and_then(|n| n.help.as_ref())
            .or(self.help.as_ref())
    }

    /// The mode in force for a namespace.
    pub fn mode_for(&self, ns: &str) -> Mode {
        self.namespace(ns).and_then(|n| n.mode).unwrap_or(self.mode)
    }

    /// The default timeout in force for a namespace.
    pub fn default_timeout_for(&self, ns: &str) -> Option<Duration> {
        match self.namespace(ns).and_then(|n| n.default_timeout) {
            Some(over) => over,
            None => self.default_timeout,
        }
    }

    /// True when the host stays inside the mesh: a short name or an internal domain.
    pub fn is_internal(&self, host: &HostPattern) -> bool {
        let name = match host {
            HostPattern::Any => return false,
            HostPattern::Exact(h) => &**h,
            HostPattern::Wildcard(s) | HostPattern::Partial { suffix: s, .. } => &**s,
        };
        // A short name, or `<service>.<namespace>`, which reaches a Service through the
        // search path: only the platform's own namespaces are trusted that way.
        let short = match name.split_once('.') {
            None => true,
            Some((_, ns)) => self.exempt_namespaces.contains(ns),
        };
        (matches!(host, HostPattern::Exact(_)) && short)
            || self
                .internal_domains
                .iter()
                .any(|d| name == &**d || host::is_strict_subdomain(name, d))
    }

    /// Looks a host up globally, then in the namespace's own grants, with the entries
    /// live at `now` (`None`: expiry is not evaluated).
    pub fn lookup_host(
        &self,
        ns: &str,
        host: &HostPattern,
        ports: &PortSet,
        now: Option<i64>,
    ) -> Lookup<'_> {
        let global = self.global.hosts.lookup(host, ports, now);
        if let (HostMatch::Allowed, Some(g)) = (&global.result, global.grant) {
            return Lookup::Allowed(Grant::Global, g);
        }
        let local = self
            .namespace(ns)
            .map(|n| n.grants.hosts.lookup(host, ports, now));
        if let Some(l) = &local
            && let (HostMatch::Allowed, Some(g)) = (&l.result, l.grant)
        {
            return Lookup::Allowed(Grant::Namespace, g);
        }
        match (global.result, local.map(|l| l.result)) {
            (
                HostMatch::PortsDenied {
                    first,
                    count,
                    allowed,
                },
                _,
            )
            | (
                _,
                Some(HostMatch::PortsDenied {
                    first,
                    count,
                    allowed,
                }),
            ) => Lookup::PortsDenied {
                first,
                count,
                allowed,
            },
            _ => Lookup::NotCovered,
        }
    }

    /// Checks an address or network against global, then namespace CIDRs, with the
    /// entries live at `now`. An IPv4-mapped IPv6 network (`::ffff:203.0.113.9`) is the
    /// IPv4 network it maps.
    pub fn lookup_net(&self, ns: &str, net: &IpNet, now: Option<i64>) -> Lookup<'_> {
        let net = unmap_v4(net);
        if let Some(g) = self.global.cidrs.grant(&net, now) {
            Lookup::Allowed(Grant::Global, g)
        } else if let Some(g) = self
            .namespace(ns)
            .and_then(|n| n.grants.cidrs.grant(&net, now))
        {
            Lookup::Allowed(Grant::Namespace, g)
        } else {
            Lookup::NotCovered
        }
    }

    /// The note an entry's lookup points at.
    pub fn note(&self, id: u32) -> Option<&Note> {
        self.notes.get(usize::try_from(id).ok()?)
    }

    /// Entries that expire before `until` (seconds since the epoch), expired ones
    /// included.
    pub fn expiring_before(&self, until: i64) -> impl Iterator<Item = &Note> {
        self.notes
            .iter()
            .filter(move |n| n.info.expires.as_ref().is_some_and(|e| e.at <= until))
    }

    /// The first instant after `now` at which an entry expires, if any does: the next
    /// time a verdict can change without the allowlist changing.
    pub fn next_expiry(&self, now: i64) -> Option<i64> {
        self.notes
            .iter()
            .filter_map(|n| n.info.expires.as_ref().map(|e| e.at))
            .filter(|&at| at > now)
            .min()
    }

    /// The address a pod DNS name spells: `198-51-100-66.<ns>.pod.<domain>` (or IPv6 with
    /// `-` for `:`) under an internal domain. CoreDNS answers such names with the address
    /// itself in its default `pods insecure` mode, so the name goes wherever it says.
    pub fn pod_dns_address(&self, name: &str) -> Option<std::net::IpAddr> {
        self.internal_domains.iter().find_map(|d| {
            let zone = name.strip_suffix(&**d)?.strip_suffix(".pod.")?;
            let (ip, ns) = zone.split_once('.')?;
            if ns.is_empty() || ns.contains('.') {
                return None;
            }
            let v4 = ip.replace('-', ".");
            v4.parse::<std::net::Ipv4Addr>()
                .map(std::net::IpAddr::V4)
                .or_else(|_| {
                    ip.replace('-', ":")
                        .parse::<std::net::Ipv6Addr>()
                        .map(std::net::IpAddr::V6)
                })
                .ok()
        })
    }

    /// The namespace of a Service DNS name (`<service>.<ns>.svc.<domain>`, or a pod
    /// hostname under it), if `name` is one.
    pub fn service_namespace<'n>(&self, name: &'n str) -> Option<&'n str> {
        self.internal_domains.iter().find_map(|d| {
            let rest = name.strip_suffix(&**d)?.strip_suffix(".svc.")?;
            rest.rsplit('.').next().filter(|ns| !ns.is_empty())
        })
    }

    /// True when a wildcard host covers names resolved by cluster DNS that can point
    /// anywhere: pod DNS names (any address) or Service names (any namespace's
    /// ExternalName CNAMEs).
    pub fn covers_resolvable(&self, host: &HostPattern) -> bool {
        if self.covers_pod_dns(host) {
            return true;
        }
        let suffix = match host {
            HostPattern::Wildcard(s) | HostPattern::Partial { suffix: s, .. } => &**s,
            _ => return false,
        };
        self.internal_domains.iter().any(|d| {
            let zone = format!("svc.{d}");
            suffix == zone || host::is_strict_subdomain(&zone, suffix)
        })
    }

    /// True when a wildcard host covers pod DNS names (`*.pod.cluster.local`,
    /// `*.team.pod.cluster.local`, `*.cluster.local`, …): resolved per request, such a
    /// host reaches every address.
    pub fn covers_pod_dns(&self, host: &HostPattern) -> bool {
        let suffix = match host {
            HostPattern::Any => return true,
            HostPattern::Exact(_) => return false,
            HostPattern::Wildcard(s) | HostPattern::Partial { suffix: s, .. } => &**s,
        };
        self.internal_domains.iter().any(|d| {
            let zone = format!("pod.{d}");
            // `*.<ns>.pod.<d>`, `*.pod.<d>`, or a wildcard over a parent of the zone.
            suffix
                .strip_suffix(&zone)
                .and_then(|ns| ns.strip_suffix('.'))
                .is_some_and(|ns| !ns.contains('.'))
                || suffix == zone
                || host::is_strict_subdomain(&zone, suffix)
        })
    }

    /// True when the address or network lies inside the cluster's own networks.
    pub fn in_cluster(&self, net: &IpNet) -> bool {
        self.cluster_networks.contains_net(&unmap_v4(net))
    }

    /// May EnvoyFilters be created in the namespace.
    pub fn may_envoy_filter(&self, ns: &str) -> bool {
        self.namespace(ns).is_some_and(|n| n.allow_envoy_filter)
    }

    /// May workloads in the namespace opt out of capture or replace the proxy.
    pub fn may_opt_out(&self, ns: &str) -> bool {
        self.namespace(ns).is_some_and(|n| n.allow_capture_opt_out)
    }

    /// True when the namespace may reach every host on `ports` and every address: then
    /// no name, whatever it resolves to, leads anywhere not already allowed.
    pub fn grants_everything(&self, ns: &str, ports: &PortSet, now: Option<i64>) -> bool {
        let every_host = HostPattern::from_accepted("*");
        ["0.0.0.0/0", "::/0"].iter().all(|n| {
            n.parse()
                .is_ok_and(|n| matches!(self.lookup_net(ns, &n, now), Lookup::Allowed(..)))
        }) && matches!(
            self.lookup_host(ns, &every_host, ports, now),
            Lookup::Allowed(..)
        )
    }

    /// True when the network is entirely allowed for the namespace (global or its own
    /// CIDRs, live at `now`) or inside the cluster.
    pub fn net_allowed(&self, ns: &str, net: &IpNet, now: Option<i64>) -> bool {
        self.in_cluster(net) || matches!(self.lookup_net(ns, net, now), Lookup::Allowed(..))
    }

    /// True when a Gateway with this selector configures an egress gateway: it selects
    /// the pods of one (selector ⊆ an `egressGatewayLabels` set; an empty selector
    /// selects every gateway), or it contains one of `egressGatewaySelectors`.
    pub fn is_egress_selector<'s>(
        &self,
        selector: impl Iterator<Item = (&'s str, &'s str)> + Clone,
    ) -> bool {
        let mut sel = selector.clone().peekable();
        if sel.peek().is_none() {
            return true;
        }
        let selects = |labels: &BTreeMap<String, String>| {
            selector
                .clone()
                .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
        };
        let contains = |want: &BTreeMap<String, String>| {
            !want.is_empty()
                && want
                    .iter()
                    .all(|(k, v)| selector.clone().any(|(sk, sv)| sk == k && sv == v))
        };
        self.egress_gateway_labels.iter().any(selects)
            || self.egress_gateway_selectors.iter().any(contains)
    }
}

/// Parses the document with a streaming YAML parser (events are consumed as they are
/// read, and host and CIDR lists are indexed entry by entry) within budgets, so that
/// neither a large allowlist nor a hostile one costs more than its index.
fn parse(text: &str) -> Result<Doc, AllowlistError> {
    let limits = crate::policy::yaml::Limits {
        depth: 32,
        nodes: 20_000_000,
        replayed: 100_000,
    };
    crate::policy::yaml::from_str(text, limits).map_err(|e| AllowlistError::Invalid {
        message: e.message,
        line: e.line,
    })
}

/// The allowlist's JSON Schema, pretty-printed: what `egress-guard schema` prints and
/// `docs/allowlist.schema.json` holds.
pub fn schema_json() -> String {
    serde_json::to_string_pretty(&schema()).unwrap_or_default()
}

/// The control plane's own writers: kube-controller-manager's endpoint controllers (with
/// per-controller credentials, as kubeadm runs it, or its own identity), the apiserver
/// (it keeps `default/kubernetes`'s Endpoints and EndpointSlice at its own addresses),
/// istiod (its Gateway API gateway Deployments; the WorkloadEntries it auto-registers are
/// judged all the same, their address being the connecting proxy's word), and
/// the controllers that turn those Deployments into ReplicaSets and pods.
pub const DEFAULT_TRUSTED_WRITERS: [&str; 8] = [
    "system:serviceaccount:kube-system:endpoint-controller",
    "system:serviceaccount:kube-system:endpointslice-controller",
    "system:serviceaccount:kube-system:endpointslicemirroring-controller",
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:kube-controller-manager",
    "system:apiserver",
    "system:serviceaccount:istio-system:istiod",
];

/// The pod labels Istio's egress gateway chart (`manifests/charts/gateways/istio-egress`)
/// puts on its gateway: a selector on any subset of them selects the egress gateway.
fn default_egress_gateway_labels() -> Vec<BTreeMap<String, String>> {
    let labels = [
        ("app", "istio-egressgateway"),
        ("istio", "egressgateway"),
        ("app.kubernetes.io/name", "istio-egressgateway"),
        ("service.istio.io/canonical-name", "istio-egressgateway"),
        ("service.istio.io/canonical-revision", "latest"),
        ("istio.io/rev", "default"),
        ("operator.istio.io/component", "EgressGateways"),
        ("install.operator.istio.io/owning-resource", "unknown"),
        ("sidecar.istio.io/inject", "false"),
        ("istio.io/dataplane-mode", "none"),
        ("heritage", "Tiller"),
        ("release", "istio"),
        ("chart", "gateways"),
    ];
    vec![
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    ]
}

/// `::ffff:a.b.c.d/n` (n ≥ 96) as `a.b.c.d/(n−96)`; anything else unchanged.
pub fn unmap_v4(net: &IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Some(len) = v6.prefix_len().checked_sub(96)
        && let Ok(mapped) = ipnet::Ipv4Net::new(v4, len)
    {
        return IpNet::V4(mapped);
    }
    *net
}

fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Allowlist {
        Allowlist::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn load_err(yaml: &str) -> String {
        Allowlist::from_yaml(yaml)
            .expect_err("allowlist should be rejected")
            .to_string()
    }

    #[test]
    fn example_allowlist_loads() {
        let a = load(EXAMPLE);
        assert!(a.entries() > 5);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    }

    #[test]
    fn spec_example_loads_with_every_field() {
        let a = load(
            r#"
mode: enforce
defaultTimeout: 15s
timeoutScope: external
strict: true
exemptNamespaces: [istio-system]
internalDomains: [svc.cluster.local, cluster.local]
egressGatewaySelectors:
  - {istio: egressgateway}
hosts:
  - api.github.com
  - "*.googleapis.com"
  - {host: db.example.com, ports: [5432]}
cidrs: [203.0.113.0/24, "2001:db8::/32"]
namespaces:
  payments:
    hosts: [api.stripe.com]
    cidrs: []
    mode: audit
    defaultTimeout: 5s
    allowAnyOutbound: false
"#,
        );
        assert_eq!(a.mode, Mode::Enforce);
        assert_eq!(a.mode_for("payments"), Mode::Audit);
        assert_eq!(
            a.default_timeout_for("default"),
            Some(Duration::from_millis(15_000))
        );
        assert_eq!(
            a.default_timeout_for("payments"),
            Some(Duration::from_millis(5_000))
        );
        assert!(a.strict);
        assert!(a.exempt_namespaces.contains("istio-system"));
        assert_eq!(a.entries(), 6);
        let stripe: HostPattern = "api.stripe.com".parse().unwrap();
        assert!(matches!(
            a.lookup_host("payments", &stripe, &PortSet::default(), None),
            Lookup::Allowed(Grant::Namespace, _)
        ));
        assert_eq!(
            a.lookup_host("default", &stripe, &PortSet::default(), None),
            Lookup::NotCovered
        );
        let db: HostPattern = "db.example.com".parse().unwrap();
        assert!(matches!(
            a.lookup_host("x", &db, &PortSet::new(vec![5432]), None),
            Lookup::Allowed(Grant::Global, _)
        ));
        assert_eq!(
            a.lookup_host("x", &db, &PortSet::new(vec![3306]), None),
            Lookup::PortsDenied {
                first: vec![3306],
                count: 1,
                allowed: vec![5432],
            }
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        let a = load("cidrs: [203.0.113.0/24]\n");
        for (net, allowed) in [
            ("::ffff:203.0.113.9/128", true),
            ("::ffff:203.0.113.0/120", true),
            ("::ffff:203.0.112.0/119", false),
            ("::ffff:198.51.100.1/128", false),
            ("::ffff:0:0/96", false),
        ] {
            let got = a.lookup_net("x", &net.parse().unwrap(), None);
            assert_eq!(
                matches!(got, Lookup::Allowed(Grant::Global, _)),
                allowed,
                "{net}"
            );
        }
    }

    #[test]
    fn defaults_apply() {
        let a = load("hosts: [api.github.com]\n");
        assert_eq!(a.mode, Mode::Enforce);
        assert_eq!(a.default_timeout, None);
        assert_eq!(a.timeout_scope, TimeoutScope::External);
        assert!(!a.strict);
        assert!(a.is_internal(&"reviews".parse().unwrap()));
        assert!(a.is_internal(&"reviews.default.svc.cluster.local".parse().unwrap()));
        assert!(!a.is_internal(&"api.github.com".parse().unwrap()));
    }

    #[test]
    fn zero_timeout_turns_the_default_off() {
        let a = load(
            "defaultTimeout: 0s\nnamespaces:\n  a: {defaultTimeout: 0s}\n  b: {defaultTimeout: 2s}\n",
        );
        assert_eq!(a.default_timeout_for("x"), None);
        assert_eq!(a.default_timeout_for("a"), None);
        assert_eq!(
            a.default_timeout_for("b"),
            Some(Duration::from_millis(2_000))
        );
        let b = load("defaultTimeout: 3s\nnamespaces:\n  a: {defaultTimeout: 0s}\n");
        assert_eq!(b.default_timeout_for("a"), None);
        assert_eq!(
            b.default_timeout_for("z"),
            Some(Duration::from_millis(3_000))
        );
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let cases = [
            ("mode: enforce\nbogus: 1\n", &["bogus", "line 2"][..]),
            (
                "hosts:\n  - api.github.com\n  - \"-bad.example.com\"\n",
                &["hosts[1]", "line 3", "-bad.example.com"],
            ),
            ("cidrs: [10.0.0.0/33]\n", &["cidrs[0]", "line 1"]),
            ("mode: block\n", &["mode", "line 1", "enforce"]),
            ("defaultTimeout: soon\n", &["defaultTimeout", "line 1"]),
            (
                "namespaces:\n  payments:\n    hosts: [ok.example]\n    allowAny: true\n",
                &["allowAny", "line 4"],
            ),
            ("namespaces:\n  Bad_NS: {}\n", &["Bad_NS"]),
            (
                "hosts:\n  - {host: db.example.com, ports: [70000]}\n",
                &["hosts[0]", "line 2"],
            ),
            (
                "hosts:\n  - {host: db.example.com, ports: []}\n",
                &["hosts[0]", "ports"],
            ),
            (
                "hosts:\n  - {host: db.example.com, port: [1]}\n",
                &["port", "line 2"],
            ),
            ("hosts: [\"*foo.example.com\"]\n", &["partial wildcard"]),
            ("hosts: [10.0.0.1]\n", &["cidrs"]),
            ("hosts: [\"a.*.example.com\"]\n", &["hosts[0]", "wildcard"]),
            ("internalDomains: [\"*.local\"]\n", &["internalDomains[0]"]),
            ("hosts: api.github.com\n", &["hosts"]),
            ("", &["empty"]),
            ("mode: [\n", &["line"]),
            (
                "hosts: [a.example]\nhelp: \"ask in #egress for {hots}\"\n",
                &["help", "line 2", "unknown placeholder {hots}"],
            ),
            (
                "namespaces:\n  team:\n    help: \"see {namespace\"\n",
                &["namespaces.team.help", "line 3", "without its `}`"],
            ),
        ];
        for (yaml, needles) in cases {
            let err = load_err(yaml);
            for n in needles {
                assert!(
                    err.contains(n),
                    "error for {yaml:?} should mention {n:?}: {err}"
                );
            }
        }
    }

    #[test]
    fn namespace_prefixes_grant_to_every_namespace_they_start() {
        let a = Allowlist::from_yaml(
            "namespaces:\n  team-*:\n    mode: audit\n  team-pay*:\n    defaultTimeout: 5s\n  team-payments:\n    allowEnvoyFilter: true\n",
        )
        .unwrap();
        assert_eq!(a.mode_for("team-a"), Mode::Audit);
        assert_eq!(
            a.mode_for("team-"),
            Mode::Audit,
            "the prefix alone is a name it starts"
        );
        assert_eq!(a.mode_for("teams"), Mode::Enforce);
        assert_eq!(a.mode_for("ateam-a"), Mode::Enforce);
        // The longest prefix wins, whole: its entry does not inherit the shorter one's.
        assert_eq!(a.mode_for("team-payroll"), Mode::Enforce);
        assert_eq!(
            a.default_timeout_for("team-payroll")
                .map(|d| d.to_string())
                .as_deref(),
            Some("5s")
        );
        // The namespace's own entry wins over every prefix.
        assert!(a.may_envoy_filter("team-payments"));
        assert_eq!(a.mode_for("team-payments"), Mode::Enforce);
        assert!(!a.may_envoy_filter("team-payroll"));
        for bad in ["*", "-team*", "Team*", "team**", "te*am", "a.b*"] {
            let err = load_err(&format!("namespaces:\n  {bad:?}: {{}}\n"));
            assert!(err.contains("namespace"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_readmes_allowlist_loads() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```yaml\nmode: enforce")
            .expect("README has the allowlist example");
        let body = &readme[start + "```yaml\n".len()..];
        let doc = &body[..body.find("```").expect("the example is closed")];
        let a = Allowlist::from_yaml(doc).unwrap_or_else(|e| panic!("{e}"));
        assert!(a.help_for("payments").is_some() && a.help_for("other").is_some());
    }

    #[test]
    fn a_namespace_help_replaces_the_global_one() {
        let a = Allowlist::from_yaml(
            "help: \"global {namespace}\"\nnamespaces:\n  team:\n    help: \"team's own\"\n  other: {}\n",
        )
        .unwrap();
        let render = |ns: &str| {
            a.help_for(ns).map(|t| {
                t.render(&crate::policy::help::Subject {
                    namespace: ns,
                    ..Default::default()
                })
            })
        };
        assert_eq!(render("team").as_deref(), Some("team's own"));
        assert_eq!(render("other").as_deref(), Some("global other"));
        assert_eq!(render("unlisted").as_deref(), Some("global unlisted"));
        assert_eq!(
            Allowlist::from_yaml("hosts: []\n").unwrap().help_for("x"),
            None
        );
    }

    #[test]
    fn star_entry_loads_with_a_warning() {
        let a = load("hosts: [\"*\"]\n");
        assert_eq!(a.warnings.len(), 1);
        assert!(matches!(
            a.lookup_host(
                "x",
                &"anything.example".parse().unwrap(),
                &PortSet::default(),
                None
            ),
            Lookup::Allowed(Grant::Global, _)
        ));
    }

    #[test]
    fn egress_gateways_are_decided_by_the_pods_they_select() {
        let sel = |pairs: &'static [(&'static str, &'static str)]| pairs.iter().copied();
        // Default: Istio's egress gateway labels.
        let a = load("hosts: [a.example]\n");
        assert!(a.is_egress_selector(sel(&[("istio", "egressgateway")])));
        assert!(a.is_egress_selector(sel(&[("app", "istio-egressgateway")])));
        assert!(
            a.is_egress_selector(sel(&[])),
            "an empty selector selects every gateway"
        );
        assert!(!a.is_egress_selector(sel(&[("istio", "ingressgateway")])));
        assert!(!a.is_egress_selector(sel(&[("istio", "egressgateway"), ("extra", "x")])));
        // Configured pod labels replace the default; old-style selectors still count.
        let b = load(
            "egressGatewayLabels:\n  - {app: egress, team: net}\negressGatewaySelectors:\n  - {gw: out}\n",
        );
        assert!(b.is_egress_selector(sel(&[("team", "net")])));
        assert!(!b.is_egress_selector(sel(&[("istio", "egressgateway")])));
        assert!(b.is_egress_selector(sel(&[("gw", "out"), ("zone", "a")])));
    }

    #[test]
    fn next_expiry_is_the_earliest_entry_still_to_expire() {
        let a = load(
            "hosts:\n  - {host: a.example, expires: \"2030-01-01T00:00:10Z\"}\n  - b.example\ncidrs:\n  - {cidr: 203.0.113.0/24, expires: \"2030-01-01T00:00:05Z\"}\nnamespaces:\n  team:\n    hosts:\n      - {host: c.example, expires: \"2030-01-01T00:00:20Z\", owner: team}\n",
        );
        let t0 = 1_893_456_000; // 2030-01-01T00:00:00Z
        assert_eq!(a.next_expiry(t0), Some(t0 + 5));
        // An entry expiring exactly now has expired: the next one is later.
        assert_eq!(a.next_expiry(t0 + 5), Some(t0 + 10));
        assert_eq!(a.next_expiry(t0 + 10), Some(t0 + 20));
        assert_eq!(a.next_expiry(t0 + 20), None);
        assert_eq!(load("hosts: [a.example]\n").next_expiry(t0), None);
    }

    #[test]
    fn the_shipped_schema_is_the_generated_one() {
        let shipped = include_str!("../../../docs/allowlist.schema.json");
        assert_eq!(
            shipped.trim_end(),
            schema_json(),
            "docs/allowlist.schema.json is stale: run `cargo run -- schema > docs/allowlist.schema.json`"
        );
    }
}
