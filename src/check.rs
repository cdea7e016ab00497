//! `egress-guard check`: evaluate manifests offline with the same `policy::evaluate`
//! the webhook uses, and print verdicts, violations, warnings and the would-be patch.
//!
//! Exit codes: 0 every object allowed, 1 at least one denied, 2 usage or input error.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::cli::{CheckArgs, OutputFormat};
use crate::policy::{
    self, Allowlist, Decision, Kind, Operation, Request, Skip, Verdict, Violation,
};

/// Exit code: every object allowed.
pub const EXIT_ALLOWED: u8 = 0;
/// Exit code: at least one object denied.
pub const EXIT_DENIED: u8 = 1;
/// Exit code: usage or input error.
pub const EXIT_INPUT_ERROR: u8 = 2;

/// A manifest that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// What was being read.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The content is not valid YAML or JSON.
    #[error("{path}: {message}")]
    Parse {
        /// What was being read.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
}

/// One manifest object, decoded as far as the engine needs.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `file` or `file#N` (document index) for messages.
    pub source: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace`, or the default.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The whole object as JSON.
    pub object: Box<RawValue>,
}

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
}

impl ObjectReport {
    /// Builds the report for one evaluated manifest.
    pub fn new(m: &Manifest, d: &Decision) -> Self {
        let mode = match d.skipped {
            Some(Skip::NotIstio) => "skipped: not an Istio networking kind".to_owned(),
            Some(Skip::ExemptNamespace) => "skipped: exempt namespace".to_owned(),
            Some(Skip::Delete) => "skipped".to_owned(),
            Some(Skip::TrustedWriter) => "skipped: written by the control plane".to_owned(),
            Some(Skip::NoEffect) => "skipped: cannot change where traffic goes".to_owned(),
            None => d.mode.as_str().to_owned(),
        };
        let mut warnings = d.warnings.clone();
        if let Some(t) = d.default_timeout.filter(|_| !d.patched_routes.is_empty()) {
            warnings.push(format!(
                "default timeout {t} added to {}",
                d.patched_routes.join(", ")
            ));
        }
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

/// Evaluates one manifest.
pub fn evaluate(m: &Manifest, allowlist: &Allowlist) -> Decision {
    let req = Request {
        kind: Kind::from_api_version(&m.api_version, &m.kind),
        operation: Operation::Create,
        namespace: &m.namespace,
        name: &m.name,
        object: Some(&m.object),
        old_object: None,
        user: "",
        subresource: "",
    };
    policy::evaluate(&req, allowlist, &policy::Env::default())
}

/// Loads the allowlist from a file, or the embedded example.
pub fn load_allowlist(path: Option<&Path>) -> anyhow::Result<Allowlist> {
    use anyhow::Context as _;
    match path {
        None => Ok(Allowlist::from_yaml(policy::allowlist::EXAMPLE)?),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading allowlist {}", p.display()))?;
            Allowlist::from_yaml(&text).with_context(|| format!("allowlist {}", p.display()))
        }
    }
}

/// Runs `check`; returns the exit code.
pub fn run(args: &CheckArgs) -> u8 {
    let CheckArgs {
        allowlist,
        output,
        namespace,
        paths,
    } = args;
    let allowlist = match load_allowlist(allowlist.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_INPUT_ERROR;
        }
    };
    for w in &allowlist.warnings {
        eprintln!("warning: allowlist: {w}");
    }
    let mut manifests = Vec::new();
    let mut failed = false;
    for path in paths {
        match read_path(path, namespace) {
            Ok(mut ms) => manifests.append(&mut ms),
            Err(errors) => {
                failed = true;
                for e in errors {
                    eprintln!("error: {e}");
                }
            }
        }
    }
    let objects = manifests
        .iter()
        .map(|m| ObjectReport::new(m, &evaluate(m, &allowlist)))
        .collect();
    let report = Report::new(objects);
    print!("{}", report.render(*output));
    if failed {
        EXIT_INPUT_ERROR
    } else {
        report.exit_code()
    }
}

/// Reads a file, a directory (recursively: `.yaml`, `.yml`, `.json`), or `-` (stdin).
pub fn read_path(path: &Path, default_ns: &str) -> Result<Vec<Manifest>, Vec<InputError>> {
    let name = path.display().to_string();
    if name == "-" {
        let mut text = String::new();
        return match std::io::stdin().read_to_string(&mut text) {
            Ok(_) => parse_manifests(&text, "<stdin>", default_ns).map_err(|e| vec![e]),
            Err(source) => Err(vec![InputError::Io { path: name, source }]),
        };
    }
    let files = match collect_files(path) {
        Ok(f) => f,
        Err(source) => return Err(vec![InputError::Io { path: name, source }]),
    };
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let label = file.display().to_string();
        match std::fs::read_to_string(&file) {
            Ok(text) => match parse_manifests(&text, &label, default_ns) {
                Ok(mut ms) => manifests.append(&mut ms),
                Err(e) => errors.push(e),
            },
            Err(source) => errors.push(InputError::Io {
                path: label,
                source,
            }),
        }
    }
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

fn collect_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        // Surfaces "not found" and permission errors with the path.
        std::fs::metadata(path)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files.extend(collect_files(&p)?);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(p);
        }
    }
    Ok(files)
}

/// Parses JSON (one object, a `List`, or an array) or multi-document YAML.
pub fn parse_manifests(
    text: &str,
    source: &str,
    default_ns: &str,
) -> Result<Vec<Manifest>, InputError> {
    let parse_err = |message: String| InputError::Parse {
        path: source.to_owned(),
        message,
    };
    let docs: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        vec![serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?]
    } else {
        let mut docs = Vec::new();
        for doc in serde_norway::Deserializer::from_str(text) {
            docs.push(Value::deserialize(doc).map_err(|e| parse_err(e.to_string()))?);
        }
        docs
    };
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let label = format!("{source}#{i}");
        flatten(doc, &label, default_ns, &mut out).map_err(parse_err)?;
    }
    Ok(out)
}

fn flatten(
    doc: Value,
    source: &str,
    default_ns: &str,
    out: &mut Vec<Manifest>,
) -> Result<(), String> {
    match doc {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                flatten(item, &format!("{source}[{i}]"), default_ns, out)?;
            }
            Ok(())
        }
        Value::Object(mut obj) => {
            let kind = obj
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if kind.ends_with("List")
                && let Some(Value::Array(items)) = obj.remove("items")
            {
                for (i, item) in items.into_iter().enumerate() {
                    flatten(item, &format!("{source}.items[{i}]"), default_ns, out)?;
                }
                return Ok(());
            }
            if kind.is_empty() {
                return Err(format!("{source}: object has no `kind`"));
            }
            let api_version = obj
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let meta = obj.get("metadata");
            let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
            let namespace = field("namespace").unwrap_or(default_ns).to_owned();
            let name = field("name").unwrap_or_default().to_owned();
            let object =
                serde_json::value::to_raw_value(&obj).map_err(|e| format!("{source}: {e}"))?;
            out.push(Manifest {
                source: source.to_owned(),
                namespace,
                name,
                api_version,
                kind,
                object,
            });
            Ok(())
        }
        other => Err(format!("{source}: expected an object, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_yaml_and_lists() {
        let text = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a, namespace: x}\nspec: {hosts: [a.example]}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: networking.istio.io/v1beta1, kind: Sidecar, metadata: {name: b}, spec: {}}\n- {apiVersion: apps/v1, kind: Deployment, metadata: {name: c}}\n";
        let ms = parse_manifests(text, "t.yaml", "default").unwrap();
        let names: Vec<_> = ms
            .iter()
            .map(|m| (m.kind.as_str(), m.namespace.as_str(), m.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("ServiceEntry", "x", "a"),
                ("Sidecar", "default", "b"),
                ("Deployment", "default", "c")
            ]
        );
        assert_eq!(ms[1].source, "t.yaml#2.items[0]");
    }

    #[test]
    fn parses_json_objects_and_arrays() {
        let ms = parse_manifests(
            r#"[{"kind":"Gateway","apiVersion":"networking.istio.io/v1","metadata":{"name":"g"}}]"#,
            "t.json",
            "ns",
        )
        .unwrap();
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].name, "g");
    }

    #[test]
    fn reports_parse_errors_with_location() {
        let err = parse_manifests("kind: [\n", "bad.yaml", "default")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("bad.yaml:") && err.contains("line"),
            "{err}"
        );
        let err = parse_manifests("{\"kind\": ", "bad.json", "default")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.json") && err.contains("line"), "{err}");
        let err = parse_manifests("metadata: {name: x}\n", "nokind.yaml", "default")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `kind`"), "{err}");
    }
}
