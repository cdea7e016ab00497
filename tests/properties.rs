//! Property tests for the policy core against plainly written reference models:
//! host normalisation, host and wildcard matching with ports, CIDR containment (v4 and
//! v6), patch idempotence, and "no input panics the engine".

use std::net::{Ipv4Addr, Ipv6Addr};

use egress_guard::policy::allowlist::{Grant, Lookup};
use egress_guard::policy::host::{HostPattern, normalize};
use egress_guard::policy::{self, Allowlist, Kind, Operation, Request};
use proptest::prelude::*;
use serde_json::{Value, json};

// === reference models, written without the engine's code ===

/// Does allowlist entry `entry` (text form) match host or pattern `query` (text form)?
fn ref_covers(entry: &str, query: &str) -> bool {
    if entry == "*" {
        return true;
    }
    if query == "*" {
        return false;
    }
    match (entry.strip_prefix("*."), query.strip_prefix("*.")) {
        (None, None) => entry == query,
        (None, Some(_)) => false,
        // `*.d` covers names strictly below d.
        (Some(d), None) => query.ends_with(&format!(".{d}")),
        // `*.d` covers `*.q` when q is d or below d.
        (Some(d), Some(q)) => q == d || q.ends_with(&format!(".{d}")),
    }
}

#[derive(Debug, Clone)]
struct Entry {
    host: String,
    ports: Option<Vec<u16>>,
}

/// Reference verdict: every requested port is allowed by some covering entry.
fn ref_allowed(entries: &[Entry], query: &str, ports: &[u16]) -> bool {
    let covering: Vec<&Entry> = entries
        .iter()
        .filter(|e| ref_covers(&e.host, query))
        .collect();
    if covering.is_empty() {
        return false;
    }
    ports.iter().all(|p| {
        covering
            .iter()
            .any(|e| e.ports.as_ref().is_none_or(|ps| ps.contains(p)))
    })
}

fn allowlist_yaml(entries: &[Entry], cidrs: &[String]) -> String {
    let mut s = String::from("hosts:\n");
    for e in entries {
        match &e.ports {
            None => s.push_str(&format!("  - \"{}\"\n", e.host)),
            Some(p) => s.push_str(&format!("  - {{host: \"{}\", ports: {:?}}}\n", e.host, p)),
        }
    }
    s.push_str("cidrs:\n");
    for c in cidrs {
        s.push_str(&format!("  - \"{c}\"\n"));
    }
    s
}

// === strategies ===

fn label() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "api", "x1", "c-d"]).prop_map(str::to_owned)
}

/// Small alphabet and depth so that entries and queries collide often.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..4).prop_map(|ls| format!("{}.com", ls.join(".")))
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        3 => name().prop_map(|n| format!("*.{n}")),
        1 => Just("*.com".to_owned()),
    ]
}

fn ports() -> impl Strategy<Value = Option<Vec<u16>>> {
    prop_oneof![
        2 => Just(None),
        1 => prop::collection::vec(prop::sample::select(vec![80u16, 443, 5432]), 1..3).prop_map(Some),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (pattern(), ports()).prop_map(|(host, ports)| Entry { host, ports })
}

fn v4_net() -> impl Strategy<Value = (u32, u8)> {
    // Few distinct high bits so nets overlap often.
    (0u32..8, 0u8..=32).prop_map(|(hi, len)| {
        let addr = (hi << 29) | (hi.wrapping_mul(0x0101_0101) & 0x1fff_ffff);
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        (addr & mask, len)
    })
}

fn v6_net() -> impl Strategy<Value = (u128, u8)> {
    (0u128..8, 0u8..=128).prop_map(|(hi, len)| {
        let addr = (hi << 125) | (hi.wrapping_mul(0x0101_0101_0101) & ((1u128 << 125) - 1));
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        (addr & mask, len)
    })
}

fn v4_in(entry: (u32, u8), q: (u32, u8)) -> bool {
    let mask = if entry.1 == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(entry.1))
    };
    entry.1 <= q.1 && q.0 & mask == entry.0
}

