//! What the corpus tests (`tests/bypass.rs`, `tests/realworld.rs`) share: the verdicts
//! and violation sets they expect, reading `check -o json` back, wrapping an object in a
//! real apiserver AdmissionReview, and reading the webhook's answer back the same way.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use egress_guard::policy::Kind;
use serde_json::{Value, json};

use super::{TestServer, fixture_json};

/// The real apiserver request every webhook case is wrapped in.
const ENVELOPE: &str = "validate-create-serviceentry-v1-github-api";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    Skip,
    Audit,
}

impl Verdict {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Self::Allow),
            "deny" => Some(Self::Deny),
            "skip" => Some(Self::Skip),
            "audit" => Some(Self::Audit),
            _ => None,
        }
    }
}

/// A `(code, path)` pair, e.g. `("EG101", "spec.hosts[0]")`.
pub type Found = BTreeSet<(String, String)>;

/// A verdict and the exact violations that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub verdict: Verdict,
    pub violations: Found,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:?}", self.verdict, self.violations)
    }
}

/// Panics with every mismatch, each naming its case.
pub fn report(what: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{what}: {} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// === check ===

/// `check --allowlist ALLOWLIST -o json PATHS...`: the report's `objects`, in input order.
pub fn check_objects(allowlist: &Path, paths: &[&Path]) -> Result<Vec<Value>, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .arg("check")
        .arg("--allowlist")
        .arg(allowlist)
        .args(["-o", "json"])
        .args(paths)
        .output()
        .map_err(|e| e.to_string())?;
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(format!(
            "check exited {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let report: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(report["objects"].as_array().cloned().unwrap_or_default())
}

/// One object of a `check -o json` report as a verdict and its violations.
pub fn checked(o: &Value) -> Result<Expect, String> {
    let verdict = o["verdict"].as_str().and_then(Verdict::parse);
    let violations = o["violations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (s("code"), s("path"))
        })
        .collect();
    Ok(Expect {
        verdict: verdict.ok_or_else(|| format!("no verdict in {o}"))?,
        violations,
    })
}

// === the webhook ===

/// A uid no other request of this run has.
pub fn fresh_uid(prefix: &str, n: usize) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{nanos:x}-{n}")
}

/// `object` wrapped in a real apiserver request: kind and resource from the object, a
/// CREATE by `user`, into `namespace` when given (else the object's own). `None` when
/// egress-guard registers for no such kind, so no apiserver would ever send it.
pub fn admission_review(
    object: &Value,
    namespace: Option<&str>,
    user: &str,
    uid: &str,
) -> Option<Vec<u8>> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = Kind::from_api_version(api_version, kind)?.plural();
    let mut review = fixture_json(ENVELOPE);
    let req = &mut review["request"];
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": plural});
    req["uid"] = json!(uid);
    req["kind"] = gvk.clone();
    req["requestKind"] = gvk;
    req["resource"] = gvr.clone();
    req["requestResource"] = gvr;
    req["name"] = object["metadata"]["name"].clone();
    req["operation"] = json!("CREATE");
    req["userInfo"] = json!({"username": user, "groups": ["system:authenticated"]});
    let mut object = object.clone();
    match namespace {
        // The apiserver writes the request's namespace into the object before it asks.
        Some(ns) if object["metadata"].is_object() => {
            req["namespace"] = json!(ns);
            object["metadata"]["namespace"] = json!(ns);
        }
        _ => req["namespace"] = object["metadata"]["namespace"].clone(),
    }
    req["object"] = object;
    req["oldObject"] = Value::Null;
    req["dryRun"] = json!(false);
    Some(serde_json::to_vec(&review).unwrap())
}

