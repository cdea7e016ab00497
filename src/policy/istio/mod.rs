//! Istio's structural validity rules for the egress-relevant fields, one small function
//! per rule. Each mirrors a function in istio/istio `pkg/config/validation` (named in its
//! doc line; Istio 1.31) so that egress-guard rejects what istiod rejects, and nothing
//! more unless `strict` is on.
//!
//! Rules read values as written. Istio's checks are case-sensitive regexes that accept
//! upper case, so hosts are only normalised afterwards, for allowlist matching.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use nohash_hasher::IntMap;

use super::decision::Code;
use super::duration::Duration;
use super::review_hash::{Map, Set};
use super::suffix_hash::SuffixHasher;

/// A rule failure: the code and a short reason. The caller adds path and value.
pub type Failure = (Code, Cow<'static, str>);

fn fail<T>(code: Code, reason: impl Into<Cow<'static, str>>) -> Result<T, Failure> {
    Err((code, reason.into()))
}

// === primitives: pkg/config/labels and pkg/config/validation/agent ===

const LABEL_MAX: usize = 63;
const NAME_MAX: usize = 255;

/// `labels.IsDNS1123Label`: 1–63 of `[a-zA-Z0-9-]`, alphanumeric at both ends. Unlike
/// Kubernetes, Istio accepts upper case.
pub fn is_dns1123_label(s: &str) -> bool {
    super::host::label_problem(s, true).is_none()
}

/// `labels.IsWildcardDNS1123Label`: `*`, `*label`, `*-label` or a plain label.
pub fn is_wildcard_dns1123_label(s: &str) -> bool {
    if s.len() > LABEL_MAX {
        return false;
    }
    match s.strip_prefix('*') {
        None => is_dns1123_label(s),
        Some("") => true,
        Some(rest) => {
            is_dns1123_label(rest) || rest.strip_prefix('-').is_some_and(is_dns1123_label)
        }
    }
}

/// `agent.CheckDNS1123Preconditions`: 1–255 bytes, dots and a trailing dot included.
fn dns1123_preconditions(name: &str) -> Result<(), Cow<'static, str>> {
    if name.len() > NAME_MAX {
        Err("domain name too long (max 255 characters)".into())
    } else if name.is_empty() {
        Err("empty domain name not allowed".into())
    } else {
        Ok(())
    }
}

/// `agent.ValidateDNS1123Labels`: dot-separated DNS-1123 labels, one trailing dot allowed,
/// and a last label that Go's `strconv.Atoi` does not read as a number.
fn dns1123_labels(domain: &str) -> Result<(), Cow<'static, str>> {
    let tld = domain.rsplit('.').next().unwrap_or(domain);
    // Atoi takes an optional sign and fails on overflow, exactly like i64 parsing.
    if tld.parse::<i64>().is_ok() {
        return Err(format!("top-level domain {tld:?} cannot be all-numeric").into());
    }
    // One trailing dot is allowed: the empty label after it is not checked. A byte
    // split: labels are short, and a substring search per label costs more than them.
    let body = domain.strip_suffix('.').unwrap_or(domain);
    for label in body.as_bytes().split(|&b| b == b'.') {
        if super::host::label_bytes_problem(label, true).is_some() {
            let label = String::from_utf8_lossy(label);
            return Err(format!("label {label:?} is invalid").into());
        }
    }
    Ok(())
}

fn check_wildcard_domain(raw: &str) -> Result<(), Cow<'static, str>> {
    dns1123_preconditions(raw)?;
    // Only the first label may be a wildcard.
    let (first, rest) = match raw.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (raw, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Err(format!("label {first:?} is invalid").into());
    }
    rest.map_or(Ok(()), dns1123_labels)
}

/// `agent.ValidateFQDN`: a host name without wildcards; short names are fine.
pub fn fqdn(raw: &str) -> Result<(), Failure> {
    dns1123_preconditions(raw)
        .and_then(|()| dns1123_labels(raw))
        .map_err(|e| (Code::InvalidHost, e))
}

/// `agent.ValidateWildcardDomain`: a host name whose first label may be `*`, `*foo` or
/// `*-foo`. `istio.io.` and a lone all-numeric label (`123`) pass; IPs do not.
pub fn wildcard_domain(raw: &str) -> Result<(), Failure> {
    check_wildcard_domain(raw).map_err(|e| (Code::InvalidHost, e))
}

/// `agent.ValidatePartialWildCard`: a `*` anywhere but in `*` or a leading `*.`.
pub fn is_partial_wildcard(raw: &str) -> bool {
    raw.contains('*') && raw.len() != 1 && !raw.starts_with("*.")
}

/// `netip.ParseAddr`, which `netutil.IsValidIPAddress` and `agent.ValidateIPAddress` use:
/// no leading zeros in IPv4 octets, and IPv6 may carry a zone (`fe80::1%eth0`).
pub fn parse_ip(raw: &str) -> Option<IpAddr> {
    // Every address starts with a hex digit or `:`; names mostly do not, and skip the
    // two parsers.
    if !raw
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_hexdigit() || b == b':')
    {
        return None;
    }
    match raw.split_once('%') {
        Some((_, "")) => None,
        Some((addr, _zone)) => addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => raw.parse().ok(),
    }
}

/// `netip.ParsePrefix`: an address without zone, `/`, and decimal bits without sign or
/// leading zero. Host bits may be set (`172.1.2.16/16`).
fn parse_prefix(raw: &str) -> Option<IpNet> {
    let (addr, bits) = raw.split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    let canonical = bits == "0" || (!bits.starts_with('0') && !bits.is_empty());
    if !canonical || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    IpNet::new(ip, bits.parse().ok()?).ok()
}

/// `agent.ValidateIPSubnet`: with exactly one `/` a CIDR block, otherwise an IP address.
pub fn ip_subnet(raw: &str) -> Result<IpNet, Failure> {
    let net = if raw.matches('/').count() == 1 {
        parse_prefix(raw)
    } else {
        parse_ip(raw).map(IpNet::from)
    };
    net.ok_or_else(|| {
        (
            Code::InvalidAddress,
            "not a valid IP address or CIDR block".into(),
        )
    })
}

/// `agent.ValidatePort`: 1–65535.
pub fn port_number(n: i64) -> Result<u16, Failure> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => fail(
            Code::InvalidPort,
            "port number must be in the range 1..65535",
        ),
    }
}