fn v6_in(entry: (u128, u8), q: (u128, u8)) -> bool {
    let mask = if entry.1 == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(entry.1))
    };
    entry.1 <= q.1 && q.0 & mask == entry.0
}

/// Istio's pairwise overlap check, the oracle for the linear one: every host that
/// matches some earlier host.
fn ref_overlaps(hosts: &[String]) -> Vec<usize> {
    (0..hosts.len())
        .filter(|&j| (0..j).any(|i| policy::istio::hosts_match(&hosts[i], &hosts[j])))
        .collect()
}

/// Hosts from a tiny alphabet so that suffix relations are frequent.
fn overlap_host() -> impl Strategy<Value = String> {
    let body = proptest::string::string_regex("[ab.]{0,6}").unwrap();
    (any::<bool>(), body).prop_map(|(wild, b)| if wild { format!("*{b}") } else { b })
}

/// Istio's `host.Name.SubsetOf`, the oracle for the indexed SNI check.
fn ref_subset_of(n: &str, o: &str) -> bool {
    match (n.strip_prefix('*'), o.strip_prefix('*')) {
        (Some(_), Some(x)) => n.len() >= o.len() && n[1..].ends_with(x),
        (Some(_), None) => false,
        (None, Some(x)) => n.ends_with(x),
        (None, None) => n == o,
    }
}

