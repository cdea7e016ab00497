//! Egress references: a name or address a kind found, and how the proxy (or istio-agent,
//! istiod, the kubelet) reaches it. [`Findings::egress`] is the one call that judges
//! one against the allowlist; [`Findings::host_field`] combines it with a field's
//! syntax rule.

use ipnet::IpNet;

use super::{Context, Findings, MAX_WARNINGS};
use crate::policy::allowlist::{Allowlist, Grant, Lookup, unmap_v4};
use crate::policy::decision::{Code, MAX_TEXT, truncated};
use crate::policy::host::{self, HostPattern};
use crate::policy::istio::{self, Failure};
use crate::policy::matcher::{Granted, PortSet};

use super::EXPIRY_WARNING;

/// How a name or address found in an object is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Dialled as written: a name is resolved by whoever connects, an IP literal or a
    /// pod DNS name is the address it spells. An internal name stays in the mesh.
    Dialled,
    /// Resolved through cluster DNS: as [`Reach::Dialled`], except that a Service name
    /// of another namespace is judged as the external host it may be (cluster DNS
    /// follows its ExternalName CNAME wherever that namespace's own grants allow, and
    /// ignores Istio's `exportTo`).
    ClusterDns,
    /// Sent as TLS SNI only: matched as a name even when it looks like an address.
    Sni,
    /// An address or network, already parsed.
    Net(IpNet),
    /// Matched against what a client sends (Host, SNI, destination address) and never
    /// dialled: no egress verdict, only its validity counts.
    MatchKey,
}

/// One egress reference: where it is in the object, its text, how it is reached, on
/// which ports traffic leaves, and whether the object is visible beyond its namespace
/// (a namespace-only grant then leaks).
#[derive(Clone, Copy)]
pub struct EgressRef<'r> {
    /// The field path, built only if something is reported.
    pub path: &'r dyn Fn() -> String,
    /// The text as written.
    pub raw: &'r str,
    /// How it is reached.
    pub reach: Reach,
    /// The ports traffic leaves on (`None`: not port-specific).
    pub ports: Option<&'r PortSet>,
    /// The object is visible beyond its own namespace.
    pub exported: bool,
}

impl<'r> EgressRef<'r> {
    /// A reference reached as `reach`, on any port, not exported.
    pub fn new(path: &'r dyn Fn() -> String, raw: &'r str, reach: Reach) -> Self {
        Self {
            path,
            raw,
            reach,
            ports: None,
            exported: false,
        }
    }

    /// On these ports.
    pub fn on(self, ports: Option<&'r PortSet>) -> Self {
        Self { ports, ..self }
    }

    /// Exported beyond the namespace (or not).
    pub fn exported(self, exported: bool) -> Self {
        Self { exported, ..self }
    }
}

/// How a host field sends traffic: how it is reached, on which ports, and whether a
/// namespace grant leaks.
#[derive(Debug, Clone, Copy)]
pub struct HostEgress<'a> {
    /// How the host is reached.
    pub reach: Reach,
    /// The ports traffic leaves on (empty: not port-specific).
    pub ports: Option<&'a PortSet>,
    /// The object is visible beyond its own namespace.
    pub exported: bool,
}

impl HostEgress<'_> {
    /// Dialled as written, on any port, not exported.
    pub const DIALLED: HostEgress<'static> = HostEgress {
        reach: Reach::Dialled,
        ports: None,
        exported: false,
    };
    /// A match key: validity only, no egress verdict.
    pub const MATCH_KEY: HostEgress<'static> = HostEgress {
        reach: Reach::MatchKey,
        ports: None,
        exported: false,
    };
}

/// What [`Findings::host_field`] found.
#[derive(Debug, Clone, Copy)]
pub struct HostField {
    /// The host passed the field's syntax rule.
    pub valid: bool,
    /// It was recorded as egress leaving the mesh.
    pub external: bool,
}

/// Where an egress reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A host name or wildcard.
    Host(HostPattern),
    /// An IP address (as a /32 or /128) or a CIDR.
    Net(IpNet),
}