/// `ValidatePortName`: a DNS-1123 label (upper case allowed).
pub fn port_name(name: &str) -> Result<(), Failure> {
    if name.is_empty() {
        fail(Code::InvalidPort, "port name is required")
    } else if is_dns1123_label(name) {
        Ok(())
    } else {
        fail(
            Code::InvalidPort,
            "port name must be a DNS-1123 label (letters, digits and '-', at most 63)",
        )
    }
}

/// A port protocol, as far as validity needs it (`protocol.Instance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `TCP`
    Tcp,
    /// `UDP`
    Udp,
    /// `GRPC`
    Grpc,
    /// `GRPC-Web`
    GrpcWeb,
    /// `HTTP`
    Http,
    /// `HTTP_PROXY`
    HttpProxy,
    /// `HTTP2`
    Http2,
    /// `HTTPS`
    Https,
    /// `TLS`
    Tls,
    /// `Mongo`
    Mongo,
    /// `Redis`
    Redis,
    /// `MySQL`
    Mysql,
    /// Anything else, the empty string included.
    Unsupported,
}

impl Protocol {
    /// `protocol.Parse`: case-insensitive. `HBONE` and the like are not user protocols.
    pub fn parse(raw: &str) -> Self {
        match raw.to_ascii_lowercase().as_str() {
            "tcp" => Self::Tcp,
            "udp" => Self::Udp,
            "grpc" => Self::Grpc,
            "grpc-web" => Self::GrpcWeb,
            "http" => Self::Http,
            "http_proxy" => Self::HttpProxy,
            "http2" => Self::Http2,
            "https" => Self::Https,
            "tls" => Self::Tls,
            "mongo" => Self::Mongo,
            "redis" => Self::Redis,
            "mysql" => Self::Mysql,
            _ => Self::Unsupported,
        }
    }

    /// `Instance.IsHTTP`: HTTP, HTTP2, HTTP_PROXY, GRPC and GRPC-Web.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Self::Http | Self::Http2 | Self::HttpProxy | Self::Grpc | Self::GrpcWeb
        )
    }

    /// `Instance.IsTLS`: HTTPS and TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::Tls)
    }
}

/// `ValidateProtocol`: empty (protocol sniffing) or a known protocol.
pub fn protocol(raw: &str) -> Result<Protocol, Failure> {
    match Protocol::parse(raw) {
        Protocol::Unsupported if !raw.is_empty() => {
            fail(Code::InvalidProtocol, "unsupported protocol")
        }
        p => Ok(p),
    }
}

/// `agent.ValidateDuration` over Go's `time.ParseDuration` (what the webhook's jsonpb
/// decoding uses): at least 1ms, in whole milliseconds.
pub fn duration(raw: &str) -> Result<Duration, Failure> {
    let d: Duration = raw.parse().map_err(|e: super::duration::DurationError| {
        (Code::InvalidDuration, e.to_string().into())
    })?;
    d.check_istio()
        .map_err(|r| (Code::InvalidDuration, r.into()))?;
    Ok(d)
}

/// `ValidateUnixAddress` on what follows `unix://`: an abstract socket (`@name`) or an
/// absolute path that is not a directory.
pub fn unix_address(path: &str) -> Result<(), Failure> {
    if path.is_empty() {
        fail(Code::InvalidEndpoint, "unix address must not be empty")
    } else if path.starts_with('@') || (path.starts_with('/') && !path.ends_with('/')) {
        Ok(())
    } else {
        fail(
            Code::InvalidEndpoint,
            "unix address must be an absolute path to a file or an abstract socket",
        )
    }
}

/// The `unix://` prefix Istio uses for unix domain socket addresses.
pub const UNIX_PREFIX: &str = "unix://";

// === hosts, per field ===

/// Codes a failed host check: an IP address or CIDR where a name is required is `EG204`.
fn host_failure(raw: &str, reason: Cow<'static, str>) -> Failure {
    if parse_ip(raw).is_some() || raw.parse::<IpNet>().is_ok() {
        (Code::IpAsHost, "an IP address is not a host name".into())
    } else {
        (Code::InvalidHost, reason)
    }
}

/// A ServiceEntry host (`ValidateServiceEntry`): never `*` alone, otherwise
/// `ValidateWildcardDomain` (so no IPs).
pub fn service_entry_host(raw: &str) -> Result<(), Failure> {
    if raw == "*" {
        return fail(
            Code::WildcardNotAllowed,
            "\"*\" is not allowed as a ServiceEntry host",
        );
    }
    check_wildcard_domain(raw).map_err(|e| host_failure(raw, e))
}

/// How a VirtualService is bound, as `ValidateVirtualService` decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualServiceBinding {
    /// `mesh` is not among `gateways` (`isGateway`); with no gateways at all this is
    /// false for the hosts but true for SNI hosts, as in Istio.
    pub applies_to_gateway: bool,
    /// No `gateways`, or `mesh` among them.
    pub applies_to_mesh: bool,
    /// Some `tls[].match[]` has `sniHosts` (`isSniHost`).
    pub sni: bool,
}

/// `agent.ValidateWildcardDomainForVirtualServiceBoundToGateway`: with SNI routes, also
/// Istio's generated `outbound_.<port>_._.<host>` names.
pub fn gateway_bound_domain(sni: bool, raw: &str) -> Result<(), Failure> {
    let invalid = |e: Cow<'static, str>| (Code::InvalidHost, e);
    dns1123_preconditions(raw).map_err(invalid)?;
    if sni && raw.starts_with("outbound_") {
        // parseAutoGeneratedSNIDomain: split on `_`; part 1 needs a digit, part 3 a letter.
        let parts: Vec<&str> = raw.split('_').collect();
        let port = parts.get(1).map(|p| p.trim_matches('.'));
        let host = parts.get(3).map(|h| h.trim_matches('.'));
        return match (port, host) {
            (Some(p), Some(h))
                if p.bytes().any(|b| b.is_ascii_digit())
                    && h.bytes().any(|b| b.is_ascii_alphabetic()) =>
            {
                Ok(())
            }
            _ => fail(
                Code::InvalidHost,
                "generated SNI host must look like outbound_.<port>_._.<host>",
            ),
        };
    }
    check_wildcard_domain(raw).map_err(invalid)
}

