//! `--allowlist-file`: read at start-up (fatal if invalid), then reloaded on change
//! and on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::{PolicyStore, watch};

/// Reads the file and its revision (modification time, seconds.nanos since the epoch).
pub fn read(path: &Path) -> std::io::Result<(String, String)> {
    let text = std::fs::read_to_string(path)?;
    let revision = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or_else(
            || "unknown".to_owned(),
            |d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        );
    Ok((text, revision))
}

/// Loads the file into the store once; the caller treats an error as fatal.
pub fn load_initial(path: &Path, store: &PolicyStore) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let (text, revision) =
        read(path).with_context(|| format!("reading allowlist {}", path.display()))?;
    store
        .load(&text, &revision)
        .with_context(|| format!("allowlist {}", path.display()))?;
    Ok(())
}

/// Reloads on every change notification and SIGHUP, forever.
pub async fn watch_file(
    path: PathBuf,
    store: Arc<PolicyStore>,
    poll: Duration,
    mut hangups: Hangups,
) {
    let mut changes = match watch::watch(std::slice::from_ref(&path), poll) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot watch the allowlist file; only SIGHUP reloads it");
            let (_tx, rx) = tokio::sync::mpsc::channel(1);
            rx
        }
    };
    loop {
        tokio::select! {
            ev = changes.recv() => if ev.is_none() { return },
            _ = hangups.recv() => tracing::info!("SIGHUP: reloading the allowlist"),
        }
        match read(&path) {
            // `load` skips unchanged text and keeps the last good allowlist on error.
            Ok((text, revision)) => {
                let _ = store.load_blocking(text, revision).await;
            }
            Err(e) => {
                store.record_error();
                tracing::error!(path = %path.display(), error = %e, "allowlist file unreadable; keeping the last good allowlist")
            }
        }
    }
}

/// SIGHUP, caught from the moment this is created: an uncaught SIGHUP would end the
/// process, so the server installs it before it starts serving, whatever the source.
#[derive(Debug)]
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Installs the handler (needs a Tokio runtime).
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            let signal =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for the next SIGHUP (forever if none can arrive).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}