proptest! {
    #[test]
    fn indexed_sni_subset_check_agrees_with_istios(hosts in prop::collection::vec(overlap_host(), 0..8), sni in overlap_host()) {
        let index = policy::istio::HostSubsets::new(&hosts);
        let want = hosts.iter().any(|h| ref_subset_of(&sni, h));
        prop_assert_eq!(index.sni_subset(&sni).is_ok(), want, "{:?} in {:?}", sni, hosts);
    }

    #[test]
    fn linear_overlap_check_agrees_with_istios_pairwise_one(hosts in prop::collection::vec(overlap_host(), 0..12)) {
        let got: Vec<usize> = policy::istio::overlapping_hosts(&hosts).map(|f| f.index).collect();
        prop_assert_eq!(got, ref_overlaps(&hosts));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn normalisation_is_idempotent(raw in "[a-zA-Z0-9.*-]{0,40}\\.?") {
        let once = normalize(&raw).into_owned();
        prop_assert_eq!(normalize(&once).into_owned(), once.clone());
        if let Ok(p) = raw.parse::<HostPattern>() {
            let shown = p.to_string();
            prop_assert_eq!(shown.parse::<HostPattern>().ok(), Some(p));
            prop_assert_eq!(shown, once);
        }
    }

    #[test]
    fn host_lookups_match_the_reference(
        entries in prop::collection::vec(entry(), 0..12),
        query in pattern(),
        query_ports in prop::collection::vec(prop::sample::select(vec![80u16, 443, 5432, 8080]), 0..3),
        upper in any::<bool>(),
    ) {
        let allowlist = Allowlist::from_yaml(&allowlist_yaml(&entries, &[])).unwrap();
        let asked = if upper { format!("{}.", query.to_uppercase()) } else { query.clone() };
        let host: HostPattern = asked.parse().unwrap();
        let got = matches!(allowlist.lookup_host("ns", &host, &egress_guard::policy::matcher::PortSet::new(query_ports.clone()), None), Lookup::Allowed(Grant::Global, _));
        prop_assert_eq!(got, ref_allowed(&entries, &query, &query_ports), "query {} ports {:?}", query, query_ports);
    }

    #[test]
    fn wildcard_coverage_matches_the_reference(entry in pattern(), query in pattern()) {
        let e: HostPattern = entry.parse().unwrap();
        let q: HostPattern = query.parse().unwrap();
        prop_assert_eq!(e.covers(&q), ref_covers(&entry, &query));
    }

    #[test]
    fn cidr_containment_matches_the_reference(
        v4 in prop::collection::vec(v4_net(), 0..8),
        v6 in prop::collection::vec(v6_net(), 0..8),
        q4 in v4_net(),
        q6 in v6_net(),
    ) {
        let cidrs: Vec<String> = v4
            .iter()
            .map(|(a, l)| format!("{}/{l}", Ipv4Addr::from(*a)))
            .chain(v6.iter().map(|(a, l)| format!("{}/{l}", Ipv6Addr::from(*a))))
            .collect();
        let allowlist = Allowlist::from_yaml(&allowlist_yaml(&[], &cidrs)).unwrap();
        let n4 = format!("{}/{}", Ipv4Addr::from(q4.0), q4.1).parse().unwrap();
        let n6 = format!("{}/{}", Ipv6Addr::from(q6.0), q6.1).parse().unwrap();
        prop_assert_eq!(
            matches!(allowlist.lookup_net("ns", &n4, None), Lookup::Allowed(..)),
            v4.iter().any(|e| v4_in(*e, q4))
        );
        prop_assert_eq!(
            matches!(allowlist.lookup_net("ns", &n6, None), Lookup::Allowed(..)),
            v6.iter().any(|e| v6_in(*e, q6))
        );
    }

    #[test]
    fn mutating_a_patched_virtual_service_yields_no_patch(
        routes in prop::collection::vec(
            (any::<bool>(), prop::sample::select(vec!["reviews", "api.github.com", "x.svc.cluster.local", "10.1.2.3"]), any::<bool>()),
            0..8,
        ),
        scope_all in any::<bool>(),
    ) {
        let http: Vec<Value> = routes
            .iter()
            .map(|(has_timeout, host, redirect)| {
                let mut r = if *redirect {
                    json!({"redirect": {"uri": "/x"}})
                } else {
                    json!({"route": [{"destination": {"host": host}}]})
                };
                if *has_timeout {
                    r["timeout"] = json!("2s");
                }
                r
            })
            .collect();
        let mut object = json!({"spec": {"hosts": ["api.github.com"], "http": http}});
        let scope = if scope_all { "all" } else { "external" };
        let allowlist = Allowlist::from_yaml(&format!(
            "defaultTimeout: 15s\ntimeoutScope: {scope}\nhosts: [\"*\"]\ncidrs: [0.0.0.0/0]\n"
        ))
        .unwrap();
        let eval = |obj: &Value| {
            let raw = serde_json::value::to_raw_value(obj).unwrap();
            policy::evaluate(
                &Request {
                    kind: Some(Kind::VirtualService),
                    operation: Operation::Create,
                    namespace: "default",
                    name: "vs",
                    object: Some(&raw),
                    old_object: None,
                    user: "",
                    subresource: "",
                },
                &allowlist, &policy::Env::default()
            )
        };
        let first = eval(&object);
        json_patch::patch(&mut object, &first.patch.0).unwrap();
        let second = eval(&object);
        prop_assert!(second.patch().is_none(), "second pass patched {:?}", second.patch);
        // Every forwarding route in scope now has a timeout; existing ones are untouched.
        for (i, (had, host, redirect)) in routes.iter().enumerate() {
            let t = &object["spec"]["http"][i]["timeout"];
            let external = *host == "api.github.com" || *host == "10.1.2.3";
            if *had {
                prop_assert_eq!(t, &json!("2s"));
            } else if !*redirect && (scope_all || external) {
                prop_assert_eq!(t, &json!("15s"));
            } else {
                prop_assert!(t.is_null());
            }
        }
    }

    #[test]
    fn no_spec_panics_the_engine(spec in spec_like(), kind in prop::sample::select(Kind::ALL.to_vec()), strict in any::<bool>()) {
        let allowlist = Allowlist::from_yaml(&format!(
            "strict: {strict}\ndefaultTimeout: 1s\nhosts: [api.github.com, \"*.example.com\"]\ncidrs: [10.0.0.0/8]\negressGatewaySelectors: [{{istio: egressgateway}}]\n"
        ))
        .unwrap();
        let object = json!({
            "metadata": {"annotations": {"egress-guard.io/default-timeout": "garbage"}},
            "spec": spec,
        });
        let raw = serde_json::value::to_raw_value(&object).unwrap();
        let d = policy::evaluate(
            &Request {
                kind: Some(kind),
                operation: Operation::Update,
                namespace: "default",
                name: "x",
                object: Some(&raw),
                old_object: Some(&raw),
                user: "",
                subresource: "",
            },
            &allowlist, &policy::Env::default()
        );
        // Violations always name a path under spec.
        for v in &d.violations {
            prop_assert!(v.path.starts_with("spec"), "{:?}", v);
        }
    }
}

/// JSON shaped like the five kinds' specs: the real field names, with values of the
/// right and the wrong types, unicode, empty strings, nesting and long arrays.
fn spec_like() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "hosts",
        "addresses",
        "ports",
        "number",
        "name",
        "protocol",
        "targetPort",
        "resolution",
        "endpoints",
        "address",
        "workloadSelector",
        "exportTo",
        "gateways",
        "http",
        "tcp",
        "tls",
        "route",
        "destination",
        "host",
        "mirror",
        "mirrors",
        "timeout",
        "retries",
        "perTryTimeout",
        "delegate",
        "trafficPolicy",
        "portLevelSettings",
        "sni",
        "subsets",
        "selector",
        "servers",
        "egress",
        "outboundTrafficPolicy",
        "mode",
        "egressProxy",
        "port",
        "location",
        "ünïcode",
        "",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "",
            "*",
            "*.example.com",
            "*foo.example.com",
            "api.github.com",
            "10.0.0.0/8",
            "::1",
            "unix:///sock",
            "DNS",
            "STATIC",
            "NONE",
            "ALLOW_ANY",
            "mesh",
            "ns/gw",
            "0.5ms",
            "15s",
            "ﬀ.example",
            "a..b",
            "-x.com",
            "*.*",
        ])
        .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 256, 12, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

