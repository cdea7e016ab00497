//! The adversarial corpus in `tests/bypass/`: every object a tenant could use to reach an
//! unapproved host or to skip the sidecar (`attacks/`, all denied), and the ordinary
//! objects that must keep working (`ordinary/`, allowed or legitimately skipped), each
//! judged under `tests/bypass/allowlist.yaml`.
//!
//! Each case is one YAML file whose header states the verdict and the exact set of
//! violations (code and field path) — see `tests/bypass/README.md`. Every case runs twice:
//! through the built binary (`check -o json`) and through a real webhook over HTTPS, once
//! with the allowlist as written (the verdict, and the violations named in the denial)
//! and once with a copy in `mode: audit` (every violation, read back from the
//! `violations` audit annotation). A newly found bypass is written as an attack here
//! first, and fails until the engine closes it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Options, TestServer, fixture_json};
use egress_guard::policy::Kind;
use serde::Deserialize;
use serde_json::{Value, json};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bypass");

/// Cases written so far. The corpus may grow, but a lost case, or a loader that silently
/// skips some, fails the tests.
const ATTACKS: usize = 104;
const ORDINARY: usize = 49;

/// The real apiserver request every webhook case is wrapped in.
const ENVELOPE: &str = "validate-create-serviceentry-v1-github-api";

/// `userInfo.username` when a case names none: a tenant, trusted for nothing.
const TENANT: &str = "alice@team-a.example.com";

/// The code of the one violation that only exists while some namespace enforces.
const AUDIT_EXPORTED: &str = "EG107";

// === the corpus ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Deny,
    Skip,
    Audit,
}

impl Verdict {
    fn parse(s: &str) -> Option<Self> {
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
type Found = BTreeSet<(String, String)>;

/// A verdict and the exact violations that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expect {
    verdict: Verdict,
    violations: Found,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:?}", self.verdict, self.violations)
    }
}

/// One corpus file.
#[derive(Debug)]
struct Case {
    /// `attacks/<name>.yaml`: how failures name the case.
    name: String,
    path: PathBuf,
    /// What the webhook must answer.
    expect: Expect,
    /// What `check` must answer: `# check:` lines, else the same as `expect`. `check`
    /// has no userInfo, so objects the webhook skips by writer are judged as anyone's.
    check: Expect,
    user: String,
    object: Value,
}

/// Reads `# expect:` / `# check:` lines into one expectation.
fn expectation(lines: &[&str]) -> Result<Option<Expect>, String> {
    let mut verdict = None;
    let mut violations = Found::new();
    for line in lines {
        let mut words = line.split_whitespace();
        let v = words.next().and_then(Verdict::parse);
        let v = v.ok_or_else(|| format!("unknown verdict in {line:?}"))?;
        if verdict.is_some_and(|seen| seen != v) {
            return Err(format!("two verdicts: {line:?}"));
        }
        verdict = Some(v);
        match (v, words.next(), words.next(), words.next()) {
            (Verdict::Deny | Verdict::Audit, Some(code), Some(path), None)
                if code.len() == 5 && code.starts_with("EG") =>
            {
                violations.insert((code.to_owned(), path.to_owned()));
            }
            (Verdict::Allow | Verdict::Skip, None, _, _) => {}
            _ => {
                return Err(format!(
                    "expected `deny CODE PATH`, `allow` or `skip`: {line:?}"
                ));
            }
        }
    }
    Ok(verdict.map(|verdict| Expect {
        verdict,
        violations,
    }))
}

