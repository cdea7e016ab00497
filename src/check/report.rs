//! The verdicts `check` and `audit` print: one entry per object, text or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::{EXIT_ALLOWED, EXIT_DENIED, Manifest};
use crate::args::OutputFormat;
use crate::policy::{Decision, Skip, Verdict, Violation};

/// The label a verdict gets in the text report.
fn label(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "ALLOW",
        Verdict::Deny => "DENY",
        Verdict::Audit => "AUDIT",
        Verdict::Skip => "SKIP",
    }
}

/// The verdict for one object, as printed by `check` and `audit`.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    /// Where the object came from.
    pub source: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Would the webhook admit it.
    pub allowed: bool,
    /// Allow, deny, audit or skip.
    pub verdict: Verdict,
    /// `enforce` or `audit`, or why it was skipped.
    pub mode: String,
    /// Violations, in field order.
    pub violations: Vec<Violation>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// The RFC 6902 patch `/mutate` would return, or null.
    pub patch: Option<json_patch::Patch>,
    /// Which allowlist entry granted each reference (`--explain`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub explanations: Vec<String>,
    /// The platform's help text, as the webhook appends it to the denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl ObjectReport {
    /// Builds the report for one evaluated manifest.
    pub fn new(m: &Manifest, d: &Decision) -> Self {
        let mode = match d.skipped {
            Some(Skip::NotIstio) => "skipped: not a kind egress-guard checks".to_owned(),
            Some(Skip::ExemptNamespace) => "skipped: exempt namespace".to_owned(),
            Some(Skip::Delete) => "skipped".to_owned(),
            Some(Skip::TrustedWriter) => "skipped: written by the control plane".to_owned(),
            Some(Skip::NoEffect) => "skipped: cannot change where traffic goes".to_owned(),
            None => d.mode.as_str().to_owned(),
        };
        let mut warnings = d.warnings.clone();
        warnings.extend(d.mutation_notes());
        Self {
            source: m.source.clone(),
            kind: m.kind.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            allowed: d.allowed(),
            verdict: d.verdict(),
            mode,
            violations: d.violations.clone(),
            warnings,
            patch: d.patch().cloned(),
            explanations: d.explanations.clone(),
            help: d.help.clone(),
        }
    }
}

/// Counts over a report.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Objects read.
    pub total: usize,
    /// Allowed without violations.
    pub allowed: usize,
    /// Denied.
    pub denied: usize,
    /// Allowed with violations reported (audit mode).
    pub audited: usize,
    /// Not checked (other kinds, exempt namespaces).
    pub skipped: usize,
    /// Objects with a timeout patch.
    pub patched: usize,
}

/// The whole JSON document printed by `--output json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// One entry per object.
    pub objects: Vec<ObjectReport>,
    /// Counts.
    pub summary: Summary,
}

impl Report {
    /// Summarises object reports.
    pub fn new(objects: Vec<ObjectReport>) -> Self {
        let mut s = Summary {
            total: objects.len(),
            ..Summary::default()
        };
        for o in &objects {
            match o.verdict {
                Verdict::Skip => s.skipped += 1,
                Verdict::Deny => s.denied += 1,
                Verdict::Audit => s.audited += 1,
                Verdict::Allow => s.allowed += 1,
            }
            s.patched += usize::from(o.patch.is_some());
        }
        Self {
            objects,
            summary: s,
        }
    }

    /// The process exit code for this report.
    pub fn exit_code(&self) -> u8 {
        if self.summary.denied > 0 {
            EXIT_DENIED
        } else {
            EXIT_ALLOWED
        }
    }

    /// Renders the report.
    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Json => {
                let mut s = serde_json::to_string_pretty(self)
                    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
                s.push('\n');
                s
            }
            OutputFormat::Text => self.render_text(),
        }
    }

    fn render_text(&self) -> String {
        let mut out = String::new();
        for o in &self.objects {
            let _ = write!(
                out,
                "{:<5} {} {}/{}",
                label(o.verdict),
                o.kind,
                o.namespace,
                o.name
            );
            if o.verdict == Verdict::Skip {
                let _ = write!(out, " ({})", o.mode.trim_start_matches("skipped: "));
            } else if o.mode == "audit" {
                out.push_str(" (audit mode)");
            }
            let _ = writeln!(out, "  [{}]", o.source);
            for v in &o.violations {
                let _ = writeln!(
                    out,
                    "      {} {} = {:?}: {}",
                    v.code, v.path, v.value, v.message
                );
            }
            for w in &o.warnings {
                let _ = writeln!(out, "      warning: {w}");
            }
            if let Some(h) = &o.help {
                let _ = writeln!(out, "      help: {h}");
            }
            for e in &o.explanations {
                let _ = writeln!(out, "      {e}");
            }
            if let Some(p) = &o.patch {
                let _ = writeln!(
                    out,
                    "      patch: {}",
                    serde_json::to_string(p).unwrap_or_default()
                );
            }
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "{} objects: {} allowed, {} denied, {} audited, {} skipped; {} would be patched",
            s.total, s.allowed, s.denied, s.audited, s.skipped, s.patched
        );
        out
    }
}