impl Findings<'_> {
    /// The sequence every host field goes through: Istio's syntax rule for the field,
    /// the partial-wildcard policy when the field allows them (`partial_policy`), and an
    /// egress reference when the host is where traffic can go (`egress`). A host that
    /// fails the syntax rule is still an egress reference when it is an IP literal: an
    /// address traffic can reach.
    pub fn host_field(
        &mut self,
        cx: &Context<'_>,
        path: impl Fn() -> String,
        raw: &str,
        syntax: Result<(), Failure>,
        partial_policy: bool,
        egress: Option<HostEgress<'_>>,
    ) -> HostField {
        let valid = self.rule(&path, raw, syntax).is_some();
        if valid && partial_policy {
            self.partial_wildcard(cx, &path, raw);
        }
        let external = match egress {
            Some(e) if valid || is_ip_literal(raw) => self.egress(
                cx,
                EgressRef {
                    path: &path,
                    raw,
                    reach: e.reach,
                    ports: e.ports,
                    exported: e.exported,
                },
            ),
            _ => false,
        };
        HostField { valid, external }
    }

    /// Judges one egress reference against the allowlist, recording a violation when
    /// it is not granted; returns whether it leaves the mesh.
    pub fn egress(&mut self, cx: &Context<'_>, r: EgressRef<'_>) -> bool {
        let target = match r.reach {
            Reach::MatchKey => return false,
            Reach::Net(net) => Target::Net(net),
            Reach::Sni => Target::Host(HostPattern::from_accepted(r.raw)),
            Reach::Dialled | Reach::ClusterDns => target(r.raw, cx.allowlist),
        };
        match &target {
            Target::Host(_) if r.reach == Reach::ClusterDns && foreign_service(&target, cx) => {
                self.judge_external(cx, &r, target)
            }
            Target::Host(h) if cx.allowlist.is_internal(h) => false,
            _ => self.judge_external(cx, &r, target),
        }
    }

    /// Looks one reference up, internal names included, and records a violation when
    /// the allowlist does not grant it; returns whether it leaves the mesh.
    fn judge_external(&mut self, cx: &Context<'_>, r: &EgressRef<'_>, target: Target) -> bool {
        let (path, value, ports, exported) = (r.path, r.raw, r.ports, r.exported);
        if !self.charge(value.len().max(1)) {
            return false;
        }
        let (ns, allowlist) = (cx.namespace, cx.allowlist);
        let none = PortSet::default();
        let lookup = match &target {
            Target::Host(h) => allowlist.lookup_host(ns, h, ports.unwrap_or(&none), cx.now),
            Target::Net(n) if allowlist.in_cluster(n) => return false,
            // Loopback never leaves the pod that dials it (a local ext-authz or telemetry
            // agent beside the app).
            Target::Net(n) if is_loopback(n) => return false,
            Target::Net(n) => allowlist.lookup_net(ns, &unmap_v4(n), cx.now),
        };
        let violates = match &lookup {
            Lookup::Allowed(Grant::Global, _) => false,
            Lookup::Allowed(Grant::Namespace, _) => exported,
            _ => true,
        };
        if violates && !self.room() {
            // Past the kept hundred: counted, not written.
            self.omit();
            return true;
        }
        let (code, message) = match lookup {
            Lookup::Allowed(Grant::Global, g) => {
                self.granted(cx, &path, value, &g);
                return true;
            }
            Lookup::Allowed(Grant::Namespace, g) if !exported => {
                self.granted(cx, &path, value, &g);
                return true;
            }
            Lookup::Allowed(Grant::Namespace, _) => (
                Code::GrantExported,
                format!(
                    "granted only to namespace {ns}; set exportTo: [\".\"] so the grant does not leak to the mesh"
                ),
            ),
            Lookup::PortsDenied {
                first,
                count,
                allowed,
            } => (
                Code::PortNotAllowed,
                format!(
                    "not allowed on port(s) {}; the allowlist allows it on port(s) {}",
                    port_list(&first, count),
                    port_list(&allowed, allowed.len())
                ),
            ),
            Lookup::NotCovered => {
                let expired = expired_grant(cx, &target, ports.unwrap_or(&none));
                match &target {
                    // A pod DNS name: say which address it spells.
                    Target::Net(n) if istio::ip_subnet(value).is_err() => (
                        Code::AddressNotAllowed,
                        format!(
                            "resolves to {}, not inside an allowed CIDR for namespace {ns}{expired}",
                            n.addr()
                        ),
                    ),
                    Target::Net(_) => (
                        Code::AddressNotAllowed,
                        format!("not inside an allowed CIDR for namespace {ns}{expired}"),
                    ),
                    Target::Host(h) if h.is_wildcard() => (
                        Code::WildcardTooBroad,
                        format!(
                            "wildcard matches hosts the allowlist does not cover for namespace {ns}{expired}"
                        ),
                    ),
                    Target::Host(_) => (
                        Code::HostNotAllowed,
                        format!("not in the allowlist for namespace {ns}{expired}"),
                    ),
                }
            }
        };
        self.record(code, path, value, &message);
        true
    }
}

/// Ports named in an `EG104` message, per list; the rest are counted.
const PORTS_NAMED: usize = 10;

/// "25, 465 and 3 more": the first ports of a list of `count`.
fn port_list(ports: &[u16], count: usize) -> String {
    let mut named: Vec<String> = ports.iter().take(PORTS_NAMED).map(u16::to_string).collect();
    let more = count.saturating_sub(named.len());
    if more > 0 {
        named.push(format!("and {more} more"));
    }
    named.join(", ")
}

