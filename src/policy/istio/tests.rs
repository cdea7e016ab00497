//! Table-driven tests for each Istio validity rule.

use super::*;

fn code<T: std::fmt::Debug>(r: Result<T, Failure>) -> Option<Code> {
    r.err().map(|(c, _)| c)
}

#[test]
fn dns1123_labels_accept_upper_case() {
    let long = "a".repeat(63);
    let too_long = "a".repeat(64);
    for (s, want) in [
        ("foo", true),
        ("Henry", true),
        ("a-b-1", true),
        (long.as_str(), true),
        ("", false),
        ("-a", false),
        ("a-", false),
        ("a_b", false),
        ("a.b", false),
        (too_long.as_str(), false),
    ] {
        assert_eq!(is_dns1123_label(s), want, "{s:?}");
    }
    for (s, want) in [
        ("*", true),
        ("*foo", true),
        ("*-foo", true),
        ("foo", true),
        ("foo*", false),
        ("**", false),
        ("*-", false),
        ("f*o", false),
        ("*--foo", false),
    ] {
        assert_eq!(is_wildcard_dns1123_label(s), want, "{s:?}");
    }
}

#[test]
fn wildcard_domains_and_fqdns() {
    let label_64 = format!("{}.example.com", "x".repeat(64));
    let label = "a".repeat(63);
    let name_256 = format!("{label}.{label}.{label}.{label}.com");
    let cases: &[(&str, bool, bool)] = &[
        // (host, ValidateWildcardDomain ok, ValidateFQDN ok)
        ("istio.io", true, true),
        ("istio.io.", true, true),
        ("API.Example.COM", true, true),
        ("foo", true, true),
        ("123", true, false),
        ("1.2.3.4.", true, true),
        ("*.example.com", true, false),
        ("*foo.example.com", true, false),
        ("*-foo.example.com", true, false),
        ("*x", true, false),
        ("*", true, false),
        ("", false, false),
        ("-", false, false),
        ("foo.123", false, false),
        ("1.1.1.1", false, false),
        ("2001:db8::1", false, false),
        ("foo.*.com", false, false),
        ("foo*.bar.com", false, false),
        ("**.example.com", false, false),
        ("*.*.example.com", false, false),
        ("foo..example.com", false, false),
        (".example.com", false, false),
        ("foo_bar.example.com", false, false),
        ("example.com:443", false, false),
        ("10.0.0.0/8", false, false),
        (&label_64, false, false),
        (&name_256, false, false),
    ];
    for (h, wildcard_ok, fqdn_ok) in cases {
        assert_eq!(wildcard_domain(h).is_ok(), *wildcard_ok, "wildcard {h:?}");
        assert_eq!(fqdn(h).is_ok(), *fqdn_ok, "fqdn {h:?}");
    }
    assert!(is_partial_wildcard("*foo.com") && is_partial_wildcard("foo.*.com"));
    assert!(!is_partial_wildcard("*") && !is_partial_wildcard("*.foo.com"));
}

#[test]
fn ips_and_subnets_follow_go_netip() {
    for ok in [
        "1.2.3.4",
        "2001:db8::1",
        "001:db8::",
        "fe80::1%eth0",
        "::ffff:1.2.3.4",
    ] {
        assert!(parse_ip(ok).is_some(), "{ok}");
    }
    for bad in [
        "010.0.0.1",
        "1.1.A.1",
        "2001:1:G::1",
        "1.2.3.4%eth0",
        "fe80::1%",
        "",
    ] {
        assert!(parse_ip(bad).is_none(), "{bad}");
    }
    for ok in [
        "10.0.0.1",
        "172.1.2.16/16",
        "2001:1::1/64",
        "1.1.1.1/32",
        "0.0.0.0/0",
    ] {
        assert!(ip_subnet(ok).is_ok(), "{ok}");
    }
    for bad in [
        "1.1.1.1/48",
        "2001:1::1/132",
        "example.com",
        "10.0.0.0/08",
        "1/2/3",
        "1.1.1.1/",
    ] {
        assert_eq!(code(ip_subnet(bad)), Some(Code::InvalidAddress), "{bad}");
    }
}

