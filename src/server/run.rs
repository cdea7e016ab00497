//! Wires `egress-guard serve` flags to the allowlist source and the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use std::path::PathBuf;

use clap::Args;

use super::tls::TlsPaths;
use super::{AppState, Metrics, ServeConfig, serve};
use crate::args::{AllowlistArgs, DurationArg, ObjectRef};
use crate::policy::AllowlistSource;
use crate::policy::allowlist::EXAMPLE;
use crate::registration::Target;
use crate::source::{PolicyStore, configmap, file};

/// How often watched files are re-read even without a change event.
const POLL: Duration = Duration::from_secs(30);

/// Runs `serve` until SIGTERM/SIGINT (or a fatal allowlist error at start-up).
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        listen,
        metrics_listen,
        tls_cert,
        tls_key,
        client_ca,
        certs_dir,
        allowlist,
        request_timeout,
        max_concurrency,
        max_connections,
        max_inflight_bytes,
        review_memory,
        review_deadline,
        validate_configmap,
        shutdown_grace,
        register,
    } = args;
    let allowlist_source = validate_configmap
        .or_else(|| allowlist.allowlist_configmap.clone())
        .map(|configmap| AllowlistSource {
            configmap,
            key: allowlist.allowlist_key.clone(),
        });
    // Before anything else: an uncaught SIGHUP would end the process.
    let hangups = file::Hangups::install();
    let metrics = Metrics::new();
    let store = PolicyStore::new(metrics.clone());
    let source = start_source(allowlist, store.clone(), hangups).await?;

    let (cert, key) = match (tls_cert, tls_key) {
        (Some(c), Some(k)) => (c, k),
        _ => crate::certs::ensure_dev_certs(&certs_dir)?,
    };
    let cfg = ServeConfig {
        tls: TlsPaths {
            cert,
            key,
            client_ca,
        },
        request_timeout: request_timeout.0,
        max_concurrency,
        max_connections,
        max_inflight_bytes,
        review_memory,
        review_deadline: review_deadline.0,
        shutdown_grace: shutdown_grace.0,
        allowlist_source,
    };
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let ops_listener = std::net::TcpListener::bind(metrics_listen)
        .with_context(|| format!("binding {metrics_listen}"))?;
    // The bound addresses, not the flags: with port 0 this is how callers learn the port.
    let (https, metrics_addr) = (listener.local_addr()?, ops_listener.local_addr()?);
    tracing::info!(%https, metrics = %metrics_addr, "egress-guard serving");
    // Entries expire with the clock, not with reloads: recount them every minute.
    {
        let (store, metrics) = (store.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Some(loaded) = store.current() {
                    metrics.record_expiring(&loaded.allowlist, crate::unix_now());
                }
            }
        });
    }
    let registrar = registrar(&register, &cfg.tls.cert, https)?;
    if let Some(reg) = registrar {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API to register the webhooks")?;
        tokio::spawn(crate::registration::run(
            client,
            reg,
            store.clone(),
            metrics.clone(),
        ));
    }
    let state = AppState::new(store, metrics, &cfg);
    let server = serve(cfg, state, listener, ops_listener, shutdown_signal());
    match source {
        Some(source) => tokio::select! {
            r = server => r,
            r = source => match r {
                Ok(Ok(())) => anyhow::bail!("allowlist watch ended unexpectedly"),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("allowlist watch task failed: {e}")),
            },
        },
        None => server.await,
    }
}

/// The registration `--register-webhooks` asks for. With `--webhook-url`, a URL of
/// `0.0.0.0` or port 0 is not a place the apiserver can call: the bound address is.
fn registrar(
    args: &RegisterArgs,
    tls_cert: &std::path::Path,
    https: std::net::SocketAddr,
) -> anyhow::Result<Option<crate::registration::Registrar>> {
    let Some(file) = &args.register_webhooks else {
        return Ok(None);
    };
    let target = match &args.webhook_url {
        Some(url) => Target::Url(url.replace("{port}", &https.port().to_string())),
        None => Target::Service {
            namespace: args.namespace.clone(),
        },
    };
    let ca_bundle = args.webhook_ca_bundle.clone().unwrap_or_else(|| {
        tls_cert
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join("ca.crt")
    });
    crate::registration::Registrar::load(
        file,
        target,
        args.namespace.clone(),
        ca_bundle,
        args.webhook_owner.clone(),
        args.register_interval.0,
    )
    .map(Some)
}

/// Loads the initial allowlist and starts its watcher. File and embedded sources load
/// synchronously (an invalid file is fatal); the ConfigMap loads in the background and
/// the returned task fails if its first allowlist is invalid.
async fn start_source(
    args: AllowlistArgs,
    store: Arc<PolicyStore>,
    mut hangups: file::Hangups,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let AllowlistArgs {
        allowlist_file,
        allowlist_configmap,
        allowlist_key,
    } = args;
    if let Some(path) = allowlist_file {
        file::load_initial(&path, &store)?;
        tokio::spawn(file::watch_file(path, store, POLL, hangups));
        return Ok(None);
    }
    // Other sources have nothing to re-read on SIGHUP.
    let ignore = |what: &'static str| {
        tokio::spawn(async move {
            loop {
                hangups.recv().await;
                tracing::info!("SIGHUP ignored: {what}");
            }
        })
    };
    if let Some(cm) = allowlist_configmap {
        ignore("the ConfigMap is watched through the API");
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API (in-cluster config or kubeconfig)")?;
        tracing::info!(configmap = %cm, key = %allowlist_key, "watching the allowlist ConfigMap");
        return Ok(Some(tokio::spawn(async move {
            configmap::watch_configmap(client, cm, allowlist_key, store).await?;
            Ok(())
        })));
    }
    ignore("the embedded allowlist never changes");
    tracing::warn!(
        "no --allowlist-file or --allowlist-configmap: using the embedded example allowlist"
    );
    store.load(EXAMPLE, "embedded")?;
    Ok(None)
}

