//! The Istio objects the engine benchmarks judge, shared by `benches/engine.rs` and the
//! `engine-profile` example (via `#[path]`). Every host, port and address is covered
//! by the core of `allowlist_gen.rs` (namespace `default`), except in `SE_DENIED`.

/// A typical external ServiceEntry: 3 hosts (exact, wildcard-covered, port-restricted),
/// 2 ports, one address. Both ports are TLS: Istio rejects several hosts on a plain TCP
/// port unless resolution is NONE.
pub const SE_ALLOWED: &str = r#"{
  "hosts": ["api.github.com", "uploads.s3.amazonaws.com", "db.payments-vendor.com"],
  "addresses": ["203.0.113.10"],
  "location": "MESH_EXTERNAL",
  "ports": [
    {"number": 443, "name": "https", "protocol": "TLS"},
    {"number": 5432, "name": "tls-postgres", "protocol": "TLS"}
  ],
  "resolution": "DNS"
}"#;

/// The same shape with one host outside the allowlist and one port not granted.
pub const SE_DENIED: &str = r#"{
  "hosts": ["api.github.com", "upload.evil.example.org", "db.payments-vendor.com"],
  "addresses": ["203.0.113.10"],
  "location": "MESH_EXTERNAL",
  "ports": [
    {"number": 443, "name": "https", "protocol": "TLS"},
    {"number": 3306, "name": "tls-mysql", "protocol": "TLS"}
  ],
  "resolution": "DNS"
}"#;

/// An egress Gateway (selector matches `egressGatewaySelectors`) with 4 hosts.
pub const GATEWAY: &str = r#"{
  "selector": {"istio": "egressgateway"},
  "servers": [{
    "port": {"number": 443, "name": "tls", "protocol": "TLS"},
    "hosts": ["api.github.com", "*.googleapis.com", "bucket.s3.amazonaws.com", "db.payments-vendor.com"],
    "tls": {"mode": "PASSTHROUGH"}
  }]
}"#;

/// A VirtualService bound to the mesh with 10 http routes to external hosts (global
/// exact and wildcard grants, and namespace grants), none with a timeout: the default
/// timeout patch adds 10 operations.
pub fn virtual_service() -> String {
    let dests = [
        "api.github.com",
        "storage.googleapis.com",
        "assets.s3.amazonaws.com",
        "api.stripe.com",
        "checkout.paypal.com",
        "db.payments-vendor.com",
        "api.github.com",
        "pubsub.googleapis.com",
        "www.paypal.com",
        "logs.s3.amazonaws.com",
    ];
    let routes: Vec<String> = dests
        .iter()
        .enumerate()
        .map(|(i, h)| {
            format!(
                r#"{{"name": "r{i}", "match": [{{"uri": {{"prefix": "/r{i}"}}}}], "route": [{{"destination": {{"host": "{h}", "port": {{"number": 443}}}}}}]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"hosts": ["api.github.com"], "http": [{}]}}"#,
        routes.join(", ")
    )
}