#[test]
fn ports_names_protocols() {
    assert_eq!(code(port_number(443)), None);
    assert_eq!(code(port_number(65535)), None);
    for n in [0, -1, 65536, 100_000] {
        assert_eq!(code(port_number(n)), Some(Code::InvalidPort), "{n}");
    }
    for ok in ["http-web", "Henry", "a"] {
        assert_eq!(code(port_name(ok)), None, "{ok}");
    }
    for bad in ["", "http_1", &"x".repeat(64)] {
        assert_eq!(code(port_name(bad)), Some(Code::InvalidPort), "{bad}");
    }
    for p in [
        "HTTP",
        "https",
        "TLS",
        "TCP",
        "grpc-web",
        "Mongo",
        "HTTP_PROXY",
        "",
    ] {
        assert_eq!(code(protocol(p)), None, "{p}");
    }
    for p in ["HTTP3", "kafka", "HBONE", "DoubleHBONE"] {
        assert_eq!(code(protocol(p)), Some(Code::InvalidProtocol), "{p}");
    }
    assert_eq!(code(server_protocol("")), Some(Code::InvalidProtocol));
    assert_eq!(code(server_protocol("http")), None);
    assert_eq!(code(server_port_name("http_1")), None);
    assert_eq!(code(server_port_name("")), Some(Code::InvalidPort));
    assert!(Protocol::parse("gRPC").is_http() && Protocol::parse("Https").is_tls());
    assert!(!Protocol::parse("").is_http() && !Protocol::parse("tcp").is_tls());
}

#[test]
fn host_rules_per_field() {
    let se = [
        ("api.github.com", None),
        ("*.example.com", None),
        ("*foo.example.com", None),
        ("reviews", None),
        ("123", None),
        ("1.2.3.4.", None),
        ("*", Some(Code::WildcardNotAllowed)),
        ("10.0.0.1", Some(Code::IpAsHost)),
        ("2001:db8::1", Some(Code::IpAsHost)),
        ("10.0.0.0/8", Some(Code::IpAsHost)),
        ("bad_host.com", Some(Code::InvalidHost)),
        ("", Some(Code::InvalidHost)),
    ];
    for (h, want) in se {
        assert_eq!(code(service_entry_host(h)), want, "se {h:?}");
    }
    let dest = [
        ("reviews", None),
        ("*.foo.baz", None),
        ("*foo.baz", None),
        ("*-foo.baz", None),
        ("", Some(Code::MissingField)),
        ("*", Some(Code::WildcardNotAllowed)),
        ("10.0.0.1", Some(Code::IpAsHost)),
        ("foo.*", Some(Code::InvalidHost)),
        ("default/baz", Some(Code::InvalidHost)),
    ];
    for (h, want) in dest {
        assert_eq!(code(destination_host(h)), want, "destination {h:?}");
    }
    let dr = [
        ("*", None),
        ("*foo.example.com", None),
        ("", Some(Code::MissingField)),
        ("10.0.0.1", Some(Code::IpAsHost)),
        ("foo.ba!r", Some(Code::InvalidHost)),
    ];
    for (h, want) in dr {
        assert_eq!(code(destination_rule_host(h)), want, "dr {h:?}");
    }
    assert_eq!(code(egress_proxy_host("foo.bar")), None);
    for bad in ["*.example.com", "*", "foobar*123"] {
        assert_eq!(
            code(egress_proxy_host(bad)),
            Some(Code::InvalidHost),
            "{bad}"
        );
    }
}

#[test]
fn virtual_service_hosts_depend_on_binding() {
    let mesh = VirtualServiceBinding {
        applies_to_gateway: false,
        applies_to_mesh: true,
        sni: false,
    };
    let gateway = VirtualServiceBinding {
        applies_to_gateway: true,
        applies_to_mesh: false,
        sni: true,
    };
    let sni_host = "outbound_.15010_._.istiod.istio-system.svc.cluster.local";
    let cases = [
        ("*", mesh, Some(Code::WildcardNotAllowed)),
        ("*", gateway, None),
        ("10.1.2.3", mesh, None),
        ("2001:db8::1", mesh, None),
        ("*foo.example.com", mesh, None),
        ("x..com", mesh, Some(Code::InvalidHost)),
        (sni_host, gateway, None),
        (sni_host, mesh, Some(Code::InvalidHost)),
        ("outbound_.x_._.1", gateway, Some(Code::InvalidHost)),
    ];
    for (h, binding, want) in cases {
        assert_eq!(
            code(virtual_service_host(h, binding)),
            want,
            "{h:?} {binding:?}"
        );
    }
}

