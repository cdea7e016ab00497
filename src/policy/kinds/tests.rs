//! Per-kind extraction and decision tests: every egress reference is found with its
//! field path, internal hosts are skipped, and the timeout patch is idempotent.

use serde_json::Value;
use serde_json::value::RawValue;

use crate::policy::{self, Allowlist, Code, Decision, Kind, Mode, Operation, Request};

const ALLOWLIST: &str = r#"
defaultTimeout: 15s
egressGatewaySelectors: [{istio: egressgateway}]
exemptNamespaces: [istio-system]
hosts:
  - api.github.com
  - "*.googleapis.com"
  - {host: db.example.com, ports: [5432]}
cidrs: [203.0.113.0/24, "2001:db8::/32"]
namespaces:
  payments:
    hosts: [api.stripe.com]
    cidrs: [198.51.100.0/28]
    mode: audit
    defaultTimeout: 5s
  open:
    allowAnyOutbound: true
"#;

fn mk_allowlist(extra: &str) -> Allowlist {
    Allowlist::from_yaml(&format!("{ALLOWLIST}{extra}")).unwrap()
}

/// An object with this spec (YAML).
fn mk_spec(yaml: &str) -> Box<RawValue> {
    let v: Value = serde_norway::from_str(yaml).unwrap();
    serde_json::value::to_raw_value(&serde_json::json!({ "spec": v })).unwrap()
}

fn eval_with(a: &Allowlist, kind: Kind, ns: &str, spec: &str) -> Decision {
    let spec = mk_spec(spec);
    let req = Request {
        kind: Some(kind),
        operation: Operation::Create,
        namespace: ns,
        name: "t",
        object: Some(&spec),
        old_object: None,
        user: "",
        subresource: "",
    };
    policy::evaluate(&req, a, &policy::Env::default())
}

fn eval(kind: Kind, ns: &str, spec: &str) -> Decision {
    eval_with(&mk_allowlist(""), kind, ns, spec)
}

/// `(code, path)` pairs, sorted, for compact assertions.
fn codes(d: &Decision) -> Vec<(&'static str, String)> {
    let mut v: Vec<_> = d
        .violations
        .iter()
        .map(|v| (v.code.as_str(), v.path.clone()))
        .collect();
    v.sort();
    v
}

fn cp(code: &'static str, path: &str) -> (&'static str, String) {
    (code, path.to_owned())
}

#[test]
fn service_entry_hosts_are_dialled_when_resolved() {
    // DNS without endpoints: the proxy resolves the hosts and connects to them.
    let d = eval(
        Kind::ServiceEntry,
        "default",
        r#"
hosts: [api.github.com, upload.evil.example.org, "*.github.com", "*.storage.googleapis.com", API.GitHub.com.]
ports: [{number: 443, name: https, protocol: TLS}]
location: MESH_INTERNAL
resolution: DNS
"#,
    );
    let codes_found = codes(&d);
    assert!(
        codes_found.contains(&cp("EG101", "spec.hosts[1]")),
        "{codes_found:?}"
    );
    assert!(!d.allowed());
    assert_eq!(d.violations[0].value, "upload.evil.example.org");
    // NONE: the addresses are where the original destination lies.
    let none = eval(
        Kind::ServiceEntry,
        "default",
        "hosts: [api.github.com]\naddresses: [203.0.113.7, 203.0.112.0/23, \"2001:db8:1::/48\"]\nports: [{number: 443, name: https, protocol: TLS}]\nresolution: NONE\n",
    );
    assert_eq!(codes(&none), [cp("EG103", "spec.addresses[1]")]);
}

#[test]
fn static_service_entries_dial_their_endpoints_and_match_their_hosts() {
    // STATIC: hosts and addresses are what clients match; the endpoints are dialled.
    let d = eval(
        Kind::ServiceEntry,
        "default",
        r#"
hosts: [api.github.com, upload.evil.example.org, "*.github.com", "*.storage.googleapis.com", API.GitHub.com.]
addresses: [203.0.113.7, 203.0.112.0/23, "2001:db8:1::/48", 240.0.0.1]
ports: [{number: 443, name: https, protocol: TLS}]
location: MESH_INTERNAL
resolution: STATIC
endpoints: [{address: 203.0.113.9}, {address: 192.0.2.1}, {address: 127.0.0.1}, {address: "unix:///var/run/authz.sock"}]
"#,
    );
    assert_eq!(codes(&d), [cp("EG103", "spec.endpoints[1].address")]);
    // DNS with endpoints: the endpoints are resolved and dialled, the hosts matched.
    let multicluster = eval(
        Kind::ServiceEntry,
        "default",
        "hosts: [\"*.global\"]\naddresses: [240.0.0.2]\nports: [{number: 443, name: https, protocol: TLS}]\nresolution: DNS\nendpoints: [{address: 203.0.113.20}]\n",
    );
    assert!(multicluster.allowed(), "{:?}", multicluster.violations);
    // Validity still applies to match keys.
    let bad = eval(
        Kind::ServiceEntry,
        "default",
        "hosts: [\"-bad.example.org\"]\nports: [{number: 443, name: https, protocol: TLS}]\nresolution: STATIC\nendpoints: [{address: 203.0.113.9}]\n",
    );
    assert_eq!(codes(&bad), [cp("EG201", "spec.hosts[0]")]);
}

