//! `--allowlist-configmap`: `watch_configmap` against a fake apiserver on 127.0.0.1
//! that answers kube-runtime's list and watch requests as the Kubernetes API does.

mod common;
mod fake_api;

use std::sync::Arc;

use egress_guard::metrics::Metrics;
use egress_guard::policy::ObjectRef;
use egress_guard::source::PolicyStore;
use egress_guard::source::configmap::{ConfigMapError, watch_configmap};
use fake_api::{DEADLINE, FakeApi, Request, configmap, eventually};
use tokio::task::JoinHandle;

const NS: &str = "egress-guard";
const NAME: &str = "egress-guard-allowlist";
const KEY: &str = "allowlist.yaml";
const PATH: &str = "/api/v1/namespaces/egress-guard/configmaps";

/// One entry.
const ONE_HOST: &str = "hosts: [a.example.com]\n";
/// Two entries.
const TWO_HOSTS: &str = "hosts: [a.example.com, b.example.com]\n";
/// Three entries.
const THREE_HOSTS: &str = "hosts: [a.example.com, b.example.com, c.example.com]\n";
/// Rejected by `Allowlist::from_yaml`.
const BAD: &str = "hosts: [\"not a host name\"]\n";

fn allowlist_cm(text: &str) -> serde_json::Value {
    configmap(NS, NAME, &[(KEY, text)])
}

/// `watch_configmap` running in a task against a fake apiserver.
struct Watch {
    fake: FakeApi,
    store: Arc<PolicyStore>,
    metrics: Metrics,
    task: JoinHandle<Result<(), ConfigMapError>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    fn start(fake: FakeApi) -> Watch {
        if let Ok(filter) = std::env::var("EGRESS_GUARD_TEST_LOG") {
            // Debug aid: keep the log writer for the whole test process.
            std::mem::forget(egress_guard::init_tracing(
                egress_guard::cli::LogFormat::Text,
                &filter,
            ));
        }
        let metrics = Metrics::new();
        let store = PolicyStore::new(metrics.clone());
        let cm = ObjectRef {
            namespace: NS.to_owned(),
            name: NAME.to_owned(),
        };
        let task = tokio::spawn(watch_configmap(
            fake.client(),
            cm,
            KEY.to_owned(),
            store.clone(),
        ));
        Watch {
            fake,
            store,
            metrics,
            task,
        }
    }

    fn revision(&self) -> Option<String> {
        self.store.current().map(|l| l.revision.clone())
    }

    fn entries(&self) -> usize {
        self.store
            .current()
            .expect("an allowlist is loaded")
            .allowlist
            .entries()
    }

    async fn wait_for_revision(&self, rv: u64) {
        let want = rv.to_string();
        eventually(&format!("allowlist revision {want}"), || {
            self.revision().as_deref() == Some(want.as_str())
        })
        .await;
    }

    fn lists(&self) -> Vec<Request> {
        self.fake
            .requests_to(PATH)
            .into_iter()
            .filter(|r| !r.is_watch())
            .collect()
    }

    fn watches(&self) -> Vec<Request> {
        self.fake
            .requests_to(PATH)
            .into_iter()
            .filter(Request::is_watch)
            .collect()
    }

    async fn wait_for_watches(&self, n: usize) -> Vec<Request> {
        eventually(&format!("{n} watch requests"), || self.watches().len() >= n).await;
        self.watches()
    }

    /// `egress_guard_allowlist_reloads_total{result=…}`.
    fn reloads(&self, result: &str) -> u64 {
        let prefix = format!("egress_guard_allowlist_reloads_total{{result=\"{result}\"}} ");
        self.metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().expect("a counter value"))
    }

    fn assert_running(&self) {
        assert!(
            !self.task.is_finished(),
            "watch_configmap must keep running; requests:\n{}",
            self.fake.request_log()
        );
    }
}

