//! Engine benchmarks: decision time per object against allowlists of 10, 10,000 and
//! 100,000 entries, allowlist parse+compile time, and the full request path from
//! AdmissionReview bytes to response bytes for every kind family the webhook receives
//! (Istio kinds, pods, workload templates, the allowlist ConfigMap).
//!
//! `cargo bench --bench engine` (about two minutes on 2 cores). Filter with e.g.
//! `cargo bench --bench engine -- decision/`.
//!
//! Targets: a decision under 5 µs per object with 100,000 entries, flat from 10 to
//! 100,000 entries.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use egress_guard::admission::{self, Endpoint};
use egress_guard::policy::{self, Allowlist, AllowlistSource, Kind, Operation, Request};
use serde_json::value::RawValue;

#[path = "../bench/allowlist_gen.rs"]
mod allowlist_gen;
#[path = "../bench/objects.rs"]
mod objects;

use objects::{GATEWAY, SE_ALLOWED, SE_DENIED, virtual_service};

// The allocator of the real binary (src/main.rs): allocation cost is part of a decision.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SIZES: [usize; 3] = [10, 10_000, 100_000];

struct Object {
    name: &'static str,
    kind: Kind,
    object: Box<RawValue>,
    /// What the setup asserts, so the benchmark measures the intended path.
    expect_allowed: bool,
    expect_patched_routes: usize,
    /// Judged as `/validate` does: no timeout patch planned.
    judge_only: bool,
}

impl Object {
    fn env(&self) -> policy::Env<'static> {
        policy::Env {
            judge_only: self.judge_only,
            ..policy::Env::default()
        }
    }

    fn request(&self) -> Request<'_> {
        Request {
            kind: Some(self.kind),
            operation: Operation::Create,
            namespace: "default",
            name: self.name,
            object: Some(&self.object),
            old_object: None,
            user: "",
            subresource: "",
        }
    }
}

/// An object around a benchmark spec.
fn raw(spec: String) -> Box<RawValue> {
    RawValue::from_string(format!("{{\"spec\":{spec}}}")).expect("benchmark objects are valid JSON")
}

fn objects() -> Vec<Object> {
    vec![
        Object {
            name: "serviceentry_3hosts",
            kind: Kind::ServiceEntry,
            object: raw(SE_ALLOWED.to_owned()),
            expect_allowed: true,
            expect_patched_routes: 0,
            judge_only: false,
        },
        Object {
            name: "virtualservice_10routes",
            kind: Kind::VirtualService,
            object: raw(virtual_service()),
            expect_allowed: true,
            expect_patched_routes: 10,
            judge_only: false,
        },
        Object {
            name: "virtualservice_10routes_validate",
            kind: Kind::VirtualService,
            object: raw(virtual_service()),
            expect_allowed: true,
            expect_patched_routes: 0,
            judge_only: true,
        },
        Object {
            name: "gateway_egress_4hosts",
            kind: Kind::Gateway,
            object: raw(GATEWAY.to_owned()),
            expect_allowed: true,
            expect_patched_routes: 0,
            judge_only: false,
        },
        Object {
            name: "serviceentry_denied",
            kind: Kind::ServiceEntry,
            object: raw(SE_DENIED.to_owned()),
            expect_allowed: false,
            expect_patched_routes: 0,
            judge_only: false,
        },
    ]
}

fn allowlist(entries: usize) -> Allowlist {
    let text = allowlist_gen::yaml(&allowlist_gen::Spec::new(entries));
    let a = Allowlist::from_yaml(&text).expect("generated allowlist loads");
    assert_eq!(a.entries(), entries, "generator entry count");
    a
}

fn check(obj: &Object, a: &Allowlist) {
    let d = policy::evaluate(&obj.request(), a, &obj.env());
    if obj.expect_allowed {
        assert!(
            d.allowed() && d.violations.is_empty() && d.warnings.is_empty(),
            "{} should be allowed cleanly with {} entries: {:?}",
            obj.name,
            a.entries(),
            d
        );
    } else {
        assert!(
            !d.allowed() && d.violations.len() == 2,
            "{} should be denied twice with {} entries: {:?}",
            obj.name,
            a.entries(),
            d
        );
    }
    assert_eq!(
        d.patched_routes.len(),
        obj.expect_patched_routes,
        "{}",
        obj.name
    );
}

fn decision(c: &mut Criterion) {
    let objects = objects();
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let a = allowlist(size);
        for obj in &objects {
            check(obj, &a);
            let (req, env) = (obj.request(), obj.env());
            group.bench_with_input(BenchmarkId::new(obj.name, size), &a, |b, a| {
                b.iter(|| policy::evaluate(black_box(&req), black_box(a), &env));
            });
        }
    }
    group.finish();
}