#[test]
fn service_entry_endpoint_counts_follow_the_resolution() {
    let se = |resolution: &str, endpoints: &str| {
        let spec = format!(
            "hosts: [api.github.com]\nports: [{{number: 443, name: https, protocol: TLS}}]\nresolution: {resolution}\nendpoints: {endpoints}\n"
        );
        codes(&eval(Kind::ServiceEntry, "default", &spec))
    };
    let conflict = [cp("EG208", "spec.endpoints")];
    let one = "[{address: api.github.com}]";
    let two = "[{address: api.github.com}, {address: api.github.com}]";
    assert_eq!(se("DNS_ROUND_ROBIN", one), []);
    assert_eq!(se("DNS_ROUND_ROBIN", two), conflict);
    assert_eq!(se("DNS", two), []);
    assert!(se("NONE", one).contains(&conflict[0]));
    assert!(se("DYNAMIC_DNS", one).contains(&conflict[0]));
}

#[test]
fn service_entry_port_restrictions() {
    let ok = eval(
        Kind::ServiceEntry,
        "default",
        "hosts: [db.example.com]\nports: [{number: 5432, name: pg, protocol: TCP}]\nresolution: DNS\n",
    );
    assert!(ok.violations.is_empty(), "{:?}", ok.violations);
    let bad = eval(
        Kind::ServiceEntry,
        "default",
        "hosts: [db.example.com]\nports: [{number: 5432, name: pg, protocol: TCP}, {number: 3306, name: mysql, protocol: TCP}]\nresolution: DNS\n",
    );
    assert_eq!(codes(&bad), [cp("EG104", "spec.hosts[0]")]);
    assert!(bad.violations[0].message.contains("3306"));
}

#[test]
fn a_port_denial_names_the_ports_that_would_pass() {
    let a = Allowlist::from_yaml("hosts: [{host: smtp.example.com, ports: [587, 465]}]\n").unwrap();
    let d = eval_with(
        &a,
        Kind::ServiceEntry,
        "default",
        "hosts: [smtp.example.com]\nports: [{number: 25, name: smtp, protocol: TCP}]\nresolution: DNS\n",
    );
    assert_eq!(codes(&d), [cp("EG104", "spec.hosts[0]")]);
    assert_eq!(
        d.violations[0].message,
        "not allowed on port(s) 25; the allowlist allows it on port(s) 465, 587"
    );
}

#[test]
fn namespace_grants_stay_in_their_namespace() {
    let se = |export: &str| {
        format!(
            "hosts: [api.stripe.com]\nresolution: DNS\nports: [{{number: 443, name: https, protocol: TLS}}]\n{export}"
        )
    };
    let a = mk_allowlist("");
    // payments is in audit mode: exported beyond it, its violations are enforced (EG107).
    let leaked = vec![cp("EG105", "spec.hosts[0]"), cp("EG107", "spec.exportTo")];
    for (export, want) in [
        ("exportTo: [\".\"]", vec![]),
        ("exportTo: [payments]", vec![]),
        ("", leaked.clone()),
        ("exportTo: [\"*\"]", leaked.clone()),
        ("exportTo: [\".\", other]", leaked.clone()),
    ] {
        let d = eval_with(&a, Kind::ServiceEntry, "payments", &se(export));
        assert_eq!(codes(&d), want, "{export}");
    }
    let elsewhere = eval_with(&a, Kind::ServiceEntry, "default", &se("exportTo: [\".\"]"));
    assert_eq!(codes(&elsewhere), [cp("EG101", "spec.hosts[0]")]);
    let cidr = eval_with(
        &a,
        Kind::ServiceEntry,
        "payments",
        "hosts: [pay.internal.example]\naddresses: [198.51.100.4]\nresolution: STATIC\nendpoints: [{address: 198.51.100.4}]\nexportTo: [\".\"]\n",
    );
    // STATIC: the host is a match key; the endpoint is inside the namespace's CIDR.
    assert_eq!(codes(&cidr), []);
    let cidr_exported = eval_with(
        &a,
        Kind::ServiceEntry,
        "payments",
        "hosts: [pay.internal.example]\nresolution: STATIC\nendpoints: [{address: 198.51.100.4}]\nexportTo: [\"*\"]\n",
    );
    assert!(
        codes(&cidr_exported).contains(&cp("EG105", "spec.endpoints[0].address")),
        "{:?}",
        codes(&cidr_exported)
    );
}

