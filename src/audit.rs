//! `egress-guard audit`: the impact preview before enforcing. Lists the live objects of
//! every kind egress-guard judges through the Kubernetes API and judges each with the
//! same `policy::evaluate` and report as `check`, as if it were being created now.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client};

use crate::check::{self, DiffReport, Judge, Manifest, ObjectReport, Report};
use crate::cli::AuditArgs;
use crate::policy::{Allowlist, Kind, ObjectRef};

/// Page size for list calls.
const PAGE: u32 = 500;

/// Runs `audit` against the cluster of the current kubeconfig; returns the exit code.
pub async fn run(args: &AuditArgs) -> anyhow::Result<u8> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (kubeconfig or in-cluster config)")?;
    let (text, code) = match audit(client, args).await? {
        Audited::Report(r) => (r.render(args.output), r.exit_code()),
        Audited::Diff(d) => (d.render(args.output), d.exit_code()),
    };
    print!("{text}");
    Ok(code)
}

/// What `audit` found: verdicts, or with `--against`, what an allowlist change does.
#[derive(Debug)]
pub enum Audited {
    /// Every object's verdict under the allowlist.
    Report(Report),
    /// The objects whose judgement changes between the old and the new allowlist.
    Diff(DiffReport),
}

/// Judges every object of every kind egress-guard judges that `client` can list.
pub async fn audit(client: Client, args: &AuditArgs) -> anyhow::Result<Audited> {
    let judge = Judge::new(&args.judge, &args.allowlist_key);
    let allowlist = load_allowlist(&client, args).await?;
    let old = match (&args.against, &args.against_configmap) {
        (Some(path), _) => Some(check::load_allowlist(Some(path))?),
        (None, Some(cm)) => Some(configmap_allowlist(&client, cm, &args.allowlist_key).await?),
        (None, None) => None,
    };
    let mut manifests = Vec::new();
    // The allowlist ConfigMap is judged when it is written, not listed here.
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::ConfigMap) {
        for obj in list_kind(&client, kind, args.namespace.as_deref()).await? {
            manifests.push(to_manifest(kind, obj)?);
        }
    }
    Ok(match old {
        Some(old) => Audited::Diff(DiffReport::new(
            manifests
                .iter()
                .map(|m| (m, judge.evaluate(m, &old), judge.evaluate(m, &allowlist))),
        )),
        None => Audited::Report(Report::new(
            manifests
                .iter()
                .map(|m| ObjectReport::new(m, &judge.evaluate(m, &allowlist)))
                .collect(),
        )),
    })
}

async fn load_allowlist(client: &Client, args: &AuditArgs) -> anyhow::Result<Allowlist> {
    let allowlist = match &args.allowlist_configmap {
        Some(cm) => configmap_allowlist(client, cm, &args.allowlist_key).await?,
        None => check::load_allowlist(args.allowlist.as_deref())?,
    };
    for w in &allowlist.warnings {
        eprintln!("warning: allowlist: {w}");
    }
    Ok(allowlist)
}

/// Reads and parses the allowlist in a ConfigMap.
async fn configmap_allowlist(
    client: &Client,
    cm: &ObjectRef,
    key: &str,
) -> anyhow::Result<Allowlist> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &cm.namespace);
    let obj = api
        .get(&cm.name)
        .await
        .with_context(|| format!("reading ConfigMap {cm}"))?;
    let text = obj
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .with_context(|| format!("ConfigMap {cm} has no key {key}"))?;
    Allowlist::from_yaml(text).with_context(|| format!("allowlist in ConfigMap {cm}"))
}

/// Lists every object of one kind, paging, at the newest version the API serves.
async fn list_kind(
    client: &Client,
    kind: Kind,
    namespace: Option<&str>,
) -> anyhow::Result<Vec<DynamicObject>> {
    let mut last_err = None;
    // Served versions, newest first: older Istio releases lack `v1`.
    for version in kind.versions() {
        let group = kind.group();
        let ar = ApiResource {
            group: group.to_owned(),
            version: (*version).to_owned(),
            api_version: if group.is_empty() {
                (*version).to_owned()
            } else {
                format!("{group}/{version}")
            },
            kind: kind.as_str().to_owned(),
            plural: kind.plural().to_owned(),
        };
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        match list_all(&api).await {
            Ok(items) => return Ok(items),
            Err(kube::Error::Api(s)) if s.code == 404 => last_err = Some(kube::Error::Api(s)),
            Err(e) => return Err(e).with_context(|| format!("listing {}", kind.plural())),
        }
    }
    match last_err {
        // No version served: Istio's CRDs are not installed; nothing to audit.
        Some(_) => {
            tracing::warn!(kind = kind.as_str(), "not served by this cluster; skipped");
            Ok(Vec::new())
        }
        None => Ok(Vec::new()),
    }
}

async fn list_all(api: &Api<DynamicObject>) -> Result<Vec<DynamicObject>, kube::Error> {
    let mut items = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

fn to_manifest(kind: Kind, obj: DynamicObject) -> anyhow::Result<Manifest> {
    let object = serde_json::value::to_raw_value(&obj)?;
    let api_version = obj.types.as_ref().map_or_else(
        || match kind.group() {
            "" => "v1".to_owned(),
            group => format!("{group}/{}", kind.versions().first().unwrap_or(&"v1")),
        },
        |t| t.api_version.clone(),
    );
    Ok(Manifest {
        source: "cluster".to_owned(),
        api_version,
        kind: kind.as_str().to_owned(),
        namespace: obj.metadata.namespace.unwrap_or_default(),
        name: obj.metadata.name.unwrap_or_default(),
        object,
    })
}
