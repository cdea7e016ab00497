//! The server registers its own webhook configurations, and only once it can answer
//! them: a fail-closed configuration that exists before a ready server would block every
//! write it matches. `uninstall` removes them before the server goes; an ownerReference
//! lets the garbage collector remove them when the install is deleted in any order.

pub mod desired;
pub mod preflight;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource as _};

use crate::metrics::Metrics;
use crate::source::PolicyStore;
pub use desired::{Configuration, INSTANCE, MANAGED_BY, Target};

/// The field manager of every apply: `kubectl get --show-managed-fields` names it.
const FIELD_MANAGER: &str = "egress-guard";
/// How often the CA file is looked at for a change between full re-applies.
const CA_POLL: Duration = Duration::from_secs(5);
/// How often a server that is not ready yet (allowlist, endpoints) looks again.
const WAIT: Duration = Duration::from_secs(2);

/// What `serve --register-webhooks` registers, and how.
#[derive(Debug, Clone)]
pub struct Registrar {
    /// The configurations as the file writes them.
    pub configs: Vec<Configuration>,
    /// Where the apiserver is to call.
    pub target: Target,
    /// The install the configurations belong to (the server's namespace).
    pub instance: String,
    /// The CA bundle (PEM) put on every entry; re-read, so a rotated CA is registered.
    pub ca_bundle: PathBuf,
    /// The ClusterRole the configurations belong to, if any.
    pub owner: Option<String>,
    /// Re-apply at least this often: a configuration edited or deleted by hand returns.
    pub interval: Duration,
}

impl Registrar {
    /// Reads the `--register-webhooks` file.
    pub fn load(
        path: &std::path::Path,
        target: Target,
        instance: String,
        ca_bundle: PathBuf,
        owner: Option<String>,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --register-webhooks {}", path.display()))?;
        let configs = desired::parse(&text)
            .map_err(|e| anyhow::anyhow!("--register-webhooks {}: {e}", path.display()))?;
        Ok(Self {
            configs,
            target,
            instance,
            ca_bundle,
            owner,
            interval,
        })
    }

    /// The Services whose endpoints must be ready before the configurations point at them.
    fn services(&self) -> Vec<desired::ServiceName> {
        match &self.target {
            Target::Url(_) => Vec::new(),
            Target::Service { namespace } => desired::services(&self.configs)
                .into_iter()
                .map(|(_, name)| (namespace.clone(), name))
                .collect(),
        }
    }
}

/// Registers once the server is ready, then keeps the registration current. Never
/// returns; errors are logged, counted and retried.
pub async fn run(client: Client, reg: Registrar, store: Arc<PolicyStore>, metrics: Metrics) {
    let mut last: Option<(Vec<u8>, Instant)> = None;
    let mut waiting_logged = false;
    loop {
        match step(&client, &reg, &store, &mut last).await {
            Ok(Step::Registered) => {
                metrics.record_registration(true);
                waiting_logged = false;
            }
            Ok(Step::Current) => {}
            Ok(Step::Waiting(why)) => {
                if !waiting_logged {
                    tracing::info!("webhook configurations not registered yet: {why}");
                    waiting_logged = true;
                }
                tokio::time::sleep(WAIT).await;
                continue;
            }
            Err(e) => {
                metrics.record_registration(false);
                tracing::warn!(error = %format!("{e:#}"), "registering the webhook configurations failed; retrying");
                last = None;
                tokio::time::sleep(WAIT).await;
                continue;
            }
        }
        tokio::time::sleep(CA_POLL).await;
    }
}

enum Step {
    Registered,
    Current,
    Waiting(String),
}

async fn step(
    client: &Client,
    reg: &Registrar,
    store: &PolicyStore,
    last: &mut Option<(Vec<u8>, Instant)>,
) -> anyhow::Result<Step> {
    if store.current().is_none() {
        return Ok(Step::Waiting("no valid allowlist loaded".into()));
    }
    let ca = tokio::fs::read(&reg.ca_bundle)
        .await
        .with_context(|| format!("reading the CA bundle {}", reg.ca_bundle.display()))?;
    anyhow::ensure!(
        !ca.is_empty(),
        "the CA bundle {} is empty",
        reg.ca_bundle.display()
    );
    if let Some((applied, at)) = last
        && *applied == ca
        && at.elapsed() < reg.interval
    {
        return Ok(Step::Current);
    }
    for (namespace, name) in reg.services() {
        if !endpoints_ready(client, &namespace, &name).await? {
            return Ok(Step::Waiting(format!(
                "no ready endpoint behind Service {namespace}/{name}"
            )));
        }
    }
    let owner = match &reg.owner {
        Some(name) => Some(owner_reference(client, name).await?),
        None => None,
    };
    let rendered = desired::render(
        &reg.configs,
        &reg.target,
        &reg.instance,
        &ca,
        owner.as_ref(),
    );
    apply(client, &rendered).await?;
    if last.as_ref().is_none_or(|(applied, _)| *applied != ca) {
        let names: Vec<String> = rendered.iter().map(Configuration::describe).collect();
        tracing::info!(configurations = %names.join(", "), "webhook configurations registered");
    }
    *last = Some((ca, Instant::now()));
    Ok(Step::Registered)
}