#[test]
fn virtual_service_destinations_and_mirrors_are_validated_not_judged() {
    let d = eval(
        Kind::VirtualService,
        "default",
        r#"
hosts: [reviews, evil.example.org]
http:
  - route:
      - destination: {host: reviews}
      - destination: {host: reviews.default.svc.cluster.local}
  - route:
      - destination: {host: api.github.com}
      - destination: {host: leak.example.net}
    mirror: {host: mirror.example.net}
    timeout: 3s
  - route: [{destination: {host: api.github.com}}]
    mirrors:
      - destination: {host: mirror2.example.net}
tcp:
  - route: [{destination: {host: 198.51.100.1}}]
tls:
  - match: [{sniHosts: [evil.example.org]}]
    route: [{destination: {host: tls.example.net}}]
"#,
    );
    // A destination selects a registry entry, judged where that entry is created:
    // only Istio's rules apply here (an IP destination is EG204).
    assert_eq!(
        codes(&d),
        [cp("EG204", "spec.tcp[0].route[0].destination.host")]
    );
}

#[test]
fn a_route_of_many_destinations_is_judged_one_at_a_time() {
    // A tenant's one route can hold as many destinations as the body allows: each is
    // judged and counted, a bad one is named by its path, and what follows is judged.
    let empties = vec!["{}"; 1_000].join(", ");
    let spec = format!(
        "{{\"hosts\": [\"api.github.com\"], \"http\": [{{\"route\": [{empties}, \
         {{\"destination\": {{\"host\": \"*\"}}}}], \
         \"mirrors\": [{{\"destination\": {{\"host\": \"-bad.example.net\"}}}}]}}]}}"
    );
    let d = eval(Kind::VirtualService, "default", &spec);
    assert_eq!(d.violation_count(), 1_002, "{:?}", codes(&d));
    assert_eq!(d.violations[0].path, "spec.http[0].route[0].destination");
    let bad = eval(
        Kind::VirtualService,
        "default",
        r#"{"hosts": ["api.github.com"], "http": [{"route": [{"destination": {"host": "api.github.com"}}, {"destination": {"port": {"number": "x"}}}]}]}"#,
    );
    let found = codes(&bad);
    assert!(
        found.contains(&cp(
            "EG219",
            "spec.http[0].route[1].destination.port.number"
        )),
        "{found:?}"
    );
}

#[test]
fn virtual_service_hosts_are_match_keys_wherever_bound() {
    let gw_only = eval(
        Kind::VirtualService,
        "default",
        "hosts: [evil.example.org]\ngateways: [istio-system/ingress]\nhttp: [{route: [{destination: {host: web}}]}]\n",
    );
    assert!(gw_only.violations.is_empty(), "{:?}", gw_only.violations);
    let with_mesh = eval(
        Kind::VirtualService,
        "default",
        "hosts: [evil.example.org]\ngateways: [mesh, istio-system/ingress]\nhttp: [{route: [{destination: {host: web}}]}]\n",
    );
    assert_eq!(codes(&with_mesh), []);
}

#[test]
fn destination_rule_checks_host_and_every_sni() {
    let d = eval(
        Kind::DestinationRule,
        "default",
        r#"
host: api.github.com
trafficPolicy:
  tls: {mode: SIMPLE, sni: evil.example.org}
  portLevelSettings:
    - port: {number: 443}
      tls: {mode: SIMPLE, sni: api.github.com}
    - port: {number: 8443}
      tls: {mode: SIMPLE, sni: other.example.org}
subsets:
  - name: v1
    trafficPolicy: {tls: {sni: sub.example.org}}
"#,
    );
    assert_eq!(
        codes(&d),
        [
            cp("EG101", "spec.subsets[0].trafficPolicy.tls.sni"),
            cp("EG101", "spec.trafficPolicy.portLevelSettings[1].tls.sni"),
            cp("EG101", "spec.trafficPolicy.tls.sni"),
        ]
    );
}