/// A VirtualService host (`ValidateVirtualService`): a wildcard domain or an IP address;
/// `*` only when the VirtualService is not bound to the mesh.
pub fn virtual_service_host(raw: &str, binding: VirtualServiceBinding) -> Result<(), Failure> {
    let checked = if binding.applies_to_gateway {
        gateway_bound_domain(binding.sni, raw)
    } else {
        wildcard_domain(raw)
    };
    match checked {
        Err(_) if parse_ip(raw).is_some() => Ok(()),
        Err(e) => Err(e),
        Ok(()) if binding.applies_to_mesh && raw == "*" => fail(
            Code::WildcardNotAllowed,
            "wildcard host \"*\" is not allowed for virtual services bound to the mesh gateway",
        ),
        Ok(()) => Ok(()),
    }
}

/// `host.Name.Matches`: equal, or a wildcard whose suffix the other ends with. Istio
/// compares the strings as written.
pub fn hosts_match(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(x), Some(y)) => x.ends_with(y) || y.ends_with(x),
        (Some(x), None) => b.ends_with(x),
        (None, Some(y)) => a.ends_with(y),
        (None, None) => a == b,
    }
}

/// Duplicate or overlapping VirtualService hosts (`ValidateVirtualService`): the index of
/// every host that [`hosts_match`]es an earlier one. Istio checks this only when every
/// host is valid, so each is at most 255 bytes.
///
/// Istio compares every pair; this is linear in the total length instead. Every overlap
/// involves a wildcard `*x` whose `x` is a suffix of the other host's body (the host
/// itself, or `y` of a wildcard `*y`): walking each body's suffixes once, with keys
/// computed in O(1) per step ([`SuffixHasher`]), finds every such pair; equal strings
/// are found by key. Keys combine a 61-bit hash with the length, so a false match
/// needs a collision of random-base polynomial hashes: about 2⁻⁵⁰ per review.
pub fn overlapping_hosts<'a>(hosts: impl Names<'a>) -> impl Iterator<Item = Found<'a>> {
    // Indices are `u32`, a quarter of the memory per host of `Option<usize>`: no body
    // within any limit holds 4 billion hosts, and past that many the rest would go
    // unchecked rather than wrap.
    const NONE: u32 = u32::MAX;
    let count = hosts.count().min(NONE as usize);
    let all = move || (0..count).map_while(move |i| hosts.name(i));
    let hasher = SuffixHasher::random();
    // First index of each exact host and of each wildcard's suffix, by key.
    let mut first_exact: IntMap<u64, u32> = IntMap::default();
    let mut first_wild: IntMap<u64, u32> = IntMap::default();
    // For each host, the lowest index of a host it overlaps, or `NONE`.
    let mut partner: Vec<u32> = vec![NONE; count];
    for ((j, h), slot) in (0u32..).zip(all()).zip(partner.iter_mut()) {
        let (wild, b) = match h.strip_prefix('*') {
            Some(x) => (true, x),
            None => (false, h),
        };
        let key = hasher.hash(b);
        let table = if wild {
            &mut first_wild
        } else {
            &mut first_exact
        };
        let first = *table.entry(key).or_insert(j);
        if first != j {
            *slot = first;
        }
    }
    let mark = |a: u32, b: u32, partner: &mut [u32]| {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        if let Some(slot) = partner.get_mut(hi as usize)
            && lo < *slot
        {
            *slot = lo;
        }
    };
    let empty = hasher.empty();
    for (j, h) in (0u32..).zip(all()) {
        let b = h.strip_prefix('*').unwrap_or(h);
        // `*` alone (empty suffix) matches everything.
        if let Some(&k) = first_wild.get(&empty)
            && k != j
        {
            mark(j, k, &mut partner);
        }
        hasher.suffixes(b, |_, key| {
            if let Some(&k) = first_wild.get(&key)
                && k != j
            {
                mark(j, k, &mut partner);
            }
            true
        });
    }
    partner.into_iter().enumerate().filter_map(move |(j, i)| {
        let i = (i != NONE).then_some(i as usize)?;
        Some(Found {
            index: j,
            code: Code::OverlappingHosts,
            why: Why::Duplicate(hosts.name(i)?, hosts.name(j)?),
        })
    })
}

/// The hosts of one VirtualService, indexed to answer Istio's `host.Name.SubsetOf` for
/// SNI hosts in time linear in the SNI host, not in the number of hosts.
#[derive(Debug)]
pub struct HostSubsets<'a> {
    hasher: SuffixHasher,
    exact: Set<&'a str>,
    /// Wildcard hosts by the key of what follows their `*`.
    wild: IntMap<u64, &'a str>,
    /// The first few hosts as written, for the message, and how many there are.
    shown: Vec<&'a str>,
    count: usize,
}

impl<'a> HostSubsets<'a> {
    /// Indexes the VirtualService's hosts.
    pub fn new(hosts: impl Names<'a>) -> Self {
        let hasher = SuffixHasher::random();
        let mut exact = Set::default();
        let mut wild = IntMap::default();
        let all = || (0..hosts.count()).map_while(|i| hosts.name(i));
        for h in all() {
            match h.strip_prefix('*') {
                Some(x) => {
                    wild.entry(hasher.hash(x)).or_insert(x);
                }
                None => {
                    exact.insert(h);
                }
            }
        }
        Self {
            hasher,
            exact,
            wild,
            shown: all().take(5).collect(),
            count: hosts.count(),
        }
    }

    /// `validateSniHost`: a valid SNI host must be a subset of some host
    /// (`host.Name.SubsetOf`: equal, or under a wildcard host; a wildcard only under a
    /// wildcard whose suffix its own ends with).
    pub fn sni_subset(&self, sni: &str) -> Result<(), Failure> {
        let (body, wildcard) = match sni.strip_prefix('*') {
            Some(y) => (y, true),
            None => (sni, false),
        };
        if !wildcard && self.exact.contains(sni) {
            return Ok(());
        }
        let mut covered = self
            .wild
            .get(&self.hasher.empty())
            .is_some_and(|x| x.is_empty());
        if !covered {
            self.hasher.suffixes(body, |i, key| {
                covered = self
                    .wild
                    .get(&key)
                    .is_some_and(|x| body.get(i..) == Some(*x));
                !covered
            });
        }
        if covered {
            return Ok(());
        }
        let more = if self.count > self.shown.len() {
            ", …"
        } else {
            ""
        };
        fail(
            Code::InvalidHost,
            format!(
                "SNI host is not a compatible subset of any of the virtual service hosts: [{}{more}]",
                self.shown.join(", ")
            ),
        )
    }
}

