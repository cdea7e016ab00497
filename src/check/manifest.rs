//! Reading manifests: files, directories, stdin; multi-document YAML, JSON, arrays
//! and `List`s, each object kept as JSON for the engine.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_json::value::RawValue;

use crate::policy::yaml;

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
        // The same parser and budgets as the allowlist: a manifest `check` reads in CI
        // may come from a tenant too.
        yaml::documents(text, yaml::manifest_limits(text.len())).map_err(parse_err)?
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
        // Documents are numbered as they hold content: the empty one between counts not.
        assert_eq!(ms[1].source, "t.yaml#1.items[0]");
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