#[tokio::test]
async fn loads_the_configmap_allowlist_and_follows_updates() {
    let fake = FakeApi::start().await;
    let rv1 = fake.put(allowlist_cm(ONE_HOST));
    let w = Watch::start(fake);
    w.wait_for_revision(rv1).await;
    assert_eq!(w.entries(), 1);

    // What kube-runtime asked for: a list by name, then a watch from the list's version.
    let lists = w.lists();
    assert_eq!(lists.len(), 1, "{}", w.fake.request_log());
    assert_eq!(
        lists[0].param("fieldSelector"),
        Some("metadata.name=egress-guard-allowlist")
    );
    let watches = w.wait_for_watches(1).await;
    assert_eq!(
        watches[0].param("fieldSelector"),
        Some("metadata.name=egress-guard-allowlist")
    );
    assert_eq!(
        watches[0].param("resourceVersion"),
        Some(rv1.to_string().as_str())
    );

    let rv2 = w.fake.put(allowlist_cm(TWO_HOSTS));
    w.wait_for_revision(rv2).await;
    assert_eq!(w.entries(), 2);
    let rv3 = w.fake.put(allowlist_cm(THREE_HOSTS));
    w.wait_for_revision(rv3).await;
    assert_eq!(w.entries(), 3);

    assert_eq!(w.reloads("success"), 3);
    assert_eq!(w.reloads("error"), 0);
    let text = w.metrics.render();
    assert!(
        text.contains(&format!("egress_guard_allowlist_info{{revision=\"{rv3}\"")),
        "{text}"
    );
    assert!(text.contains("egress_guard_allowlist_entries 3"), "{text}");
    assert_eq!(w.lists().len(), 1, "no relist: {}", w.fake.request_log());
    w.assert_running();
}

#[tokio::test]
async fn keeps_last_good_on_bad_update_and_counts_it() {
    let fake = FakeApi::start().await;
    let rv1 = fake.put(allowlist_cm(ONE_HOST));
    let w = Watch::start(fake);
    w.wait_for_revision(rv1).await;

    w.fake.put(allowlist_cm(BAD));
    eventually("the bad update to be counted", || w.reloads("error") == 1).await;
    assert_eq!(w.revision(), Some(rv1.to_string()));
    assert_eq!(w.entries(), 1);
    assert_eq!(w.reloads("success"), 1);
    let text = w.metrics.render();
    assert!(
        text.contains(&format!("egress_guard_allowlist_info{{revision=\"{rv1}\"")),
        "the info series still names the good revision: {text}"
    );
    w.assert_running();

    // A later good version is applied.
    let rv3 = w.fake.put(allowlist_cm(TWO_HOSTS));
    w.wait_for_revision(rv3).await;
    assert_eq!(w.entries(), 2);
    assert_eq!(w.reloads("error"), 1);
}

#[tokio::test]
async fn keeps_last_good_when_deleted() {
    let fake = FakeApi::start().await;
    let rv1 = fake.put(allowlist_cm(ONE_HOST));
    let w = Watch::start(fake);
    w.wait_for_revision(rv1).await;

    w.fake.delete("v1", "ConfigMap", NS, NAME);
    w.fake.sync_watch(PATH).await; // the DELETED event has been handled
    assert_eq!(w.revision(), Some(rv1.to_string()));
    assert_eq!(w.entries(), 1);
    assert_eq!(w.reloads("error"), 0);
    w.assert_running();

    // Re-created: ADDED is applied.
    let rv = w.fake.put(allowlist_cm(TWO_HOSTS));
    w.wait_for_revision(rv).await;
    assert_eq!(w.entries(), 2);
}

#[tokio::test]
async fn relists_after_410_gone() {
    let fake = FakeApi::start().await;
    let rv1 = fake.put(allowlist_cm(ONE_HOST));
    let w = Watch::start(fake);
    w.wait_for_revision(rv1).await;
    w.wait_for_watches(1).await;
    assert_eq!(w.lists().len(), 1);

    // The change happens where the watch cannot see it; the watch then gets 410 Gone.
    let rv2 = w.fake.put_unseen(allowlist_cm(TWO_HOSTS));
    w.fake.expire_watches();
    w.wait_for_revision(rv2).await;
    assert_eq!(w.entries(), 2);

    let lists = w.lists();
    assert_eq!(lists.len(), 2, "one relist: {}", w.fake.request_log());
    assert_eq!(
        lists[1].param("fieldSelector"),
        Some("metadata.name=egress-guard-allowlist")
    );
    // The relist came after the first watch, and the watch resumed from it.
    let log = w.fake.requests();
    let first_watch = log.iter().position(Request::is_watch).expect("a watch");
    let relist = log
        .iter()
        .rposition(|r| r.path == PATH && !r.is_watch())
        .expect("a list");
    assert!(relist > first_watch, "{}", w.fake.request_log());
    let watches = w.wait_for_watches(2).await;
    assert_eq!(
        watches[1].param("resourceVersion"),
        Some(rv2.to_string().as_str())
    );
    assert_eq!(w.reloads("error"), 0);
    w.assert_running();
}

