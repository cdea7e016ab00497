//! Allowlist sources: the embedded example, a watched file, or a watched ConfigMap.
//! Every source builds a complete [`Allowlist`], then swaps it in atomically; a bad
//! update is logged and counted, and the last good allowlist stays in force.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::policy::{Allowlist, AllowlistError};

pub mod configmap;
pub mod file;
pub mod watch;

/// A compiled allowlist and where it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The compiled allowlist.
    pub allowlist: Allowlist,
    /// ConfigMap resourceVersion, file mtime, or `embedded`.
    pub revision: String,
    /// SHA-256 of the source text, hex.
    pub sha256: String,
}

/// The allowlist in force. Readers take one lock-free snapshot per request.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwapOption<Loaded>,
    metrics: Metrics,
    /// Counts the allowlists swapped in, for tasks that act on a change.
    loads: tokio::sync::watch::Sender<u64>,
}

impl PolicyStore {
    /// An empty store: not ready until the first successful load.
    pub fn new(metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwapOption::empty(),
            metrics,
            loads: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Notified each time a new allowlist is swapped in (not for unchanged text or a
    /// rejected one): what `audit --watch` re-judges on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.loads.subscribe()
    }

    /// The allowlist in force, if any has loaded.
    pub fn current(&self) -> Option<Arc<Loaded>> {
        self.current.load_full()
    }

    /// The allowlist in force, borrowed for a short use (one inline review).
    pub fn current_guard(&self) -> arc_swap::Guard<Option<Arc<Loaded>>> {
        self.current.load()
    }

    /// True once a valid allowlist is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Counts a reload that failed before parsing (e.g. the ConfigMap lost its key).
    pub fn record_error(&self) {
        self.metrics.record_allowlist_error();
    }

    /// Parses, compiles and swaps in a new allowlist. On error nothing changes.
    /// Unchanged text (same hash) is not recompiled.
    pub fn load(&self, text: &str, revision: &str) -> Result<Arc<Loaded>, AllowlistError> {
        let sha256 = hex(&Sha256::digest(text.as_bytes()));
        if let Some(cur) = self.current.load_full()
            && cur.sha256 == sha256
        {
            return Ok(cur);
        }
        let started = Instant::now();
        let allowlist = match Allowlist::from_yaml(text) {
            Ok(a) => a,
            Err(e) => {
                self.metrics.record_allowlist_error();
                tracing::error!(revision, error = %e, "allowlist rejected; keeping the last good allowlist");
                return Err(e);
            }
        };
        for w in &allowlist.warnings {
            tracing::warn!(revision, "allowlist: {w}");
        }
        let now = crate::unix_now();
        self.metrics.record_expiring(&allowlist, now);
        for n in allowlist.expiring_before(now + 14 * 86_400).take(20) {
            let expires = n.info.expires.as_ref().map_or("", |e| &*e.text);
            let owner = n.info.owner.as_deref().unwrap_or("");
            tracing::warn!(revision, entry = %n.entry, expires, owner, "allowlist entry expires within 14 days (or has expired)");
        }
        let loaded = Arc::new(Loaded {
            allowlist,
            revision: revision.to_owned(),
            sha256,
        });
        let previous = self.current.swap(Some(loaded.clone()));
        self.loads.send_modify(|n| *n += 1);
        let took = started.elapsed();
        self.metrics.record_allowlist_loaded(
            loaded.allowlist.entries(),
            revision,
            &loaded.sha256,
            took,
        );
        tracing::info!(
            revision,
            sha256 = %loaded.sha256,
            entries = loaded.allowlist.entries(),
            mode = loaded.allowlist.mode.as_str(),
            took_ms = took.as_secs_f64() * 1e3,
            "allowlist loaded"
        );
        if let Some(previous) = previous {
            release_when_unused(previous);
        }
        Ok(loaded)
    }

    /// [`load`](Self::load) on tokio's blocking pool: compiling a large allowlist takes
    /// tens of milliseconds of CPU, which must not stall a request worker.
    pub async fn load_blocking(
        self: &Arc<Self>,
        text: String,
        revision: String,
    ) -> Result<Arc<Loaded>, AllowlistError> {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || store.load(&text, &revision)).await {
            Ok(r) => r,
            Err(e) => Err(AllowlistError::invalid(format!(
                "allowlist load task failed: {e}"
            ))),
        }
    }
}

/// Drops a replaced allowlist here, on the reloading thread, once in-flight requests
/// have let go of it. Freeing 100k entries takes milliseconds; if the last request to
/// hold the old snapshot dropped it, that request would pay for it.
fn release_when_unused(previous: Arc<Loaded>) {
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    while Arc::strong_count(&previous) > 1 && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(previous);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_good_allowlist_on_a_bad_update() {
        let m = Metrics::new();
        let store = PolicyStore::new(m.clone());
        assert!(!store.is_loaded());
        store.load("hosts: [a.example]\n", "1").unwrap();
        assert!(store.load("hosts: [\"bad host\"]\n", "2").is_err());
        let cur = store.current().unwrap();
        assert_eq!(cur.revision, "1");
        assert_eq!(cur.allowlist.entries(), 1);
        let text = m.render();
        assert!(
            text.contains("egress_guard_allowlist_reloads_total{result=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("egress_guard_allowlist_info{revision=\"1\""),
            "{text}"
        );
        let mut changes = store.subscribe();
        store.load("hosts: [a.example, b.example]\n", "3").unwrap();
        assert!(
            changes.has_changed().unwrap(),
            "a new allowlist is announced"
        );
        changes.borrow_and_update();
        store.load("hosts: [a.example, b.example]\n", "4").unwrap();
        assert!(store.load("hosts: [\"bad host\"]\n", "5").is_err());
        assert!(
            !changes.has_changed().unwrap(),
            "unchanged text and a rejected update are not"
        );
        assert_eq!(store.current().unwrap().allowlist.entries(), 2);
        assert!(
            !m.render().contains("revision=\"1\""),
            "old info series is removed"
        );
    }
}
