//! Worst-case AdmissionReviews for `bench/hostile.sh`: one file per hostile shape and
//! size, each a real captured review from `tests/fixtures/admission` whose object (or
//! envelope) is replaced by the shape.
//!
//! `cargo run --release --example hostile-gen -- DIR [SUBSTRING...]`
//!
//! Writes `DIR/<shape>.<size>.json` and `DIR/index.tsv` (shape, size, endpoints, bytes,
//! file, description). Sizes:
//!
//! - `16k`: at most 16 KiB, so the server judges it inline on an async worker, with no
//!   deadline (only the work budget);
//! - `256k` and `3m` (just under the 3 MiB body limit): judged on the blocking pool
//!   under `--review-deadline`;
//! - a few shapes add a size of their own (`768k`) where the outcome changes.
//!
//! Each shape is a function of one number `n` (a count or a length) and every size is
//! the largest `n` that fits. A shape whose hostile part the server caps (the 64 KiB
//! `proxy.istio.io/config` limit) is padded with an annotation no kind reads. Shapes
//! with a `fixed` size (the issue's 10,000 × 10,000 ServiceEntry) are written once.
//!
//! Large arrays and anything serde_json would not write as-is (escapes, nesting deeper
//! than its serializer recurses, numbers with a million digits) are spliced in as raw
//! JSON text.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

/// The server's body limit (`server::BODY_LIMIT`).
const BODY_LIMIT: usize = 3 * 1024 * 1024;
/// Bodies up to this size are judged inline (`server::INLINE_BODY`).
const INLINE_BODY: usize = 16 * 1024;
/// The `proxy.istio.io/config` annotation is read only up to this size.
const PROXY_CONFIG_MAX: usize = 64 * 1024;
/// How far under each size a body may end up.
const SLACK: usize = 16;

const SIZES: [(&str, usize); 3] = [
    ("16k", INLINE_BODY - SLACK),
    ("256k", 256 * 1024 - SLACK),
    ("3m", BODY_LIMIT - SLACK),
];

/// A review under construction: JSON plus raw fragments spliced in when written.
struct Doc {
    review: Value,
    raw: Vec<String>,
}

impl Doc {
    /// A placeholder for `fragment`, which replaces it verbatim in the written text.
    fn raw(&mut self, fragment: String) -> Value {
        self.raw.push(fragment);
        Value::String(format!("@@RAW{}@@", self.raw.len() - 1))
    }

    fn request(&mut self) -> &mut Value {
        &mut self.review["request"]
    }

    fn object(&mut self) -> &mut Value {
        &mut self.review["request"]["object"]
    }

    fn spec(&mut self) -> &mut Value {
        &mut self.review["request"]["object"]["spec"]
    }

    fn annotate(&mut self, key: &str, value: Value) {
        let meta = &mut self.review["request"]["object"]["metadata"];
        if !meta["annotations"].is_object() {
            meta["annotations"] = json!({});
        }
        meta["annotations"][key] = value;
    }

    /// `n` bytes in an annotation that no kind reads.
    fn pad(&mut self, n: usize) {
        if n > 0 {
            self.annotate("bench.example.com/padding", Value::String("x".repeat(n)));
        }
    }

    /// Moves the object to `ns`.
    fn namespace(&mut self, ns: &str) {
        self.review["request"]["namespace"] = json!(ns);
        self.review["request"]["object"]["metadata"]["namespace"] = json!(ns);
    }

    fn render(&self) -> String {
        let mut text = serde_json::to_string(&self.review).expect("a Value always serialises");
        for (i, fragment) in self.raw.iter().enumerate().rev() {
            text = text.replacen(&format!("\"@@RAW{i}@@\""), fragment, 1);
        }
        text
    }
}

/// A JSON array of `n` items rendered by `item`.
fn array(n: usize, mut item: impl FnMut(&mut String, usize)) -> String {
    let mut s = String::with_capacity(n * 8 + 2);
    s.push('[');
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        item(&mut s, i);
    }
    s.push(']');
    s
}

/// `n` copies of one JSON item.
fn repeated(n: usize, item: &str) -> String {
    array(n, |s, _| s.push_str(item))
}