#[tokio::test]
async fn keeps_last_good_when_a_relist_returns_a_bad_allowlist() {
    let fake = FakeApi::start().await;
    let rv1 = fake.put(allowlist_cm(ONE_HOST));
    let w = Watch::start(fake);
    w.wait_for_revision(rv1).await;
    w.wait_for_watches(1).await;

    w.fake.put_unseen(allowlist_cm(BAD));
    w.fake.expire_watches();
    eventually("the relisted bad allowlist to be counted", || {
        w.reloads("error") == 1
    })
    .await;
    assert_eq!(w.lists().len(), 2, "{}", w.fake.request_log());
    assert_eq!(w.revision(), Some(rv1.to_string()));
    assert_eq!(w.entries(), 1);
    w.assert_running();

    let rv = w.fake.put(allowlist_cm(TWO_HOSTS));
    w.wait_for_revision(rv).await;
}

#[tokio::test]
async fn reconnects_after_a_dropped_connection() {
    let fake = FakeApi::start().await;
    let rv1 = fake.put(allowlist_cm(ONE_HOST));
    let w = Watch::start(fake);
    w.wait_for_revision(rv1).await;
    w.wait_for_watches(1).await;

    // The watch ends cleanly (timeoutSeconds): re-watch from the same version.
    w.fake.close_watches();
    let watches = w.wait_for_watches(2).await;
    assert_eq!(
        watches[1].param("resourceVersion"),
        Some(rv1.to_string().as_str())
    );

    // The connection drops mid-stream, after a bookmark: re-watch from the bookmark.
    let bookmark = w.fake.bookmark();
    w.fake.drop_watches();
    let watches = w.wait_for_watches(3).await;
    assert_eq!(
        watches[2].param("resourceVersion"),
        Some(bookmark.to_string().as_str()),
        "{}",
        w.fake.request_log()
    );

    // The new watch delivers a later MODIFIED.
    let rv2 = w.fake.put(allowlist_cm(TWO_HOSTS));
    w.wait_for_revision(rv2).await;
    assert_eq!(w.entries(), 2);
    assert_eq!(
        w.lists().len(),
        1,
        "a dropped watch resumes without a relist: {}",
        w.fake.request_log()
    );
    w.assert_running();
}

#[tokio::test]
async fn missing_key_keeps_last_good() {
    let fake = FakeApi::start().await;
    let rv1 = fake.put(allowlist_cm(ONE_HOST));
    let w = Watch::start(fake);
    w.wait_for_revision(rv1).await;

    w.fake
        .put(configmap(NS, NAME, &[("other.yaml", TWO_HOSTS)]));
    w.fake.sync_watch(PATH).await; // the MODIFIED without the key has been handled
    assert_eq!(w.revision(), Some(rv1.to_string()));
    assert_eq!(w.entries(), 1);
    assert_eq!(w.reloads("error"), 1, "a lost key is a failed reload");
    assert_eq!(w.reloads("success"), 1);
    w.assert_running();

    let rv = w.fake.put(allowlist_cm(TWO_HOSTS));
    w.wait_for_revision(rv).await;
    assert_eq!(w.entries(), 2);
}

#[tokio::test]
async fn invalid_at_startup_is_fatal() {
    let fake = FakeApi::start().await;
    fake.put(allowlist_cm(BAD));
    let mut w = Watch::start(fake);
    let result = tokio::time::timeout(DEADLINE, &mut w.task)
        .await
        .expect("watch_configmap returns")
        .expect("the task does not panic");
    match result {
        Err(e @ ConfigMapError::InvalidAtStartup { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("egress-guard/egress-guard-allowlist") && msg.contains(KEY),
                "{msg}"
            );
        }
        other => panic!("expected InvalidAtStartup, got {other:?}"),
    }
    assert!(!w.store.is_loaded());
    assert_eq!(w.reloads("error"), 1);
}

#[tokio::test]
async fn waits_until_the_configmap_exists() {
    let fake = FakeApi::start().await;
    // Another ConfigMap in the namespace, with the key: not ours.
    fake.put(configmap(NS, "unrelated", &[(KEY, TWO_HOSTS)]));
    let w = Watch::start(fake);
    // The list found nothing and the watcher moved on to watching.
    w.wait_for_watches(1).await;
    assert_eq!(w.lists().len(), 1);
    assert!(!w.store.is_loaded());
    assert_eq!(w.reloads("error"), 0);
    w.assert_running();

    w.fake
        .put(configmap(NS, "unrelated", &[(KEY, THREE_HOSTS)]));
    let rv = w.fake.put(allowlist_cm(ONE_HOST));
    w.wait_for_revision(rv).await;
    assert_eq!(w.entries(), 1);
    assert_eq!(w.reloads("success"), 1);
}

// === `serve --allowlist-configmap`: the built binary against the fake API ===

