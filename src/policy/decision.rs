//! What the engine returns: violations with stable codes, warnings, the effective mode
//! and the mutation patch. Edges (webhook, `check`, `audit`) only render this.

use std::fmt;

use serde::Serialize;

/// How violations are acted on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Violations deny the request.
    #[default]
    Enforce,
    /// Violations are reported as warnings; the request is allowed.
    Audit,
}

impl Mode {
    /// The lowercase name used in YAML, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Audit => "audit",
        }
    }
}

/// Stable violation codes: `EG1xx` allowlist, `EG2xx` Istio validity, `EG3xx` bypass,
/// `EG9xx` evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// A host is not covered by the allowlist.
    HostNotAllowed,
    /// A wildcard host matches more than any allowlist entry covers.
    WildcardTooBroad,
    /// An IP address or CIDR lies outside every allowed CIDR.
    AddressNotAllowed,
    /// The host is allowed, but not on these ServiceEntry ports.
    PortNotAllowed,
    /// A namespace-only grant on a ServiceEntry exported beyond that namespace.
    GrantExported,
    /// The object reaches any address: a ServiceEntry with resolution NONE and no
    /// addresses, or DYNAMIC_DNS over a wildcard that covers pod DNS names.
    AnyAddress,
    /// Violations in an audit-mode namespace, enforced because the object is exported to
    /// namespaces in enforce mode.
    AuditExported,
    /// The allowlist's own ConfigMap holds an allowlist the server would refuse to load.
    InvalidAllowlist,
    /// Host syntax: empty, too long, bad label, numeric TLD, misplaced wildcard.
    InvalidHost,
    /// A partial wildcard such as `*foo.example.com`: denied under `strict`, and always
    /// in Gateway hosts (Istio rejects them there).
    PartialWildcard,
    /// A wildcard where the field forbids one.
    WildcardNotAllowed,
    /// An IP address where a host name is required.
    IpAsHost,
    /// Port number out of range or bad port name.
    InvalidPort,
    /// Two ports share a number or name.
    DuplicatePort,
    /// Unrecognised port protocol.
    InvalidProtocol,
    /// A `resolution` constraint is violated.
    ResolutionConflict,
    /// An endpoint address does not fit the resolution.
    InvalidEndpoint,
    /// A duration below 1ms, not whole milliseconds, or unparsable.
    InvalidDuration,
    /// A required field is missing or empty.
    MissingField,
    /// An `exportTo` value is invalid.
    InvalidExportTo,
    /// A gateway reference or a Gateway server host's namespace part is invalid.
    InvalidGatewayRef,
    /// A ServiceEntry address is neither an IP nor a CIDR.
    InvalidAddress,
    /// `workloadSelector` and `endpoints` are both set.
    SelectorWithEndpoints,
    /// A DestinationRule subset is unnamed, badly named or duplicated.
    InvalidSubset,
    /// A Sidecar egress host is not `namespace/host`.
    InvalidSidecarHost,
    /// `egressProxy` without `ALLOW_ANY`.
    EgressProxyWithoutAllowAny,
    /// The spec does not decode (a field has the wrong type).
    InvalidSpec,
    /// A ServiceEntry with several hosts, resolution other than NONE, and a port that is
    /// neither HTTP nor TLS (an unset protocol counts).
    MultiHostNonHttp,
    /// Two VirtualService hosts are the same or one wildcard covers the other.
    OverlappingHosts,
    /// A retry policy with negative attempts, retry settings while attempts is 0, or an
    /// unknown `retryOn` policy.
    InvalidRetry,
    /// An HTTP route sets both `mirror` and `mirrors`.
    MirrorConflict,
    /// An HTTP route combines fields Istio forbids together (route and redirect, a
    /// root route with route or redirect, a delegate that delegates again, …).
    RouteConflict,
    /// A Sidecar opens egress to any destination with `ALLOW_ANY`.
    AllowAnyOutbound,
    /// A Sidecar routes unknown egress through an `egressProxy`.
    EgressProxy,
    /// An EnvoyFilter in a namespace not granted `allowEnvoyFilter`: it can add any
    /// cluster or listener.
    EnvoyFilter,
    /// The workload runs without the sidecar: injection disabled, host network, or the
    /// ambient data plane turned off.
    SidecarDisabled,
    /// Traffic is excluded from the sidecar's capture: excluded ranges, ports or
    /// interfaces, a narrowed include list, interception mode NONE, a template
    /// without capture.
    CaptureExcluded,
    /// A container other than the proxy runs as the proxy's UID or GID, which the
    /// capture rules let through.
    ProxyIdentity,
    /// The proxy itself is replaced or redirected: its image, bootstrap, command or
    /// control plane address.
    ProxyReplaced,
    /// A container can rewrite the pod's packet filter (privileged or NET_ADMIN).
    NetAdmin,
    /// A session in the proxy's own container (`kubectl exec` or `attach` into an
    /// injected container, or into a gateway's or waypoint's pod): it runs as the
    /// proxy, whose traffic the capture rules let through.
    ProxySession,
    /// An UPDATE or DELETE of the platform's backstop NetworkPolicy by someone the
    /// allowlist does not trust.
    BackstopChanged,
    /// The pod reaches the node's own runtime or processes (a hostPath over a container
    /// runtime socket or a directory holding one, `hostPID`): it can start a container
    /// on the host network.
    HostAccess,
    /// The object could not be evaluated within the work budget or the deadline.
    TooComplex,
}

