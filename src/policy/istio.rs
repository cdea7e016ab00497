//! Istio's structural validity rules for the egress-relevant fields, one small function
//! per rule. Each mirrors a function in istio/istio `pkg/config/validation` (named in
//! its doc line) so that egress-guard rejects what istiod rejects, and nothing more
//! unless `strict` is on.

use std::net::IpAddr;

use ipnet::IpNet;

use super::decision::Code;
use super::duration::Duration;
use super::host::{self, HostError, HostPattern};

/// A rule failure: the code and a short reason. The caller adds path and value.
pub type Failure = (Code, String);

fn fail<T>(code: Code, reason: impl Into<String>) -> Result<T, Failure> {
    Err((code, reason.into()))
}

fn host_failure(e: HostError) -> Failure {
    let code = match e {
        HostError::IpAddress => Code::IpAsHost,
        _ => Code::InvalidHost,
    };
    (code, e.to_string())
}

/// Any host or wildcard domain (`ValidateWildcardDomain`); partial wildcards parse and
/// are judged by the caller.
pub fn wildcard_domain(raw: &str) -> Result<HostPattern, Failure> {
    raw.parse::<HostPattern>().map_err(host_failure)
}

/// A ServiceEntry host (`validateServiceEntry`): a name or wildcard domain, never `*`
/// alone and never an IP address.
pub fn service_entry_host(raw: &str) -> Result<HostPattern, Failure> {
    match wildcard_domain(raw)? {
        HostPattern::Any => fail(
            Code::WildcardNotAllowed,
            "\"*\" is not allowed as a ServiceEntry host",
        ),
        p => Ok(p),
    }
}

/// A VirtualService host (`validateVirtualService`): `*` is only valid when the
/// VirtualService is bound to gateways, not to the mesh.
pub fn virtual_service_host(raw: &str, bound_to_mesh: bool) -> Result<HostPattern, Failure> {
    if raw.parse::<IpAddr>().is_ok() {
        // Istio accepts IPs as VirtualService hosts (matched against the authority).
        return Ok(HostPattern::Exact(raw.into()));
    }
    match wildcard_domain(raw)? {
        HostPattern::Any if bound_to_mesh => fail(
            Code::WildcardNotAllowed,
            "wildcard host \"*\" is not allowed for virtual services bound to the mesh gateway",
        ),
        p => Ok(p),
    }
}

/// A route destination host (`validateDestination`): a name, FQDN or IP; no wildcards.
pub fn destination_host(raw: &str) -> Result<HostPattern, Failure> {
    if raw.is_empty() {
        return fail(Code::MissingField, "destination host is required");
    }
    if raw.parse::<IpAddr>().is_ok() {
        return Ok(HostPattern::Exact(raw.into()));
    }
    let p = wildcard_domain(raw)?;
    if p.is_wildcard() {
        return fail(
            Code::WildcardNotAllowed,
            "wildcards are not allowed in destination hosts",
        );
    }
    Ok(p)
}

/// How a partial wildcard (`*foo.example.com`) is treated: Istio only warns for most
/// kinds; it has caused outages, so `strict` denies it.
pub fn partial_wildcard(pattern: &HostPattern) -> bool {
    matches!(pattern, HostPattern::Partial { .. })
}

/// A port number (`ValidatePort`): 1–65535.
pub fn port_number(n: i64) -> Result<u16, Failure> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => fail(
            Code::InvalidPort,
            "port number must be in the range 1..65535",
        ),
    }
}

/// A port name (`ValidatePortName`): a DNS-1123 label.
pub fn port_name(name: &str) -> Result<(), Failure> {
    if name.is_empty() {
        return fail(Code::InvalidPort, "port name is required");
    }
    host::check_label(name).map_err(|e| (Code::InvalidPort, format!("invalid port name: {e}")))
}

/// A port protocol (`ValidateProtocol` over `protocol.Parse`): empty means sniffing.
pub fn protocol(raw: &str) -> Result<(), Failure> {
    const KNOWN: [&str; 12] = [
        "tcp",
        "udp",
        "grpc",
        "grpc-web",
        "http",
        "http_proxy",
        "http2",
        "https",
        "tls",
        "mongo",
        "redis",
        "mysql",
    ];
    if raw.is_empty() || KNOWN.iter().any(|k| k.eq_ignore_ascii_case(raw)) {
        Ok(())
    } else {
        fail(Code::InvalidProtocol, "unrecognized protocol name")
    }
}