#[test]
fn gateway_hosts_count_only_on_egress_gateways() {
    let spec = |selector: &str| {
        format!(
            "selector: {{{selector}}}\nservers:\n  - port: {{number: 443, name: tls, protocol: TLS}}\n    hosts: [\"./evil.example.org\", api.github.com, \"*/storage.googleapis.com\"]\n    tls: {{mode: PASSTHROUGH}}\n"
        )
    };
    let egress = eval(
        Kind::Gateway,
        "default",
        &spec("istio: egressgateway, app: gw"),
    );
    assert_eq!(codes(&egress), [cp("EG101", "spec.servers[0].hosts[0]")]);
    assert_eq!(egress.violations[0].value, "evil.example.org");
    let ingress = eval(Kind::Gateway, "default", &spec("istio: ingressgateway"));
    assert!(ingress.violations.is_empty(), "{:?}", ingress.violations);
}

#[test]
fn sidecar_allow_any_and_egress_proxy_are_bypasses_unless_granted() {
    let allow_any = "outboundTrafficPolicy: {mode: ALLOW_ANY}\n";
    assert_eq!(
        codes(&eval(Kind::Sidecar, "default", allow_any)),
        [cp("EG301", "spec.outboundTrafficPolicy.mode")]
    );
    assert!(eval(Kind::Sidecar, "open", allow_any).violations.is_empty());
    let proxy = "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n  egressProxy: {host: squid.proxy.svc.cluster.local, port: {number: 3128}}\n";
    assert_eq!(
        codes(&eval(Kind::Sidecar, "default", proxy)),
        [
            cp("EG301", "spec.outboundTrafficPolicy.mode"),
            cp("EG302", "spec.outboundTrafficPolicy.egressProxy")
        ]
    );
    assert!(eval(Kind::Sidecar, "open", proxy).violations.is_empty());
    let registry_only = "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\negress: [{hosts: [\"./*\", \"istio-system/*\"]}]\n";
    assert!(
        eval(Kind::Sidecar, "default", registry_only)
            .violations
            .is_empty()
    );
}

#[test]
fn ip_hosts_are_addresses_where_dialled_even_when_istio_rejects_them() {
    let cases = [
        (
            Kind::ServiceEntry,
            "hosts: [\"192.0.2.1\"]\n",
            "spec.hosts[0]",
            true,
        ),
        (
            Kind::ServiceEntry,
            "hosts: [\"192.0.2.1.\"]\n",
            "spec.hosts[0]",
            false,
        ),
        (
            Kind::DestinationRule,
            "host: 192.0.2.1\n",
            "spec.host",
            true,
        ),
        (
            Kind::VirtualService,
            "hosts: [\"192.0.2.1\"]\nhttp: [{route: [{destination: {host: reviews}}]}]\n",
            "spec.hosts[0]",
            false,
        ),
    ];
    for (kind, spec, path, invalid) in cases {
        let mut want = vec![];
        if invalid {
            want.push(cp("EG204", path));
        }
        // A ServiceEntry with resolution NONE and no addresses reaches any address, and
        // its hosts are where the client connects; DestinationRule and VirtualService
        // hosts are match keys.
        if kind == Kind::ServiceEntry {
            want.push(cp("EG103", path));
            want.push(cp("EG106", "spec.resolution"));
        }
        want.sort();
        assert_eq!(codes(&eval(kind, "default", spec)), want, "{spec}");
    }
}

#[test]
fn partial_wildcards_warn_unless_strict_and_always_deny_in_gateways() {
    let se = "hosts: [\"*storage.googleapis.com\"]\naddresses: [203.0.113.0/24]\n";
    let vs =
        "hosts: [\"*storage.googleapis.com\"]\nhttp: [{route: [{destination: {host: reviews}}]}]\n";
    let dr = "host: \"*storage.googleapis.com\"\n";
    let lenient = mk_allowlist("");
    let strict = mk_allowlist("strict: true\n");
    for (kind, spec, path) in [
        (Kind::ServiceEntry, se, "spec.hosts[0]"),
        (Kind::VirtualService, vs, "spec.hosts[0]"),
        (Kind::DestinationRule, dr, "spec.host"),
    ] {
        let warned = eval_with(&lenient, kind, "default", spec);
        assert!(warned.violations.is_empty(), "{:?}", warned.violations);
        assert!(
            warned.warnings.iter().any(|w| w.starts_with("EG202 ")),
            "{:?}",
            warned.warnings
        );
        let denied = eval_with(&strict, kind, "default", spec);
        assert_eq!(codes(&denied), [cp("EG202", path)], "{kind}");
    }
    let gw = "selector: {istio: egressgateway}\nservers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: [\"*storage.googleapis.com\"], tls: {mode: PASSTHROUGH}}]\n";
    assert_eq!(
        codes(&eval_with(&lenient, Kind::Gateway, "default", gw)),
        [cp("EG202", "spec.servers[0].hosts[0]")]
    );
}