/// A TLS route SNI host (`validateSniHost`): a wildcard domain, or a generated SNI name
/// when the VirtualService is not bound to the mesh. An IP address is only a warning
/// (returned as `Ok(Some(warning))`).
pub fn sni_host(raw: &str, applies_to_gateway: bool) -> Result<Option<String>, Failure> {
    let checked = if applies_to_gateway {
        gateway_bound_domain(true, raw)
    } else {
        wildcard_domain(raw)
    };
    match checked {
        Ok(()) => Ok(None),
        Err(_) if parse_ip(raw).is_some() => Ok(Some(
            "an IP address as SNI host goes against the SNI spec and most clients do not support it".into(),
        )),
        Err(e) => Err(e),
    }
}

/// A route, mirror or egress-proxy destination host (`validateDestination`): not `*`,
/// then `ValidateWildcardDomain` with no IP exemption. `*.foo.com` and `*foo.com` pass.
pub fn destination_host(raw: &str) -> Result<(), Failure> {
    match raw {
        "" => fail(Code::MissingField, "destination host is required"),
        "*" => fail(Code::WildcardNotAllowed, "\"*\" is not a valid destination"),
        _ => check_wildcard_domain(raw).map_err(|e| host_failure(raw, e)),
    }
}

/// A DestinationRule host (`ValidateDestinationRule`): `ValidateWildcardDomain`, so `*`
/// and wildcards are fine, IPs are not.
pub fn destination_rule_host(raw: &str) -> Result<(), Failure> {
    if raw.is_empty() {
        return fail(Code::MissingField, "destination rule must have a host");
    }
    check_wildcard_domain(raw).map_err(|e| host_failure(raw, e))
}

/// A subset name (`validateSubsetName`): a DNS-1123 label.
pub fn subset_name(raw: &str) -> Result<(), Failure> {
    if raw.is_empty() {
        fail(Code::InvalidSubset, "subset name cannot be empty")
    } else if is_dns1123_label(raw) {
        Ok(())
    } else {
        fail(
            Code::InvalidSubset,
            "subset name must be a DNS-1123 label (no dots or underscores)",
        )
    }
}

/// `validateSidecarOrGatewayHostnamePart`: no short names (but `*`), a wildcard domain
/// (Gateways also take IPv4, which has dots), and no partial wildcards.
fn hostname_part(host: &str, is_gateway: bool) -> Result<(), Failure> {
    if host != "*" && !host.contains('.') {
        return fail(
            Code::InvalidHost,
            "short names (non FQDN) are not allowed; use namespace/fqdn",
        );
    }
    if let Err(e) = check_wildcard_domain(host)
        && !(is_gateway && parse_ip(host).is_some())
    {
        return Err((Code::InvalidHost, e));
    }
    if is_partial_wildcard(host) {
        return fail(
            Code::PartialWildcard,
            "partial wildcards are not allowed here; use \"*.domain\"",
        );
    }
    Ok(())
}

/// A Gateway server host (`ValidateNamespaceSlashWildcardHostname`, isGateway):
/// `[namespace/]host` where the namespace is `*`, `.` or a DNS label. `~` is accepted
/// only for Gateways Istio generates from the Gateway API, never for user objects.
pub fn gateway_server_host(raw: &str) -> Result<(), Failure> {
    let Some((ns, host)) = raw.split_once('/') else {
        return hostname_part(raw, true);
    };
    if ns.is_empty() {
        return fail(Code::InvalidGatewayRef, "namespace in host cannot be empty");
    }
    if !(ns == "*" || ns == "." || is_dns1123_label(ns)) {
        return fail(
            Code::InvalidGatewayRef,
            format!("invalid namespace value {ns:?} in gateway (\"*\", \".\" or a namespace)"),
        );
    }
    hostname_part(host, true)
}

/// A Sidecar egress host (`ValidateNamespaceSlashWildcardHostname`, sidecar): always
/// `namespace/host`, the namespace `*`, `.`, a DNS label or one of those after `~`.
pub fn sidecar_egress_host(raw: &str) -> Result<(), Failure> {
    let sidecar = |reason: Cow<'static, str>| (Code::InvalidSidecarHost, reason);
    let Some((ns, host)) = raw.split_once('/') else {
        return fail(
            Code::InvalidSidecarHost,
            "egress host must be of the form namespace/host",
        );
    };
    if ns.is_empty() || host.is_empty() {
        return fail(
            Code::InvalidSidecarHost,
            "namespace and host in an egress host cannot be empty",
        );
    }
    let bare = ns.strip_prefix('~').unwrap_or(ns);
    if !(bare.is_empty() || bare == "*" || bare == "." || is_dns1123_label(bare)) {
        return Err(sidecar(
            format!("invalid namespace value {ns:?} in sidecar").into(),
        ));
    }
    hostname_part(host, false).map_err(|(_, e)| sidecar(e))
}

/// A Sidecar egress host warning, formatted only when it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarDuplicate<'h> {
    /// A host already selected by an earlier one.
    Host(&'h str),
    /// `*/*` alongside other hosts.
    EverythingAndMore,
}

impl std::fmt::Display for SidecarDuplicate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SidecarDuplicate::Host(raw) => write!(f, "duplicated egress host {raw:?}"),
            SidecarDuplicate::EverythingAndMore => {
                f.write_str("\"*/*\" selects every host, no other hosts can be added")
            }
        }
    }
}