#[test]
fn sni_hosts() {
    let generated = "outbound_.80_._.e2e.foobar.mesh";
    assert_eq!(sni_host("api.example.com", false), Ok(None));
    assert_eq!(sni_host(generated, true), Ok(None));
    assert!(matches!(sni_host("1.1.1.1", false), Ok(Some(_))));
    assert_eq!(code(sni_host(generated, false)), Some(Code::InvalidHost));
    assert_eq!(code(sni_host("foo.*.com", true)), Some(Code::InvalidHost));
}

#[test]
fn overlapping_virtual_service_hosts() {
    let cases: &[(&[&str], &[usize])] = &[
        (&["foo.bar", "foo.bar"], &[1]),
        (&["*.foo.bar", "*.bar"], &[1]),
        (&["api.example.com", "*.example.com"], &[1]),
        (&["*", "foo.com"], &[1]),
        (&["a.example.com", "b.example.com"], &[]),
        (&["Foo.bar", "foo.bar"], &[]),
        (&["*.example.com", "example.com"], &[]),
    ];
    for (hosts, want) in cases {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let got: Vec<usize> = overlapping_hosts(&hosts).map(|f| f.index).collect();
        assert_eq!(&got, want, "{hosts:?}");
    }
}

#[test]
fn gateway_and_sidecar_hosts() {
    let gw = [
        ("foo.bar.com", None),
        ("1.1.1.1", None),
        ("ns1/foo.bar.com", None),
        ("*/foo.bar.com", None),
        ("./foo.bar.com", None),
        ("*", None),
        ("*/*", None),
        ("NS1/foo.example.com", None),
        ("~/foo.bar.com", Some(Code::InvalidGatewayRef)),
        ("Invalid_NS/foo.com", Some(Code::InvalidGatewayRef)),
        ("/foo.com", Some(Code::InvalidGatewayRef)),
        ("foo.*.bar.com", Some(Code::InvalidHost)),
        ("foo", Some(Code::InvalidHost)),
        ("ns1/foo", Some(Code::InvalidHost)),
        ("ns1/", Some(Code::InvalidHost)),
        ("", Some(Code::InvalidHost)),
        ("2001:db8::1", Some(Code::InvalidHost)),
        ("ns1/foo/bar.com", Some(Code::InvalidHost)),
        ("*bar.com", Some(Code::PartialWildcard)),
        ("ns1/*bar.com", Some(Code::PartialWildcard)),
    ];
    for (h, want) in gw {
        assert_eq!(code(gateway_server_host(h)), want, "gateway {h:?}");
    }
    for ok in [
        "*/*",
        "./*",
        "~/*",
        "~ns1/*",
        "~/foo.com",
        "NS1/x.com",
        "ns1/*.example.com",
    ] {
        assert_eq!(code(sidecar_egress_host(ok)), None, "sidecar {ok:?}");
    }
    for bad in [
        "*",
        "/",
        "/foo.com",
        "ns1/",
        "~Invalid_NS/*",
        "ns.with.dots/foo.com",
        "test/*a.com",
        "ns1/foo",
        "ns1/10.0.0.1",
        "ns1/foo.*.com",
    ] {
        assert_eq!(
            code(sidecar_egress_host(bad)),
            Some(Code::InvalidSidecarHost),
            "sidecar {bad:?}"
        );
    }
}

#[test]
fn sidecar_duplicates_are_warnings() {
    let cases: &[(&[&str], &[Option<usize>])] = &[
        (&["*/*"], &[]),
        (&["./*", "istio-system/*"], &[]),
        (&["*/*", "~ns1/*"], &[]),
        (&["test/*", "test/a.com"], &[Some(1)]),
        (&["test/a.com", "test/a.com"], &[Some(1)]),
        (&["test/a.com", "test/*"], &[Some(1)]),
        (&["./*", "ns/a.com"], &[Some(1)]),
        (&["*/*", "test/a.com"], &[None]),
    ];
    for (hosts, want) in cases {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let mut got: Vec<Option<usize>> = Vec::new();
        sidecar_duplicate_hosts(&hosts, "ns", |i, _| got.push(i));
        assert_eq!(&got, want, "{hosts:?}");
    }
}

