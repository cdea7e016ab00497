//! What the server registers: the webhook configurations of `--register-webhooks`, made
//! to call this server (its namespace, or a URL), to trust the CA it serves with, and to
//! belong to an owner whose deletion removes them. Pure: no I/O.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

/// The label on every configuration the server registers.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "egress-guard");
/// The label naming the install (the server's namespace) a configuration belongs to:
/// `uninstall` deletes by it, and two installs never remove each other's.
pub const INSTANCE: &str = "egress-guard.io/instance";

/// The namespace label the webhooks' own-namespace exclusion is written with.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// One webhook configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Configuration {
    /// A ValidatingWebhookConfiguration.
    Validating(ValidatingWebhookConfiguration),
    /// A MutatingWebhookConfiguration.
    Mutating(MutatingWebhookConfiguration),
}

/// Where the apiserver is to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The Service the file names, in this namespace (the server's own).
    Service {
        /// The server's namespace.
        namespace: String,
    },
    /// A base URL (out-of-cluster or development): each entry's path is appended.
    Url(String),
}

/// A Service entries call: (namespace, name).
pub type ServiceName = (String, String);

impl Configuration {
    /// `ValidatingWebhookConfiguration/<name>`.
    pub fn describe(&self) -> String {
        match self {
            Self::Validating(c) => format!("ValidatingWebhookConfiguration/{}", name(&c.metadata)),
            Self::Mutating(c) => format!("MutatingWebhookConfiguration/{}", name(&c.metadata)),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        name(self.metadata())
    }

    fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Validating(c) => &c.metadata,
            Self::Mutating(c) => &c.metadata,
        }
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Validating(c) => &mut c.metadata,
            Self::Mutating(c) => &mut c.metadata,
        }
    }

    /// Every entry's client configuration and namespace selector.
    fn entries_mut(&mut self) -> Vec<(&mut WebhookClientConfig, &mut Option<LabelSelector>)> {
        match self {
            Self::Validating(c) => c
                .webhooks
                .iter_mut()
                .flatten()
                .map(|w| (&mut w.client_config, &mut w.namespace_selector))
                .collect(),
            Self::Mutating(c) => c
                .webhooks
                .iter_mut()
                .flatten()
                .map(|w| (&mut w.client_config, &mut w.namespace_selector))
                .collect(),
        }
    }

    /// Every entry's client configuration, with the entry's name.
    pub fn client_configs(&self) -> Vec<(&str, &WebhookClientConfig)> {
        match self {
            Self::Validating(c) => c
                .webhooks
                .iter()
                .flatten()
                .map(|w| (w.name.as_str(), &w.client_config))
                .collect(),
            Self::Mutating(c) => c
                .webhooks
                .iter()
                .flatten()
                .map(|w| (w.name.as_str(), &w.client_config))
                .collect(),
        }
    }
}

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// Reads the configurations of a `--register-webhooks` file: only the two webhook
/// configuration kinds, each named, with at least one entry.
pub fn parse(text: &str) -> Result<Vec<Configuration>, String> {
    let docs: Vec<serde_json::Value> =
        crate::policy::yaml::documents(text, crate::policy::yaml::manifest_limits(text.len()))?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let kind = doc
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_owned();
        let config = match kind.as_str() {
            "ValidatingWebhookConfiguration" => serde_json::from_value(doc)
                .map(Configuration::Validating)
                .map_err(|e| format!("document {}: {e}", i + 1))?,
            "MutatingWebhookConfiguration" => serde_json::from_value(doc)
                .map(Configuration::Mutating)
                .map_err(|e| format!("document {}: {e}", i + 1))?,
            other => {
                return Err(format!(
                    "document {}: kind {other:?}: only ValidatingWebhookConfiguration and \
                     MutatingWebhookConfiguration are registered",
                    i + 1
                ));
            }
        };
        if config.name().is_empty() {
            return Err(format!("document {}: {} has no name", i + 1, kind));
        }
        if config.client_configs().is_empty() {
            return Err(format!("{} has no webhooks", config.describe()));
        }
        out.push(config);
    }
    if out.is_empty() {
        return Err("no webhook configuration in the file".into());
    }
    Ok(out)
}

