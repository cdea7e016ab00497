//! Where a decision's time goes: allocations and nanoseconds per phase of
//! `policy::evaluate`, for the benchmark objects against a generated allowlist.
//!
//! `cargo run --release --example engine-profile [-- ENTRIES]` (default 100,000)
//!
//! `cargo run --release --example engine-profile -- --bodies DIR` instead answers each
//! `DIR/*.json` (AdmissionReviews, e.g. from `hostile-gen`) on `/validate` and `/mutate`
//! in-process with the embedded allowlist, as the server would (no deadline, the
//! ConfigMap `egress-guard/egress-guard-allowlist` judged as the allowlist), and prints
//! the milliseconds and the peak heap of each: the engine's share of `bench/hostile.sh`
//! without TLS, the body read or RSS sampling.
//!
//! Phases: the whole `evaluate`; `policy::inspect` (spec decode, Istio rules, egress
//! references judged against the allowlist as they are found); `timeouts::plan`; and, as
//! floors, a plain JSON scan of the spec and a typed decode of a VirtualService-shaped
//! struct with and without `serde_path_to_error` (which `spec::decode` uses).
//! Counts come from a counting wrapper around jemalloc (the binary's allocator), which
//! also tracks live bytes: the first lines give the heap a compiled allowlist keeps and
//! the peak while it is parsed and compiled.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use egress_guard::policy::budget::Budget;
use egress_guard::policy::judge::Context;
use egress_guard::policy::{self, Allowlist, Kind, Operation, Request, timeouts};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

mod allowlist_gen;
mod objects;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

