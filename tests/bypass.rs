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

use std::path::{Path, PathBuf};

use common::corpus::{
    self, Expect, Found, Verdict, annotated_violations, ask, denial_violations, matches, report,
};
use common::{Options, TestServer};
use serde::Deserialize;
use serde_json::Value;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bypass");

/// Cases written so far. The corpus may grow, but a lost case, or a loader that silently
/// skips some, fails the tests.
const ATTACKS: usize = 121;
const ORDINARY: usize = 57;

/// `userInfo.username` when a case names none: a tenant, trusted for nothing.
const TENANT: &str = "alice@team-a.example.com";

/// The code of the one violation that only exists while some namespace enforces.
const AUDIT_EXPORTED: &str = "EG107";

// === the corpus ===

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

// === check ===

/// `check --allowlist tests/bypass/allowlist.yaml -o json <file>`: verdict and violations.
fn run_check(case: &Case) -> Result<Expect, String> {
    let allowlist = Path::new(CORPUS).join("allowlist.yaml");
    let objects = corpus::check_objects(&allowlist, &[&case.path])?;
    let [o] = objects.as_slice() else {
        return Err(format!("check reported {} objects, want 1", objects.len()));
    };
    corpus::checked(o)
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

/// The case wrapped in a real apiserver request: a CREATE by the case's user, into the
/// object's own namespace.
fn admission_review(case: &Case, uid: &str) -> Vec<u8> {
    corpus::admission_review(&case.object, None, &case.user, uid)
        .unwrap_or_else(|| panic!("{}: egress-guard does not know its kind", case.name))
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
            let uid = corpus::fresh_uid("bypass", n);
            match ask(server, admission_review(case, &uid), &uid).await {
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
