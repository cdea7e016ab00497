//! The allowlist's own ConfigMap: an edit is denied exactly when the server would
//! refuse to load it (the same parser), so a bad allowlist never reaches the cluster
//! and a good one is never refused. Its load-time warnings come back as admission
//! warnings. Other ConfigMaps are not judged.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::allowlist::Allowlist;
use crate::policy::decision::Code;
use crate::policy::judge::{Context, Findings};
use crate::policy::spec::Str;

/// The most data (keys and values) Kubernetes keeps in one ConfigMap (`MaxSecretSize`).
pub const MAX_CONFIGMAP_DATA: usize = 1024 * 1024;

/// Judges the ConfigMap as the allowlist when the engine says it is the allowlist's
/// (`cx.allowlist_key`); any other ConfigMap is left alone.
pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(key) = cx.allowlist_key else { return };
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Data<'a> {
        #[serde(borrow)]
        data: Option<BTreeMap<Str<'a>, Str<'a>>>,
    }
    let path = format!("data[{key}]");
    // Each refusal quotes what it is about: the line at fault, the size, the keys.
    let mut invalid = |value: &str, message: &str| {
        out.violation(Code::InvalidAllowlist, &path, value, message);
    };
    let data = match serde_json::from_str::<Data>(object.get()) {
        Ok(d) => d.data.unwrap_or_default(),
        Err(e) => return invalid("data", &format!("the ConfigMap does not decode: {e}")),
    };
    // Kubernetes stores no ConfigMap whose data is larger than this, so a larger one is
    // denied as the apiserver would deny it, before its YAML costs a parse.
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_CONFIGMAP_DATA {
        return invalid(
            &format!("{size} bytes"),
            &format!(
                "the ConfigMap's data is too large; Kubernetes stores at most {MAX_CONFIGMAP_DATA}"
            ),
        );
    }
    let Some(text) = data.get(key) else {
        return invalid(
            &keys_present(&data),
            "the allowlist key is missing: the server would keep its last good allowlist",
        );
    };
    match Allowlist::from_yaml(text) {
        Ok(a) => {
            for w in &a.warnings {
                out.warn(|| format!("allowlist: {w}"));
            }
        }
        Err(e) => invalid(&line_at_fault(text, e.line()), &e.to_string()),
    }
}

/// Keys quoted when the allowlist's is missing: a misspelt key shows.
const KEYS_NAMED: usize = 5;

/// "keys: allowlist.yml, extra.yaml", or "no keys".
fn keys_present(data: &BTreeMap<Str<'_>, Str<'_>>) -> String {
    if data.is_empty() {
        return "no keys".to_owned();
    }
    let mut keys: Vec<&str> = data.keys().take(KEYS_NAMED).map(|k| &**k).collect();
    let more = data.len().saturating_sub(keys.len());
    let more = (more > 0).then(|| format!("and {more} more"));
    keys.extend(more.as_deref());
    format!("keys: {}", keys.join(", "))
}

/// The line of `text` an error names, trimmed; a description when it names none.
fn line_at_fault(text: &str, line: Option<u64>) -> String {
    if text.trim().is_empty() {
        return "(empty)".to_owned();
    }
    line.and_then(|n| text.lines().nth(usize::try_from(n).ok()?.checked_sub(1)?))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map_or_else(|| "(the whole document)".to_owned(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use crate::policy::{self, Allowlist, AllowlistSource, Code, Env, Kind, ObjectRef, Operation};

    /// The value and message of the `EG120` a write of the allowlist's ConfigMap with
    /// `data` gets.
    fn refusal(data: serde_json::Value) -> (String, String) {
        let source = AllowlistSource {
            configmap: ObjectRef {
                namespace: "egress-guard".into(),
                name: "allowlist".into(),
            },
            key: "allowlist.yaml".into(),
        };
        let object = serde_json::value::to_raw_value(&serde_json::json!({ "data": data })).unwrap();
        let req = policy::Request {
            kind: Some(Kind::ConfigMap),
            operation: Operation::Update,
            namespace: "egress-guard",
            name: "allowlist",
            object: Some(&object),
            old_object: None,
            user: "",
            subresource: "",
        };
        let env = Env {
            allowlist_source: Some(&source),
            ..Env::default()
        };
        let d = policy::evaluate(&req, &Allowlist::default(), &env);
        let v = &d.violations[0];
        assert_eq!(
            (v.code, v.path.as_str()),
            (Code::InvalidAllowlist, "data[allowlist.yaml]")
        );
        (v.value.clone(), v.message.clone())
    }

    #[test]
    fn a_refused_allowlist_quotes_the_line_at_fault() {
        let (value, message) = refusal(serde_json::json!({
            "allowlist.yaml": "hosts: [api.github.com]\nmode: block\n"
        }));
        assert_eq!(value, "mode: block");
        assert!(message.contains("mode"), "{message}");
        let (value, _) = refusal(serde_json::json!({"allowlist.yaml": "  \n"}));
        assert_eq!(value, "(empty)");
    }

    #[test]
    fn a_missing_key_quotes_the_keys_there_are() {
        let (value, message) = refusal(serde_json::json!({"allowlist.yml": "mode: audit\n"}));
        assert_eq!(value, "keys: allowlist.yml");
        assert!(message.contains("missing"), "{message}");
        assert_eq!(refusal(serde_json::json!({})).0, "no keys");
    }
}