#[test]
fn sidecar_duplicate_warnings_name_the_host() {
    let hosts = ["ns/a.com", "./a.com", "*/*"];
    let mut got = Vec::new();
    sidecar_duplicate_hosts(&hosts, "ns", |i, w| got.push((i, w.to_string())));
    assert_eq!(
        got,
        [
            (Some(1), r#"duplicated egress host "./a.com""#.to_owned()),
            (
                None,
                r#""*/*" selects every host, no other hosts can be added"#.to_owned()
            ),
        ]
    );
}

#[test]
fn gateway_names_stop_at_the_first_name_without_slash() {
    let cases: &[(&[&str], &[usize])] = &[
        (&["mesh"], &[]),
        (&["my-gw", "gw.ns.svc.cluster.local"], &[]),
        (&["istio-system/egress", "ns1/gateway"], &[]),
        (&["mesh", "*/gateway"], &[]),
        (&["b@dgateway"], &[0]),
        (&["ns1/*"], &[0]),
        (&["*/gateway"], &[0]),
        (&["ns1/"], &[0]),
        (&["ns1/gw.example"], &[0]),
        (&["ns1/gateway", "b@d"], &[1]),
        (&["Bad_ns/gw", "mesh", "*/x"], &[0]),
    ];
    for (names, want) in cases {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let got: Vec<usize> = gateway_names(&names).map(|f| f.index).collect();
        assert_eq!(&got, want, "{names:?}");
    }
}

#[test]
fn export_to_entries_and_combinations() {
    let scope = |service_entry, workload_selector| ExportScope {
        namespace: "ns",
        service_entry,
        workload_selector,
    };
    let cases: &[(&[&str], bool, bool, bool)] = &[
        // (exportTo, service entry, DR workload selector, valid)
        (&["."], false, false, true),
        (&["*"], false, false, true),
        (&[".", "ns1"], false, false, true),
        (&["ns1", "ns2", "ns"], false, false, true),
        (&["NS1"], false, false, true),
        (&["~"], true, false, true),
        (&["~"], false, false, false),
        (&["~", "ns1"], true, false, false),
        (&["~", "~"], true, false, false),
        (&["*", "ns1"], false, false, false),
        (&[".", "*"], false, false, false),
        (&[".", "ns"], false, false, false),
        (&["ns1", "ns1"], false, false, false),
        (&["ns1_"], false, false, false),
        (&["."], false, true, true),
        (&["ns"], false, true, true),
        (&["*"], false, true, false),
        (&["other"], false, true, false),
        (&[".", "other"], false, true, false),
    ];
    for (values, se, ws, valid) in cases {
        let got = export_to_failures(values, scope(*se, *ws));
        assert_eq!(
            got.is_empty(),
            *valid,
            "{values:?} se={se} ws={ws}: {got:?}"
        );
        assert!(got.iter().all(|(c, _)| *c == Code::InvalidExportTo));
    }
}

/// Every failure of an `exportTo` list, entry by entry and then as a whole.
fn export_to_failures(values: &[&str], scope: ExportScope<'_>) -> Vec<Failure> {
    let values: Vec<Cow<'_, str>> = values.iter().map(|v| Cow::Borrowed(*v)).collect();
    let mut check = ExportTo::new(scope);
    let mut got: Vec<Failure> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| check.entry(i, v).map(|f| f.failure()))
        .collect();
    got.extend(check.finish());
    got
}