/// Duplicate or shadowed Sidecar egress hosts (`ValidateSidecar`): Istio only warns.
/// Each warning is reported with the index of the host, or `None` for the list as a
/// whole; nothing is formatted here, so a million duplicates cost a million lookups.
pub fn sidecar_duplicate_hosts<'h, S: AsRef<str>>(
    hosts: &'h [S],
    namespace: &'h str,
    mut found: impl FnMut(Option<usize>, SidecarDuplicate<'h>),
) {
    let mut seen: Map<&str, Set<&str>> = Map::default();
    for (i, raw) in hosts.iter().enumerate() {
        let raw = raw.as_ref();
        let Some((ns, svc)) = raw.split_once('/') else {
            continue;
        };
        if ns.starts_with('~') {
            continue;
        }
        let ns = if ns == "." { namespace } else { ns };
        let svcs = seen.entry(ns).or_default();
        let duplicate = if svc == "*" {
            !svcs.is_empty()
        } else {
            svcs.contains(svc) || svcs.contains("*")
        };
        if duplicate {
            found(Some(i), SidecarDuplicate::Host(raw));
        }
        svcs.insert(svc);
    }
    if seen.get("*").is_some_and(|s| s.contains("*")) && seen.len() != 1 {
        found(None, SidecarDuplicate::EverythingAndMore);
    }
}

/// A Sidecar egress listener port (`validateSidecarEgressPortBindAndCaptureMode`): an
/// optional DNS-label name and a known protocol; port 0 only with a `unix://` bind and
/// capture mode DEFAULT or NONE, otherwise 1–65535 and an IP bind if any.
pub fn sidecar_egress_port(
    number: i64,
    name: &str,
    protocol_name: &str,
    bind: &str,
    capture_mode: &str,
) -> Vec<Failure> {
    let mut out = Vec::new();
    if !name.is_empty()
        && let Err(e) = port_name(name)
    {
        out.push(e);
    }
    if let Err(e) = protocol(protocol_name) {
        out.push(e);
    }
    if number == 0 {
        match bind.strip_prefix(UNIX_PREFIX) {
            None => out.push((
                Code::InvalidPort,
                "sidecar: ports with 0 value must have a unix domain socket bind address".into(),
            )),
            Some(path) => out.extend(unix_address(path).err()),
        }
        if !matches!(capture_mode, "" | "DEFAULT" | "NONE") {
            out.push((
                Code::InvalidSpec,
                "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners".into(),
            ));
        }
    } else {
        out.extend(port_number(number).err());
        if !bind.is_empty() && parse_ip(bind).is_none() {
            out.push((Code::InvalidAddress, "bind must be an IP address".into()));
        }
    }
    out
}

/// A Sidecar `egressProxy.host` (`validateSidecarOutboundTrafficPolicy`): an FQDN, no
/// wildcards (short names pass).
pub fn egress_proxy_host(raw: &str) -> Result<(), Failure> {
    fqdn(raw)
}

/// VirtualService `gateways` (`validateGatewayNames`): `namespace/name` with DNS-label
/// parts, or a name without `/` that must be an FQDN (`mesh`, `my-gw`, legacy
/// `name.namespace`). Istio stops at the first name without `/`, so later names are not
/// checked at all (`[mesh, "*/gw"]` is accepted).
pub fn gateway_names<'a>(names: impl Names<'a>) -> impl Iterator<Item = Found<'a>> {
    let mut stopped = false;
    let all = (0..names.count()).map_while(move |i| names.name(i));
    all.enumerate().filter_map(move |(i, name)| {
        if stopped {
            return None;
        }
        let why = match name.split_once('/') {
            None => {
                stopped = true;
                Why::Gateway(fqdn(name).err()?.1)
            }
            Some((ns, gw)) if ns.is_empty() || gw.is_empty() => Why::GatewayEmpty,
            Some((ns, _)) if !is_dns1123_label(ns) => Why::GatewayNamespace(ns),
            Some((_, gw)) if !is_dns1123_label(gw) => Why::GatewayName(gw),
            Some(_) => return None,
        };
        Some(Found {
            index: i,
            code: Code::InvalidGatewayRef,
            why,
        })
    })
}

/// A list of hosts or names read by index: a slice of strings, or a kind module's
/// compact list.
pub trait Names<'a>: Copy {
    /// Number of names.
    fn count(&self) -> usize;
    /// Name `i`.
    fn name(&self, i: usize) -> Option<&'a str>;
}

impl<'a, S: AsRef<str>> Names<'a> for &'a [S] {
    fn count(&self) -> usize {
        self.len()
    }
    fn name(&self, i: usize) -> Option<&'a str> {
        self.get(i).map(AsRef::as_ref)
    }
}

impl<'a, S: AsRef<str>> Names<'a> for &'a Vec<S> {
    fn count(&self) -> usize {
        self.len()
    }
    fn name(&self, i: usize) -> Option<&'a str> {
        self.get(i).map(AsRef::as_ref)
    }
}

/// One finding of a check over a list, whose message is written only when it is
/// reported: such a check can find one per element, and past the first hundred
/// violations the rest are only counted.
#[derive(Debug)]
pub struct Found<'a> {
    /// Index of the element in the list.
    pub index: usize,
    /// Its code.
    pub code: Code,
    why: Why<'a>,
}