const ALLOW_EXFIL: &str = "hosts: [api.github.com, upload.evil.example.org]\n";
const DENY_EXFIL: &str = "hosts: [api.github.com]\n";
const RELOAD_OK: &str = r#"egress_guard_allowlist_reloads_total{result="success"}"#;
const RELOAD_ERR: &str = r#"egress_guard_allowlist_reloads_total{result="error"}"#;

/// `egress-guard serve --allowlist-configmap egress-guard/egress-guard-allowlist` with a
/// kubeconfig pointing at `fake`.
async fn serve_from_configmap(fake: &FakeApi) -> common::ServeBinary {
    let serve = common::ServeCommand::new();
    let kubeconfig = common::write_kubeconfig(serve.dir(), &fake.url());
    serve
        .env("KUBECONFIG", &kubeconfig)
        .args(["--allowlist-configmap", &format!("{NS}/{NAME}")])
        .spawn()
        .await
}

/// The verdict on the exfil ServiceEntry (HTTP 200 expected).
async fn exfil_allowed(s: &common::ServeBinary) -> bool {
    let review = s
        .review(
            "/validate",
            common::fixture("validate-create-serviceentry-v1-exfil"),
        )
        .await;
    review["response"]["allowed"] == true
}

#[tokio::test]
async fn serve_is_not_ready_and_answers_503_until_the_configmap_exists() {
    let fake = FakeApi::start().await;
    let s = serve_from_configmap(&fake).await;
    // The list found nothing and the watch is open: not ready is the steady state now.
    fake.wait_for_request("a watch of the ConfigMap", |r| {
        r.path == PATH && r.is_watch()
    })
    .await;
    let (status, body) = s.ops_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready"), "{body}");
    assert!(body.contains("no valid allowlist loaded"), "{body}");

    let fixture = common::fixture_json("validate-create-serviceentry-v1-github-api");
    let (status, review) = s
        .post("/validate", serde_json::to_vec(&fixture).unwrap())
        .await;
    assert_eq!(status, 503, "{review}");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["response"]["uid"], fixture["request"]["uid"]);
    assert_eq!(review["response"]["allowed"], false);
    let message = review["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("no allowlist loaded"), "{message}");
    assert_eq!(
        common::metric(
            &s.metrics_text().await,
            r#"egress_guard_bad_requests_total{reason="not_ready"}"#
        ),
        Some(1.0)
    );

    fake.put(allowlist_cm(DENY_EXFIL));
    s.wait_ready().await;
    assert!(
        !exfil_allowed(&s).await,
        "the ConfigMap's allowlist decides"
    );
    let review = s
        .review("/validate", serde_json::to_vec(&fixture).unwrap())
        .await;
    assert_eq!(review["response"]["allowed"], true, "{review}");
    assert_eq!(s.metric(RELOAD_OK).await, 1.0);
}

#[tokio::test]
async fn serve_counts_a_lost_key_as_a_reload_error_and_keeps_deciding() {
    let fake = FakeApi::start().await;
    let rv1 = fake.put(allowlist_cm(ALLOW_EXFIL));
    let s = serve_from_configmap(&fake).await;
    s.wait_ready().await;
    assert!(exfil_allowed(&s).await);
    assert_eq!(s.metric(RELOAD_ERR).await, 0.0);

    // MODIFIED without the key.
    fake.put(configmap(NS, NAME, &[("other.yaml", DENY_EXFIL)]));
    let metrics_url = s.ops_url("/metrics");
    common::eventually(std::time::Duration::from_secs(10), || {
        let url = metrics_url.clone();
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            common::metric(&text, RELOAD_ERR) == Some(1.0)
        }
    })
    .await;
    assert!(
        exfil_allowed(&s).await,
        "the last good allowlist keeps deciding"
    );
    let metrics = s.metrics_text().await;
    assert_eq!(common::metric(&metrics, RELOAD_OK), Some(1.0), "{metrics}");
    assert!(
        metrics.contains(&format!("egress_guard_allowlist_info{{revision=\"{rv1}\"")),
        "{metrics}"
    );
    assert_eq!(s.ops_get("/readyz").await.0, 200);
    s.wait_for_log("allowlist ConfigMap has no such key").await;

    // The key comes back with another allowlist: the watch is alive and applies it.
    fake.put(allowlist_cm(DENY_EXFIL));
    common::eventually(std::time::Duration::from_secs(10), || {
        let url = metrics_url.clone();
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            common::metric(&text, RELOAD_OK) == Some(2.0)
        }
    })
    .await;
    assert!(!exfil_allowed(&s).await);
}