/// "allowlist entry 3 (hooks.slack.com; owner team-payments, reason CHG-42, expires
/// 2026-12-10)": the grant as the platform wrote it.
fn grant_text(cx: &Context<'_>, g: &Granted<'_>) -> String {
    let mut s = format!("allowlist entry {}", g.entry);
    if let Some(n) = g.note.and_then(|id| cx.allowlist.note(id)) {
        let i = &n.info;
        let parts: Vec<String> = [
            i.owner.as_deref().map(|o| format!("owner {o}")),
            i.reason.as_deref().map(|r| format!("reason {r}")),
            i.expires.as_ref().map(|e| format!("expires {}", e.text)),
        ]
        .into_iter()
        .flatten()
        .collect();
        s = format!("{} ({}; {})", s, n.entry, parts.join(", "));
    }
    s
}

/// The grant that would cover the reference but for its expiry, as a clause for the
/// denial ("; the grant allowlist entry 3 (…) has expired").
fn expired_grant(cx: &Context<'_>, target: &Target, ports: &PortSet) -> String {
    if cx.now.is_none() {
        return String::new();
    }
    let (ns, allowlist) = (cx.namespace, cx.allowlist);
    let timeless = match target {
        Target::Host(h) => allowlist.lookup_host(ns, h, ports, None),
        Target::Net(n) => allowlist.lookup_net(ns, &unmap_v4(n), None),
    };
    match timeless {
        Lookup::Allowed(_, g) => format!("; the grant {} has expired", grant_text(cx, &g)),
        _ => String::new(),
    }
}

impl Findings<'_> {
    /// Notes what granted a reference: a warning when the entry expires within
    /// [`EXPIRY_WARNING`], and an explanation when asked for.
    fn granted(
        &mut self,
        cx: &Context<'_>,
        path: &dyn Fn() -> String,
        value: &str,
        g: &Granted<'_>,
    ) {
        let describe = || grant_text(cx, g);
        if let (Some(at), Some(now)) = (g.expires, cx.now)
            && at - now <= EXPIRY_WARNING
        {
            let days = (at - now + 86_399) / 86_400;
            self.warn(|| {
                format!(
                    "{} {value:?}: {} ends within {days} day(s); after that, writes of this object are judged without it (what runs keeps routing: audit reports it)",
                    path(),
                    describe()
                )
            });
        }
        if cx.explain && self.explanations.len() < MAX_WARNINGS {
            self.explanations.push(truncated(
                &format!("{} {value:?}: granted by {}", path(), describe()),
                MAX_TEXT,
            ));
        }
    }
}

/// True when a host as written leaves the mesh: not an internal name, not a cluster or
/// loopback address. What a registry selector (a route destination) points at when it
/// is not judged as egress itself, e.g. for the timeout mutation's scope.
pub fn is_external(raw: &str, allowlist: &Allowlist) -> bool {
    match target(raw, allowlist) {
        Target::Host(h) => !allowlist.is_internal(&h),
        Target::Net(n) => !(allowlist.in_cluster(&n) || is_loopback(&n)),
    }
}

/// True for a network inside 127.0.0.0/8 or ::1 (IPv4-mapped included).
pub fn is_loopback(net: &IpNet) -> bool {
    match unmap_v4(net) {
        IpNet::V4(n) => n.prefix_len() >= 8 && n.network().is_loopback(),
        IpNet::V6(n) => n.prefix_len() == 128 && n.network().is_loopback(),
    }
}

/// True for a Service DNS name of another namespace (not a platform one).
fn foreign_service(target: &Target, cx: &Context<'_>) -> bool {
    match target {
        Target::Host(HostPattern::Exact(name)) => cx
            .allowlist
            .service_namespace(name)
            .is_some_and(|ns| ns != cx.namespace && !cx.allowlist.exempt_namespaces.contains(ns)),
        _ => false,
    }
}

/// Where a host string Istio accepts sends traffic: an address when it is an IP
/// literal (after normalisation, so `1.2.3.4.` too) or a pod DNS name, which resolves to
/// the address it spells; otherwise a host pattern.
pub fn target(raw: &str, allowlist: &Allowlist) -> Target {
    let name = host::normalize(raw);
    if let Some(ip) = istio::parse_ip(&name).or_else(|| allowlist.pod_dns_address(&name)) {
        return Target::Net(IpNet::from(ip));
    }
    Target::Host(HostPattern::from_accepted(raw))
}

/// An address as Kubernetes reads one in its own fields (Service `externalIPs`, pod
/// `hostAliases` and nameservers): like Istio, plus IPv4 with leading zeros, which the
/// apiserver accepts (only warning) and kube-proxy reads as decimal (`010` is 10).
pub fn kube_ip(raw: &str) -> Option<std::net::IpAddr> {
    if let Some(ip) = istio::parse_ip(raw) {
        return Some(ip);
    }
    let mut octets = [0u8; 4];
    let mut parts = raw.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts
        .next()
        .is_none()
        .then(|| std::net::IpAddr::from(octets))
}

/// True when a host should be judged even though a validity rule failed: an IP where a
/// name is required is still an address traffic can go to.
pub fn is_ip_literal(raw: &str) -> bool {
    istio::parse_ip(&host::normalize(raw)).is_some()
}
