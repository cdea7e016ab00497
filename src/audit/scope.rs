//! What `audit` reads: every kind the webhook judges, at the newest version the cluster
//! serves, in the namespaces the webhook judges. Shared by the one-shot audit and
//! `--watch`, so both leave out the same namespaces.

use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client};

use crate::policy::Kind;

/// Kubernetes' own namespaces: no webhook entry of the shipped install judges workloads
/// there, and the control plane's pods would only be noise (host network, no sidecar).
/// With egress-guard's own namespace and the allowlist's `exemptNamespaces`, these are
/// the namespaces `audit` leaves out.
pub const NEVER_JUDGED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Every kind `audit` lists: all the webhook judges but ConfigMaps (the allowlist's own
/// ConfigMap is judged when it is written, never listed).
pub fn judged_kinds() -> impl Iterator<Item = Kind> {
    Kind::ALL.into_iter().filter(|k| *k != Kind::ConfigMap)
}

/// The API resource of `kind` at `version`.
pub fn api_resource(kind: Kind, version: &str) -> ApiResource {
    let group = kind.group();
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.as_str().to_owned(),
        plural: kind.plural().to_owned(),
    }
}

/// Where `audit` looks: one namespace, or every namespace but those left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Only this namespace (`--namespace`).
    pub namespace: Option<String>,
    /// egress-guard's own namespace, which the webhook never judges.
    pub own_namespace: String,
}

impl Scope {
    /// True for a namespace the webhook never judges (the allowlist's exempt namespaces
    /// aside, which the decision itself skips).
    pub fn leaves_out(&self, ns: &str) -> bool {
        NEVER_JUDGED.contains(&ns) || ns == self.own_namespace
    }

    /// The namespaces left out, as a field selector (`None` within one namespace), so
    /// the apiserver never sends their objects at all.
    pub fn field_selector(&self) -> Option<String> {
        if self.namespace.is_some() {
            return None;
        }
        let own = std::iter::once(self.own_namespace.as_str());
        let terms: Vec<String> = NEVER_JUDGED
            .into_iter()
            .chain(own.filter(|o| !NEVER_JUDGED.contains(o)))
            .map(|ns| format!("metadata.namespace!={ns}"))
            .collect();
        Some(terms.join(","))
    }

    /// The API for `ar` within this scope.
    pub fn api(&self, client: &Client, ar: &ApiResource) -> Api<DynamicObject> {
        match &self.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
            None => Api::all_with(client.clone(), ar),
        }
    }

    /// List parameters that leave out what this scope does.
    pub fn list_params(&self) -> ListParams {
        match self.field_selector() {
            Some(f) => ListParams::default().fields(&f),
            None => ListParams::default(),
        }
    }

    /// The newest version of `kind` the cluster serves, found with one list of at most
    /// one object per version tried; `None` when no version is served (Istio's CRDs
    /// not installed). Other errors (forbidden, unreachable) are returned.
    pub async fn served(
        &self,
        client: &Client,
        kind: Kind,
    ) -> Result<Option<ApiResource>, kube::Error> {
        for version in kind.versions() {
            let ar = api_resource(kind, version);
            match self
                .api(client, &ar)
                .list(&self.list_params().limit(1))
                .await
            {
                Ok(_) => return Ok(Some(ar)),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everywhere() -> Scope {
        Scope {
            namespace: None,
            own_namespace: "egress-guard".to_owned(),
        }
    }

    #[test]
    fn leaves_out_kubernetes_own_namespaces_and_egress_guards() {
        let s = everywhere();
        for ns in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "egress-guard",
        ] {
            assert!(s.leaves_out(ns), "{ns}");
        }
        for ns in ["default", "istio-system", "team-a", "kube-systems"] {
            assert!(!s.leaves_out(ns), "{ns}");
        }
        assert_eq!(
            s.field_selector().as_deref(),
            Some(
                "metadata.namespace!=kube-system,metadata.namespace!=kube-public,metadata.namespace!=kube-node-lease,metadata.namespace!=egress-guard"
            )
        );
        let one = Scope {
            namespace: Some("team-a".to_owned()),
            ..everywhere()
        };
        assert_eq!(one.field_selector(), None);
        let in_kube_system = Scope {
            own_namespace: "kube-system".to_owned(),
            ..everywhere()
        };
        assert_eq!(
            in_kube_system
                .field_selector()
                .map(|f| f.matches("!=").count()),
            Some(3),
            "no namespace is named twice"
        );
    }

    #[test]
    fn every_kind_but_configmaps_is_listed() {
        let kinds: Vec<Kind> = judged_kinds().collect();
        assert_eq!(kinds.len(), Kind::ALL.len() - 1);
        assert!(!kinds.contains(&Kind::ConfigMap));
        let ar = api_resource(Kind::ServiceEntry, "v1beta1");
        assert_eq!(ar.api_version, "networking.istio.io/v1beta1");
        assert_eq!(api_resource(Kind::Pod, "v1").api_version, "v1");
    }

    /// Every namespace that no entry of the shipped webhooks judges is left out, and
    /// Kubernetes' own namespaces are skipped by the workloads entry, whose objects are
    /// most of what they hold.
    #[test]
    fn agrees_with_the_shipped_webhook_entries() {
        use serde::Deserialize as _;
        let yaml = include_str!("../../deploy/base/webhooks.yaml");
        let mut skipped_by_all: Option<Vec<String>> = None;
        let mut workloads = Vec::new();
        for doc in serde_norway::Deserializer::from_str(yaml) {
            let v = serde_json::Value::deserialize(doc).unwrap();
            for w in v["webhooks"].as_array().unwrap() {
                let exprs = w["namespaceSelector"]["matchExpressions"]
                    .as_array()
                    .unwrap();
                let not_in: Vec<String> = exprs
                    .iter()
                    .filter(|e| e["operator"] == "NotIn")
                    .flat_map(|e| e["values"].as_array().unwrap().iter())
                    .map(|n| n.as_str().unwrap().to_owned())
                    .collect();
                if exprs.iter().any(|e| e["operator"] == "In") {
                    continue; // the allowlist entry: one namespace only
                }
                if w["name"] == "workloads.validate.egress-guard.io" {
                    workloads = not_in.clone();
                }
                skipped_by_all = Some(match skipped_by_all {
                    None => not_in,
                    Some(all) => all.into_iter().filter(|n| not_in.contains(n)).collect(),
                });
            }
        }
        let s = everywhere();
        let skipped_by_all = skipped_by_all.unwrap();
        assert!(!skipped_by_all.is_empty());
        for ns in &skipped_by_all {
            assert!(s.leaves_out(ns), "{ns} is judged by no webhook entry");
        }
        for ns in NEVER_JUDGED {
            assert!(workloads.iter().any(|w| w == ns), "{ns}");
        }
    }
}