fn load_case(dir: &str, path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
    let field = |key: &str| -> Vec<&str> {
        header
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("# {key}:")))
            .map(str::trim)
            .collect()
    };
    let known = ["# expect:", "# check:", "# user:", "# why:", "#   "];
    if let Some(l) = header
        .iter()
        .find(|l| !known.iter().any(|k| l.starts_with(k)))
    {
        return Err(format!("unknown header line {l:?}"));
    }
    if !header.first().is_some_and(|l| l.starts_with("# expect:")) {
        return Err("the header must start with `# expect:`".into());
    }
    let expect = expectation(&field("expect"))?.ok_or("no `# expect:` line")?;
    let check = expectation(&field("check"))?.unwrap_or_else(|| expect.clone());
    let user = match field("user").as_slice() {
        [] => TENANT.to_owned(),
        [u] if !u.is_empty() => (*u).to_owned(),
        _ => return Err("at most one non-empty `# user:` line".into()),
    };
    let why_at = header.iter().position(|l| l.starts_with("# why:"));
    let why_at = why_at.ok_or("no `# why:` line")?;
    let why_lines = 1 + header[why_at + 1..]
        .iter()
        .take_while(|l| l.starts_with("#   "))
        .count();
    if !(2..=5).contains(&why_lines) {
        return Err(format!("`# why:` has {why_lines} lines, want 2 to 5"));
    }

    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        docs.push(Value::deserialize(doc).map_err(|e| e.to_string())?);
    }
    let [object] = <[Value; 1]>::try_from(docs)
        .map_err(|d| format!("want exactly one object, found {}", d.len()))?;
    for key in ["apiVersion", "kind"] {
        if !object[key].is_string() {
            return Err(format!("the object has no {key}"));
        }
    }
    match (dir, expect.verdict) {
        ("attacks", Verdict::Deny) | ("ordinary", Verdict::Allow | Verdict::Skip) => {}
        (_, v) => return Err(format!("{dir}/ cases cannot expect {v:?}")),
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    Ok(Case {
        name: format!("{dir}/{name}"),
        path: path.to_owned(),
        expect,
        check,
        user,
        object,
    })
}