fn grow(n: u64) {
    let live = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(live, Relaxed);
}
static JE: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// SAFETY: forwards every call unchanged to jemalloc; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        grow(l.size() as u64);
        // SAFETY: same contract as the caller's.
        unsafe { JE.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as u64, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { JE.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        grow(l.size() as u64);
        // SAFETY: same contract as the caller's.
        unsafe { JE.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new.saturating_sub(l.size()) as u64, Relaxed);
        LIVE.fetch_sub(l.size() as u64, Relaxed);
        grow(new as u64);
        // SAFETY: same contract as the caller's.
        unsafe { JE.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` `n` times; returns (ns per call, allocations per call, bytes per call).
fn measure<R>(n: u32, mut f: impl FnMut() -> R) -> (f64, f64, f64) {
    for _ in 0..n / 10 {
        black_box(f());
    }
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    let t = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let a = (ALLOCS.load(Relaxed) - a0) as f64 / f64::from(n);
    let b = (BYTES.load(Relaxed) - b0) as f64 / f64::from(n);
    (ns, a, b)
}

fn row(object: &str, phase: &str, (ns, a, b): (f64, f64, f64)) {
    println!(
        "| {object} | {phase} | {:.2} | {a:.1} | {b:.0} |",
        ns / 1000.0
    );
}

/// Mirrors the fields the VirtualService judge decodes, to price the decode alone.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(dead_code)]
struct VsMirror {
    hosts: Vec<String>,
    gateways: Vec<String>,
    http: Vec<HttpMirror>,
}
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(dead_code)]
struct HttpMirror {
    route: Vec<RouteMirror>,
    timeout: Option<String>,
    delegate: Option<IgnoredAny>,
}
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(dead_code)]
struct RouteMirror {
    destination: Option<DestMirror>,
}
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(dead_code)]
struct DestMirror {
    host: String,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dir] = args.as_slice()
        && flag == "--bodies"
    {
        return bodies(std::path::Path::new(dir));
    }
    let entries = std::env::args()
        .nth(1)
        .and_then(|n| n.replace('_', "").parse().ok())
        .unwrap_or(100_000);
    let text = allowlist_gen::yaml(&allowlist_gen::Spec::new(entries));
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let a = Allowlist::from_yaml(&text).expect("generated allowlist loads");
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "Allowlist of {} KiB YAML: {:.1} MiB kept, {:.1} MiB peak while loading (heap bytes, beyond the text).\n",
        text.len() / 1024,
        mib(LIVE.load(Relaxed) - before),
        mib(PEAK.load(Relaxed) - before),
    );
    let n = 200_000;
    let vs = objects::virtual_service();
    let cases: [(&str, Kind, String); 4] = [
        (
            "serviceentry_3hosts",
            Kind::ServiceEntry,
            objects::SE_ALLOWED.to_owned(),
        ),
        ("virtualservice_10routes", Kind::VirtualService, vs.clone()),
        (
            "gateway_egress_4hosts",
            Kind::Gateway,
            objects::GATEWAY.to_owned(),
        ),
        (
            "serviceentry_denied",
            Kind::ServiceEntry,
            objects::SE_DENIED.to_owned(),
        ),
    ];
    println!("Allowlist: {} entries. {n} calls per row.\n", a.entries());
    println!("| object | phase | µs per call | allocations | bytes allocated |");
    println!("|---|---|---|---|---|");
    for (name, kind, json) in cases {
        let spec = RawValue::from_string(format!("{{\"spec\":{json}}}")).expect("valid JSON");
        let req = Request {
            kind: Some(kind),
            operation: Operation::Create,
            namespace: "default",
            name,
            object: Some(&spec),
            old_object: None,
            user: "",
            subresource: "",
        };
        let cx = Context::new(&a, "default");
        row(
            name,
            "evaluate (total)",
            measure(n, || policy::evaluate(&req, &a, &policy::Env::default())),
        );
        let budget = || Budget::for_object(spec.get().len(), None);
        row(
            name,
            "policy::inspect (decode + rules + allowlist lookups)",
            measure(n, || policy::inspect(kind, &spec, &cx, budget())),
        );
        let findings = policy::inspect(kind, &spec, &cx, budget());
        if kind == Kind::VirtualService {
            let t = a
                .default_timeout_for("default")
                .expect("default timeout set");
            let routes = findings.timeouts.clone().unwrap_or_default();
            row(
                name,
                "timeouts::plan (10 ops)",
                measure(n, || timeouts::plan(&routes.http, t, a.timeout_scope)),
            );
        }
        row(
            name,
            "floor: JSON scan (IgnoredAny)",
            measure(n, || serde_json::from_str::<IgnoredAny>(spec.get()).is_ok()),
        );
        drop(findings);
    }
    reviews(&a, n / 4);
    reload_costs(&text);
    row(
        "virtualservice_10routes",
        "floor: typed decode, serde_json",
        measure(n, || serde_json::from_str::<VsMirror>(&vs).is_ok()),
    );
    row(
        "virtualservice_10routes",
        "floor: typed decode, serde_path_to_error",
        measure(n, || {
            let mut de = serde_json::Deserializer::from_str(&vs);
            serde_path_to_error::deserialize::<_, VsMirror>(&mut de).is_ok()
        }),
    );
}

/// The server's in-process share of one review on the bodies `bench/floor.sh` sends:
/// the envelope decode alone, then the whole of `admission::review` (decode, judge,
/// answer encoded), as `/validate` runs it (inline, the clock read for expiry).
fn reviews(a: &Allowlist, n: u32) {
    use egress_guard::admission::{self, Endpoint};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission");
    for file in [
        "validate-create-serviceentry-v1-github-api.json",
        "validate-create-pod-v1-app-injected.json",
        "validate-create-deployment-v1-shop.json",
    ] {
        let body = std::fs::read(format!("{dir}/{file}")).expect("fixture readable");
        let name = file.trim_end_matches(".json");
        row(
            name,
            "admission::decode (envelope, object kept raw)",
            measure(n, || admission::decode(&body).is_ok()),
        );
        let env = policy::Env {
            now: Some(egress_guard::unix_now()),
            judge_only: true,
            ..policy::Env::default()
        };
        row(
            name,
            "admission::review (decode, judge, encode)",
            measure(n, || {
                admission::review(Endpoint::Validate, &body, Some(a), &env)
                    .body
                    .len()
            }),
        );
        row(
            name,
            "floor: JSON scan of the body (IgnoredAny)",
            measure(n, || serde_json::from_slice::<IgnoredAny>(&body).is_ok()),
        );
    }
}

/// What one reload of this allowlist costs besides `from_yaml`: hashing the text (the
/// store's unchanged-text check) and dropping the previous compiled allowlist, which
/// happens on whichever thread releases the last reference.
fn reload_costs(text: &str) {
    use sha2::Digest as _;
    let mut sha = Vec::new();
    let mut parse = Vec::new();
    let mut drop_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        black_box(sha2::Sha256::digest(text.as_bytes()));
        sha.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let a = Allowlist::from_yaml(text).expect("loads");
        parse.push(t.elapsed().as_secs_f64() * 1e3);
        let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
        let b = Allowlist::from_yaml(text).expect("loads");
        let (allocs, bytes) = (ALLOCS.load(Relaxed) - a0, BYTES.load(Relaxed) - b0);
        drop(b);
        let t = Instant::now();
        drop(black_box(a));
        drop_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if sha.len() == 1 {
            println!(
                "\nReload of {} KiB: from_yaml makes {allocs} allocations, {} MiB in total.",
                text.len() / 1024,
                bytes / (1 << 20)
            );
        }
    }
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!("SHA-256 of the text, ms: {}", fmt(&sha));
    println!("Allowlist::from_yaml, ms: {}", fmt(&parse));
    println!("drop(Allowlist), ms: {}\n", fmt(&drop_ms));
}

/// Answers every review body in `dir` on both endpoints; prints time and peak heap.
fn bodies(dir: &std::path::Path) {
    use egress_guard::admission::{self, Endpoint};
    use egress_guard::policy::{AllowlistSource, ObjectRef};
    let a = Allowlist::from_yaml(egress_guard::policy::allowlist::EXAMPLE).expect("loads");
    let source = AllowlistSource {
        configmap: "egress-guard/egress-guard-allowlist"
            .parse::<ObjectRef>()
            .expect("valid"),
        key: "allowlist.yaml".to_owned(),
    };
    let env = policy::Env {
        allowlist_source: Some(&source),
        ..policy::Env::default()
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("readable directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    println!(
        "| body | bytes | endpoint | status | ms (best of 3) | peak heap MiB (÷ body) | answer bytes |"
    );
    println!("|---|---|---|---|---|---|---|");
    for path in files {
        let body = std::fs::read(&path).expect("readable body");
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let mut best = f64::MAX;
            let mut peak = 0;
            let mut answer = (0, 0);
            for _ in 0..3 {
                let base = LIVE.load(Relaxed);
                PEAK.store(base, Relaxed);
                let t = Instant::now();
                let r = admission::review(endpoint, &body, Some(&a), &env);
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
                peak = PEAK.load(Relaxed) - base;
                answer = (r.status, r.body.len());
            }
            let mib = peak as f64 / (1024.0 * 1024.0);
            println!(
                "| {name} | {} | {} | {} | {best:.1} | {mib:.1} ({:.1}×) | {} |",
                body.len(),
                endpoint.as_str(),
                answer.0,
                peak as f64 / body.len() as f64,
                answer.1,
            );
        }
    }
}