#[test]
fn retries_and_routes() {
    let retry = |attempts, per_try_timeout, retry_on| Retry {
        attempts,
        per_try_timeout,
        retry_on,
        retry_remote_localities: false,
    };
    let cases = [
        (retry(10, true, "5xx,gateway-error"), true),
        (retry(0, false, ""), true),
        (retry(3, false, "503,retriable-4xx"), true),
        (retry(0, true, ""), false),
        (retry(0, false, "5xx"), false),
        (retry(-1, false, ""), false),
        (retry(3, false, "5xx, reset"), false),
        (retry(3, false, "999"), false),
    ];
    for (r, valid) in cases {
        assert_eq!(http_retry(&r).is_empty(), valid, "{r:?}");
        assert!(http_retry(&r).iter().all(|(c, _)| *c == Code::InvalidRetry));
    }
    let remote = Retry {
        retry_remote_localities: true,
        ..Retry::default()
    };
    assert!(!http_retry(&remote).is_empty());

    let codes = |s: HttpRouteShape| -> Vec<Code> {
        let mut codes = Vec::new();
        http_route_conflict(&s, &mut |(c, _)| codes.push(c));
        codes
    };
    let route = HttpRouteShape {
        route: true,
        ..HttpRouteShape::default()
    };
    assert_eq!(codes(route), []);
    assert_eq!(codes(HttpRouteShape::default()), [Code::MissingField]);
    let redirect = HttpRouteShape {
        redirect: true,
        ..HttpRouteShape::default()
    };
    assert_eq!(codes(redirect), []);
    let root = HttpRouteShape {
        delegate: true,
        mirror: true,
        mirrors: true,
        ..HttpRouteShape::default()
    };
    assert_eq!(codes(root), []);
    // A root route may not also route or redirect; a delegate's route may not delegate.
    let root_with_route = HttpRouteShape {
        delegate: true,
        route: true,
        redirect: true,
        ..HttpRouteShape::default()
    };
    assert_eq!(
        codes(root_with_route),
        [Code::RouteConflict, Code::RouteConflict]
    );
    let nested = HttpRouteShape {
        in_delegate: true,
        delegate: true,
        ..route
    };
    assert_eq!(codes(nested), [Code::RouteConflict]);
    let mixed = HttpRouteShape {
        redirect: true,
        direct_response: true,
        fault: true,
        ..route
    };
    assert_eq!(
        codes(mixed),
        [
            Code::RouteConflict,
            Code::RouteConflict,
            Code::RouteConflict
        ]
    );
    let direct = HttpRouteShape {
        direct_response: true,
        rewrite: true,
        ..HttpRouteShape::default()
    };
    assert_eq!(codes(direct), [Code::RouteConflict]);
    let both = HttpRouteShape {
        mirror: true,
        mirrors: true,
        ..route
    };
    assert_eq!(codes(both), [Code::MirrorConflict]);
}

#[test]
fn durations() {
    for ok in ["10s", "1ms", "1.5s", "250ms", "2000us", "1m30s"] {
        assert!(duration(ok).is_ok(), "{ok}");
    }
    for bad in [
        "0s",
        "0.5ms",
        "500us",
        "1500us",
        "1.000000001s",
        "-1s",
        "10",
        "1d",
        "ten",
    ] {
        assert_eq!(code(duration(bad)), Some(Code::InvalidDuration), "{bad}");
    }
}

#[test]
fn service_entry_resolution_rules() {
    use Resolution::*;
    assert_eq!(resolution(""), Ok(None));
    assert_eq!(resolution("DYNAMIC_DNS"), Ok(DynamicDns));
    assert_eq!(code(resolution("DYNAMIC")), Some(Code::InvalidSpec));
    assert_eq!(code(location("MESH_INTERNAL")), Option::None);
    assert_eq!(code(location("INTERNAL")), Some(Code::InvalidSpec));
    let conflict = Some(Code::ResolutionConflict);
    assert_eq!(code(address_for(None, true)), Option::None);
    assert_eq!(code(address_for(Static, true)), Option::None);
    assert_eq!(code(address_for(Dns, false)), Option::None);
    assert_eq!(code(address_for(Dns, true)), conflict);
    assert_eq!(code(address_for(DnsRoundRobin, true)), conflict);
    assert_eq!(code(address_for(DynamicDns, false)), conflict);
    assert_eq!(code(endpoint_count(None, 0)), Option::None);
    assert_eq!(code(endpoint_count(None, 1)), conflict);
    assert_eq!(code(endpoint_count(DnsRoundRobin, 1)), Option::None);
    assert_eq!(code(endpoint_count(DnsRoundRobin, 2)), conflict);
    assert_eq!(code(endpoint_count(DynamicDns, 1)), conflict);
    assert_eq!(code(endpoint_count(Static, 5)), Option::None);
    assert_eq!(code(dns_host_without_endpoints("google.com")), Option::None);
    assert_eq!(code(dns_host_without_endpoints("foo")), Option::None);
    assert_eq!(
        code(dns_host_without_endpoints("*.google.com")),
        Some(Code::WildcardNotAllowed)
    );
    assert_eq!(
        code(dns_host_without_endpoints("*foo.google.com")),
        Some(Code::WildcardNotAllowed)
    );
    assert_eq!(code(dynamic_dns_host("*.google.com")), Option::None);
    assert_eq!(code(dynamic_dns_host("google.com")), conflict);
    for ok in ["http", "TLS", "GRPC", "HTTP2"] {
        assert_eq!(code(dynamic_dns_protocol(ok)), Option::None, "{ok}");
    }
    for bad in ["", "HTTPS", "TCP", "HTTP_PROXY"] {
        assert_eq!(code(dynamic_dns_protocol(bad)), conflict, "{bad}");
    }
    let multi = Some(Code::MultiHostNonHttp);
    assert_eq!(code(multi_host_port(2, Dns, "TCP")), multi);
    assert_eq!(code(multi_host_port(2, Static, "")), multi);
    assert_eq!(code(multi_host_port(2, Dns, "HTTPS")), Option::None);
    assert_eq!(code(multi_host_port(2, None, "TCP")), Option::None);
    assert_eq!(code(multi_host_port(1, Dns, "TCP")), Option::None);
}