#[test]
fn wildcard_destinations_are_valid_match_keys() {
    let spec = |host: &str| {
        format!("hosts: [reviews]\ntcp: [{{route: [{{destination: {{host: \"{host}\"}}}}]}}]\n")
    };
    let path = "spec.tcp[0].route[0].destination.host";
    assert!(
        eval(
            Kind::VirtualService,
            "default",
            &spec("*.storage.googleapis.com")
        )
        .violations
        .is_empty()
    );
    // A wildcard destination selects registry entries: no allowlist verdict here.
    assert_eq!(
        codes(&eval(
            Kind::VirtualService,
            "default",
            &spec("*.example.org")
        )),
        []
    );
    assert_eq!(
        codes(&eval(Kind::VirtualService, "default", &spec("*"))),
        [cp("EG203", path)]
    );
}

#[test]
fn net_admin_denials_quote_the_setting_not_the_container() {
    for (context, setting) in [
        ("{privileged: true}", "privileged: true"),
        (
            "{capabilities: {add: [NET_RAW, cap_net_admin]}}",
            "capabilities.add: cap_net_admin",
        ),
    ] {
        let d = eval(
            Kind::Pod,
            "default",
            &format!("containers: [{{name: app, image: app, securityContext: {context}}}]"),
        );
        let v = d.violations.iter().find(|v| v.code == Code::NetAdmin);
        assert_eq!(
            v.map(|v| (v.path.as_str(), v.value.as_str())),
            Some(("spec.containers[0].securityContext", setting)),
            "{:?}",
            d.violations
        );
    }
}

#[test]
fn an_audit_namespace_exported_to_enforcement_names_where_it_is_seen() {
    for (export, seen) in [
        ("", "*"),
        ("exportTo: [\"*\"]", "*"),
        ("exportTo: [\".\", other]", "other"),
    ] {
        let d = eval(
            Kind::ServiceEntry,
            "payments",
            &format!("hosts: [evil.example.org]\nresolution: DNS\n{export}"),
        );
        let v = d.violations.iter().find(|v| v.code == Code::AuditExported);
        assert_eq!(v.map(|v| v.value.as_str()), Some(seen), "{export}");
    }
}

#[test]
fn audit_mode_and_exempt_namespaces() {
    let d = eval(
        Kind::ServiceEntry,
        "payments",
        "hosts: [evil.example.org]\nresolution: DNS\nexportTo: [\".\"]\n",
    );
    assert_eq!(d.mode, Mode::Audit);
    assert!(d.allowed() && d.audited());
    // Exported to the mesh (enforce mode elsewhere), the same object is enforced.
    let exported = eval(
        Kind::ServiceEntry,
        "payments",
        "hosts: [evil.example.org]\nresolution: DNS\n",
    );
    assert_eq!(exported.mode, Mode::Enforce);
    assert!(!exported.allowed());
    assert_eq!(
        codes(&exported),
        [cp("EG101", "spec.hosts[0]"), cp("EG107", "spec.exportTo")]
    );
    let exempt = eval(
        Kind::ServiceEntry,
        "istio-system",
        "hosts: [evil.example.org]\n",
    );
    assert_eq!(exempt.skipped, Some(policy::Skip::ExemptNamespace));
    assert!(exempt.violations.is_empty());
}

