//! What an allowlist change does to a set of objects: each object judged under the old
//! and the new allowlist, and the ones whose verdict or violations differ listed with
//! the violations that appear and disappear. `check --against` runs it over manifests
//! (a CI job on the allowlist's pull request), `audit --against` over a live cluster.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::Serialize;

use super::{EXIT_ALLOWED, EXIT_DENIED, Manifest};
use crate::args::OutputFormat;
use crate::policy::{Decision, Verdict, Violation};

/// One object whose judgement changes.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Where the object came from.
    pub source: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Under the old allowlist.
    pub before: Verdict,
    /// Under the new allowlist.
    pub after: Verdict,
    /// Violations only the new allowlist finds.
    pub appeared: Vec<Violation>,
    /// Violations only the old allowlist found.
    pub disappeared: Vec<Violation>,
}

/// Counts over a diff.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DiffSummary {
    /// Objects judged.
    pub total: usize,
    /// Objects whose verdict or violations change.
    pub changed: usize,
    /// Denied now, not before: what the change would break.
    pub newly_denied: usize,
    /// Denied before, not now.
    pub newly_allowed: usize,
}

/// The whole document printed by `--against`.
#[derive(Debug, Serialize)]
pub struct DiffReport {
    /// One entry per changed object.
    pub changes: Vec<Change>,
    /// Counts.
    pub summary: DiffSummary,
}

/// A violation's identity across the two runs: its message may name the allowlist.
fn key(v: &Violation) -> (&str, &str, &str) {
    (v.code.as_str(), &v.path, &v.value)
}

/// Violations in `a` that `b` lacks.
fn minus(a: &[Violation], b: &[Violation]) -> Vec<Violation> {
    let other: HashSet<_> = b.iter().map(key).collect();
    a.iter()
        .filter(|v| !other.contains(&key(v)))
        .cloned()
        .collect()
}

impl DiffReport {
    /// Compares each object's decision under the old allowlist with the new one.
    pub fn new<'m>(judged: impl IntoIterator<Item = (&'m Manifest, Decision, Decision)>) -> Self {
        let mut summary = DiffSummary::default();
        let mut changes = Vec::new();
        for (m, old, new) in judged {
            summary.total += 1;
            let (before, after) = (old.verdict(), new.verdict());
            let appeared = minus(&new.violations, &old.violations);
            let disappeared = minus(&old.violations, &new.violations);
            if before == after && appeared.is_empty() && disappeared.is_empty() {
                continue;
            }
            summary.changed += 1;
            summary.newly_denied += usize::from(after == Verdict::Deny && before != Verdict::Deny);
            summary.newly_allowed += usize::from(before == Verdict::Deny && after != Verdict::Deny);
            changes.push(Change {
                source: m.source.clone(),
                kind: m.kind.clone(),
                namespace: m.namespace.clone(),
                name: m.name.clone(),
                before,
                after,
                appeared,
                disappeared,
            });
        }
        Self { changes, summary }
    }

    /// 1 when the new allowlist denies an object the old one did not, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.summary.newly_denied > 0 {
            EXIT_DENIED
        } else {
            EXIT_ALLOWED
        }
    }

    /// Renders the diff.
    pub fn render(&self, format: OutputFormat) -> String {
        if format == OutputFormat::Json {
            let mut s = serde_json::to_string_pretty(self)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            s.push('\n');
            return s;
        }
        let mut out = String::new();
        for c in &self.changes {
            let _ = writeln!(
                out,
                "{} -> {}  {} {}/{}  [{}]",
                c.before.as_str().to_uppercase(),
                c.after.as_str().to_uppercase(),
                c.kind,
                c.namespace,
                c.name,
                c.source
            );
            for (sign, list) in [("+", &c.appeared), ("-", &c.disappeared)] {
                for v in list {
                    let _ = writeln!(
                        out,
                        "      {sign} {} {} = {:?}: {}",
                        v.code, v.path, v.value, v.message
                    );
                }
            }
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "{} objects: {} change ({} newly denied, {} newly allowed)",
            s.total, s.changed, s.newly_denied, s.newly_allowed
        );
        out
    }
}