impl Code {
    /// Every code, in table order.
    #[cfg(test)]
    pub const ALL: [Code; 44] = [
        Code::HostNotAllowed,
        Code::WildcardTooBroad,
        Code::AddressNotAllowed,
        Code::PortNotAllowed,
        Code::GrantExported,
        Code::AnyAddress,
        Code::AuditExported,
        Code::InvalidAllowlist,
        Code::InvalidHost,
        Code::PartialWildcard,
        Code::WildcardNotAllowed,
        Code::IpAsHost,
        Code::InvalidPort,
        Code::DuplicatePort,
        Code::InvalidProtocol,
        Code::ResolutionConflict,
        Code::InvalidEndpoint,
        Code::InvalidDuration,
        Code::MissingField,
        Code::InvalidExportTo,
        Code::InvalidGatewayRef,
        Code::InvalidAddress,
        Code::SelectorWithEndpoints,
        Code::InvalidSubset,
        Code::InvalidSidecarHost,
        Code::EgressProxyWithoutAllowAny,
        Code::InvalidSpec,
        Code::MultiHostNonHttp,
        Code::OverlappingHosts,
        Code::InvalidRetry,
        Code::MirrorConflict,
        Code::RouteConflict,
        Code::AllowAnyOutbound,
        Code::EgressProxy,
        Code::EnvoyFilter,
        Code::SidecarDisabled,
        Code::CaptureExcluded,
        Code::ProxyIdentity,
        Code::ProxyReplaced,
        Code::NetAdmin,
        Code::ProxySession,
        Code::BackstopChanged,
        Code::HostAccess,
        Code::TooComplex,
    ];

    /// The stable code, e.g. `EG101`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HostNotAllowed => "EG101",
            Self::WildcardTooBroad => "EG102",
            Self::AddressNotAllowed => "EG103",
            Self::PortNotAllowed => "EG104",
            Self::GrantExported => "EG105",
            Self::AnyAddress => "EG106",
            Self::AuditExported => "EG107",
            Self::InvalidAllowlist => "EG120",
            Self::InvalidHost => "EG201",
            Self::PartialWildcard => "EG202",
            Self::WildcardNotAllowed => "EG203",
            Self::IpAsHost => "EG204",
            Self::InvalidPort => "EG205",
            Self::DuplicatePort => "EG206",
            Self::InvalidProtocol => "EG207",
            Self::ResolutionConflict => "EG208",
            Self::InvalidEndpoint => "EG209",
            Self::InvalidDuration => "EG210",
            Self::MissingField => "EG211",
            Self::InvalidExportTo => "EG212",
            Self::InvalidGatewayRef => "EG213",
            Self::InvalidAddress => "EG214",
            Self::SelectorWithEndpoints => "EG215",
            Self::InvalidSubset => "EG216",
            Self::InvalidSidecarHost => "EG217",
            Self::EgressProxyWithoutAllowAny => "EG218",
            Self::InvalidSpec => "EG219",
            Self::MultiHostNonHttp => "EG220",
            Self::OverlappingHosts => "EG221",
            Self::InvalidRetry => "EG222",
            Self::MirrorConflict => "EG223",
            Self::RouteConflict => "EG224",
            Self::AllowAnyOutbound => "EG301",
            Self::EgressProxy => "EG302",
            Self::EnvoyFilter => "EG303",
            Self::SidecarDisabled => "EG304",
            Self::CaptureExcluded => "EG305",
            Self::ProxyIdentity => "EG306",
            Self::ProxyReplaced => "EG307",
            Self::NetAdmin => "EG308",
            Self::ProxySession => "EG309",
            Self::BackstopChanged => "EG310",
            Self::HostAccess => "EG311",
            Self::TooComplex => "EG901",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Longest value a violation quotes; longer values are cut and marked with `…`.
pub const MAX_VALUE: usize = 256;
/// Longest path or message a violation carries.
pub const MAX_TEXT: usize = 512;

/// `s` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
pub fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + '…'.len_utf8());
    out.push_str(s.get(..cut).unwrap_or_default());
    out.push('…');
    out
}