#[derive(Debug)]
enum Why<'a> {
    /// Two hosts of a VirtualService overlap: the earlier, then this one.
    Duplicate(&'a str, &'a str),
    /// A gateway reference without `/` that is not a valid name.
    Gateway(Cow<'static, str>),
    GatewayEmpty,
    GatewayNamespace(&'a str),
    GatewayName(&'a str),
    /// An `exportTo` entry seen before (`.` as the namespace it stands for, false).
    ExportDuplicate(&'a str, bool),
    Static(&'static str),
}

impl Found<'_> {
    /// The finding as a violation's code and message.
    pub fn failure(&self) -> Failure {
        let message = match &self.why {
            Why::Duplicate(a, b) => format!("duplicate hosts in virtual service: {a} & {b}"),
            Why::Gateway(e) => format!("invalid gateway: {e}"),
            Why::GatewayEmpty => "namespace and gateway name cannot be empty".into(),
            Why::GatewayNamespace(ns) => format!("invalid gateway namespace {ns:?}"),
            Why::GatewayName(gw) => format!("invalid gateway name {gw:?} (a DNS-1123 label)"),
            Why::ExportDuplicate(v, true) => format!("duplicate entries in exportTo for entry {v}"),
            Why::ExportDuplicate(ns, false) => {
                format!("duplicate entries in exportTo: . and current namespace {ns}")
            }
            Why::Static(reason) => return (self.code, Cow::Borrowed(reason)),
        };
        (self.code, message.into())
    }
}

/// Who a resource is visible to: the inputs of `validateExportTo`.
#[derive(Debug, Clone, Copy)]
pub struct ExportScope<'a> {
    /// The object's namespace, which `.` stands for.
    pub namespace: &'a str,
    /// ServiceEntries may use `~` (visible to no one).
    pub service_entry: bool,
    /// A DestinationRule with a `workloadSelector` may only export to its namespace.
    pub workload_selector: bool,
}

/// `exportTo` (`validateExportTo`), read one entry at a time: `.`, `*` or DNS labels
/// (`~` only for ServiceEntry), no duplicates (`.` is the own namespace), `*` and `~`
/// alone. Only the distinct valid entries are kept, so a list of a million
/// duplicates is a set of one.
#[derive(Debug)]
pub struct ExportTo<'a> {
    scope: ExportScope<'a>,
    seen: Set<Cow<'a, str>>,
    entries: usize,
}

impl<'a> ExportTo<'a> {
    /// A check of one object's list.
    pub fn new(scope: ExportScope<'a>) -> Self {
        Self {
            scope,
            seen: Set::default(),
            entries: 0,
        }
    }

    /// Checks entry `index`, `value`; its message is written only if it is reported.
    // The `Cow` itself is needed: a borrowed entry is kept without copying it.
    #[allow(clippy::ptr_arg)]
    pub fn entry<'v>(&mut self, index: usize, value: &'v Cow<'a, str>) -> Option<Found<'v>> {
        self.entries += 1;
        let v: &'v str = value;
        let key = if v == "." { self.scope.namespace } else { v };
        let valid = (key == "~" && self.scope.service_entry) || key == "*" || is_dns1123_label(key);
        let why = if self.seen.contains(key) {
            Why::ExportDuplicate(key, key == v)
        } else if valid {
            let key = if v == "." {
                Cow::Borrowed(self.scope.namespace)
            } else {
                value.clone()
            };
            self.seen.insert(key);
            return None;
        } else if key == "~" {
            Why::Static("exportTo ~ (none) is only allowed for ServiceEntry")
        } else {
            Why::Static("only ., *, ~ or a namespace name is allowed in exportTo")
        };
        Some(Found {
            index,
            code: Code::InvalidExportTo,
            why,
        })
    }

    /// The checks of the list as a whole, once every entry was read.
    pub fn finish(self) -> Vec<Failure> {
        let bad = |reason: &'static str| (Code::InvalidExportTo, Cow::Borrowed(reason));
        let mut out = Vec::new();
        let (seen, many) = (&self.seen, self.entries > 1);
        if self.scope.workload_selector && !seen.is_empty() {
            if !seen.contains(self.scope.namespace) {
                out.push(bad("destination rule with workload selector cannot have exportTo beyond current namespace"));
            } else if seen.len() > 1 {
                out.push(bad("destination rule with workload selector cannot have multiple entries in exportTo"));
            }
        }
        if seen.contains("*") && many {
            out.push(bad(
                "cannot have both public (*) and non-public exportTo values",
            ));
        }
        if seen.contains("~") && many {
            out.push(bad("cannot export service entry to no one (~) and someone"));
        }
        out
    }
}

// === VirtualService routes ===

/// What `agent.ValidateHTTPRetry` reads of a retry policy (durations are checked with
/// [`duration`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Retry<'a> {
    /// `attempts` (0 when unset: retries disabled).
    pub attempts: i64,
    /// `perTryTimeout` is set.
    pub per_try_timeout: bool,
    /// `retryOn`, comma-separated.
    pub retry_on: &'a str,
    /// `retryRemoteLocalities` is set.
    pub retry_remote_localities: bool,
}

/// Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` policies Istio accepts.
const RETRY_ON: [&str; 16] = [
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// True for the codes Go's `http.StatusText` names.
fn is_http_status(code: i64) -> bool {
    matches!(code, 100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418
        | 421..=426 | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511)
}

/// A retry policy (`agent.ValidateHTTPRetry`): `attempts` not negative, no retry
/// settings while `attempts` is 0 (the default), and known `retryOn` policies.
pub fn http_retry(r: &Retry<'_>) -> Vec<Failure> {
    let bad = |reason: Cow<'static, str>| (Code::InvalidRetry, reason);
    let mut out = Vec::new();
    if r.attempts < 0 {
        out.push(bad("attempts cannot be negative".into()));
    }
    if r.attempts == 0 && (r.per_try_timeout || !r.retry_on.is_empty() || r.retry_remote_localities)
    {
        out.push(bad(
            "retry settings are set while attempts is 0 (retries disabled)".into(),
        ));
    }
    if !r.retry_on.is_empty() {
        for policy in r.retry_on.split(',') {
            let status = policy.parse::<i64>().is_ok_and(is_http_status);
            if !status && !RETRY_ON.contains(&policy) {
                out.push(bad(
                    format!("{policy:?} is not a valid retryOn policy").into()
                ));
            }
        }
    }
    out
}

/// The parts of one `http[]` route that `validateHTTPRouteConflict` looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpRouteShape {
    /// The VirtualService is a delegate (it has no hosts).
    pub in_delegate: bool,
    /// The route sets `delegate`: in a VirtualService with hosts, a root route.
    pub delegate: bool,
    /// `route` has destinations.
    pub route: bool,
    /// `redirect` is set.
    pub redirect: bool,
    /// `directResponse` is set.
    pub direct_response: bool,
    /// `fault` is set.
    pub fault: bool,
    /// `rewrite` is set.
    pub rewrite: bool,
    /// `mirror` is set.
    pub mirror: bool,
    /// `mirrors` has destinations.
    pub mirrors: bool,
}

