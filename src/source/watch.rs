//! File change notifications that survive kubelet's symlink swap: the parent
//! directories are watched (not the files), events are debounced, and a slow poll
//! catches anything a filesystem fails to report.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last event before reporting a change: kubelet and
/// cert-manager write several files in quick succession.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Reports "something may have changed" for `files`. Receivers re-read and compare,
/// so a spurious notification costs one read. The watcher lives as long as the
/// receiver.
pub fn watch(files: &[PathBuf], poll: Duration) -> notify::Result<mpsc::Receiver<()>> {
    let (raw_tx, mut raw_rx) = mpsc::channel::<()>(1);
    let names: Vec<OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(OsString::from))
        .collect();
    let mut watcher: RecommendedWatcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|ev| relevant(&ev, &names)) {
                // A full channel already carries a pending notification.
                let _ = raw_tx.try_send(());
            }
        })?;
    let mut dirs: Vec<PathBuf> = files.iter().map(|f| parent_dir(f)).collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        watcher.watch(d, RecursiveMode::NonRecursive)?;
    }

    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut ticker = tokio::time::interval(poll);
        ticker.tick().await;
        loop {
            tokio::select! {
                ev = raw_rx.recv() => {
                    if ev.is_none() {
                        return;
                    }
                    // Debounce: wait until events stop for DEBOUNCE.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {}
                }
                _ = ticker.tick() => {}
            }
            if tx.is_closed() {
                return;
            }
            let _ = tx.try_send(());
        }
    });
    Ok(rx)
}

/// Writes, creations, removals and renames of our files or of kubelet's `..data`
/// entries. Reads are ignored: re-reading the files must not trigger another reload.
fn relevant(ev: &notify::Event, names: &[OsString]) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    let kind_matters = match ev.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    kind_matters
        && ev.paths.iter().any(|p| {
            p.file_name().is_some_and(|n| {
                names.iter().any(|want| want == n) || n.to_string_lossy().starts_with("..")
            })
        })
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