#[test]
fn delete_and_unchanged_updates_are_allowed() {
    let a = mk_allowlist("");
    let spec = mk_spec("hosts: [evil.example.org]\nresolution: DNS\n");
    let mut req = Request {
        kind: Some(Kind::ServiceEntry),
        operation: Operation::Delete,
        namespace: "default",
        name: "t",
        object: None,
        old_object: Some(&spec),
        user: "",
        subresource: "",
    };
    assert!(policy::evaluate(&req, &a, &policy::Env::default()).allowed());
    req.operation = Operation::Update;
    req.object = Some(&spec);
    let same = mk_spec("resolution: DNS\nhosts: [evil.example.org]\n");
    req.old_object = Some(&same);
    let d = policy::evaluate(&req, &a, &policy::Env::default());
    assert!(d.spec_unchanged && d.allowed() && !d.violations.is_empty());
    let changed = mk_spec("hosts: [other.example.org]\nresolution: DNS\n");
    req.old_object = Some(&changed);
    assert!(!policy::evaluate(&req, &a, &policy::Env::default()).allowed());
}

#[test]
fn wrong_types_become_a_violation_with_the_field_path() {
    let d = eval(
        Kind::ServiceEntry,
        "default",
        "hosts: [a.example]\nports: [{number: \"443\"}]\n",
    );
    // Ports are decoded one at a time: the bad one is named, and the rest of the
    // object is still judged.
    let found = codes(&d);
    assert!(
        found.contains(&cp("EG219", "spec.ports[0].number")),
        "{found:?}"
    );
    let d = eval(Kind::VirtualService, "default", "hosts: 7\n");
    assert_eq!(d.violations[0].code, Code::InvalidSpec);
}

#[test]
fn unknown_kinds_are_skipped() {
    let spec = mk_spec("{}");
    let req = Request {
        kind: Kind::from_group_kind("apps", "ControllerRevision"),
        operation: Operation::Create,
        namespace: "default",
        name: "web",
        object: Some(&spec),
        old_object: None,
        user: "",
        subresource: "",
    };
    assert_eq!(
        policy::evaluate(&req, &mk_allowlist(""), &policy::Env::default()).skipped,
        Some(policy::Skip::NotIstio)
    );
    assert_eq!(
        Kind::from_group_kind("networking.istio.io", "WorkloadEntry"),
        Some(Kind::WorkloadEntry)
    );
    assert_eq!(Kind::from_api_version("v1", "Pod"), Some(Kind::Pod));
    assert_eq!(
        Kind::from_api_version("apps/v1", "Deployment"),
        Some(Kind::Deployment)
    );
    assert_eq!(Kind::from_group_kind("", "ConfigMapX"), None);
    assert_eq!(
        Kind::from_api_version("networking.istio.io/v1alpha3", "Sidecar"),
        Some(Kind::Sidecar)
    );
}

// === timeout mutation ===

const VS_TWO_ROUTES: &str = r#"
hosts: [api.github.com]
http:
  - match: [{uri: {prefix: /repos}}]
    route: [{destination: {host: api.github.com, port: {number: 443}}}]
  - route: [{destination: {host: api.github.com}}]
    timeout: 30s
  - route: [{destination: {host: reviews}}]
  - redirect: {uri: /elsewhere}
"#;

fn apply_patch(spec_yaml: &str, d: &Decision) -> String {
    let mut obj =
        serde_json::json!({ "spec": serde_norway::from_str::<Value>(spec_yaml).unwrap() });
    json_patch::patch(&mut obj, &d.patch.0).unwrap();
    serde_norway::to_string(&obj["spec"]).unwrap()
}

#[test]
fn timeout_patch_is_added_and_idempotent() {
    let d = eval(Kind::VirtualService, "default", VS_TWO_ROUTES);
    assert_eq!(d.patched_routes, ["spec.http[0]"]);
    let patched = apply_patch(VS_TWO_ROUTES, &d);
    let v: Value = serde_norway::from_str(&patched).unwrap();
    assert_eq!(v["http"][0]["timeout"], "15s");
    assert_eq!(
        v["http"][1]["timeout"], "30s",
        "existing timeouts are never changed"
    );
    let again = eval(Kind::VirtualService, "default", &patched);
    assert!(
        again.patch().is_none(),
        "second pass patched {:?}",
        again.patch
    );
}

