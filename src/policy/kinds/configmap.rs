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
    let mut invalid = |message: &str| {
        out.violation(Code::InvalidAllowlist, &path, "", message);
    };
    let data = match serde_json::from_str::<Data>(object.get()) {
        Ok(d) => d.data.unwrap_or_default(),
        Err(e) => return invalid(&format!("the ConfigMap does not decode: {e}")),
    };
    // Kubernetes stores no ConfigMap whose data is larger than this, so a larger one is
    // denied as the apiserver would deny it, before its YAML costs a parse.
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_CONFIGMAP_DATA {
        return invalid(&format!(
            "the ConfigMap's data is {size} bytes; Kubernetes stores at most \
             {MAX_CONFIGMAP_DATA}"
        ));
    }
    let Some(text) = data.get(key) else {
        return invalid(
            "the allowlist key is missing: the server would keep its last good allowlist",
        );
    };
    match Allowlist::from_yaml(text) {
        Ok(a) => {
            for w in &a.warnings {
                out.warn(|| format!("allowlist: {w}"));
            }
        }
        Err(e) => invalid(&e.to_string()),
    }
}