/// A dotted public IPv4 address for index `i` (never in the example allowlist's CIDRs).
fn public_ip(i: usize) -> String {
    format!("8.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

/// A YAML "billion laughs" of about `bytes` bytes: a list of `k` scalars, a list of `m`
/// aliases to it, and `r` aliases to that. serde_norway allows 100 alias jumps per
/// event of the document, and each jump to the scalar list replays all `k` of them,
/// so the work is about `m·r·k` events for `k + m + r` written. The whole document
/// goes into a key `ProxyConfig` does not know, which is skipped event by event.
fn alias_bomb(bytes: usize) -> String {
    // 2 bytes per scalar, 3 per alias; m = r = 10·√k keeps m·r under 100 jumps per event.
    let mut k = bytes / 2;
    while k > 0 && 2 * k + 60 * (k as f64).sqrt() as usize + 40 > bytes {
        k -= 1 + k / 100;
    }
    let m = (10.0 * (k as f64).sqrt()) as usize;
    let mut y = String::with_capacity(bytes);
    y.push_str("a: &a [");
    y.push_str(&vec!["a"; k.max(1)].join(","));
    y.push_str("]\nb: &b [");
    y.push_str(&vec!["*a"; m.max(1)].join(","));
    y.push_str("]\nc: [");
    y.push_str(&vec!["*b"; m.max(1)].join(","));
    y.push_str("]\n");
    y
}

/// YAML nested `depth` flow sequences deep.
fn deep_yaml(depth: usize) -> String {
    format!("x: {}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Splits a byte budget between a capped hostile part and padding.
fn capped(n: usize, cap: usize) -> (usize, usize) {
    (n.min(cap), n.saturating_sub(cap))
}

type Build = fn(&mut Doc, usize);

struct Shape {
    name: &'static str,
    /// `validate`, `mutate` or both, comma-separated.
    endpoints: &'static str,
    fixture: &'static str,
    what: &'static str,
    build: Build,
    /// Written once with this `n` instead of once per size.
    fixed: Option<(&'static str, usize)>,
    /// Sizes written besides [`SIZES`].
    extra: &'static [(&'static str, usize)],
}

const VS: &str = "validate-create-virtualservice-v1-github-api";
const SE: &str = "validate-create-serviceentry-v1-exfil";
const DR: &str = "validate-create-destinationrule-v1-github-api";
const POD: &str = "validate-create-pod-v1-app-injected";
const CONFIGMAP: &str = "validate-create-configmap-v1-egress-guard-allowlist";

fn shapes() -> Vec<Shape> {
    vec![
        // --- the issue's shapes ---
        Shape {
            name: "vs-timeout-annotation-dashes",
            endpoints: "validate,mutate",
            fixture: VS,
            what: "egress-guard.io/default-timeout of n dashes then 1s",
            build: |d, n| {
                d.annotate(
                    "egress-guard.io/default-timeout",
                    json!(format!("{}1s", "-".repeat(n))),
                )
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "vs-route-duration-dashes",
            endpoints: "validate",
            fixture: VS,
            what: "n http routes, timeout/perTryTimeout/backoff each 26 dashes then 1s",
            build: |d, n| {
                let t = format!("\"{}1s\"", "-".repeat(26));
                let route = format!(
                    r#"{{"route":[{{"destination":{{"host":"api.github.com"}}}}],"timeout":{t},"retries":{{"attempts":1,"perTryTimeout":{t},"backoff":{t}}}}}"#
                );
                let http = d.raw(repeated(n, &route));
                *d.spec() = json!({"hosts": ["api.github.com"], "http": http});
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "vs-short-hosts",
            endpoints: "validate",
            fixture: VS,
            what: "n short distinct hosts h<i> bound to a gateway (overlap check)",
            build: |d, n| {
                let hosts = d.raw(array(n, |s, i| {
                    let _ = write!(s, "\"h{i}\"");
                }));
                *d.spec() = json!({"hosts": hosts, "gateways": ["gw"],
                    "http": [{"route": [{"destination": {"host": "h1"}}]}]});
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "vs-duplicate-hosts",
            endpoints: "validate",
            fixture: VS,
            what: "n copies of host \"h\" bound to a gateway: every one overlaps (EG221)",
            build: |d, n| {
                let hosts = d.raw(repeated(n, "\"h\""));
                *d.spec() = json!({"hosts": hosts, "gateways": ["gw"],
                    "http": [{"route": [{"destination": {"host": "h"}}]}]});
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "vs-long-wildcard-hosts",
            endpoints: "validate",
            fixture: VS,
            what: "n distinct 250-byte wildcard hosts of 125 labels (suffix walk)",
            build: |d, n| {
                let hosts = d.raw(array(n, |s, i| {
                    let _ = write!(s, "\"*.{i:x}{}x\"", "a.".repeat(122));
                }));
                *d.spec() = json!({"hosts": hosts, "gateways": ["gw"],
                    "http": [{"route": [{"destination": {"host": "a.example"}}]}]});
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "dr-sni-dots",
            endpoints: "validate",
            fixture: DR,
            what: "trafficPolicy.tls.sni of n dots",
            build: |d, n| {
                d.spec()["trafficPolicy"] =
                    json!({"tls": {"mode": "SIMPLE", "sni": ".".repeat(n)}});
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "se-hosts-x-ports-10k",
            endpoints: "validate",
            fixture: SE,
            what: "10,000 hosts db.example.com (port-restricted entry) x 10,000 ports",
            build: se_hosts_x_ports,
            fixed: Some(("10k", 10_000)),
            extra: &[],
        },
        Shape {
            name: "se-hosts-x-ports",
            endpoints: "validate",
            fixture: SE,
            what: "n hosts db.example.com (port-restricted entry) x n ports",
            build: se_hosts_x_ports,
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "se-exportto-quotes",
            endpoints: "validate",
            fixture: SE,
            what: "exportTo of n \"\\\"\" entries and five hosts of up to 40,000 bytes",
            build: |d, n| {
                let reps = (n / 4).min(20_000);
                let hosts: Vec<String> = (0..5)
                    .map(|i| format!("{i}{}", "a.".repeat(reps)))
                    .collect();
                let export = d.raw(repeated(n, r#""\"""#));
                d.spec()["exportTo"] = export;
                d.spec()["hosts"] = json!(hosts);
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "se-audit-many-violations",
            endpoints: "validate",
            fixture: SE,
            what: "audit namespace, n invalid 200-byte hosts: warnings, annotations, log line",
            build: |d, n| {
                d.namespace("sandbox");
                d.spec()["exportTo"] = json!(["."]);
                let hosts = d.raw(array(n, |s, i| {
                    let _ = write!(s, "\"{}{i}-.evil.example\"", "x".repeat(180));
                }));
                d.spec()["hosts"] = hosts;
            },
            fixed: None,
            extra: &[],
        },
        // --- found in src/policy/kinds and src/admission.rs ---
        Shape {
            name: "se-unlisted-hosts",
            endpoints: "validate",
            fixture: SE,
            what: "n valid hosts not in the allowlist (EG101 each), enforce",
            build: |d, n| {
                let hosts = d.raw(array(n, |s, i| {
                    let _ = write!(s, "\"h{i}.evil.example\"");
                }));
                d.spec()["hosts"] = hosts;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "se-exportto-duplicates",
            endpoints: "validate",
            fixture: SE,
            what: "exportTo of n copies of \"a\" (EG212 per duplicate)",
            build: |d, n| {
                let export = d.raw(repeated(n, "\"a\""));
                d.spec()["exportTo"] = export;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "se-escaped-hosts",
            endpoints: "validate",
            fixture: SE,
            what: "n hosts written entirely as \\u escapes (nothing can be borrowed)",
            build: |d, n| {
                let hosts = d.raw(array(n, |s, i| {
                    s.push('"');
                    for b in format!("h{i}.evil.example").bytes() {
                        let _ = write!(s, "\\u{b:04x}");
                    }
                    s.push('"');
                }));
                d.spec()["hosts"] = hosts;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "se-endpoints-x-ports",
            endpoints: "validate",
            fixture: SE,
            what: "STATIC, n endpoints with their own port map x n named ports",
            build: |d, n| {
                let ports = d.raw(array(n, |s, i| {
                    let _ = write!(
                        s,
                        r#"{{"number":{},"name":"p{i}","protocol":"HTTP"}}"#,
                        1 + i % 65_535
                    );
                }));
                let endpoints = d.raw(repeated(n, r#"{"address":"8.8.8.8","ports":{"p0":1}}"#));
                *d.spec() = json!({"hosts": ["upload.evil.example.org"], "resolution": "STATIC",
                    "location": "MESH_EXTERNAL", "ports": ports, "endpoints": endpoints});
            },
            fixed: None,
            // Between about 520 KiB and 1.1 MiB the work budget runs out before the
            // deadline: this size shows EG901 from the budget.
            extra: &[("768k", 768 * 1024 - SLACK)],
        },
        Shape {
            name: "se-huge-port-number",
            endpoints: "validate",
            fixture: SE,
            what: "ports[0].number of n digits",
            build: |d, n| {
                let number = d.raw(format!("1{}", "0".repeat(n)));
                d.spec()["ports"] = json!([{"name": "https", "number": number, "protocol": "TLS"}]);
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "se-type-error-at-end",
            endpoints: "validate",
            fixture: SE,
            what: "n valid hosts, then a port number that is a string (decoded twice)",
            build: |d, n| {
                let hosts = d.raw(array(n, |s, i| {
                    let _ = write!(s, "\"h{i}.evil.example\"");
                }));
                d.spec()["hosts"] = hosts;
                d.spec()["ports"] = json!([{"name": "https", "number": "443", "protocol": "TLS"}]);
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "se-deep-nesting-ignored",
            endpoints: "validate",
            fixture: SE,
            what: "an unread spec field nested n/2 arrays deep",
            build: |d, n| {
                let deep = d.raw(format!("{}{}", "[".repeat(n / 2), "]".repeat(n / 2)));
                d.spec()["x"] = deep;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "envoyfilter-update-nested",
            endpoints: "validate",
            fixture: "validate-create-envoyfilter-v1alpha3-extra-cluster",
            what: "UPDATE of a denied EnvoyFilter whose patch value (free-form in the CRD) holds n/2 bytes of maps nested 100 deep, old and new: both specs decoded as Values to compare",
            build: |d, n| {
                let nest = format!("{}0{}", "{\"\":".repeat(100), "}".repeat(100));
                let x = repeated(n / 2 / (nest.len() + 1), &nest);
                let spec = |name: &str| {
                    format!(
                        r#"{{"configPatches":[{{"applyTo":"CLUSTER","match":{{"context":"SIDECAR_OUTBOUND"}},"patch":{{"operation":"ADD","value":{{"name":"{name}","type":"STRICT_DNS","x":{x}}}}}}}]}}"#
                    )
                };
                let (new, old) = (spec("partner"), spec("partner-old"));
                d.request()["operation"] = json!("UPDATE");
                d.request()["oldObject"] = d.object().clone();
                let new = d.raw(new);
                let old = d.raw(old);
                *d.spec() = new;
                d.request()["oldObject"]["spec"] = old;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "vs-many-routes",
            endpoints: "validate,mutate",
            fixture: VS,
            what: "n http routes to an external host without timeout (one patch op each)",
            build: |d, n| {
                let http = d.raw(repeated(
                    n,
                    r#"{"route":[{"destination":{"host":"api.github.com"}}]}"#,
                ));
                *d.spec() = json!({"hosts": ["api.github.com"], "http": http});
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "vs-empty-routes",
            endpoints: "validate,mutate",
            fixture: VS,
            what: "n empty http routes {} (each decodes into a full typed route)",
            build: |d, n| {
                let http = d.raw(repeated(n, "{}"));
                *d.spec() = json!({"hosts": ["api.github.com"], "http": http});
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "vs-route-empty-matches",
            endpoints: "validate",
            fixture: VS,
            what: "one http route with n empty matches {} (a route is decoded whole, its matches with it)",
            build: |d, n| {
                let matches = d.raw(repeated(n, "{}"));
                *d.spec() = json!({"hosts": ["api.github.com"], "http": [{"match": matches,
                    "route": [{"destination": {"host": "api.github.com"}}]}]});
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "vs-route-empty-destinations",
            endpoints: "validate",
            fixture: VS,
            what: "one http route with n empty destinations {} and n empty mirrors",
            build: |d, n| {
                let route = d.raw(repeated(n / 2, "{}"));
                let mirrors = d.raw(repeated(n / 2, "{}"));
                *d.spec() = json!({"hosts": ["api.github.com"],
                    "http": [{"route": route, "mirrors": mirrors}]});
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "se-empty-ports",
            endpoints: "validate",
            fixture: SE,
            what: "n empty ports {} (EG205 each)",
            build: |d, n| {
                let ports = d.raw(repeated(n, "{}"));
                d.spec()["ports"] = ports;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "gateway-empty-servers",
            endpoints: "validate",
            fixture: "validate-create-gateway-v1-egress",
            what: "n empty servers {} (EG211 each)",
            build: |d, n| {
                let servers = d.raw(repeated(n, "{}"));
                d.spec()["servers"] = servers;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "pod-empty-containers",
            endpoints: "validate",
            fixture: POD,
            what: "n empty containers {}",
            build: |d, n| {
                let containers = d.raw(repeated(n, "{}"));
                d.spec()["containers"] = containers;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "vs-invalid-gateway-refs",
            endpoints: "validate",
            fixture: VS,
            what: "gateways of n \"a/\" (EG213 each)",
            build: |d, n| {
                let gws = d.raw(repeated(n, "\"a/\""));
                d.spec()["gateways"] = gws;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "dr-subsets-sni",
            endpoints: "validate",
            fixture: DR,
            what: "n subsets, each with an unlisted tls.sni",
            build: |d, n| {
                let subsets = d.raw(array(n, |s, i| {
                    let _ = write!(
                        s,
                        r#"{{"name":"s{i}","trafficPolicy":{{"tls":{{"mode":"SIMPLE","sni":"s{i}.evil.example"}}}}}}"#
                    );
                }));
                d.spec()["subsets"] = subsets;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "sidecar-duplicate-hosts",
            endpoints: "validate",
            fixture: "validate-create-sidecar-v1-default",
            what: "one egress listener with n copies of */h.example (duplicate warnings)",
            build: |d, n| {
                let hosts = d.raw(repeated(n, "\"*/h.example\""));
                d.spec()["egress"] = json!([{"hosts": hosts}]);
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "gateway-egress-hosts",
            endpoints: "validate",
            fixture: "validate-create-gateway-v1-egress",
            what: "egress gateway server with n unlisted hosts",
            build: |d, n| {
                let hosts = d.raw(array(n, |s, i| {
                    let _ = write!(s, "\"h{i}.evil.example\"");
                }));
                d.spec()["servers"][0]["hosts"] = hosts;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "endpoints-many-addresses",
            endpoints: "validate",
            fixture: "validate-create-endpoints-v1-partner-manual",
            what: "Endpoints with n public addresses (EG103 each)",
            build: |d, n| {
                let addresses = d.raw(array(n, |s, i| {
                    let _ = write!(s, r#"{{"ip":"{}"}}"#, public_ip(i));
                }));
                d.object()["subsets"][0]["addresses"] = addresses;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "endpointslice-fqdn",
            endpoints: "validate",
            fixture: "validate-create-endpointslice-v1-partner-manual-1",
            what: "EndpointSlice, addressType FQDN, n unlisted names",
            build: |d, n| {
                let addresses = d.raw(array(n, |s, i| {
                    let _ = write!(s, "\"h{i}.evil.example\"");
                }));
                d.object()["addressType"] = json!("FQDN");
                d.object()["endpoints"] = json!([{"addresses": addresses}]);
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "wasm-url-labels",
            endpoints: "validate",
            fixture: "validate-create-wasmplugin-v1alpha1-auth-plugin",
            what: "WasmPlugin url whose host is n/2 one-letter labels",
            build: |d, n| {
                d.spec()["url"] = json!(format!("https://{}x/auth.wasm", "a.".repeat(n / 2)));
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "reqauthn-jwt-rules",
            endpoints: "validate",
            fixture: "validate-create-requestauthentication-v1-jwt",
            what: "n jwtRules with unlisted jwksUri hosts",
            build: |d, n| {
                let rules = d.raw(array(n, |s, i| {
                    let _ = write!(
                        s,
                        r#"{{"issuer":"https://i{i}.evil.example","jwksUri":"https://k{i}.evil.example/jwks"}}"#
                    );
                }));
                d.spec()["jwtRules"] = rules;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "service-exportto-commas",
            endpoints: "validate",
            fixture: "validate-create-service-v1-partner-cname",
            what: "Service networking.istio.io/exportTo annotation of n commas",
            build: |d, n| d.annotate("networking.istio.io/exportTo", json!(",".repeat(n))),
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "networkpolicy-open-egress-rules",
            endpoints: "validate",
            fixture: "validate-create-service-v1-partner-manual",
            what: "NetworkPolicy (in a Service review's envelope) with n egress rules {} (each opens every address)",
            build: |d, n| {
                d.request()["kind"] =
                    json!({"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"});
                d.request()["resource"] = json!({"group": "networking.k8s.io", "version": "v1",
                    "resource": "networkpolicies"});
                d.request()["requestKind"] = d.request()["kind"].clone();
                d.request()["requestResource"] = d.request()["resource"].clone();
                let egress = d.raw(repeated(n, "{}"));
                let meta = json!({"name": "open", "namespace": d.request()["namespace"].clone()});
                *d.object() = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": meta, "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                    "egress": egress}});
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "pod-many-containers",
            endpoints: "validate",
            fixture: POD,
            what: "n privileged containers running as the proxy's UID",
            build: |d, n| {
                let containers = d.raw(array(n, |s, i| {
                    let _ = write!(
                        s,
                        r#"{{"name":"c{i}","image":"x","securityContext":{{"runAsUser":1337,"privileged":true}}}}"#
                    );
                }));
                d.spec()["containers"] = containers;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "pod-status-x-containers",
            endpoints: "validate",
            fixture: POD,
            what: "sidecar.istio.io/status listing istio-proxy n/2 times x n/2 containers",
            build: |d, n| {
                let listed =
                    serde_json::to_string(&json!({"containers": vec!["istio-proxy"; n / 2]}))
                        .expect("strings serialise");
                d.annotate("sidecar.istio.io/status", json!(listed));
                let containers = d.raw(repeated(n / 2, r#"{"name":"c"}"#));
                d.spec()["containers"] = containers;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "pod-exclude-ranges",
            endpoints: "validate",
            fixture: POD,
            what: "excludeOutboundIPRanges annotation of n public /32 ranges",
            build: |d, n| {
                let mut v = String::with_capacity(n * 16);
                for i in 0..n {
                    let _ = write!(v, "{}/32,", public_ip(i));
                }
                d.annotate("traffic.sidecar.istio.io/excludeOutboundIPRanges", json!(v));
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "pod-istio-annotations",
            endpoints: "validate",
            fixture: POD,
            what: "n annotations under *.istio.io that egress-guard does not read (once kept, owned)",
            build: |d, n| {
                let meta = &mut d.object()["metadata"];
                let mut a = serde_json::Map::new();
                for i in 0..n {
                    a.insert(format!("k{i}.istio.io/x"), json!(""));
                }
                meta["annotations"] = Value::Object(a);
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "pod-proxyconfig-alias-bomb",
            endpoints: "validate",
            fixture: POD,
            what: "proxy.istio.io/config: YAML alias bomb of up to 64 KiB (aliases replayed, ~m*r*k events)",
            build: |d, n| {
                let (bomb, pad) = capped(n, PROXY_CONFIG_MAX - 64);
                d.annotate("proxy.istio.io/config", json!(alias_bomb(bomb)));
                d.pad(pad);
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "pod-proxyconfig-deep-yaml",
            endpoints: "validate",
            fixture: POD,
            what: "proxy.istio.io/config: YAML flow sequences nested up to 32 Ki deep",
            build: |d, n| {
                let (yaml, pad) = capped(n, PROXY_CONFIG_MAX - 64);
                d.annotate("proxy.istio.io/config", json!(deep_yaml(yaml / 2)));
                d.pad(pad);
            },
            fixed: None,
            extra: &[],
        },
        // --- the allowlist's own ConfigMap (judged with `serve --validate-configmap`) ---
        Shape {
            name: "configmap-allowlist-deep-yaml",
            endpoints: "validate",
            fixture: CONFIGMAP,
            what: "the allowlist ConfigMap: YAML flow sequences nested n/2 deep (parsed by the reload parser)",
            build: |d, n| {
                d.object()["data"]["allowlist.yaml"] = json!(deep_yaml(n / 2));
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "configmap-allowlist-hosts",
            endpoints: "validate",
            fixture: CONFIGMAP,
            what: "the allowlist ConfigMap: a valid allowlist of n hosts, compiled to validate it",
            build: |d, n| {
                let mut y = String::from("mode: enforce\nhosts:\n");
                for i in 0..n {
                    let _ = writeln!(y, "  - h{i}.vendor.example.com");
                }
                d.object()["data"]["allowlist.yaml"] = json!(y);
            },
            fixed: None,
            // Kubernetes stores at most 1 MiB of ConfigMap data: larger bodies are denied
            // before the YAML is parsed, this one is the largest that is parsed.
            extra: &[("1m", 1024 * 1024 - SLACK)],
        },
        // --- the envelope (kube-core's AdmissionRequest) ---
        Shape {
            name: "options-nested-maps",
            endpoints: "validate",
            fixture: SE,
            what: "request.options: a list of maps nested 100 deep (decoded as a serde_json::Value)",
            build: |d, n| {
                let nest = format!("{}0{}", "{\"\":".repeat(100), "}".repeat(100));
                let options = d.raw(repeated(n / (nest.len() + 1), &nest));
                d.request()["options"] = options;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "options-zeros",
            endpoints: "validate",
            fixture: SE,
            what: "request.options: an array of n zeros (a serde_json::Value)",
            build: |d, n| {
                let options = d.raw(repeated(n, "0"));
                d.request()["options"] = options;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "options-too-deep",
            endpoints: "validate",
            fixture: SE,
            what: "request.options nested n/2 arrays deep (past serde_json's recursion limit)",
            build: |d, n| {
                let options = d.raw(format!("{}{}", "[".repeat(n / 2), "]".repeat(n / 2)));
                d.request()["options"] = options;
            },
            fixed: None,
            extra: &[],
        },
        Shape {
            name: "userinfo-groups",
            endpoints: "validate",
            fixture: SE,
            what: "request.userInfo.groups: n one-letter groups",
            build: |d, n| {
                let groups = d.raw(repeated(n, "\"a\""));
                d.request()["userInfo"]["groups"] = groups;
            },
            fixed: None,
            extra: &[],
        },
    ]
}

fn se_hosts_x_ports(d: &mut Doc, n: usize) {
    let hosts = d.raw(repeated(n, "\"db.example.com\""));
    let ports = d.raw(array(n, |s, i| {
        let _ = write!(
            s,
            r#"{{"number":{},"name":"p{i}","protocol":"HTTP"}}"#,
            1 + i % 65_535
        );
    }));
    *d.spec() = json!({"hosts": hosts, "ports": ports, "resolution": "DNS",
        "location": "MESH_EXTERNAL"});
}

/// [`SIZES`] and a shape's own, smallest first.
fn sizes(extra: &[(&'static str, usize)]) -> Vec<(&'static str, usize)> {
    let mut all: Vec<_> = SIZES.iter().chain(extra).copied().collect();
    all.sort_by_key(|&(_, target)| target);
    all
}

fn fixture(name: &str) -> Result<Value, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(format!("{name}.json"));
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn render(base: &Value, build: Build, n: usize) -> String {
    let mut d = Doc {
        review: base.clone(),
        raw: Vec::new(),
    };
    build(&mut d, n);
    d.render()
}

/// The largest `n` whose review is at most `target` bytes, and its text. Bodies grow
/// about linearly in `n`: interpolate inside a bracket, bisect when that stalls.
fn fit(base: &Value, build: Build, target: usize) -> Result<(usize, String), String> {
    let mut lo = (0, render(base, build, 0));
    if lo.1.len() > target {
        return Err(format!("the empty shape is already {} bytes", lo.1.len()));
    }
    // Grow until over the target.
    let mut n = 64;
    let hi = loop {
        let text = render(base, build, n);
        if text.len() > target {
            break (n, text.len());
        }
        lo = (n, text);
        n = if n > usize::MAX / 4 {
            return Err("does not grow".into());
        } else {
            n * 4
        };
    };
    let (mut hi_n, mut hi_len) = hi;
    while hi_n - lo.0 > 1 && target - lo.1.len() > SLACK {
        let (lo_n, lo_len) = (lo.0, lo.1.len());
        let per = (hi_len - lo_len) as f64 / (hi_n - lo_n) as f64;
        let guess = lo_n + ((target - lo_len) as f64 / per) as usize;
        let mid = guess.clamp(lo_n + 1, hi_n - 1);
        let text = render(base, build, mid);
        if text.len() > target {
            // Interpolation overshot: bisect the rest.
            let half = lo_n + (hi_n - lo_n) / 2;
            if mid > half && half > lo_n {
                let t2 = render(base, build, half);
                if t2.len() > target {
                    (hi_n, hi_len) = (half, t2.len());
                } else {
                    lo = (half, t2);
                }
            } else {
                (hi_n, hi_len) = (mid, text.len());
            }
        } else {
            lo = (mid, text);
        }
    }
    Ok(lo)
}

struct Written {
    shape: &'static str,
    size: &'static str,
    endpoints: &'static str,
    bytes: usize,
    file: PathBuf,
    what: String,
}

fn run(dir: &Path, only: &[String]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for shape in shapes() {
        if !only.is_empty() && !only.iter().any(|o| shape.name.contains(o.as_str())) {
            continue;
        }
        let base = fixture(shape.fixture)?;
        let variants: Vec<(&'static str, usize, String)> = match shape.fixed {
            Some((label, n)) => vec![(label, n, render(&base, shape.build, n))],
            None => sizes(shape.extra)
                .into_iter()
                .map(|(label, target)| {
                    fit(&base, shape.build, target)
                        .map(|(n, text)| (label, n, text))
                        .map_err(|e| format!("{} {label}: {e}", shape.name))
                })
                .collect::<Result<_, _>>()?,
        };
        for (size, n, text) in variants {
            if text.len() > BODY_LIMIT {
                return Err(format!("{} {size}: {} bytes", shape.name, text.len()));
            }
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                return Err(format!("{} {size}: not JSON: {e}", shape.name));
            }
            let file = dir.join(format!("{}.{size}.json", shape.name));
            std::fs::write(&file, &text).map_err(|e| format!("{}: {e}", file.display()))?;
            eprintln!(
                "{:<32} {size:>4}  n={n:<9} {:>9} bytes",
                shape.name,
                text.len()
            );
            written.push(Written {
                shape: shape.name,
                size,
                endpoints: shape.endpoints,
                bytes: text.len(),
                file,
                what: format!("{} (n={n})", shape.what),
            });
        }
    }
    let mut index = String::from("shape\tsize\tendpoints\tbytes\tfile\tdescription\n");
    for w in &written {
        let _ = writeln!(
            index,
            "{}\t{}\t{}\t{}\t{}\t{}",
            w.shape,
            w.size,
            w.endpoints,
            w.bytes,
            w.file.display(),
            w.what
        );
    }
    let path = dir.join("index.tsv");
    std::fs::write(&path, index).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().filter(|a| !a.starts_with('-')) else {
        eprintln!("usage: hostile-gen DIR [SHAPE-SUBSTRING...]");
        return ExitCode::from(2);
    };
    let only: Vec<String> = args.collect();
    match run(Path::new(&dir), &only) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostile-gen: {e}");
            ExitCode::FAILURE
        }
    }
}