fn evaluate_raw(kind: Kind, text: String, allowlist: &Allowlist) -> policy::Decision {
    let raw = serde_json::value::RawValue::from_string(format!("{{\"spec\":{text}}}")).unwrap();
    policy::evaluate(
        &Request {
            kind: Some(kind),
            operation: Operation::Create,
            namespace: "default",
            name: "x",
            object: Some(&raw),
            old_object: None,
            user: "",
            subresource: "",
        },
        allowlist,
        &policy::Env::default(),
    )
}

#[test]
fn deep_nesting_and_huge_arrays_do_not_panic() {
    let allowlist = Allowlist::from_yaml("hosts: [a.example]\n").unwrap();
    // As deep as serde_json's recursion limit lets a body reach the engine.
    let deep = format!("{{\"hosts\":{}1{}}}", "[".repeat(120), "]".repeat(120));
    for kind in Kind::ALL {
        let d = evaluate_raw(kind, deep.clone(), &allowlist);
        // Only ServiceEntry and VirtualService have a top-level `hosts` to trip over.
        if !matches!(kind, Kind::ServiceEntry | Kind::VirtualService) {
            continue;
        }
        assert!(
            d.violations
                .iter()
                .any(|v| v.code == policy::Code::InvalidSpec),
            "{kind}: {:?}",
            d.violations
        );
    }
    // Deeper bodies are refused by the decoder, with an error, not a panic.
    let deeper = format!(
        "{{\"request\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(egress_guard::admission::decode(deeper.as_bytes()).is_err());

    let huge = format!(
        "{{\"hosts\":[{}\"x.example\"],\"resolution\":\"DNS\"}}",
        "\"a.example\",".repeat(200_000)
    );
    let d = evaluate_raw(Kind::ServiceEntry, huge, &allowlist);
    let denied: Vec<_> = d
        .violations
        .iter()
        .map(|v| (v.code.as_str(), v.path.as_str()))
        .collect();
    assert_eq!(denied, [("EG101", "spec.hosts[200000]")]);
}
