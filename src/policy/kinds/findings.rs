//! What a kind module reports while it reads an object: violations, warnings, and
//! egress references, each judged against the allowlist the moment it is found.
//!
//! Everything here is bounded: the first [`MAX_VIOLATIONS`] violations and
//! [`MAX_WARNINGS`] warnings are kept (the rest are counted), texts are cut, and every
//! call charges the work [`Budget`]. Field paths are built lazily, only for what is
//! reported, so valid fields cost no allocation.

use std::fmt;

use ipnet::IpNet;

use super::HttpRouteInfo;
use crate::policy::allowlist::{Allowlist, Grant, Lookup, unmap_v4};
use crate::policy::budget::Budget;
use crate::policy::decision::{Code, MAX_TEXT, MAX_VALUE, Violation, truncated, truncated_display};
use crate::policy::host::{self, HostPattern};
use crate::policy::istio::{self, Failure};
use crate::policy::matcher::{Granted, PortSet};

/// Violations kept per object; more are counted in [`Findings::omitted`].
pub const MAX_VIOLATIONS: usize = 100;
/// Warnings kept per object; one more line says how many were left out.
pub const MAX_WARNINGS: usize = 100;

/// What is needed from outside the object to judge it.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The allowlist in force.
    pub allowlist: &'a Allowlist,
    /// The object's namespace.
    pub namespace: &'a str,
    /// Only the containers `kubectl debug` adds are judged (a Pod UPDATE through the
    /// `ephemeralcontainers` subresource).
    pub ephemeral_only: bool,
    /// The time, seconds since the epoch, for entries that expire (`None`: ignored).
    pub now: Option<i64>,
    /// Record which entry granted each reference.
    pub explain: bool,
    /// Written by one of the allowlist's `trustedWriters` (the control plane).
    pub trusted_writer: bool,
}

/// How long before an entry used by an object expires that the object is warned.
pub const EXPIRY_WARNING: i64 = 14 * 86_400;

/// Who an object is visible to, as far as its egress is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Export {
    /// Only its own namespace.
    #[default]
    Local,
    /// Other namespaces too (named, not `*`): whether one of them is in enforce mode,
    /// which is all that is asked of them (a list as long as the body allows is not
    /// kept).
    To {
        /// Some namespace it is exported to is in enforce mode.
        enforced: bool,
    },
    /// Every namespace.
    Everywhere,
}

impl Export {
    /// True when visible beyond its own namespace.
    pub fn beyond_namespace(&self) -> bool {
        *self != Export::Local
    }
}

/// Where an egress reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A host name or wildcard.
    Host(HostPattern),
    /// An IP address (as a /32 or /128) or a CIDR.
    Net(IpNet),
}

/// How a host field sends traffic: on which ports, and whether a namespace grant leaks.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostEgress<'a> {
    /// The ports traffic leaves on (empty: not port-specific).
    pub ports: Option<&'a PortSet>,
    /// The object is visible beyond its own namespace.
    pub exported: bool,
}

/// What [`Findings::host_field`] found.
#[derive(Debug, Clone, Copy)]
pub struct HostField {
    /// The host passed the field's syntax rule.
    pub valid: bool,
    /// It was recorded as egress leaving the mesh.
    pub external: bool,
}

/// Everything one kind module finds in one object.
#[derive(Debug)]
pub struct Findings<'b> {
    /// Validity, allowlist and bypass violations, in field order (the first
    /// [`MAX_VIOLATIONS`]).
    pub violations: Vec<Violation>,
    /// Violations found beyond those kept.
    pub omitted: usize,
    /// Non-fatal findings (the first [`MAX_WARNINGS`]).
    pub warnings: Vec<String>,
    omitted_warnings: usize,
    /// VirtualService http routes, for the timeout mutation.
    pub http_routes: Vec<HttpRouteInfo>,
    /// The VirtualService's `egress-guard.io/default-timeout` annotation.
    pub timeout_annotation: Option<String>,
    /// Who the object's egress is visible to.
    pub export: Export,
    /// Which entry granted each reference (the first [`MAX_WARNINGS`]), when asked.
    pub explanations: Vec<String>,
    budget: Budget<'b>,
}

impl<'b> Findings<'b> {
    /// An empty report that may spend `budget`.
    pub fn new(budget: Budget<'b>) -> Self {
        Self {
            violations: Vec::new(),
            omitted: 0,
            warnings: Vec::new(),
            omitted_warnings: 0,
            http_routes: Vec::new(),
            timeout_annotation: None,
            export: Export::Local,
            explanations: Vec::new(),
            budget,
        }
    }

    /// Spends work; false once the budget is gone, after which loops should stop.
    pub fn charge(&mut self, units: usize) -> bool {
        self.budget.charge(units)
    }

    /// True once the budget is spent or the evaluation was cancelled.
    pub fn exhausted(&self) -> bool {
        self.budget.exhausted()
    }