/// An HTTP route forwards one way and mirrors one way (`validateHTTPRouteConflict`). A
/// root route (`delegate` in a VirtualService with hosts) may set neither `route` nor
/// `redirect`; a route of a delegate VirtualService may not delegate again; otherwise
/// exactly one of `route`, `redirect`, `directResponse`, with no fault or rewrite next
/// to a redirect or direct response, and not both `mirror` and `mirrors`.
pub fn http_route_conflict(s: &HttpRouteShape, report: &mut dyn FnMut(Failure)) {
    let conflict = |what: &str| {
        (
            Code::RouteConflict,
            format!("HTTP route cannot contain both {what}").into(),
        )
    };
    if s.delegate && !s.in_delegate {
        if s.redirect {
            report((
                Code::RouteConflict,
                "root HTTP route must not specify redirect".into(),
            ));
        }
        if s.route {
            report((
                Code::RouteConflict,
                "root HTTP route must not specify route".into(),
            ));
        }
        return;
    }
    if s.in_delegate && s.delegate {
        report((
            Code::RouteConflict,
            "delegate HTTP route cannot contain delegate".into(),
        ));
    }
    if s.redirect {
        if s.route {
            report(conflict("route and redirect"));
        }
        if s.fault {
            report(conflict("fault and redirect"));
        }
        if s.rewrite {
            report(conflict("rewrite and redirect"));
        }
        if s.direct_response {
            report(conflict("directResponse and redirect"));
        }
    } else if s.direct_response {
        if s.route {
            report(conflict("route and directResponse"));
        }
        if s.fault {
            report(conflict("fault and directResponse"));
        }
        if s.rewrite {
            report(conflict("rewrite and directResponse"));
        }
    } else if !s.route {
        report((
            Code::MissingField,
            "HTTP route needs route, redirect or directResponse".into(),
        ));
    }
    if s.mirror && s.mirrors {
        report((
            Code::MirrorConflict,
            "HTTP route cannot contain both mirror and mirrors".into(),
        ));
    }
}

// === ServiceEntry ===

/// ServiceEntry `resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// `NONE` (the default): traffic goes to the requested address.
    None,
    /// `STATIC`: the endpoints' addresses.
    Static,
    /// `DNS`: resolve the hosts, or the endpoints' names.
    Dns,
    /// `DNS_ROUND_ROBIN`: like DNS, one connection target at a time.
    DnsRoundRobin,
    /// `DYNAMIC_DNS` (Istio 1.28+): resolve the requested wildcard host per request.
    DynamicDns,
}

/// `resolution` (CRD enum; the webhook's decoding rejects unknown names).
pub fn resolution(raw: &str) -> Result<Resolution, Failure> {
    Ok(match raw {
        "" | "NONE" => Resolution::None,
        "STATIC" => Resolution::Static,
        "DNS" => Resolution::Dns,
        "DNS_ROUND_ROBIN" => Resolution::DnsRoundRobin,
        "DYNAMIC_DNS" => Resolution::DynamicDns,
        _ => {
            return fail(
                Code::InvalidSpec,
                "unknown resolution (NONE, STATIC, DNS, DNS_ROUND_ROBIN or DYNAMIC_DNS)",
            );
        }
    })
}

/// `location` (CRD enum).
pub fn location(raw: &str) -> Result<(), Failure> {
    match raw {
        "" | "MESH_EXTERNAL" | "MESH_INTERNAL" => Ok(()),
        _ => fail(
            Code::InvalidSpec,
            "unknown location (MESH_EXTERNAL or MESH_INTERNAL)",
        ),
    }
}

/// An address under a resolution (`ValidateServiceEntry`): CIDRs only with NONE or
/// STATIC, and no addresses at all with DYNAMIC_DNS.
pub fn address_for(res: Resolution, is_cidr: bool) -> Result<(), Failure> {
    match res {
        Resolution::DynamicDns => fail(
            Code::ResolutionConflict,
            "addresses cannot be set with DYNAMIC_DNS resolution",
        ),
        Resolution::Dns | Resolution::DnsRoundRobin if is_cidr => fail(
            Code::ResolutionConflict,
            "CIDR addresses are allowed only with NONE or STATIC resolution",
        ),
        _ => Ok(()),
    }
}

/// The number of endpoints a resolution allows (`ValidateServiceEntry`): none with NONE
/// or DYNAMIC_DNS, at most one with DNS_ROUND_ROBIN.
pub fn endpoint_count(res: Resolution, n: usize) -> Result<(), Failure> {
    match res {
        Resolution::None if n > 0 => fail(
            Code::ResolutionConflict,
            "no endpoints may be given with NONE resolution (the default)",
        ),
        Resolution::DynamicDns if n > 0 => fail(
            Code::ResolutionConflict,
            "endpoints cannot be set with DYNAMIC_DNS resolution",
        ),
        Resolution::DnsRoundRobin if n > 1 => fail(
            Code::ResolutionConflict,
            "DNS_ROUND_ROBIN allows at most one endpoint",
        ),
        _ => Ok(()),
    }
}

/// A host under DNS or DNS_ROUND_ROBIN with no endpoints (`ValidateServiceEntry`): it is
/// resolved as written, so it must be an FQDN, not a wildcard.
pub fn dns_host_without_endpoints(raw: &str) -> Result<(), Failure> {
    fqdn(raw).map_err(|(code, e)| {
        if raw.starts_with('*') {
            (
                Code::WildcardNotAllowed,
                "wildcard hosts need endpoints with DNS resolution".into(),
            )
        } else {
            (code, e)
        }
    })
}

/// A host under DYNAMIC_DNS (`ValidateServiceEntry`): it must be a wildcard.
pub fn dynamic_dns_host(raw: &str) -> Result<(), Failure> {
    if raw.starts_with('*') {
        Ok(())
    } else {
        fail(
            Code::ResolutionConflict,
            "hosts must be wildcards with DYNAMIC_DNS resolution",
        )
    }
}

/// DYNAMIC_DNS behind a waypoint (`ValidateServiceEntry`): only MESH_EXTERNAL, when the
/// `istio.io/use-waypoint` label names a waypoint (anything but empty or `none`).
pub fn dynamic_dns_waypoint(location: &str, use_waypoint: Option<&str>) -> Result<(), Failure> {
    let waypoint = use_waypoint.is_some_and(|w| !w.is_empty() && !w.eq_ignore_ascii_case("none"));
    if location == "MESH_INTERNAL" && waypoint {
        fail(
            Code::ResolutionConflict,
            "location MESH_INTERNAL with resolution DYNAMIC_DNS is not supported when using waypoints",
        )
    } else {
        Ok(())
    }
}

/// A port under DYNAMIC_DNS (`ValidateServiceEntry`): HTTP, TLS, GRPC or HTTP2 only.
pub fn dynamic_dns_protocol(raw: &str) -> Result<(), Failure> {
    match Protocol::parse(raw) {
        Protocol::Http | Protocol::Tls | Protocol::Grpc | Protocol::Http2 => Ok(()),
        _ => fail(
            Code::ResolutionConflict,
            "only HTTP, TLS, GRPC and HTTP2 ports are supported with DYNAMIC_DNS resolution",
        ),
    }
}