/// Resolves on SIGTERM (kubelet) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How `serve` registers its own webhook configurations.
#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    /// The Validating- and MutatingWebhookConfigurations to register once the server is
    /// ready (an allowlist, its TLS pair, a ready endpoint behind the Service), with the
    /// caBundle and namespace filled in, and to keep registered.
    #[arg(long, env = "EGRESS_GUARD_REGISTER_WEBHOOKS", value_name = "FILE")]
    pub register_webhooks: Option<PathBuf>,
    /// The CA bundle (PEM) set on every entry (default: ca.crt beside --tls-cert).
    #[arg(long, env = "EGRESS_GUARD_WEBHOOK_CA_BUNDLE", value_name = "FILE")]
    pub webhook_ca_bundle: Option<PathBuf>,
    /// The ClusterRole the configurations belong to: deleting it (kubectl delete -k, a
    /// GitOps prune) makes the garbage collector delete them.
    #[arg(long, env = "EGRESS_GUARD_WEBHOOK_OWNER", value_name = "CLUSTERROLE")]
    pub webhook_owner: Option<String>,
    /// Call this base URL instead of the Service (out-of-cluster and development).
    #[arg(long, env = "EGRESS_GUARD_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// The server's namespace: its Service's, and the one its webhooks spare.
    #[arg(long, env = "POD_NAMESPACE", default_value = "egress-guard")]
    pub namespace: String,
    /// Re-apply the configurations at least this often.
    #[arg(long, env = "EGRESS_GUARD_REGISTER_INTERVAL", default_value = "60s")]
    pub register_interval: DurationArg,
}

/// `serve` flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTPS address for /validate and /mutate.
    #[arg(long, env = "EGRESS_GUARD_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address for /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "EGRESS_GUARD_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,
    /// Serving certificate chain (PEM). Reloaded when the file changes.
    #[arg(long, env = "EGRESS_GUARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving private key (PEM). Reloaded when the file changes.
    #[arg(long, env = "EGRESS_GUARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM): when set, clients must present a certificate it signed.
    #[arg(long, env = "EGRESS_GUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Where a development certificate is generated (or reused) when no --tls-cert is given.
    #[arg(long, env = "EGRESS_GUARD_CERTS_DIR", default_value = "certs")]
    pub certs_dir: PathBuf,
    /// The allowlist source; with none, the embedded example allowlist is used.
    #[command(flatten)]
    pub allowlist: AllowlistArgs,
    /// Time allowed to read a request's headers and body.
    #[arg(long, env = "EGRESS_GUARD_REQUEST_TIMEOUT", default_value = "10s")]
    pub request_timeout: DurationArg,
    /// Large reviews (over 16 KiB) queued or in evaluation at once; more get 503.
    /// Smaller reviews are judged inline and need no slot.
    #[arg(long, env = "EGRESS_GUARD_MAX_CONCURRENCY", default_value_t = 1024)]
    pub max_concurrency: usize,
    /// Open connections; more are closed on accept, before the TLS handshake.
    #[arg(long, env = "EGRESS_GUARD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Request-body bytes held in memory at once across all connections; past it, 503.
    #[arg(long, env = "EGRESS_GUARD_MAX_INFLIGHT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_inflight_bytes: usize,
    /// Memory large reviews may use at once while judged, estimated at 100 times their
    /// body (the measured worst case of decoding, see README "Hostile input bounds");
    /// more wait, within the review deadline. One review always fits.
    #[arg(long, env = "EGRESS_GUARD_REVIEW_MEMORY", default_value_t = 256 * 1024 * 1024)]
    pub review_memory: usize,
    /// Time a large review may take before it is answered as too complex (EG901).
    #[arg(long, env = "EGRESS_GUARD_REVIEW_DEADLINE", default_value = "2s")]
    pub review_deadline: DurationArg,
    /// The ConfigMap holding the allowlist, whose edits are validated as allowlists
    /// (default: the --allowlist-configmap one). Name it when serving from a mounted file.
    #[arg(
        long,
        env = "EGRESS_GUARD_VALIDATE_CONFIGMAP",
        value_name = "NAMESPACE/NAME"
    )]
    pub validate_configmap: Option<ObjectRef>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "EGRESS_GUARD_SHUTDOWN_GRACE", default_value = "20s")]
    pub shutdown_grace: DurationArg,
    /// Self-registration of the webhook configurations.
    #[command(flatten)]
    pub register: RegisterArgs,
}