/// The Services the entries call, as the file names them (before [`render`]).
pub fn services(configs: &[Configuration]) -> Vec<ServiceName> {
    let mut out: Vec<ServiceName> = configs
        .iter()
        .flat_map(|c| c.client_configs())
        .filter_map(|(_, cc)| cc.service.as_ref())
        .map(|s| (s.namespace.clone(), s.name.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The configurations as registered: every entry calls `target` and trusts `ca_bundle`;
/// the exclusion of the file's service namespace follows the server to its namespace (an
/// install elsewhere must still spare its own namespace, and judge the old one); each
/// carries [`MANAGED_BY`], `instance` and `owner`.
pub fn render(
    configs: &[Configuration],
    target: &Target,
    instance: &str,
    ca_bundle: &[u8],
    owner: Option<&OwnerReference>,
) -> Vec<Configuration> {
    let mut out = configs.to_vec();
    for config in &mut out {
        for (cc, selector) in config.entries_mut() {
            cc.ca_bundle = Some(ByteString(ca_bundle.to_vec()));
            match target {
                Target::Url(base) => {
                    let path = cc
                        .service
                        .take()
                        .and_then(|s| s.path)
                        .unwrap_or_else(|| "/validate".into());
                    cc.url = Some(format!("{}{path}", base.trim_end_matches('/')));
                }
                Target::Service { namespace } => {
                    if let Some(service) = &mut cc.service {
                        let from = std::mem::replace(&mut service.namespace, namespace.clone());
                        retarget_exclusion(selector, &from, namespace);
                    }
                }
            }
        }
        let meta = config.metadata_mut();
        let labels = meta.labels.get_or_insert_with(Default::default);
        labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
        labels.insert(INSTANCE.into(), instance.into());
        meta.owner_references = owner.map(|o| vec![o.clone()]);
        // Server-side apply refuses these; a file exported from a cluster may carry them.
        meta.resource_version = None;
        meta.uid = None;
        meta.managed_fields = None;
        meta.creation_timestamp = None;
    }
    out
}

/// In `In` and `NotIn` expressions on the namespace name, `from` becomes `to`: the
/// entries that spare the install's namespace, and the one that judges only it (the
/// allowlist ConfigMap's), follow the install.
fn retarget_exclusion(selector: &mut Option<LabelSelector>, from: &str, to: &str) {
    if from == to {
        return;
    }
    let expressions = selector
        .as_mut()
        .and_then(|s| s.match_expressions.as_mut())
        .into_iter()
        .flatten()
        .filter(|e| e.key == NAME_LABEL && matches!(e.operator.as_str(), "In" | "NotIn"));
    for e in expressions {
        for v in e.values.iter_mut().flatten() {
            if v == from {
                *v = to.to_owned();
            }
        }
    }
}

/// Entries of `live` that miss `ca_bundle`: what preflight reports.
pub fn missing_ca(live: &[Configuration], ca_bundle: Option<&[u8]>) -> Vec<String> {
    live.iter()
        .flat_map(|c| {
            let what = c.describe();
            c.client_configs()
                .into_iter()
                .filter(|(_, cc)| match (&cc.ca_bundle, ca_bundle) {
                    (None, _) => true,
                    (Some(b), _) if b.0.is_empty() => true,
                    (Some(b), Some(want)) => b.0 != want,
                    (Some(_), None) => false,
                })
                .map(move |(entry, _)| format!("{what} entry {entry}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../deploy/base/webhooks.yaml");

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "ClusterRole".into(),
            name: "egress-guard-register".into(),
            uid: "0000-1111".into(),
            ..Default::default()
        }
    }

    fn value(c: &Configuration) -> serde_json::Value {
        match c {
            Configuration::Validating(c) => serde_json::to_value(c).unwrap(),
            Configuration::Mutating(c) => serde_json::to_value(c).unwrap(),
        }
    }

    #[test]
    fn the_shipped_file_parses_into_both_configurations() {
        let configs = parse(SHIPPED).unwrap();
        let names: Vec<String> = configs.iter().map(Configuration::describe).collect();
        assert_eq!(
            names,
            [
                "ValidatingWebhookConfiguration/egress-guard",
                "MutatingWebhookConfiguration/egress-guard"
            ]
        );
        assert_eq!(
            services(&configs),
            [("egress-guard".to_owned(), "egress-guard".to_owned())]
        );
    }

    #[test]
    fn every_entry_gets_the_ca_the_namespace_and_the_owner() {
        let configs = parse(SHIPPED).unwrap();
        let target = Target::Service {
            namespace: "platform-guard".into(),
        };
        let out = render(&configs, &target, "platform-guard", b"PEM", Some(&owner()));
        let mut entries = 0;
        for c in &out {
            let v = value(c);
            assert_eq!(v["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
            assert_eq!(v["metadata"]["labels"][INSTANCE], "platform-guard");
            assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "0000-1111");
            for w in v["webhooks"].as_array().unwrap() {
                entries += 1;
                let cc = &w["clientConfig"];
                // ByteString serialises as base64.
                assert_eq!(cc["caBundle"], "UEVN", "{}", w["name"]);
                assert_eq!(cc["service"]["namespace"], "platform-guard");
                assert_eq!(cc["service"]["name"], "egress-guard");
                let named = w["namespaceSelector"]["matchExpressions"][0]["values"].to_string();
                assert!(
                    named.contains("\"platform-guard\"") && !named.contains("\"egress-guard\""),
                    "{}: {named}",
                    w["name"]
                );
            }
        }
        assert_eq!(entries, 5, "four validating entries and one mutating");
        assert!(missing_ca(&out, Some(b"PEM")).is_empty());
        assert_eq!(missing_ca(&configs, None).len(), 5);
        assert_eq!(missing_ca(&out, Some(b"OTHER")).len(), 5);
    }

    #[test]
    fn a_url_target_replaces_the_service_and_keeps_each_path() {
        let configs = parse(SHIPPED).unwrap();
        let out = render(
            &configs,
            &Target::Url("https://127.0.0.1:8443/".into()),
            "dev",
            b"x",
            None,
        );
        let urls: Vec<String> = out
            .iter()
            .flat_map(|c| {
                c.client_configs()
                    .into_iter()
                    .map(|(_, cc)| {
                        assert!(cc.service.is_none());
                        cc.url.clone().unwrap()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(urls.len(), 5);
        assert!(
            urls[..4]
                .iter()
                .all(|u| u == "https://127.0.0.1:8443/validate"),
            "{urls:?}"
        );
        assert_eq!(urls[4], "https://127.0.0.1:8443/mutate");
        assert!(value(&out[0])["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn other_kinds_and_empty_files_are_refused() {
        let e = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap_err();
        assert!(e.contains("kind \"ConfigMap\""), "{e}");
        assert!(parse("").unwrap_err().contains("no webhook configuration"));
        let e = parse(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: x}\n",
        )
        .unwrap_err();
        assert!(e.contains("has no webhooks"), "{e}");
        let e = parse("kind: MutatingWebhookConfiguration\nwebhooks: 3\n").unwrap_err();
        assert!(e.starts_with("document 1:"), "{e}");
    }
}