/// How many `/validate` reviews the server has skipped so far: a skip answers like an
/// allow, so the metric is what tells them apart.
pub async fn skipped(s: &TestServer) -> f64 {
    s.metrics_text()
        .await
        .lines()
        .filter(|l| {
            l.starts_with("egress_guard_requests_total{")
                && l.contains("decision=\"skip\"")
                && l.contains("endpoint=\"validate\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// True when `s` starts with a violation code and a space (`EG101 `).
fn starts_with_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 6 && s.starts_with("EG") && b[2..5].iter().all(u8::is_ascii_digit) && b[5] == b' '
}

/// The text after a Rust-quoted string at the start of `s` (`"a\"b" rest` -> ` rest`).
fn after_quoted(s: &str) -> Option<&str> {
    let mut chars = s.strip_prefix('"')?.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => return s.get(i + 2..),
            _ => {}
        }
    }
    None
}

/// The violations a denial message names, in the form `describe` writes them
/// (`...: EG101 spec.hosts[0] "value": reason; EG107 ...`), and whether it left some out
/// (`; and N more`). Values are quoted, so whatever they contain is skipped over.
pub fn denial_violations(message: &str) -> (Found, bool) {
    let mut found = Found::new();
    let mut rest = message.split_once(": ").map_or("", |(_, r)| r);
    while starts_with_code(rest) {
        let (code, item) = rest.split_at(5);
        let Some((path, value)) = item[1..].split_once(' ') else {
            break;
        };
        found.insert((code.to_owned(), path.to_owned()));
        let reason = after_quoted(value).unwrap_or_default();
        let next = reason
            .match_indices("; ")
            .map(|(i, _)| &reason[i + 2..])
            .find(|r| starts_with_code(r));
        rest = next.unwrap_or_default();
    }
    let more = message.contains("; and ") && message.ends_with(" more");
    (found, more)
}

/// The violations of the `violations` audit annotation (`EG101 spec.hosts[0]=x, ...`), and
/// whether it was cut short. Values are not quoted there; the corpora's own contain no
/// `, EG` sequence.
pub fn annotated_violations(annotation: &str) -> (Found, bool) {
    let found = annotation
        .match_indices(", ")
        .map(|(i, _)| &annotation[i + 2..])
        .chain(std::iter::once(annotation))
        .filter(|item| starts_with_code(item))
        .map(|item| {
            let path = item[6..].split('=').next().unwrap_or_default();
            (item[..5].to_owned(), path.to_owned())
        })
        .collect();
    (found, annotation.ends_with('\u{2026}'))
}

/// Sends one review (built with `uid`) and reads the answer back as a verdict and the
/// violations it names; `cut` is true when the answer lists only some of them.
pub async fn ask(s: &TestServer, review: Vec<u8>, uid: &str) -> Result<(Expect, bool), String> {
    let before = skipped(s).await;
    let review = s.review("/validate", review).await;
    let after = skipped(s).await;
    let r = &review["response"];
    if r["uid"] != json!(uid) {
        return Err(format!("answered uid {}, sent {uid}", r["uid"]));
    }
    let annotations = &r["auditAnnotations"];
    let (verdict, (violations, cut)) = if r["allowed"] == json!(false) {
        if r["status"]["code"] != json!(403) {
            return Err(format!("denied without 403: {r}"));
        }
        let message = r["status"]["message"].as_str().unwrap_or_default();
        (Verdict::Deny, denial_violations(message))
    } else if after > before {
        (Verdict::Skip, (Found::new(), false))
    } else if let Some(list) = annotations["violations"].as_str() {
        (Verdict::Audit, annotated_violations(list))
    } else {
        (Verdict::Allow, (Found::new(), false))
    };
    Ok((
        Expect {
            verdict,
            violations,
        },
        cut,
    ))
}

/// `got` against `want`: equal, or a subset when the answer was cut short.
pub fn matches(got: &Expect, cut: bool, want: &Expect) -> bool {
    got.verdict == want.verdict
        && if cut {
            got.violations.is_subset(&want.violations) && !got.violations.is_empty()
        } else {
            got.violations == want.violations
        }
}