/// `value` written out, cut like [`truncated`] at `max` bytes; a long value is not
/// formatted past the cut.
pub fn truncated_display(value: impl fmt::Display, max: usize) -> String {
    use fmt::Write as _;
    /// Keeps the first `cap` bytes written (whole characters), then stops the writer.
    struct Capped {
        text: String,
        cap: usize,
    }
    impl fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room = self.cap - self.text.len();
            if s.len() <= room {
                self.text.push_str(s);
                return Ok(());
            }
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.push_str(s.get(..cut).unwrap_or_default());
            Err(fmt::Error)
        }
    }
    // One character past `max` tells `truncated` that the value was cut.
    let mut w = Capped {
        text: String::new(),
        cap: max + 4,
    };
    // An error only means the cap was reached.
    let _ = write!(w, "{value}");
    truncated(&w.text, max)
}

/// One problem with one field of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Stable code.
    pub code: Code,
    /// Field path, e.g. `spec.http[2].route[0].destination.host`.
    pub path: String,
    /// The offending value as written.
    pub value: String,
    /// A short reason, lowercase, no trailing period.
    pub message: String,
}

impl Violation {
    /// A violation whose texts are bounded: an object cannot make one large.
    pub fn new(code: Code, path: &str, value: &str, message: &str) -> Self {
        Self {
            code,
            path: truncated(path, MAX_TEXT),
            value: truncated(value, MAX_VALUE),
            message: truncated(message, MAX_TEXT),
        }
    }

    /// `EG901`: the object could not be judged within `limit`.
    pub fn too_complex(limit: Limit) -> Self {
        let message = match limit {
            Limit::Budget => {
                "object too complex to evaluate within the work budget; nothing after this point was checked"
            }
            Limit::Deadline => "object too complex to evaluate within the deadline",
        };
        Self::new(Code::TooComplex, "", "", message)
    }
}

/// What ended an evaluation early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The engine's work budget was spent.
    Budget,
    /// The caller's deadline passed (the server answers without a decision).
    Deadline,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}={:?}: {}",
            self.code, self.path, self.value, self.message
        )
    }
}

/// Why an object was let through without checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skip {
    /// DELETE (and CONNECT) are always allowed.
    Delete,
    /// The namespace is in `exemptNamespaces`.
    ExemptNamespace,
    /// Not a kind egress-guard judges.
    NotIstio,
    /// Written by the control plane itself (endpoint controllers, istiod).
    TrustedWriter,
    /// A change that cannot change where traffic goes (a running pod's metadata).
    NoEffect,
}

/// What a decision means for the object: the one place that classifies a [`Decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Admitted with nothing to report.
    Allow,
    /// Denied.
    Deny,
    /// Admitted, with violations reported (audit mode or unchanged spec).
    Audit,
    /// Not checked (DELETE, other kinds, exempt namespaces).
    Skip,
}

impl Verdict {
    /// The lowercase name used in logs, metric labels and JSON reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Audit => "audit",
            Verdict::Skip => "skip",
        }
    }
}

/// The verdict for one object under one allowlist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Effective mode for the object's namespace.
    pub mode: Mode,
    /// Set when no checks ran.
    pub skipped: Option<Skip>,
    /// Set on an UPDATE whose spec did not change: violations become warnings.
    pub spec_unchanged: bool,
    /// What is wrong with the object: the first [`MAX_VIOLATIONS`](crate::policy::judge::MAX_VIOLATIONS).
    pub violations: Vec<Violation>,
    /// Violations found beyond those kept.
    pub omitted: usize,
    /// Non-fatal findings (Istio warnings, allowed partial wildcards, entries about to
    /// expire).
    pub warnings: Vec<String>,
    /// Which allowlist entry granted each reference, when asked for.
    pub explanations: Vec<String>,
    /// RFC 6902 operations adding default timeouts; empty when nothing to add.
    pub patch: json_patch::Patch,
    /// Field paths of the routes the patch adds a timeout to.
    pub patched_routes: Vec<String>,
    /// The timeout the patch adds.
    pub default_timeout: Option<super::duration::Duration>,
    /// Problems of the mutation itself (an unreadable `egress-guard.io/default-timeout`):
    /// the mutating answer's, not the validating one's.
    pub mutation_warnings: Vec<String>,
    /// The platform's help text, rendered for this object, when it has violations.
    pub help: Option<String>,
}

