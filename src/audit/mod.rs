//! `egress-guard audit`: the impact preview before enforcing. Lists the live objects of
//! every kind egress-guard judges through the Kubernetes API and judges each with the
//! same `policy::evaluate` and report as `check`, as if it were being created now.
//! With `--watch` ([`watch`]) it keeps doing so and publishes the violations as
//! PolicyReports ([`report`]).
//!
//! Objects in the namespaces the webhook never judges ([`scope`]) and in the
//! allowlist's exempt namespaces are left out, so a clean cluster audits clean.

use anyhow::Context as _;
use std::path::PathBuf;

use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DynamicObject;
use kube::{Api, Client};

use crate::args::{JudgeArgs, OutputFormat};
use crate::check::{self, DiffReport, Judge, Manifest, ObjectReport, Report};
use crate::policy::{Allowlist, Kind, ObjectRef, Skip};

pub mod live;
pub mod metrics;
pub mod publish;
pub mod report;
pub mod scope;
pub mod watch;

use scope::Scope;

/// Page size for list calls.
const PAGE: u32 = 500;

/// Runs `audit` against the cluster of the current kubeconfig; returns the exit code.
pub async fn run(args: &AuditArgs) -> anyhow::Result<u8> {
    if args.watch.watch {
        return watch::run(args).await.map(|()| 0);
    }
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

/// The scope the flags ask for: `--namespace`, and egress-guard's own namespace (that
/// of the allowlist ConfigMap, else of `--validate-configmap`).
pub fn scope(args: &AuditArgs) -> Scope {
    let own = args
        .allowlist_configmap
        .as_ref()
        .unwrap_or(&args.judge.validate_configmap);
    Scope {
        namespace: args.namespace.clone(),
        own_namespace: own.namespace.clone(),
    }
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
    let scope = scope(args);
    let mut manifests = Vec::new();
    match scope.namespace.as_deref().filter(|ns| scope.leaves_out(ns)) {
        Some(ns) => {
            eprintln!("warning: the webhook never judges namespace {ns}: nothing there is audited")
        }
        None => {
            for kind in scope::judged_kinds() {
                for obj in list_kind(&client, &scope, kind).await? {
                    let m = to_manifest(kind, obj)?;
                    if !scope.leaves_out(&m.namespace) {
                        manifests.push(m);
                    }
                }
            }
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
                .map(|m| (m, judge.evaluate(m, &allowlist)))
                .filter(|(_, d)| d.skipped != Some(Skip::ExemptNamespace))
                .map(|(m, d)| ObjectReport::new(m, &d))
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
pub async fn configmap_allowlist(
    client: &Client,
    cm: &ObjectRef,
    key: &str,
) -> anyhow::Result<Allowlist> {
    let text = configmap_text(client, cm, key).await?;
    Allowlist::from_yaml(&text).with_context(|| format!("allowlist in ConfigMap {cm}"))
}

/// The text under `key` of the ConfigMap `cm`.
pub async fn configmap_text(client: &Client, cm: &ObjectRef, key: &str) -> anyhow::Result<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &cm.namespace);
    let obj = api
        .get(&cm.name)
        .await
        .with_context(|| format!("reading ConfigMap {cm}"))?;
    obj.data
        .and_then(|mut d| d.remove(key))
        .with_context(|| format!("ConfigMap {cm} has no key {key}"))
}

/// Lists every object of one kind in `scope`, paging, at the newest version the API
/// serves.
async fn list_kind(
    client: &Client,
    scope: &Scope,
    kind: Kind,
) -> anyhow::Result<Vec<DynamicObject>> {
    // Served versions, newest first: older Istio releases lack `v1`.
    for version in kind.versions() {
        let api = scope.api(client, &scope::api_resource(kind, version));
        match list_all(&api, scope).await {
            Ok(items) => return Ok(items),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e).with_context(|| format!("listing {}", kind.plural())),
        }
    }
    // No version served: Istio's CRDs are not installed; nothing to audit.
    tracing::warn!(kind = kind.as_str(), "not served by this cluster; skipped");
    Ok(Vec::new())
}

async fn list_all(
    api: &Api<DynamicObject>,
    scope: &Scope,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let mut items = Vec::new();
    let mut params = scope.list_params().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// The object as `check` reads a manifest.
pub fn to_manifest(kind: Kind, obj: DynamicObject) -> anyhow::Result<Manifest> {
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

/// `audit` flags.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Allowlist YAML file (instead of a ConfigMap); the embedded example when no source
    /// is set. Watched for changes with --watch.
    #[arg(long, visible_alias = "allowlist-file", conflicts_with_all = ["allowlist_configmap"])]
    pub allowlist: Option<PathBuf>,
    /// ConfigMap holding the allowlist (watched with --watch).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub allowlist_configmap: Option<ObjectRef>,
    /// Key of the allowlist in the ConfigMap.
    #[arg(long, default_value = "allowlist.yaml")]
    pub allowlist_key: String,
    /// An older allowlist file: report only the objects whose verdict or violations
    /// change between it and the allowlist (exit 1 when something becomes denied).
    #[arg(long, value_name = "OLD", conflicts_with = "against_configmap")]
    pub against: Option<PathBuf>,
    /// Compare with the allowlist in this ConfigMap (the live one) instead of a file.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub against_configmap: Option<ObjectRef>,
    /// Explain, time and allowlist ConfigMap.
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Only this namespace (default: all namespaces).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Continuous audit.
    #[command(flatten)]
    pub watch: crate::audit::watch::WatchArgs,
}