/// Several hosts behind a resolved port (`ValidateServiceEntry`): unless resolution is
/// NONE, each port must let the proxy tell the hosts apart, by HTTP authority or TLS SNI.
/// An unset protocol counts as neither.
pub fn multi_host_port(hosts: usize, res: Resolution, protocol: &str) -> Result<(), Failure> {
    let p = Protocol::parse(protocol);
    if hosts > 1 && res != Resolution::None && !p.is_http() && !p.is_tls() {
        fail(
            Code::MultiHostNonHttp,
            "multiple hosts need HTTP or TLS ports unless resolution is NONE",
        )
    } else {
        Ok(())
    }
}

/// A DNS endpoint address (`ValidateServiceEntry`, DNS and DNS_ROUND_ROBIN): an IP
/// address or an FQDN.
pub fn dns_endpoint(raw: &str) -> Result<(), Failure> {
    if parse_ip(raw).is_some() || fqdn(raw).is_ok() {
        Ok(())
    } else {
        fail(
            Code::InvalidEndpoint,
            "endpoint address must be an IP address or an FQDN with DNS resolution",
        )
    }
}

/// A STATIC endpoint address (`validateWorkloadEntry`, FQDNs not allowed): an IP, a
/// `unix://` socket, or empty when a `network` is given.
pub fn static_endpoint(raw: &str, has_network: bool) -> Result<(), Failure> {
    if raw.is_empty() {
        return if has_network {
            Ok(())
        } else {
            fail(Code::InvalidEndpoint, "address is required")
        };
    }
    if let Some(path) = raw.strip_prefix(UNIX_PREFIX) {
        return unix_address(path);
    }
    if parse_ip(raw).is_some() {
        Ok(())
    } else {
        fail(
            Code::InvalidEndpoint,
            "endpoint address must be an IP address or unix:// socket with STATIC resolution",
        )
    }
}

/// A unix socket endpoint (`validateWorkloadEntry`): no endpoint ports, and exactly one
/// ServiceEntry port (counted by name, as Istio does).
pub fn unix_endpoint(endpoint_ports: usize, service_port_names: usize) -> Result<(), Failure> {
    if endpoint_ports > 0 {
        fail(
            Code::InvalidEndpoint,
            "unix endpoints must not include ports",
        )
    } else if service_port_names != 1 {
        fail(
            Code::InvalidEndpoint,
            "exactly one service port is required for unix endpoints",
        )
    } else {
        Ok(())
    }
}

/// One endpoint port (`validateWorkloadEntry`): a declared port name mapped to 1–65535.
pub fn endpoint_port<S: std::borrow::Borrow<str> + std::hash::Hash + Eq>(
    name: &str,
    number: i64,
    declared: &Set<S>,
) -> Result<(), Failure> {
    if !declared.contains(name) {
        return fail(
            Code::InvalidPort,
            format!("endpoint port {name:?} is not defined by the service entry"),
        );
    }
    port_name(name)?;
    port_number(number).map(drop)
}

/// `workloadSelector` and `endpoints` exclude each other (`ValidateServiceEntry`).
pub fn selector_or_endpoints(selector: bool, endpoints: bool) -> Result<(), Failure> {
    if selector && endpoints {
        fail(
            Code::SelectorWithEndpoints,
            "only one of workloadSelector or endpoints may be set",
        )
    } else {
        Ok(())
    }
}

// === Gateway and Sidecar ===

/// A Gateway server port protocol (`validateServerPort`): unlike ServiceEntry, empty is
/// not allowed.
pub fn server_protocol(raw: &str) -> Result<Protocol, Failure> {
    match Protocol::parse(raw) {
        Protocol::Unsupported => fail(
            Code::InvalidProtocol,
            "gateway ports need a known protocol (HTTP, HTTPS, HTTP2, GRPC, TLS, TCP, ...)",
        ),
        p => Ok(p),
    }
}

/// A Gateway server `bind` (`validateServerBind`): `unix://` with a valid socket path
/// and port number 0, or an IP address, or empty.
pub fn server_bind(bind: &str, port_number: i64) -> Vec<Failure> {
    let mut out = Vec::new();
    if let Some(path) = bind.strip_prefix(UNIX_PREFIX) {
        if let Err(e) = unix_address(path) {
            out.push(e);
        }
        if port_number != 0 {
            out.push((
                Code::InvalidPort,
                "port number must be 0 for a unix domain socket bind".into(),
            ));
        }
    } else if !bind.is_empty() && parse_ip(bind).is_none() {
        out.push((
            Code::InvalidAddress,
            "bind must be an IP address or a unix:// socket path".into(),
        ));
    }
    out
}

/// A Gateway server port name (`validateServerPort`): required, any string.
pub fn server_port_name(name: &str) -> Result<(), Failure> {
    if name.is_empty() {
        fail(Code::InvalidPort, "port name must be set")
    } else {
        Ok(())
    }
}

/// A Sidecar sets something (`ValidateSidecar`): egress, ingress,
/// outboundTrafficPolicy or inboundConnectionPool.
pub fn sidecar_not_empty(any_set: bool) -> Result<(), Failure> {
    if any_set {
        Ok(())
    } else {
        fail(Code::MissingField, "sidecar: empty configuration provided")
    }
}

/// `outboundTrafficPolicy.mode` (CRD enum: REGISTRY_ONLY or ALLOW_ANY; the mesh-only
/// ALLOW_ANY_DYNAMIC_DNS is rejected too).
pub fn outbound_mode(raw: &str) -> Result<(), Failure> {
    match raw {
        "" | "REGISTRY_ONLY" | "ALLOW_ANY" => Ok(()),
        _ => fail(Code::InvalidSpec, "mode must be REGISTRY_ONLY or ALLOW_ANY"),
    }
}

/// `egressProxy` only with mode ALLOW_ANY (`validateSidecarOutboundTrafficPolicy`).
pub fn egress_proxy_mode(mode: &str) -> Result<(), Failure> {
    if mode == "ALLOW_ANY" {
        Ok(())
    } else {
        fail(
            Code::EgressProxyWithoutAllowAny,
            "egressProxy requires outboundTrafficPolicy mode ALLOW_ANY",
        )
    }
}

#[cfg(test)]
mod tests;
