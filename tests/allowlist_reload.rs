//! Allowlist file source under change: kubelet's atomic `..data` symlink swap, in-place
//! writes, bad updates (last good kept, error counted), recovery, and decisions that
//! stay consistent while 100k-entry allowlists are swapped underneath many tasks.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{ServeBinary, ServeCommand, TestServer, eventually, fixture};
use egress_guard::policy::{self, Kind, Operation, Request};
use egress_guard::server::Metrics;
use egress_guard::source::PolicyStore;

const DENY_EXFIL: &str = "hosts: [api.github.com]\n";
const ALLOW_EXFIL: &str = "hosts: [api.github.com, upload.evil.example.org]\n";

async fn exfil_allowed(s: &TestServer) -> bool {
    let review = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-exfil"),
        )
        .await;
    review["response"]["allowed"] == true
}

async fn wait_for_verdict(s: &TestServer, allowed: bool) {
    let deadline = Duration::from_secs(10);
    let start = std::time::Instant::now();
    while exfil_allowed(s).await != allowed {
        assert!(
            start.elapsed() < deadline,
            "verdict did not become allowed={allowed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lays out `dir` the way kubelet mounts a ConfigMap: `allowlist.yaml -> ..data/allowlist.yaml`,
/// `..data -> ..<version>/`.
fn kubelet_publish(dir: &Path, version: &str, text: &str) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    std::fs::write(versioned.join("allowlist.yaml"), text).unwrap();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp_link).unwrap();
    // The atomic step: rename the new link over `..data`.
    std::fs::rename(&tmp_link, dir.join("..data")).unwrap();
    let user_link = dir.join("allowlist.yaml");
    if !user_link.exists() {
        std::os::unix::fs::symlink("..data/allowlist.yaml", &user_link).unwrap();
    }
}

#[tokio::test]
async fn follows_kubelet_symlink_swaps() {
    egress_guard::install_crypto_provider();
    let mount = tempfile::tempdir().unwrap();
    kubelet_publish(mount.path(), "v1", DENY_EXFIL);
    let s = TestServer::start_with(common::Options {
        allowlist: DENY_EXFIL.into(),
        ..Default::default()
    })
    .await;
    let path = mount.path().join("allowlist.yaml");
    tokio::spawn(egress_guard::source::file::watch_file(
        path,
        s.store.clone(),
        Duration::from_secs(30),
        egress_guard::source::file::Hangups::install(),
    ));
    assert!(!exfil_allowed(&s).await);

    kubelet_publish(mount.path(), "v2", ALLOW_EXFIL);
    wait_for_verdict(&s, true).await;
    kubelet_publish(mount.path(), "v3", DENY_EXFIL);
    wait_for_verdict(&s, false).await;
}

#[tokio::test]
async fn follows_in_place_writes_and_keeps_last_good_on_bad_updates() {
    let s = TestServer::start_with(common::Options {
        allowlist: DENY_EXFIL.into(),
        watch_allowlist: true,
        ..Default::default()
    })
    .await;
    let path = s.path("allowlist.yaml");
    assert!(!exfil_allowed(&s).await);

    std::fs::write(&path, ALLOW_EXFIL).unwrap();
    wait_for_verdict(&s, true).await;
    let good_revision = s.store.current().unwrap().revision.clone();

    // A bad edit: nothing changes but the error metric.
    std::fs::write(&path, "hosts: [\"bad host name\"]\n").unwrap();
    let metrics = s.metrics.clone();
    eventually(Duration::from_secs(10), || {
        let m = metrics.clone();
        async move {
            m.render()
                .contains(r#"egress_guard_allowlist_reloads_total{result="error"} 1"#)
        }
    })
    .await;
    assert!(
        exfil_allowed(&s).await,
        "last good allowlist stays in force"
    );
    assert_eq!(s.store.current().unwrap().revision, good_revision);
    let text = s.metrics_text().await;
    assert!(text.contains("egress_guard_allowlist_entries 2"), "{text}");

    // Recovery with a good edit.
    std::fs::write(&path, DENY_EXFIL).unwrap();
    wait_for_verdict(&s, false).await;
    assert!(
        s.metrics_text()
            .await
            .contains("egress_guard_allowlist_entries 1")
    );
}

const RELOAD_OK: &str = r#"egress_guard_allowlist_reloads_total{result="success"}"#;
const RELOAD_ERR: &str = r#"egress_guard_allowlist_reloads_total{result="error"}"#;

/// Whether the built binary allows the exfil ServiceEntry.
async fn binary_allows_exfil(s: &ServeBinary) -> bool {
    let review = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-exfil"),
        )
        .await;
    review["response"]["allowed"] == true
}

/// The `revision` label of `egress_guard_allowlist_info`.
fn info_revision(metrics: &str) -> String {
    let line = metrics
        .lines()
        .find(|l| l.starts_with("egress_guard_allowlist_info{"))
        .unwrap_or_else(|| panic!("no allowlist info in {metrics}"));
    let rest = &line[line.find("revision=\"").unwrap() + "revision=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn a_deleted_file_keeps_the_last_good_allowlist() {
    let serve = ServeCommand::new();
    let path = serve.dir().join("allowlist.yaml");
    std::fs::write(&path, ALLOW_EXFIL).unwrap();
    let s = serve.arg_path("--allowlist-file", &path).spawn().await;
    s.wait_ready().await;
    assert!(binary_allows_exfil(&s).await);
    let before = s.metrics_text().await;

    std::fs::remove_file(&path).unwrap();
    // The watcher has seen the deletion once it says so.
    s.wait_for_log("allowlist file unreadable; keeping the last good allowlist")
        .await;
    assert!(
        binary_allows_exfil(&s).await,
        "last good allowlist stays in force"
    );
    let after = s.metrics_text().await;
    assert_eq!(info_revision(&after), info_revision(&before));
    assert_eq!(common::metric(&after, RELOAD_OK), Some(1.0), "{after}");
    assert_eq!(
        s.ops_get("/readyz").await.0,
        200,
        "still ready with the last good allowlist"
    );

    std::fs::write(&path, DENY_EXFIL).unwrap();
    let metrics_url = s.ops_url("/metrics");
    eventually(Duration::from_secs(10), || {
        let url = metrics_url.clone();
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            common::metric(&text, RELOAD_OK) == Some(2.0)
        }
    })
    .await;
    assert!(!binary_allows_exfil(&s).await);
}

#[tokio::test]
async fn sighup_reloads_the_allowlist_file() {
    // The served path is a symlink into a directory the watcher does not watch: an
    // in-place write there raises no event the watcher sees, so only SIGHUP (or the
    // 30 s poll, far beyond this test) can pick it up.
    let serve = ServeCommand::new();
    let hidden = serve.dir().join("elsewhere");
    std::fs::create_dir(&hidden).unwrap();
    std::fs::write(hidden.join("allowlist.yaml"), DENY_EXFIL).unwrap();
    let path = serve.dir().join("allowlist.yaml");
    std::os::unix::fs::symlink(hidden.join("allowlist.yaml"), &path).unwrap();
    let s = serve.arg_path("--allowlist-file", &path).spawn().await;
    s.wait_ready().await;
    assert!(!binary_allows_exfil(&s).await);
    assert_eq!(s.metric(RELOAD_OK).await, 1.0);
    let revision = info_revision(&s.metrics_text().await);

    std::fs::write(hidden.join("allowlist.yaml"), ALLOW_EXFIL).unwrap();
    // SIGHUP's default action ends the process: wait until it is caught.
    s.wait_for_signal_handler(1).await;
    s.signal("HUP");
    s.wait_for_log("SIGHUP: reloading the allowlist").await;
    let metrics_url = s.ops_url("/metrics");
    eventually(Duration::from_secs(10), || {
        let url = metrics_url.clone();
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            common::metric(&text, RELOAD_OK) == Some(2.0)
        }
    })
    .await;
    assert!(
        binary_allows_exfil(&s).await,
        "the reloaded allowlist decides"
    );
    let metrics = s.metrics_text().await;
    assert_ne!(info_revision(&metrics), revision);
    assert_eq!(common::metric(&metrics, RELOAD_ERR), None, "{metrics}");
    let hups = s
        .log()
        .iter()
        .filter(|l| l.contains("SIGHUP: reloading the allowlist"))
        .count();
    assert_eq!(hups, 1, "one SIGHUP, one reload");
}

