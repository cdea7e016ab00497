//! The kinds table is the one list of what egress-guard judges: the webhook rules and
//! the audit role in `deploy/` must say the same. Adding a kind to the table fails here
//! until the manifests follow, and a manifest rule for a kind the engine does not judge
//! fails too.

use std::collections::BTreeSet;

use egress_guard::policy::kind::{KINDS, entry};
use serde::Deserialize;
use serde_json::Value;

/// (entry, apiGroup, resource, operation) as the webhooks register them.
type Rule = (String, String, String, String);

fn docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn strs(v: &Value) -> impl Iterator<Item = String> + '_ {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap().to_owned())
}

/// Every (entry, group, resource, operation) the table says the webhooks receive;
/// the mutating entry is named `mutate`.
fn from_table() -> BTreeSet<Rule> {
    let mut rules = BTreeSet::new();
    for row in KINDS {
        let w = &row.webhook;
        let mut add = |entry: &str, resource: String, ops: &[&str]| {
            for op in ops {
                rules.insert((
                    entry.to_owned(),
                    row.group.to_owned(),
                    resource.clone(),
                    (*op).to_owned(),
                ));
            }
        };
        add(w.entry, row.plural.to_owned(), w.operations);
        for (sub, ops) in w.subresources {
            add(w.entry, format!("{}/{sub}", row.plural), ops);
        }
        if w.mutate {
            add("mutate", row.plural.to_owned(), w.operations);
        }
    }
    rules
}

fn from_webhooks() -> BTreeSet<Rule> {
    let mut rules = BTreeSet::new();
    for config in docs("deploy/base/webhooks.yaml") {
        let mutating = config["kind"] == "MutatingWebhookConfiguration";
        for hook in config["webhooks"].as_array().unwrap() {
            let name = hook["name"].as_str().unwrap();
            let entry = if mutating { "mutate" } else { name };
            for rule in hook["rules"].as_array().unwrap() {
                for group in strs(&rule["apiGroups"]) {
                    for resource in strs(&rule["resources"]) {
                        for op in strs(&rule["operations"]) {
                            rules.insert((entry.to_owned(), group.clone(), resource.clone(), op));
                        }
                    }
                }
            }
        }
    }
    rules
}

#[test]
fn the_webhook_rules_are_the_kinds_table() {
    let (table, shipped) = (from_table(), from_webhooks());
    let missing: Vec<_> = table.difference(&shipped).collect();
    let extra: Vec<_> = shipped.difference(&table).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "deploy/base/webhooks.yaml differs from the kinds table\n  not registered: {missing:?}\n  registered but not in the table: {extra:?}"
    );
    // Every entry the table names exists.
    for e in [
        entry::CONFIG,
        entry::ENDPOINTS,
        entry::WORKLOADS,
        entry::ALLOWLIST,
    ] {
        assert!(shipped.iter().any(|r| r.0 == e), "{e} is not shipped");
    }
}

#[test]
fn the_audit_role_lists_every_judged_kind() {
    let role = docs("deploy/base/rbac.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "egress-guard-audit")
        .expect("the egress-guard-audit ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let verbs: BTreeSet<String> = strs(&rule["verbs"]).collect();
        assert!(verbs.contains("list") && verbs.contains("get"), "{rule}");
        for group in strs(&rule["apiGroups"]) {
            for resource in strs(&rule["resources"]) {
                granted.insert((group.clone(), resource));
            }
        }
    }
    // The allowlist ConfigMap is read through its own Role, by name.
    let wanted: BTreeSet<(String, String)> = KINDS
        .iter()
        .filter(|r| r.name != "ConfigMap")
        .map(|r| (r.group.to_owned(), r.plural.to_owned()))
        .collect();
    assert_eq!(
        granted, wanted,
        "deploy/base/rbac.yaml egress-guard-audit vs the kinds table"
    );
}

/// `egress-guard schema --kinds` prints the table the checks outside Rust read
/// (`deploy/check_security.py --kinds`): every row, with the names the webhooks use.
#[test]
fn schema_kinds_prints_the_table() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args(["schema", "--kinds"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), KINDS.len());
    for (row, kind) in rows.iter().zip(KINDS) {
        assert_eq!(row["group"], kind.group);
        assert_eq!(row["name"], kind.name);
        assert_eq!(row["plural"], kind.plural);
        assert_eq!(row["webhook"]["entry"], kind.webhook.entry);
    }
}