impl Decision {
    /// What the mutation did and what stopped it, worded once for `check` and the
    /// mutating webhook: its warnings, then the routes given the default timeout (the
    /// first five named).
    pub fn mutation_notes(&self) -> Vec<String> {
        let mut notes = self.mutation_warnings.clone();
        if let Some(t) = self
            .default_timeout
            .filter(|_| !self.patched_routes.is_empty())
        {
            let shown = self.patched_routes.len().min(5);
            let mut routes = self.patched_routes[..shown].join(", ");
            if self.patched_routes.len() > shown {
                routes.push_str(&format!(" and {} more", self.patched_routes.len() - shown));
            }
            notes.push(format!("added default timeout {t} to {routes}"));
        }
        notes
    }

    /// A decision that ran no checks.
    pub fn skip(reason: Skip) -> Self {
        Self {
            skipped: Some(reason),
            ..Self::default()
        }
    }

    /// The distinct violation codes, sorted, comma-separated (`EG101,EG305`).
    pub fn codes(&self) -> String {
        let mut codes: Vec<&str> = self.violations.iter().map(|v| v.code.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        codes.join(",")
    }

    /// True when the request may proceed: no violations, or they are only reported.
    pub fn allowed(&self) -> bool {
        self.violations.is_empty() || self.mode == Mode::Audit || self.spec_unchanged
    }

    /// Every violation found, kept or not.
    pub fn violation_count(&self) -> usize {
        self.violations.len() + self.omitted
    }

    /// True when violations were found but let through (audit mode or unchanged spec).
    pub fn audited(&self) -> bool {
        !self.violations.is_empty() && self.allowed()
    }

    /// What the decision means: skipped, denied, allowed with violations reported, or
    /// allowed cleanly.
    pub fn verdict(&self) -> Verdict {
        if self.skipped.is_some() {
            Verdict::Skip
        } else if !self.allowed() {
            Verdict::Deny
        } else if self.audited() {
            Verdict::Audit
        } else {
            Verdict::Allow
        }
    }

    /// The patch, or `None` when there is nothing to change.
    pub fn patch(&self) -> Option<&json_patch::Patch> {
        (!self.patch.0.is_empty()).then_some(&self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_banded() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            let band = &code.as_str()[..3];
            assert!(["EG1", "EG2", "EG3", "EG9"].contains(&band), "{code}");
        }
    }

    #[test]
    fn the_readme_documents_every_code() {
        let readme = include_str!("../../README.md");
        for code in Code::ALL {
            assert!(
                readme.contains(&format!("| {code} |")),
                "README.md has no table row for {code}"
            );
        }
    }

    #[test]
    fn texts_are_bounded_on_char_boundaries() {
        let v = Violation::new(Code::InvalidHost, &"p".repeat(2000), &"é".repeat(1000), "m");
        assert!(v.value.len() <= MAX_VALUE && v.value.ends_with('…'));
        assert!(v.path.len() <= MAX_TEXT);
        assert_eq!(truncated("short", 10), "short");
        assert_eq!(truncated("abcdef", 4), "a…");
    }

    #[test]
    fn displayed_values_are_cut_like_strings() {
        let long = "é".repeat(1000);
        assert_eq!(
            truncated_display(&long, MAX_VALUE),
            truncated(&long, MAX_VALUE)
        );
        assert_eq!(truncated_display(-80_i64, MAX_VALUE), "-80");
        assert_eq!(truncated_display("abcdef", 4), "a…");
        assert_eq!(truncated_display("abcd", 4), "abcd");
    }

    #[test]
    fn audit_and_unchanged_spec_allow_violations() {
        let v = Violation {
            code: Code::HostNotAllowed,
            path: "spec.hosts[0]".into(),
            value: "x.example".into(),
            message: "not allowed".into(),
        };
        let mut d = Decision {
            violations: vec![v],
            ..Decision::default()
        };
        assert!(!d.allowed());
        d.mode = Mode::Audit;
        assert!(d.allowed() && d.audited());
        d.mode = Mode::Enforce;
        d.spec_unchanged = true;
        assert!(d.allowed());
    }
}
