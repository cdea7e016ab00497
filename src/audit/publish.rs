//! Writes the PolicyReports `audit --watch` builds: server-side apply when a report's
//! content changed, delete when its namespace became clean, nothing otherwise. What was
//! written is remembered as one hash per namespace, read back from the reports found at
//! start-up, so a restart does not rewrite them either.

use std::collections::BTreeMap;

use anyhow::Context as _;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};

use super::metrics::AuditMetrics;
use super::report::{self, PolicyReport};
use super::scope::Scope;

/// The field manager of the reports (server-side apply).
pub const FIELD_MANAGER: &str = "egress-guard-audit";

/// The `policyreports` resource.
pub fn resource() -> ApiResource {
    let (group, version) = report::API_VERSION
        .split_once('/')
        .unwrap_or(("wgpolicyk8s.io", "v1alpha2"));
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: report::API_VERSION.to_owned(),
        kind: "PolicyReport".to_owned(),
        plural: "policyreports".to_owned(),
    }
}

/// Writes reports and remembers what it wrote.
pub struct Publisher {
    client: Client,
    ar: ApiResource,
    /// Namespace → content hash of the report there.
    written: BTreeMap<String, String>,
    metrics: AuditMetrics,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("written", &self.written.len())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Reads the reports already written in `scope` (egress-guard's label), so that only
    /// changes are written from here on. Fails with instructions when the cluster does
    /// not serve PolicyReports.
    pub async fn start(
        client: Client,
        scope: &Scope,
        metrics: AuditMetrics,
    ) -> anyhow::Result<Self> {
        let ar = resource();
        let api = scope.api(&client, &ar);
        let (key, value) = report::MANAGED_BY;
        let mut params = ListParams::default()
            .labels(&format!("{key}={value}"))
            .limit(500);
        let mut written = BTreeMap::new();
        loop {
            let page = match api.list(&params).await {
                Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
                    "the cluster does not serve {} PolicyReports: install their CRD (with Policy Reporter or Kyverno, or `kubectl apply -k deploy/audit-watch/crd`)",
                    report::API_VERSION
                ),
                r => r.context("listing egress-guard's PolicyReports")?,
            };
            for r in page
                .items
                .iter()
                .filter(|r| r.metadata.name.as_deref() == Some(report::NAME))
            {
                let hash = r
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(report::CONTENT_HASH))
                    .cloned()
                    .unwrap_or_default();
                if let Some(ns) = &r.metadata.namespace {
                    written.insert(ns.clone(), hash);
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        Ok(Self {
            client,
            ar,
            written,
            metrics,
        })
    }

    /// The namespaces that have a report now.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.written.keys().map(String::as_str)
    }

    /// Brings the report of `ns` to `report` (`None`: no report), writing only if that
    /// changes it.
    pub async fn publish(
        &mut self,
        ns: &str,
        report: Option<PolicyReport>,
    ) -> Result<(), kube::Error> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &self.ar);
        match report {
            Some(r) => {
                if self.written.get(ns).map(String::as_str) == Some(r.content_hash()) {
                    return Ok(());
                }
                let params = PatchParams::apply(FIELD_MANAGER).force();
                let result = api.patch(report::NAME, &params, &Patch::Apply(&r)).await;
                self.metrics.record_write("apply", result.is_ok());
                result?;
                tracing::info!(
                    namespace = ns,
                    fail = r.summary.fail,
                    warn = r.summary.warn,
                    "PolicyReport written"
                );
                self.written
                    .insert(ns.to_owned(), r.content_hash().to_owned());
            }
            None => {
                if !self.written.contains_key(ns) {
                    return Ok(());
                }
                let result = match api.delete(report::NAME, &DeleteParams::default()).await {
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    r => r.map(|_| ()),
                };
                self.metrics.record_write("delete", result.is_ok());
                result?;
                tracing::info!(namespace = ns, "namespace clean: PolicyReport deleted");
                self.written.remove(ns);
            }
        }
        Ok(())
    }
}