    /// Closes the report: a spent budget becomes an `EG901` violation in front, and
    /// left-out warnings are counted in a last line.
    pub fn finish(mut self) -> Self {
        if self.budget.exhausted() {
            self.violations.insert(
                0,
                Violation::new(
                    Code::TooComplex,
                    "",
                    "",
                    "object too complex to evaluate within the work budget; nothing after this point was checked",
                ),
            );
        }
        if self.omitted_warnings > 0 {
            self.warnings
                .push(format!("and {} more warnings", self.omitted_warnings));
        }
        self
    }

    /// Records a violation (bounded: see [`MAX_VIOLATIONS`]).
    pub fn violation(&mut self, code: Code, path: impl AsRef<str>, value: &str, message: &str) {
        self.record(code, || path, value, message);
    }

    /// Records a violation whose path is built only if it is kept: a check that fails
    /// for every element of a long list spends its time judging, not formatting.
    pub fn record<P: AsRef<str>>(
        &mut self,
        code: Code,
        path: impl FnOnce() -> P,
        value: impl fmt::Display,
        message: &str,
    ) {
        if self.room() {
            self.budget.charge(1);
            let value = truncated_display(value, MAX_VALUE);
            self.violations
                .push(Violation::new(code, path().as_ref(), &value, message));
        } else {
            self.omit();
        }
    }

    /// True while another violation would be kept.
    fn room(&self) -> bool {
        self.violations.len() < MAX_VIOLATIONS
    }

    /// Counts `n` violations a check found past the kept ones without writing them.
    pub fn omit_many(&mut self, n: usize) {
        self.budget.charge(n);
        self.omitted += n;
    }

    /// Counts a violation past the kept ones.
    fn omit(&mut self) {
        self.budget.charge(1);
        self.omitted += 1;
    }

    /// Records one finding of a check over a list; its path and message are built only
    /// while the violation is kept.
    pub fn found(&mut self, path: impl FnOnce() -> String, value: &str, found: &istio::Found<'_>) {
        if self.room() {
            let (code, message) = found.failure();
            self.record(code, path, value, &message);
        } else {
            self.omit();
        }
    }

    /// Records that the field at `path` does not decode (`EG219`).
    pub fn invalid_spec(&mut self, path: &str, error: &str) {
        self.violation(
            Code::InvalidSpec,
            path,
            "",
            &format!("spec does not decode: {error}"),
        );
    }