#[test]
fn timeout_scope_namespace_default_and_annotation() {
    let all = mk_allowlist("timeoutScope: all\n");
    assert_eq!(
        eval_with(&all, Kind::VirtualService, "default", VS_TWO_ROUTES).patched_routes,
        ["spec.http[0]", "spec.http[2]"]
    );
    let ns = eval(Kind::VirtualService, "payments", VS_TWO_ROUTES);
    assert_eq!(ns.patch.0.len(), 1);
    assert_eq!(
        apply_patch(VS_TWO_ROUTES, &ns)
            .matches("timeout: 5s")
            .count(),
        1
    );

    let a = mk_allowlist("");
    let with_annotation = |value: &'static str| {
        let spec: Value = serde_norway::from_str(VS_TWO_ROUTES).unwrap();
        let object = serde_json::json!({
            "metadata": {"annotations": {policy::timeouts::ANNOTATION: value}},
            "spec": spec,
        });
        let object = serde_json::value::to_raw_value(&object).unwrap();
        let req = Request {
            kind: Some(Kind::VirtualService),
            operation: Operation::Create,
            namespace: "default",
            name: "t",
            object: Some(&object),
            old_object: None,
            user: "",
            subresource: "",
        };
        policy::evaluate(&req, &a, &policy::Env::default())
    };
    assert!(with_annotation("none").patch().is_none());
    let custom = with_annotation("2.5s");
    assert_eq!(
        serde_json::to_value(&custom.patch).unwrap()[0]["value"],
        "2.5s"
    );
    let invalid = with_annotation("soon");
    assert_eq!(invalid.patch.0.len(), 1);
    // A mutation's warning, not a validation finding: /validate never plans a patch.
    assert!(invalid.warnings.is_empty(), "{:?}", invalid.warnings);
    assert!(
        invalid
            .mutation_notes()
            .iter()
            .any(|w| w.contains("egress-guard.io/default-timeout"))
    );
}

// === the real apiserver bodies ===

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/admission/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn eval_fixture(name: &str, a: &Allowlist) -> Decision {
    let review = fixture(name);
    let req = &review["request"];
    let object = (!req["object"].is_null())
        .then(|| serde_json::value::to_raw_value(&req["object"]).unwrap());
    let old = (!req["oldObject"].is_null())
        .then(|| serde_json::value::to_raw_value(&req["oldObject"]).unwrap());
    let op = match req["operation"].as_str().unwrap() {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        _ => Operation::Delete,
    };
    let r = Request {
        kind: Kind::from_group_kind(
            req["kind"]["group"].as_str().unwrap(),
            req["kind"]["kind"].as_str().unwrap(),
        ),
        operation: op,
        namespace: req["namespace"].as_str().unwrap(),
        name: req["name"].as_str().unwrap(),
        object: object.as_deref(),
        old_object: old.as_deref(),
        user: "",
        subresource: "",
    };
    policy::evaluate(&r, a, &policy::Env::default())
}

#[test]
fn fixtures_get_the_expected_verdicts() {
    let a = Allowlist::from_yaml(policy::allowlist::EXAMPLE).unwrap();
    let cases = [
        ("validate-create-serviceentry-v1-github-api", true, 0),
        ("validate-create-serviceentry-v1-exfil", false, 1),
        ("validate-create-serviceentry-v1-dryrun-exfil", false, 1),
        (
            "validate-create-serviceentry-v1-review-v1beta1-exfil",
            false,
            1,
        ),
        ("validate-create-destinationrule-v1-github-api", true, 0),
        ("validate-create-gateway-v1-egress", true, 0),
        ("validate-create-sidecar-v1-default", true, 0),
        ("validate-create-virtualservice-v1-github-api", true, 0),
        ("validate-create-virtualservice-v1alpha3-reviews", true, 0),
        ("validate-delete-serviceentry-v1-github-api", true, 0),
        ("validate-update-serviceentry-v1-github-api", true, 0),
    ];
    for (name, allowed, violations) in cases {
        let d = eval_fixture(name, &a);
        assert_eq!(d.allowed(), allowed, "{name}: {:?}", d.violations);
        assert_eq!(d.violations.len(), violations, "{name}: {:?}", d.violations);
    }
    let vs = eval_fixture("mutate-create-virtualservice-v1-github-api", &a);
    assert_eq!(vs.patched_routes, ["spec.http[0]"]);
}

// === entries that expire (a fixed "now": no clock in the engine) ===

fn eval_at(a: &Allowlist, spec: &str, now: i64, explain: bool) -> Decision {
    let spec = mk_spec(spec);
    let req = Request {
        kind: Some(Kind::ServiceEntry),
        operation: Operation::Create,
        namespace: "team-a",
        name: "t",
        object: Some(&spec),
        old_object: None,
        user: "",
        subresource: "",
    };
    let env = policy::Env {
        now: Some(now),
        explain,
        ..policy::Env::default()
    };
    policy::evaluate(&req, a, &env)
}