/// A ServiceEntry address (`ValidateIPSubnet`/`ValidateIPAddress`): an IP or a CIDR.
pub fn address(raw: &str) -> Result<IpNet, Failure> {
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    raw.parse::<IpNet>().map_err(|_| {
        (
            Code::InvalidAddress,
            "address must be an IP or a CIDR".to_owned(),
        )
    })
}

/// A duration (`ValidateDuration`): parsable, at least 1ms, whole milliseconds.
pub fn duration(raw: &str) -> Result<Duration, Failure> {
    let d: Duration = raw
        .parse()
        .map_err(|e: super::duration::DurationError| (Code::InvalidDuration, e.to_string()))?;
    d.check_istio()
        .map_err(|r| (Code::InvalidDuration, r.to_owned()))?;
    Ok(d)
}

/// One `exportTo` entry (`validateExportTo`): `.`, `*`, `~` or a namespace name.
pub fn export_to_entry(raw: &str) -> Result<(), Failure> {
    match raw {
        "." | "*" | "~" => Ok(()),
        ns => host::check_label(ns)
            .map_err(|e| (Code::InvalidExportTo, format!("invalid namespace: {e}"))),
    }
}

/// A namespace part of `ns/host` in Gateway servers and Sidecar egress
/// (`validateNamespaceSlashWildcardHostname`): `*`, `.`, `~` or a namespace name.
pub fn host_namespace(ns: &str, code: Code) -> Result<(), Failure> {
    match ns {
        "*" | "." | "~" => Ok(()),
        _ => host::check_label(ns).map_err(|e| (code, format!("invalid namespace: {e}"))),
    }
}

/// A VirtualService gateway reference (`validateGatewayNames`): `mesh`, `name` or
/// `namespace/name`, each part a DNS-1123 name.
pub fn gateway_ref(raw: &str) -> Result<(), Failure> {
    if raw == "mesh" {
        return Ok(());
    }
    let (ns, name) = match raw.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, raw),
    };
    if let Some(ns) = ns {
        host::check_label(ns).map_err(|e| {
            (
                Code::InvalidGatewayRef,
                format!("invalid gateway namespace: {e}"),
            )
        })?;
    }
    if name.is_empty() || name.contains('/') {
        return fail(
            Code::InvalidGatewayRef,
            "gateway must be `name` or `namespace/name`",
        );
    }
    // Gateway names may be dotted FQDNs (`name.namespace.svc.cluster.local`).
    host::check_labels(name)
        .or_else(|e| match e {
            HostError::NumericTld(_) => Ok(()),
            e => Err(e),
        })
        .map_err(|e| {
            (
                Code::InvalidGatewayRef,
                format!("invalid gateway name: {e}"),
            )
        })
}

/// A STATIC endpoint address (`validateWorkloadEntry` with STATIC resolution): an IP
/// or a `unix://` socket path.
pub fn static_endpoint(raw: &str) -> Result<(), Failure> {
    if raw.parse::<IpAddr>().is_ok() || unix_socket(raw) {
        Ok(())
    } else {
        fail(
            Code::InvalidEndpoint,
            "endpoint address must be an IP or unix:// socket with STATIC resolution",
        )
    }
}

/// A DNS endpoint address: a host name or an IP.
pub fn dns_endpoint(raw: &str) -> Result<(), Failure> {
    if raw.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    match raw.parse::<HostPattern>() {
        Ok(HostPattern::Exact(_)) => Ok(()),
        Ok(_) => fail(
            Code::InvalidEndpoint,
            "endpoint address must not be a wildcard",
        ),
        Err(e) => fail(
            Code::InvalidEndpoint,
            format!("invalid endpoint address: {e}"),
        ),
    }
}

