//! Istio conformance: every case in `tests/conformance/cases.yaml` gets Istio's verdict
//! from the built binary (`check --output json`), under an allowlist that allows every
//! host and address so that only validity (`EG2xx`) decides. See the corpus README.
//!
//! All cases run in two batches (non-strict and strict), and every mismatch is reported
//! at once with the case name and the source of Istio's verdict.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/cases.yaml");

/// Cases in the corpus. Pinned so that a lost or duplicated case (or a parser that
/// silently skips some) fails the test instead of shrinking it.
const CASES: usize = 330;

const ALLOW_EVERYTHING: &str = r#"mode: enforce
hosts: ["*"]
cidrs: ["0.0.0.0/0", "::/0"]
egressGatewaySelectors: [{istio: egressgateway}]
namespaces:
  conformance: {allowAnyOutbound: true}
"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    source: String,
    #[serde(default)]
    strict: bool,
    expect: Expect,
    code: Option<String>,
    /// Deny only: the field path of the violation with `code`.
    path: Option<String>,
    warn: Option<String>,
    object: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

fn load_corpus() -> Vec<Case> {
    let text = std::fs::read_to_string(CORPUS).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// Runs `check --output json` over `cases` as one multi-document file and returns the
/// report object of each case, by its index in `cases`.
fn run_batch(dir: &Path, label: &str, strict: bool, cases: &[&Case]) -> HashMap<usize, Value> {
    let allowlist = dir.join(format!("{label}-allowlist.yaml"));
    std::fs::write(&allowlist, format!("{ALLOW_EVERYTHING}strict: {strict}\n")).unwrap();
    let manifests = dir.join(format!("{label}.yaml"));
    let docs: Vec<String> = cases
        .iter()
        .map(|c| serde_norway::to_string(&c.object).unwrap())
        .collect();
    std::fs::write(&manifests, docs.join("---\n")).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .arg("check")
        .args(["--output", "json", "--allowlist"])
        .arg(&allowlist)
        .arg(&manifests)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "check failed on the {label} batch ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut by_index = HashMap::new();
    for obj in report["objects"].as_array().unwrap() {
        // `source` is `<file>#<document index>`, and documents are written in case order.
        let source = obj["source"].as_str().unwrap();
        let (_, index) = source.rsplit_once('#').unwrap();
        by_index.insert(index.parse::<usize>().unwrap(), obj.clone());
    }
    by_index
}

fn codes(report: &Value) -> Vec<String> {
    report["violations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            format!(
                "{} {}={}",
                v["code"].as_str().unwrap_or("?"),
                v["path"].as_str().unwrap_or("?"),
                v["value"]
            )
        })
        .collect()
}

fn warnings(report: &Value) -> Vec<&str> {
    report["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// What is wrong with one case's report, if anything.
fn mismatch(case: &Case, report: Option<&Value>) -> Option<String> {
    let Some(report) = report else {
        return Some("no report for this object".to_owned());
    };
    let allowed = report["allowed"].as_bool().unwrap_or(false);
    let got = codes(report);
    match case.expect {
        Expect::Deny => {
            let code = case.code.as_deref().unwrap_or("?");
            let path = case.path.as_deref().unwrap_or("?");
            let found = report["violations"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["code"] == code && v["path"] == path);
            (allowed || !found).then(|| {
                format!(
                    "expected deny with {code} at {path}, got {} {got:?}",
                    if allowed { "allow" } else { "deny" }
                )
            })
        }
        Expect::Allow => {
            if !allowed || !got.is_empty() {
                return Some(format!("expected allow, got violations {got:?}"));
            }
            let warn = case.warn.as_deref()?;
            let warned = warnings(report).iter().any(|w| w.contains(warn));
            (!warned).then(|| format!("expected a warning with {warn}, got {:?}", warnings(report)))
        }
    }
}

#[test]
fn corpus_covers_every_kind_both_ways() {
    let cases = load_corpus();
    let text = std::fs::read_to_string(CORPUS).unwrap();
    let items = text.lines().filter(|l| l.starts_with("- name: ")).count();
    assert_eq!(cases.len(), items, "every `- name:` item parses as a case");
    assert_eq!(cases.len(), CASES, "the corpus has {CASES} cases");
    let names: HashSet<_> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    for kind in [
        "ServiceEntry",
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "Sidecar",
    ] {
        for expect in [Expect::Allow, Expect::Deny] {
            assert!(
                cases
                    .iter()
                    .any(|c| c.object["kind"] == kind && c.expect == expect),
                "no {expect:?} case for {kind}"
            );
        }
    }
    for c in &cases {
        assert_eq!(
            c.expect == Expect::Deny,
            c.code.is_some(),
            "{}: deny cases need a code, allow cases none",
            c.name
        );
        assert_eq!(
            c.expect == Expect::Deny,
            c.path.as_deref().is_some_and(|p| p.starts_with("spec")),
            "{}: deny cases need the violation's field path (spec…), allow cases none",
            c.name
        );
        assert!(
            c.warn.is_none() || c.expect == Expect::Allow,
            "{}: warn is for allow cases",
            c.name
        );
    }
}

#[test]
fn engine_agrees_with_istio_on_every_case() {
    let cases = load_corpus();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut passed = 0;
    for (label, strict) in [("default", false), ("strict", true)] {
        let batch: Vec<&Case> = cases.iter().filter(|c| c.strict == strict).collect();
        let reports = run_batch(dir.path(), label, strict, &batch);
        for (i, case) in batch.iter().enumerate() {
            match mismatch(case, reports.get(&i)) {
                None => passed += 1,
                Some(why) => failures.push(format!(
                    "{}{}: {why}\n    source: {}",
                    case.name,
                    if strict { " (strict)" } else { "" },
                    case.source
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} conformance cases disagree with Istio ({passed} pass):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
