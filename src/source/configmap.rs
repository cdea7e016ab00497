//! `--allowlist-configmap NAMESPACE/NAME`: one ConfigMap watched through the
//! Kubernetes API. The watcher relists after `410 Gone`, reconnects with backoff when
//! the API is unreachable, and a deleted ConfigMap or missing key keeps the last good
//! allowlist.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::PolicyStore;
use crate::policy::ObjectRef;

/// Why the ConfigMap source stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    /// The first allowlist read at start-up is invalid: fatal, as with a file.
    #[error("allowlist in ConfigMap {cm} key {key}")]
    InvalidAtStartup {
        /// The ConfigMap.
        cm: String,
        /// The key.
        key: String,
        /// Why it is invalid.
        source: crate::policy::AllowlistError,
    },
}

/// Watches the ConfigMap and feeds every version into the store. Returns only on a
/// fatal start-up error; otherwise runs until the task is dropped.
pub async fn watch_configmap(
    client: Client,
    cm: ObjectRef,
    key: String,
    store: Arc<PolicyStore>,
) -> Result<(), ConfigMapError> {
    let api: Api<ConfigMap> = Api::namespaced(client, &cm.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", cm.name));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut seen_in_list = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => seen_in_list = false,
            Ok(Event::InitApply(obj)) => {
                seen_in_list = true;
                apply(&obj, &cm, &key, &store).await?;
            }
            Ok(Event::Apply(obj)) => apply(&obj, &cm, &key, &store).await?,
            Ok(Event::InitDone) => {
                if !seen_in_list {
                    tracing::error!(configmap = %cm, "allowlist ConfigMap not found; {}", keeping(&store));
                }
            }
            Ok(Event::Delete(_)) => {
                tracing::error!(configmap = %cm, "allowlist ConfigMap deleted; {}", keeping(&store));
            }
            // Every watcher error is retryable; the backoff above paces retries.
            Err(e) => {
                tracing::warn!(configmap = %cm, error = %e, "allowlist ConfigMap watch failed; retrying")
            }
        }
    }
    Ok(())
}

fn keeping(store: &PolicyStore) -> &'static str {
    if store.is_loaded() {
        "keeping the last good allowlist"
    } else {
        "not ready until it exists"
    }
}

async fn apply(
    obj: &ConfigMap,
    cm: &ObjectRef,
    key: &str,
    store: &Arc<PolicyStore>,
) -> Result<(), ConfigMapError> {
    let revision = obj.metadata.resource_version.clone().unwrap_or_default();
    let Some(text) = obj.data.as_ref().and_then(|d| d.get(key)) else {
        tracing::error!(configmap = %cm, key, "allowlist ConfigMap has no such key; {}", keeping(store));
        store.record_error();
        return Ok(());
    };
    let was_loaded = store.is_loaded();
    match store.load_blocking(text.clone(), revision).await {
        Ok(_) => Ok(()),
        Err(source) if !was_loaded => Err(ConfigMapError::InvalidAtStartup {
            cm: cm.to_string(),
            key: key.to_owned(),
            source,
        }),
        // Logged and counted by the store; the last good allowlist stays.
        Err(_) => Ok(()),
    }
}