    /// Records a warning (bounded: see [`MAX_WARNINGS`]); built only when kept.
    pub fn warn(&mut self, warning: impl FnOnce() -> String) {
        self.budget.charge(1);
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(truncated(&warning(), MAX_TEXT));
        } else {
            self.omitted_warnings += 1;
        }
    }

    /// Records the outcome of a rule: a violation on failure, the value on success.
    pub fn rule<T>(
        &mut self,
        path: impl Fn() -> String,
        value: impl fmt::Display,
        r: Result<T, Failure>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err((code, message)) => {
                self.record(code, path, value, &message);
                None
            }
        }
    }

    /// A port number (`agent.ValidatePort`): the port, or a violation quoting it.
    pub fn port(&mut self, path: impl Fn() -> String, number: i64) -> Option<u16> {
        match istio::port_number(number) {
            Ok(p) => Some(p),
            Err((code, message)) => {
                self.record(code, path, number, &message);
                None
            }
        }
    }

    /// Records every failure of a rule that can fail several ways.
    pub fn rules(&mut self, path: impl Fn() -> String, value: &str, failures: Vec<Failure>) {
        for (code, message) in failures {
            self.record(code, &path, value, &message);
        }
    }

    /// Applies the partial-wildcard policy to a ServiceEntry, VirtualService or
    /// DestinationRule host (`ValidatePartialWildCard`): Istio only warns, which has
    /// caused outages, so `strict` denies. Warnings start with the code.
    pub fn partial_wildcard(&mut self, cx: &Context<'_>, path: impl Fn() -> String, value: &str) {
        if !istio::is_partial_wildcard(value) {
            return;
        }
        if cx.allowlist.strict {
            self.violation(
                Code::PartialWildcard,
                path(),
                value,
                "partial wildcards are denied in strict mode; use \"*.domain\"",
            );
        } else {
            self.warn(|| {
                format!(
                    "{} {}: partial wildcard {value:?} matches unpredictably (Istio only warns); use \"*.domain\"",
                    Code::PartialWildcard,
                    path()
                )
            });
        }
    }

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
            Some(e) if valid || is_ip_literal(raw) => {
                self.host_ref(cx, &path, raw, e.ports, e.exported)
            }
            _ => false,
        };
        HostField { valid, external }
    }

    /// Judges a host as written in the resource, unless it stays inside the mesh; says
    /// whether it leaves the mesh. IP literals (`10.0.0.1`, `1.2.3.4.`) are judged as
    /// addresses.
    pub fn host_ref(
        &mut self,
        cx: &Context<'_>,
        path: impl Fn() -> String,
        value: &str,
        ports: Option<&PortSet>,
        exported: bool,
    ) -> bool {
        let target = target(value, cx.allowlist);
        self.judge(cx, path, value, target, ports, exported)
    }

    /// Judges a host the proxy resolves through cluster DNS (DNS resolution, endpoint
    /// names, ExternalName). An internal name is trusted, except a Service of another
    /// namespace: cluster DNS follows its ExternalName CNAME wherever that namespace's
    /// own grants allow, and ignores Istio's `exportTo`, so it is judged as the external
    /// host it may be.
    pub fn resolved_ref(
        &mut self,
        cx: &Context<'_>,
        path: impl Fn() -> String,
        value: &str,
        ports: Option<&PortSet>,
        exported: bool,
    ) -> bool {
        let target = target(value, cx.allowlist);
        if foreign_service(&target, cx) {
            return self.judge_external(cx, path, value, target, ports, exported);
        }
        self.judge(cx, path, value, target, ports, exported)
    }

    /// The part of [`Self::resolved_ref`] a host already judged as written still needs:
    /// a Service name of another namespace, judged as external.
    pub fn foreign_service_ref(
        &mut self,
        cx: &Context<'_>,
        path: impl Fn() -> String,
        value: &str,
        ports: Option<&PortSet>,
        exported: bool,
    ) {
        let target = target(value, cx.allowlist);
        if foreign_service(&target, cx) {
            self.judge_external(cx, path, value, target, ports, exported);
        }
    }

    /// Judges a name that is matched as a name even when it looks like an IP address:
    /// a TLS SNI is sent to the server, it is not where traffic goes.
    pub fn name_ref(&mut self, cx: &Context<'_>, path: impl Fn() -> String, value: &str) -> bool {
        let target = Target::Host(HostPattern::from_accepted(value));
        self.judge(cx, path, value, target, None, false)
    }

    /// Judges an address or network.
    pub fn net_ref(
        &mut self,
        cx: &Context<'_>,
        path: impl Fn() -> String,
        value: &str,
        net: IpNet,
        exported: bool,
    ) {
        self.judge(cx, path, value, Target::Net(net), None, exported);
    }

    /// Looks one reference up and records a violation when the allowlist does not
    /// grant it; returns whether it leaves the mesh.
    fn judge(
        &mut self,
        cx: &Context<'_>,
        path: impl Fn() -> String,
        value: &str,
        target: Target,
        ports: Option<&PortSet>,
        exported: bool,
    ) -> bool {
        match &target {
            Target::Host(h) if cx.allowlist.is_internal(h) => false,
            _ => self.judge_external(cx, path, value, target, ports, exported),
        }
    }

    /// [`Self::judge`] without the internal-name exemption.
    fn judge_external(
        &mut self,
        cx: &Context<'_>,
        path: impl Fn() -> String,
        value: &str,
        target: Target,
        ports: Option<&PortSet>,
        exported: bool,
    ) -> bool {
        if !self.charge(value.len().max(1)) {
            return false;
        }
        let (ns, allowlist) = (cx.namespace, cx.allowlist);
        let none = PortSet::default();
        let lookup = match &target {
            Target::Host(h) => allowlist.lookup_host(ns, h, ports.unwrap_or(&none), cx.now),
            Target::Net(n) if allowlist.in_cluster(n) => return false,
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
            Lookup::PortsDenied { first, count } => {
                let mut ports: Vec<String> = first.iter().map(u16::to_string).collect();
                if count > first.len() {
                    ports.push(format!("and {} more", count - first.len()));
                }
                (
                    Code::PortNotAllowed,
                    format!("not allowed on port(s) {}", ports.join(", ")),
                )
            }
            Lookup::NotCovered => match &target {
                // A pod DNS name: say which address it spells.
                Target::Net(n) if istio::ip_subnet(value).is_err() => (
                    Code::AddressNotAllowed,
                    format!(
                        "resolves to {}, not inside an allowed CIDR for namespace {ns}",
                        n.addr()
                    ),
                ),
                Target::Net(_) => (
                    Code::AddressNotAllowed,
                    format!("not inside an allowed CIDR for namespace {ns}"),
                ),
                Target::Host(h) if h.is_wildcard() => (
                    Code::WildcardTooBroad,
                    format!(
                        "wildcard matches hosts the allowlist does not cover for namespace {ns}"
                    ),
                ),
                Target::Host(_) => (
                    Code::HostNotAllowed,
                    format!("not in the allowlist for namespace {ns}"),
                ),
            },
        };
        self.record(code, path, value, &message);
        true
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
        let note = g.note.and_then(|id| cx.allowlist.note(id));
        let describe = || {
            let mut s = format!("allowlist entry {}", g.entry);
            if let Some(n) = note {
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
        };
        if let (Some(at), Some(now)) = (g.expires, cx.now)
            && at - now <= EXPIRY_WARNING
        {
            let days = (at - now + 86_399) / 86_400;
            self.warn(|| {
                format!(
                    "{} {value:?}: {} ends within {days} day(s); this object loses its egress then",
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