/// True for `unix:///absolute/path`.
pub fn unix_socket(raw: &str) -> bool {
    raw.strip_prefix("unix://")
        .is_some_and(|p| p.starts_with('/') && p.len() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: std::fmt::Debug>(r: Result<T, Failure>) -> Option<Code> {
        r.err().map(|(c, _)| c)
    }

    #[test]
    fn service_entry_hosts() {
        let cases = [
            ("api.github.com", None),
            ("*.example.com", None),
            ("*foo.example.com", None),
            ("reviews", None),
            ("*", Some(Code::WildcardNotAllowed)),
            ("10.0.0.1", Some(Code::IpAsHost)),
            ("2001:db8::1", Some(Code::IpAsHost)),
            ("bad_host.com", Some(Code::InvalidHost)),
            ("", Some(Code::InvalidHost)),
            ("a.*.com", Some(Code::InvalidHost)),
        ];
        for (h, want) in cases {
            assert_eq!(code(service_entry_host(h)), want, "{h:?}");
        }
    }

    #[test]
    fn virtual_service_hosts() {
        assert_eq!(
            code(virtual_service_host("*", true)),
            Some(Code::WildcardNotAllowed)
        );
        assert_eq!(code(virtual_service_host("*", false)), None);
        assert_eq!(code(virtual_service_host("10.1.2.3", true)), None);
        assert_eq!(code(virtual_service_host("*.x.com", true)), None);
        assert_eq!(
            code(virtual_service_host("x..com", true)),
            Some(Code::InvalidHost)
        );
    }

    #[test]
    fn destination_hosts() {
        let cases = [
            ("reviews", None),
            ("reviews.default.svc.cluster.local", None),
            ("10.0.0.1", None),
            ("", Some(Code::MissingField)),
            ("*", Some(Code::WildcardNotAllowed)),
            ("*.example.com", Some(Code::WildcardNotAllowed)),
            ("*foo.example.com", Some(Code::WildcardNotAllowed)),
            ("-x.com", Some(Code::InvalidHost)),
        ];
        for (h, want) in cases {
            assert_eq!(code(destination_host(h)), want, "{h:?}");
        }
    }

    #[test]
    fn ports_names_protocols() {
        assert_eq!(code(port_number(443)), None);
        assert_eq!(code(port_number(65535)), None);
        for n in [0, -1, 65536, 100_000] {
            assert_eq!(code(port_number(n)), Some(Code::InvalidPort), "{n}");
        }
        assert_eq!(code(port_name("http-web")), None);
        assert_eq!(code(port_name("")), Some(Code::InvalidPort));
        assert_eq!(code(port_name("Http")), Some(Code::InvalidPort));
        for p in ["HTTP", "https", "TLS", "TCP", "grpc-web", "Mongo", ""] {
            assert_eq!(code(protocol(p)), None, "{p}");
        }
        for p in ["HTTP3", "foo", "ws"] {
            assert_eq!(code(protocol(p)), Some(Code::InvalidProtocol), "{p}");
        }
    }

    #[test]
    fn addresses_and_endpoints() {
        assert!(address("10.0.0.1").is_ok());
        assert!(address("10.0.0.0/8").is_ok());
        assert!(address("2001:db8::/32").is_ok());
        assert_eq!(code(address("example.com")), Some(Code::InvalidAddress));
        assert_eq!(code(address("10.0.0.0/40")), Some(Code::InvalidAddress));
        assert!(static_endpoint("10.0.0.1").is_ok());
        assert!(static_endpoint("unix:///var/run/sock").is_ok());
        assert_eq!(
            code(static_endpoint("db.example.com")),
            Some(Code::InvalidEndpoint)
        );
        assert_eq!(
            code(static_endpoint("unix://relative")),
            Some(Code::InvalidEndpoint)
        );
        assert!(dns_endpoint("db.example.com").is_ok());
        assert!(dns_endpoint("10.0.0.1").is_ok());
        assert_eq!(
            code(dns_endpoint("*.example.com")),
            Some(Code::InvalidEndpoint)
        );
    }

    #[test]
    fn durations() {
        assert!(duration("10s").is_ok());
        assert!(duration("1ms").is_ok());
        assert_eq!(code(duration("0s")), Some(Code::InvalidDuration));
        assert_eq!(code(duration("0.5ms")), Some(Code::InvalidDuration));
        assert_eq!(code(duration("ten")), Some(Code::InvalidDuration));
    }

    #[test]
    fn export_to_and_gateway_refs() {
        for ok in [".", "*", "~", "payments"] {
            assert!(export_to_entry(ok).is_ok(), "{ok}");
        }
        assert_eq!(code(export_to_entry("Bad_NS")), Some(Code::InvalidExportTo));
        for ok in [
            "mesh",
            "my-gw",
            "istio-system/egress",
            "gw.ns.svc.cluster.local",
        ] {
            assert!(gateway_ref(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b/c", "ns/", "/gw", "Bad/gw", "gw_x"] {
            assert_eq!(
                code(gateway_ref(bad)),
                Some(Code::InvalidGatewayRef),
                "{bad:?}"
            );
        }
    }
}