#[test]
fn entries_grant_until_they_expire_and_warn_two_weeks_before() {
    let a = Allowlist::from_yaml(
        "hosts:\n  - {host: api.partner.example, owner: team-a, reason: CHG-1, expires: 2027-01-31}\ncidrs:\n  - {cidr: 198.51.100.0/24, expires: \"2027-01-01T12:00:00Z\"}\n",
    )
    .unwrap();
    let day = 86_400;
    let jan_31_end = 1_801_440_000; // 2027-02-01T00:00:00Z
    let host = "hosts: [api.partner.example]\nresolution: DNS\nports: [{number: 443, name: https, protocol: TLS}]\n";
    let early = eval_at(&a, host, jan_31_end - 30 * day, false);
    assert!(early.allowed() && early.warnings.is_empty(), "{early:?}");
    let late = eval_at(&a, host, jan_31_end - 3 * day, false);
    assert!(late.allowed(), "{late:?}");
    assert!(
        late.warnings
            .iter()
            .any(|w| w.contains("ends within 3 day(s)")
                && w.contains("owner team-a")
                && w.contains("keeps routing")),
        "{:?}",
        late.warnings
    );
    let after = eval_at(&a, host, jan_31_end, false);
    assert_eq!(codes(&after), [cp("EG101", "spec.hosts[0]")]);
    // The denial says which grant lapsed, so the tenant knows what to renew.
    let said = &after.violations[0].message;
    assert!(
        said.contains("the grant allowlist entry")
            && said.contains("owner team-a")
            && said.contains("reason CHG-1")
            && said.ends_with("has expired"),
        "{said}"
    );

    let net = "hosts: [db.partner.example]\naddresses: [198.51.100.7]\nresolution: STATIC\nendpoints: [{address: 198.51.100.7}]\nports: [{number: 5432, name: pg, protocol: TCP}]\n";
    let noon = 1_798_804_800; // 2027-01-01T12:00:00Z
    let before = eval_at(&a, net, noon - 1, true);
    assert!(
        !codes(&before).iter().any(|(c, _)| *c == "EG103"),
        "{before:?}"
    );
    assert!(
        before
            .explanations
            .iter()
            .any(|e| e.contains("198.51.100.0/24")),
        "{:?}",
        before.explanations
    );
    let at_noon = eval_at(&a, net, noon, false);
    assert!(
        codes(&at_noon).contains(&cp("EG103", "spec.endpoints[0].address")),
        "{at_noon:?}"
    );
}

#[test]
fn passthrough_load_balancing_reaches_any_address() {
    let dr = |tp: &str| format!("host: api.github.com\n{tp}");
    for (tp, path) in [
        (
            "trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}\n",
            "spec.trafficPolicy.loadBalancer.simple",
        ),
        (
            "trafficPolicy: {portLevelSettings: [{port: {number: 443}, loadBalancer: {simple: PASSTHROUGH}}]}\n",
            "spec.trafficPolicy.portLevelSettings[0].loadBalancer.simple",
        ),
        (
            "subsets: [{name: v1, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}]\n",
            "spec.subsets[0].trafficPolicy.loadBalancer.simple",
        ),
    ] {
        let d = eval(Kind::DestinationRule, "default", &dr(tp));
        assert_eq!(codes(&d), [cp("EG106", path)], "{tp}");
    }
    let round_robin = eval(
        Kind::DestinationRule,
        "default",
        &dr("trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n"),
    );
    assert!(round_robin.violations.is_empty());
    // A namespace that may reach every address anyway is not denied.
    let open = Allowlist::from_yaml("cidrs: [0.0.0.0/0, \"::/0\"]\n").unwrap();
    let d = eval_with(
        &open,
        Kind::DestinationRule,
        "default",
        &dr("trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}\n"),
    );
    assert!(d.violations.is_empty(), "{:?}", d.violations);
}

#[test]
fn loopback_stays_in_the_pod() {
    let we = eval(Kind::WorkloadEntry, "default", "address: 127.0.0.1\n");
    assert!(we.violations.is_empty(), "{:?}", we.violations);
    let dr = eval(
        Kind::DestinationRule,
        "default",
        "host: authz\ntrafficPolicy: {tunnel: {targetHost: \"::1\", targetPort: 8080}}\n",
    );
    assert!(dr.violations.is_empty(), "{:?}", dr.violations);
    let outside = eval(Kind::WorkloadEntry, "default", "address: 128.0.0.1\n");
    assert_eq!(codes(&outside), [cp("EG103", "spec.address")]);
}