/// Server-side applies every configuration (creating it if absent).
pub async fn apply(client: &Client, configs: &[Configuration]) -> anyhow::Result<()> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for config in configs {
        let name = config.name();
        let result = match config {
            Configuration::Validating(c) => {
                Api::<ValidatingWebhookConfiguration>::all(client.clone())
                    .patch(name, &params, &Patch::Apply(c))
                    .await
                    .map(drop)
            }
            Configuration::Mutating(c) => Api::<MutatingWebhookConfiguration>::all(client.clone())
                .patch(name, &params, &Patch::Apply(c))
                .await
                .map(drop),
        };
        result.with_context(|| format!("applying {}", config.describe()))?;
    }
    Ok(())
}

/// Whether some EndpointSlice of the Service has an endpoint that is ready (or does not
/// say: an unset `ready` means ready).
async fn endpoints_ready(client: &Client, namespace: &str, service: &str) -> anyhow::Result<bool> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .with_context(|| format!("listing the EndpointSlices of Service {namespace}/{service}"))?;
    Ok(slices.items.iter().any(|s| {
        s.endpoints
            .iter()
            .any(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
    }))
}

/// An ownerReference to the ClusterRole `name`, by its current UID.
async fn owner_reference(client: &Client, name: &str) -> anyhow::Result<OwnerReference> {
    let role = Api::<ClusterRole>::all(client.clone())
        .get(name)
        .await
        .with_context(|| format!("reading the owner ClusterRole {name}"))?;
    let uid = role
        .metadata
        .uid
        .clone()
        .with_context(|| format!("ClusterRole {name} has no uid"))?;
    Ok(OwnerReference {
        api_version: ClusterRole::api_version(&()).into_owned(),
        kind: ClusterRole::kind(&()).into_owned(),
        name: name.to_owned(),
        uid,
        ..Default::default()
    })
}

/// `egress-guard uninstall`: first the binding that lets the server register (so no
/// running replica puts the configurations back), then every configuration the install
/// `instance` registered. Returns what was deleted.
pub async fn uninstall(
    client: &Client,
    instance: &str,
    binding: &str,
) -> anyhow::Result<Vec<String>> {
    let mut deleted = Vec::new();
    let dp = DeleteParams::default();
    match Api::<ClusterRoleBinding>::all(client.clone())
        .delete(binding, &dp)
        .await
    {
        Ok(_) => deleted.push(format!("ClusterRoleBinding/{binding}")),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            return Err(e).with_context(|| format!("deleting ClusterRoleBinding {binding}"));
        }
    }
    let selector = ListParams::default().labels(&format!(
        "{}={},{INSTANCE}={instance}",
        MANAGED_BY.0, MANAGED_BY.1
    ));
    for config in live(client, &selector).await? {
        let name = config.name();
        match &config {
            Configuration::Validating(_) => {
                delete_ignoring_gone(
                    &Api::<ValidatingWebhookConfiguration>::all(client.clone()),
                    name,
                )
                .await?
            }
            Configuration::Mutating(_) => {
                delete_ignoring_gone(
                    &Api::<MutatingWebhookConfiguration>::all(client.clone()),
                    name,
                )
                .await?
            }
        }
        deleted.push(config.describe());
    }
    Ok(deleted)
}

/// The configurations of both kinds that `selector` selects, as they are live.
async fn live(client: &Client, selector: &ListParams) -> anyhow::Result<Vec<Configuration>> {
    let validating = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .list(selector)
        .await
        .context("listing ValidatingWebhookConfigurations")?;
    let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .list(selector)
        .await
        .context("listing MutatingWebhookConfigurations")?;
    Ok(validating
        .items
        .into_iter()
        .map(Configuration::Validating)
        .chain(mutating.items.into_iter().map(Configuration::Mutating))
        .collect())
}

async fn delete_ignoring_gone<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting {name}")),
    }
}

/// `egress-guard uninstall` as a command: deletes, then says what is left to do.
pub async fn uninstall_cli(args: &UninstallArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (kubeconfig or in-cluster config)")?;
    let deleted = uninstall(&client, &args.namespace, &args.binding).await?;
    if deleted.is_empty() {
        println!("nothing registered by the install in {}", args.namespace);
    }
    for d in &deleted {
        println!("deleted {d}");
    }
    println!(
        "no egress-guard webhook is called now; delete the install: kubectl delete -k deploy/"
    );
    Ok(())
}

/// `uninstall` flags.
#[derive(Debug, Clone, Args)]
pub struct UninstallArgs {
    /// The namespace egress-guard is installed in.
    #[arg(long, default_value = "egress-guard")]
    pub namespace: String,
    /// The ClusterRoleBinding that lets the server register its configurations.
    #[arg(long, default_value = "egress-guard-register")]
    pub binding: String,
}