#[test]
fn invalid_allowlist_file_at_startup_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allowlist.yaml");
    std::fs::write(
        &path,
        "mode: enforce\nhosts:\n  - ok.example\n  - -bad.example\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--allowlist-file")
        .arg(&path)
        .arg("--certs-dir")
        .arg(dir.path().join("certs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hosts[1]") && err.contains("line 4"), "{err}");
}

/// A 100k-entry allowlist that allows `probe.example` or not, tagged by `tag` so each
/// version has its own hash.
fn big_allowlist(tag: usize, allow_probe: bool) -> String {
    let mut s = String::with_capacity(3_000_000);
    s.push_str("hosts:\n");
    for i in 0..100_000 {
        s.push_str(&format!("  - h{i}-{tag}.example.com\n"));
    }
    if allow_probe {
        s.push_str("  - probe.example\n");
    }
    s
}

#[test]
fn decisions_stay_consistent_while_100k_allowlists_swap() {
    let store = PolicyStore::new(Metrics::new());
    store.load(&big_allowlist(0, false), "0").unwrap();
    let spec = serde_json::value::to_raw_value(&serde_json::json!({"spec": {
        "hosts": ["probe.example", "h5-0.example.com"],
        "resolution": "DNS",
        "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]
    }}))
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, stop, checked, spec) =
                (store.clone(), stop.clone(), checked.clone(), spec.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let loaded = store.current().unwrap();
                    let req = Request {
                        kind: Some(Kind::ServiceEntry),
                        operation: Operation::Create,
                        namespace: "default",
                        name: "probe",
                        object: Some(&spec),
                        old_object: None,
                        user: "",
                        subresource: "",
                    };
                    let d = policy::evaluate(&req, &loaded.allowlist, &policy::Env::default());
                    // Version k (tag) allows probe.example iff k is odd, and allows
                    // h5-0 only in version 0: every decision must match exactly one version.
                    let tag: usize = loaded.revision.parse().unwrap();
                    let mut want: Vec<&str> = Vec::new();
                    if tag.is_multiple_of(2) {
                        want.push("spec.hosts[0]");
                    }
                    if tag != 0 {
                        want.push("spec.hosts[1]");
                    }
                    let got: Vec<&str> = d.violations.iter().map(|v| v.path.as_str()).collect();
                    assert_eq!(got, want, "revision {tag}");
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for tag in 1..=6 {
        store
            .load(&big_allowlist(tag, tag % 2 == 1), &tag.to_string())
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader saw an inconsistent decision");
    }
    assert!(
        checked.load(Ordering::Relaxed) > 100,
        "readers ran during the reloads"
    );
    assert_eq!(store.current().unwrap().revision, "6");
}