/// Every `.yaml` file of one corpus directory, in name order; panics naming each file
/// that does not load.
fn load(dir: &str) -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(Path::new(CORPUS).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for p in &paths {
        match load_case(dir, p) {
            Ok(c) => cases.push(c),
            Err(e) => {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                errors.push(format!("{dir}/{name}: {e}"));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "bad corpus files:\n{}",
        errors.join("\n")
    );
    cases
}

fn allowlist() -> String {
    std::fs::read_to_string(Path::new(CORPUS).join("allowlist.yaml")).unwrap()
}

/// The allowlist with the global mode switched to audit, so that every violation is
/// reported in the audit annotations instead of denying.
fn audit_allowlist() -> String {
    let text = allowlist();
    assert_eq!(
        text.matches("\nmode: enforce\n").count(),
        1,
        "allowlist mode"
    );
    text.replace("\nmode: enforce\n", "\nmode: audit\n")
}

/// Panics with every mismatch, each naming its file.
fn report(what: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{what}: {} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// === check ===

/// `check --allowlist tests/bypass/allowlist.yaml -o json <file>`: verdict and violations.
fn run_check(case: &Case) -> Result<Expect, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .arg("check")
        .arg("--allowlist")
        .arg(Path::new(CORPUS).join("allowlist.yaml"))
        .args(["-o", "json"])
        .arg(&case.path)
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
    let objects = report["objects"].as_array().cloned().unwrap_or_default();
    let [o] = objects.as_slice() else {
        return Err(format!("check reported {} objects, want 1", objects.len()));
    };
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

fn check_corpus(dir: &str, pinned: usize) {
    let cases = load(dir);
    assert!(
        cases.len() >= pinned,
        "{dir}/ has {} cases, fewer than the {pinned} written",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        match run_check(case) {
            Ok(got) if got == case.check => {}
            Ok(got) => failures.push(format!(
                "{}: check answered {got}, want {}",
                case.name, case.check
            )),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    report(&format!("check on {dir}/"), failures);
}

// === the webhook ===

/// The case wrapped in a real apiserver request: kind and resource from the object, a
/// CREATE by the case's user, a fresh uid.
fn admission_review(case: &Case, uid: &str) -> Vec<u8> {
    let o = &case.object;
    let api_version = o["apiVersion"].as_str().unwrap_or_default();
    let kind = o["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = Kind::from_api_version(api_version, kind)
        .map(Kind::plural)
        .unwrap_or_else(|| panic!("{}: egress-guard does not know {kind}", case.name));
    let mut review = fixture_json(ENVELOPE);
    let req = &mut review["request"];
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": plural});
    req["uid"] = json!(uid);
    req["kind"] = gvk.clone();
    req["requestKind"] = gvk;
    req["resource"] = gvr.clone();
    req["requestResource"] = gvr;
    req["name"] = o["metadata"]["name"].clone();
    req["namespace"] = o["metadata"]["namespace"].clone();
    req["operation"] = json!("CREATE");
    req["userInfo"] = json!({"username": case.user, "groups": ["system:authenticated"]});
    req["object"] = o.clone();
    req["oldObject"] = Value::Null;
    req["dryRun"] = json!(false);
    serde_json::to_vec(&review).unwrap()
}

/// How many `/validate` reviews the server has skipped so far: a skip answers like an
/// allow, so the metric is what tells them apart.
async fn skipped(s: &TestServer) -> f64 {
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
fn denial_violations(message: &str) -> (Found, bool) {
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
/// whether it was cut short. Values are not quoted there; the corpus's own contain no
/// `, EG` sequence.
fn annotated_violations(annotation: &str) -> (Found, bool) {
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

/// Sends the case and reads the answer back as a verdict and the violations it names;
/// `cut` is true when the answer lists only some of them.
async fn ask(s: &TestServer, case: &Case, n: usize) -> Result<(Expect, bool), String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let uid = format!("bypass-{nanos:x}-{n}");
    let before = skipped(s).await;
    let review = s.review("/validate", admission_review(case, &uid)).await;
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
fn matches(got: &Expect, cut: bool, want: &Expect) -> bool {
    got.verdict == want.verdict
        && if cut {
            got.violations.is_subset(&want.violations) && !got.violations.is_empty()
        } else {
            got.violations == want.violations
        }
}

/// What the audit-mode copy must answer: every violation but `EG107`, which needs a
/// namespace in enforce mode, reported instead of denied.
fn in_audit_mode(want: &Expect) -> Expect {
    let violations: Found = want
        .violations
        .iter()
        .filter(|(code, _)| code != AUDIT_EXPORTED)
        .cloned()
        .collect();
    let verdict = match want.verdict {
        Verdict::Deny | Verdict::Audit if violations.is_empty() => Verdict::Allow,
        Verdict::Deny | Verdict::Audit => Verdict::Audit,
        v => v,
    };
    Expect {
        verdict,
        violations,
    }
}

async fn webhook_corpus(dir: &str, pinned: usize) {
    let cases = load(dir);
    assert!(
        cases.len() >= pinned,
        "{dir}/ has {} cases, fewer than the {pinned} written",
        cases.len()
    );
    let enforce = TestServer::start_with(Options {
        allowlist: allowlist(),
        ..Options::default()
    })
    .await;
    let audit = TestServer::start_with(Options {
        allowlist: audit_allowlist(),
        ..Options::default()
    })
    .await;
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let audited = in_audit_mode(&case.expect);
        for (server, mode, want) in [
            (&enforce, "enforce", &case.expect),
            (&audit, "audit", &audited),
        ] {
            match ask(server, case, n).await {
                Ok((got, cut)) if matches(&got, cut, want) => {}
                Ok((got, cut)) => failures.push(format!(
                    "{}: webhook ({mode} mode) answered {got}{}, want {want}",
                    case.name,
                    if cut { " (cut short)" } else { "" }
                )),
                Err(e) => failures.push(format!("{}: webhook ({mode} mode): {e}", case.name)),
            }
        }
    }
    report(&format!("webhook on {dir}/"), failures);
    enforce.stop().await.unwrap();
    audit.stop().await.unwrap();
}

// === the tests ===

#[test]
fn attacks_are_denied_by_check() {
    check_corpus("attacks", ATTACKS);
}

#[test]
fn ordinary_objects_pass_check() {
    check_corpus("ordinary", ORDINARY);
}

#[tokio::test]
async fn attacks_are_denied_by_the_webhook() {
    webhook_corpus("attacks", ATTACKS).await;
}

#[tokio::test]
async fn ordinary_objects_pass_the_webhook() {
    webhook_corpus("ordinary", ORDINARY).await;
}

#[test]
fn the_audit_copy_differs_only_in_mode() {
    let (enforce, audit) = (allowlist(), audit_allowlist());
    assert_ne!(enforce, audit);
    assert_eq!(enforce.replace("mode: enforce", "mode: audit"), audit);
}

#[test]
fn violation_lists_are_read_back() {
    let (found, more) = denial_violations(
        "egress-guard denied ServiceEntry payments/exfil: EG101 spec.hosts[0] \"a; EG999 x\": not in the allowlist; set it; EG107 spec.exportTo \"\": namespace payments is in audit mode; and 2 more",
    );
    let want: Found = [("EG101", "spec.hosts[0]"), ("EG107", "spec.exportTo")]
        .map(|(c, p)| (c.to_owned(), p.to_owned()))
        .into();
    assert_eq!(found, want);
    assert!(more);
    let (found, cut) = annotated_violations("EG101 spec.hosts[0]=a, b, EG107 spec.exportTo=");
    assert_eq!(found, want);
    assert!(!cut);
}