#[test]
fn endpoints() {
    for ok in ["db.example.com", "10.0.0.1", "2001:db8::10", "foo"] {
        assert_eq!(code(dns_endpoint(ok)), None, "{ok}");
    }
    for bad in [
        "*.example.com",
        "unix:///lon/google/com",
        "",
        "in_valid.example.com",
    ] {
        assert_eq!(
            code(dns_endpoint(bad)),
            Some(Code::InvalidEndpoint),
            "{bad:?}"
        );
    }
    for (addr, network) in [
        ("10.0.0.1", false),
        ("unix:///var/run/sock", false),
        ("unix://@abstract", false),
        ("", true),
    ] {
        assert_eq!(code(static_endpoint(addr, network)), None, "{addr:?}");
    }
    for bad in [
        "db.example.com",
        "unix://relative",
        "unix:///var/run/",
        "unix://",
        "",
    ] {
        assert_eq!(
            code(static_endpoint(bad, false)),
            Some(Code::InvalidEndpoint),
            "{bad:?}"
        );
    }
    assert_eq!(code(unix_endpoint(0, 1)), None);
    assert_eq!(code(unix_endpoint(1, 1)), Some(Code::InvalidEndpoint));
    assert_eq!(code(unix_endpoint(0, 2)), Some(Code::InvalidEndpoint));
    assert_eq!(code(unix_endpoint(0, 0)), Some(Code::InvalidEndpoint));
    let declared: crate::policy::review_hash::Set<&str> = ["http"].into_iter().collect();
    assert_eq!(code(endpoint_port("http", 8080, &declared)), None);
    assert_eq!(
        code(endpoint_port("dne", 8080, &declared)),
        Some(Code::InvalidPort)
    );
    assert_eq!(
        code(endpoint_port("http", 65536, &declared)),
        Some(Code::InvalidPort)
    );
    assert_eq!(
        code(selector_or_endpoints(true, true)),
        Some(Code::SelectorWithEndpoints)
    );
    assert_eq!(code(selector_or_endpoints(true, false)), None);
}

#[test]
fn sidecar_outbound_policy() {
    assert_eq!(code(sidecar_not_empty(false)), Some(Code::MissingField));
    for ok in ["", "REGISTRY_ONLY", "ALLOW_ANY"] {
        assert_eq!(code(outbound_mode(ok)), None, "{ok}");
    }
    assert_eq!(
        code(outbound_mode("ALLOW_ANY_DYNAMIC_DNS")),
        Some(Code::InvalidSpec)
    );
    assert_eq!(code(egress_proxy_mode("ALLOW_ANY")), None);
    for bad in ["", "REGISTRY_ONLY"] {
        assert_eq!(
            code(egress_proxy_mode(bad)),
            Some(Code::EgressProxyWithoutAllowAny),
            "{bad:?}"
        );
    }
}

#[test]
fn export_to_names_each_duplicate_by_index() {
    let values: Vec<Cow<'_, str>> = std::iter::repeat_n(Cow::Borrowed("a"), 1001).collect();
    let mut check = ExportTo::new(ExportScope {
        namespace: "ns",
        service_entry: false,
        workload_selector: false,
    });
    let found: Vec<usize> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| check.entry(i, v).map(|f| f.index))
        .collect();
    assert_eq!(found, (1..=1000).collect::<Vec<_>>());
    assert!(check.finish().is_empty());
    let dot = [Cow::Borrowed("ns"), Cow::Borrowed(".")];
    let mut check = ExportTo::new(ExportScope {
        namespace: "ns",
        service_entry: false,
        workload_selector: false,
    });
    assert!(check.entry(0, &dot[0]).is_none());
    let (_, message) = check.entry(1, &dot[1]).map(|f| f.failure()).unwrap();
    assert_eq!(
        message,
        "duplicate entries in exportTo: . and current namespace ns"
    );
}
