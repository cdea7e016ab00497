//! `audit --watch` through what a real apiserver cannot be made to do on demand: a
//! watch that expires (`410 Gone`) after a change it never announced, and a watch
//! connection cut mid-stream. The fake API of `tests/fake_api` serves the Istio kind,
//! the PolicyReports (server-side apply and delete) and records every request.

mod common;
mod fake_api;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fake_api::{FakeApi, eventually};
use serde_json::{Value, json};

const SE: &str = "networking.istio.io/v1";
const REPORT: &str = "wgpolicyk8s.io/v1alpha2";

fn se(name: &str, host: &str) -> Value {
    json!({
        "apiVersion": SE,
        "kind": "ServiceEntry",
        "metadata": {"namespace": "default", "name": name},
        "spec": {
            "hosts": [host],
            "location": "MESH_EXTERNAL",
            "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
            "resolution": "DNS",
            "exportTo": ["."],
        },
    })
}

struct Running {
    child: Child,
    dir: tempfile::TempDir,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    async fn metrics(&self) -> String {
        let log = self.log();
        let addr = log
            .split_once("metrics=")
            .and_then(|(_, r)| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no metrics address yet:\n{log}"));
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(fake: &FakeApi) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = common::write_kubeconfig(dir.path(), &fake.url());
    let allowlist = dir.path().join("allowlist.yaml");
    std::fs::write(&allowlist, "hosts: [api.github.com]\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args([
            "audit",
            "--watch",
            "-n",
            "default",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--allowlist-file")
        .arg(&allowlist)
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    Running { child, dir }
}

/// The names of the objects the stored report lists.
fn reported(fake: &FakeApi) -> Option<Vec<String>> {
    let r = fake.object(REPORT, "PolicyReport", "default", "egress-guard")?;
    Some(
        r["results"]
            .as_array()?
            .iter()
            .map(|r| r["resources"][0]["name"].as_str().unwrap_or("").to_owned())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relists_after_410_gone_and_rewatches_after_a_dropped_connection() {
    egress_guard::install_crypto_provider();
    let fake = FakeApi::start().await;
    fake.serve_kind(
        "networking.istio.io",
        "ServiceEntry",
        "serviceentries",
        &["v1"],
    );
    fake.serve_kind(
        "wgpolicyk8s.io",
        "PolicyReport",
        "policyreports",
        &["v1alpha2"],
    );
    fake.put(se("exfil", "upload.evil.example.org"));
    fake.put(se("fixed-unseen", "paste.evil.example.org"));
    let run = start(&fake);
    let fake = &fake;
    let names = |want: &'static [&'static str]| move || reported(fake).is_some_and(|r| r == want);
    eventually("the first report", names(&["exfil", "fixed-unseen"])).await;

    // Fixed while no watch could see it, then the watch expires: only the relist that
    // follows the 410 finds it clean.
    fake.put_unseen(se("fixed-unseen", "api.github.com"));
    // Lists are paged (500 a page); the served version is found with one of limit 1.
    let lists = || {
        let all =
            fake.requests_to("/apis/networking.istio.io/v1/namespaces/default/serviceentries");
        assert!(
            all.iter()
                .all(|r| r.is_watch() || matches!(r.param("limit"), Some("500" | "1"))),
            "{}",
            fake.request_log()
        );
        all.iter()
            .filter(|r| r.param("limit") == Some("500"))
            .count()
    };
    let lists_before = lists();
    fake.expire_watches();
    eventually("the relist after 410 Gone", names(&["exfil"])).await;
    assert_eq!(lists(), lists_before + 1, "{}", fake.request_log());

    // A connection cut mid-stream: counted, and the watch resumes where it was.
    fake.drop_watches();
    let errors = r#"egress_guard_audit_watch_errors_total{kind="ServiceEntry"}"#;
    let mut seen = 0.0;
    let deadline = tokio::time::Instant::now() + fake_api::DEADLINE;
    while seen < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no watch error counted:\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = common::metric(&run.metrics().await, errors).unwrap_or(0.0);
    }
    fake.put(se("late", "late.evil.example.org"));
    eventually("the change after the reconnect", names(&["exfil", "late"])).await;

    // Every watch asked for bookmarks; nothing but reports was written.
    let watches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.is_watch())
        .collect();
    assert!(!watches.is_empty());
    assert!(
        watches
            .iter()
            .all(|r| r.param("allowWatchBookmarks") == Some("true")),
        "{}",
        fake.request_log()
    );
    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(
        writes.iter().all(|r| r.path
            == "/apis/wgpolicyk8s.io/v1alpha2/namespaces/default/policyreports/egress-guard"),
        "{}",
        fake.request_log()
    );
    // One write per change of the report: the first, the relist, the late object.
    assert_eq!(writes.len(), 3, "{}", fake.request_log());

    // Clean at last: the report is deleted.
    fake.delete(SE, "ServiceEntry", "default", "exfil");
    fake.delete(SE, "ServiceEntry", "default", "late");
    eventually("the report deleted", || reported(fake).is_none()).await;
    assert_eq!(
        fake.requests().last().map(|r| r.method.clone()).as_deref(),
        Some("DELETE"),
        "{}",
        fake.request_log()
    );
}
