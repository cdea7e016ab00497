//! Wires `egress-guard serve` flags to the allowlist source and the server.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::tls::TlsPaths;
use super::{AppState, Metrics, ServeConfig, serve};
use crate::cli::{AllowlistArgs, RegisterArgs, ServeArgs};
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