fn allowlist_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("allowlist_from_yaml");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(12))
        .warm_up_time(Duration::from_secs(1));
    for size in [10_000, 100_000] {
        let text = allowlist_gen::yaml(&allowlist_gen::Spec::new(size));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &text, |b, text| {
            b.iter(|| Allowlist::from_yaml(black_box(text)).expect("loads"));
        });
    }
    group.finish();
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/admission/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Bytes in, bytes out through the handler's own pipeline (minus TLS, HTTP, metrics
/// and logging), with the server's environment: a clock, and the allowlist ConfigMap
/// the `--allowlist-configmap` default names.
fn review(endpoint: Endpoint, body: &[u8], a: &Allowlist, source: &AllowlistSource) -> Vec<u8> {
    let env = policy::Env {
        now: Some(egress_guard::unix_now()),
        allowlist_source: Some(source),
        ..policy::Env::default()
    };
    admission::review(endpoint, body, Some(a), &env).body
}

fn request_path(c: &mut Criterion) {
    let a = allowlist(100_000);
    let cases = [
        (
            "validate_serviceentry_github_allowed",
            Endpoint::Validate,
            "validate-create-serviceentry-v1-github-api",
            "\"allowed\":true",
        ),
        (
            "validate_serviceentry_exfil_denied",
            Endpoint::Validate,
            "validate-create-serviceentry-v1-exfil",
            "\"allowed\":false",
        ),
        (
            "validate_virtualservice_github_allowed",
            Endpoint::Validate,
            "validate-create-virtualservice-v1-github-api",
            "\"allowed\":true",
        ),
        (
            "mutate_virtualservice_github_patched",
            Endpoint::Mutate,
            "mutate-create-virtualservice-v1-github-api",
            "\"patch\":\"",
        ),
        (
            "validate_pod_injected_allowed",
            Endpoint::Validate,
            "validate-create-pod-v1-app-injected",
            "\"allowed\":true",
        ),
        (
            "validate_pod_no_sidecar_denied",
            Endpoint::Validate,
            "validate-create-pod-v1-no-sidecar",
            "\"allowed\":false",
        ),
        (
            "validate_deployment_allowed",
            Endpoint::Validate,
            "validate-create-deployment-v1-shop",
            "\"allowed\":true",
        ),
        (
            "validate_configmap_allowlist_allowed",
            Endpoint::Validate,
            "validate-create-configmap-v1-egress-guard-allowlist",
            "\"allowed\":true",
        ),
    ];
    let source = AllowlistSource {
        configmap: "egress-guard/egress-guard-allowlist"
            .parse()
            .expect("a NAMESPACE/NAME"),
        key: "allowlist.yaml".to_owned(),
    };
    let mut group = c.benchmark_group("request_path_100000");
    group.throughput(Throughput::Elements(1));
    for (name, endpoint, file, expect) in cases {
        let body = fixture(file);
        let out = String::from_utf8(review(endpoint, &body, &a, &source)).expect("UTF-8 JSON");
        assert!(out.contains(expect), "{name}: {out}");
        group.bench_function(name, |b| {
            b.iter(|| review(endpoint, black_box(&body), black_box(&a), &source));
        });
    }
    group.finish();
}

/// The decision line of a denied ServiceEntry (the longest common line: it carries
/// codes), formatted by `tracing_subscriber`'s default field formatter and by
/// egress-guard's, into a sink: the formatting cost a review pays for its log line.
fn log_line(c: &mut Criterion) {
    use egress_guard::admission::Outcome;
    use tracing_subscriber::fmt::format::DefaultFields;
    let a = allowlist(10);
    let body = fixture("validate-create-serviceentry-v1-exfil");
    let reviewed = admission::review(Endpoint::Validate, &body, Some(&a), &policy::Env::default());
    let Outcome::Judged(j) = reviewed.outcome else {
        panic!("the fixture is judged")
    };
    let builder = || {
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_ansi(false)
    };
    let mut group = c.benchmark_group("log_line");
    group.throughput(Throughput::Elements(1));
    let mut run = |name: &str, dispatch: tracing::Dispatch| {
        tracing::dispatcher::with_default(&dispatch, || {
            group.bench_function(name, |b| {
                b.iter(|| {
                    egress_guard::logging::decision(
                        Endpoint::Validate,
                        black_box(&j),
                        "1",
                        Duration::from_micros(42),
                    )
                });
            });
        });
    };
    run(
        "default_fields",
        builder().fmt_fields(DefaultFields::new()).finish().into(),
    );
    run(
        "egress_guard",
        builder()
            .fmt_fields(egress_guard::logging::LineFields)
            .with_timer(egress_guard::logging::UtcMicros)
            .finish()
            .into(),
    );
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = decision, allowlist_load, request_path, log_line
}
criterion_main!(benches);
