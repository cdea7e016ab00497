//! `audit --watch`: continuous audit. Lists and watches every judged kind, judges each
//! object when it is listed or changes, judges everything again when the allowlist
//! changes and when an entry expires (it sleeps until the next expiry), and keeps one
//! PolicyReport per namespace and the `egress_guard_audit_*` metrics up to date.
//!
//! This is the I/O edge: [`Live`] holds the state and [`report`](super::report) builds
//! the reports. Memory and API load stay bounded: lists are paged (kube-runtime's
//! watcher, 500 per page) and watches use bookmarks; one object is judged at a time and
//! none is kept, only the findings of violating ones; a report is written only when its
//! content changes, at most once per second per namespace.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt as _, StreamExt as _};
use kube::Client;
use kube::api::{ApiResource, DynamicObject, TypeMeta};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::task::JoinHandle;

use super::AuditArgs;
use super::live::Live;
use super::metrics::AuditMetrics;
use super::publish::Publisher;
use super::report::ObjectFindings;
use super::scope::{self, Scope};
use crate::check::Judge;
use crate::metrics::Metrics;
use crate::policy::Kind;
use crate::policy::allowlist::EXAMPLE;
use crate::source::{PolicyStore, configmap, file};

/// `audit --watch` flags.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Keep running: judge objects again when they change, when the allowlist changes
    /// and when an entry expires, and publish one PolicyReport per namespace and metrics.
    #[arg(long, conflicts_with_all = ["against", "against_configmap", "now"])]
    pub watch: bool,
    /// With --watch: plain-HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
}

/// Quiet time before dirty reports are written: a rollout's burst of ReplicaSet and Pod
/// events becomes one write per namespace.
const DEBOUNCE: Duration = Duration::from_secs(1);
/// Wait before writing a report again after a failed write.
const RETRY: Duration = Duration::from_secs(5);
/// The longest sleep towards an expiry: the wall clock may be stepped meanwhile, so
/// the instant is checked again; nothing is judged unless an entry did expire.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How often a watched allowlist file is re-read without a change event.
const FILE_POLL: Duration = Duration::from_secs(30);
/// How often the expiring-entry gauges are recounted (their windows move with time).
const RECOUNT: Duration = Duration::from_secs(60);

type Watched = (Kind, Result<Event<DynamicObject>, watcher::Error>);

/// Runs until SIGTERM/SIGINT, or a fatal error (no PolicyReport CRD, an invalid
/// allowlist at start-up).
pub async fn run(args: &AuditArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or kubeconfig)")?;
    let metrics = Metrics::new();
    let audit_metrics =
        AuditMetrics::register(metrics.registry()).context("registering the audit metrics")?;
    let listen = args.watch.metrics_listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let ready = Arc::new(AtomicBool::new(false));
    tracing::info!(metrics = %listener.local_addr()?, "audit --watch: serving metrics");
    tokio::spawn(serve_ops(listener, metrics.clone(), ready.clone()));

    let store = PolicyStore::new(metrics.clone());
    let mut source = start_source(&client, args, &store)?;
    wait_for_allowlist(&store, &mut source).await?;

    let scope = super::scope(args);
    let publisher = Publisher::start(client.clone(), &scope, audit_metrics.clone()).await?;
    let mut live = Live::default();
    // Reports from an earlier run are checked (and deleted if clean) after the first pass.
    for ns in publisher.namespaces() {
        live.touch(ns);
    }
    let mut auditor = Auditor {
        client,
        scope,
        judge: Judge::new(&args.judge, &args.allowlist_key),
        store,
        live,
        publisher,
        metrics: audit_metrics,
        allowlist_metrics: metrics,
        streams: SelectAll::new(),
        pass: None,
        listed: None,
        flush_at: None,
        ready,
    };
    auditor.run(source).await
}

/// The allowlist source: a watched ConfigMap (a task), a watched file, or the example.
fn start_source(
    client: &Client,
    args: &AuditArgs,
    store: &Arc<PolicyStore>,
) -> anyhow::Result<Option<JoinHandle<Result<(), configmap::ConfigMapError>>>> {
    if let Some(cm) = &args.allowlist_configmap {
        tracing::info!(configmap = %cm, key = %args.allowlist_key, "watching the allowlist ConfigMap");
        return Ok(Some(tokio::spawn(configmap::watch_configmap(
            client.clone(),
            cm.clone(),
            args.allowlist_key.clone(),
            store.clone(),
        ))));
    }
    match &args.allowlist {
        Some(path) => {
            file::load_initial(path, store)?;
            tokio::spawn(file::watch_file(
                path.clone(),
                store.clone(),
                FILE_POLL,
                file::Hangups::install(),
            ));
        }
        None => {
            tracing::warn!(
                "no --allowlist-file or --allowlist-configmap: auditing against the embedded example allowlist"
            );
            store.load(EXAMPLE, "embedded")?;
        }
    }
    Ok(None)
}

/// Waits until the store holds an allowlist (the ConfigMap's first version).
async fn wait_for_allowlist(
    store: &PolicyStore,
    source: &mut Option<JoinHandle<Result<(), configmap::ConfigMapError>>>,
) -> anyhow::Result<()> {
    let mut loads = store.subscribe();
    while !store.is_loaded() {
        tokio::select! {
            _ = loads.changed() => {}
            r = wait_source(source) => return Err(r),
        }
    }
    Ok(())
}

/// Resolves when the source task ends (never, for sources without a task).
async fn wait_source(
    source: &mut Option<JoinHandle<Result<(), configmap::ConfigMapError>>>,
) -> anyhow::Error {
    match source {
        None => std::future::pending().await,
        Some(task) => match task.await {
            Ok(Err(e)) => anyhow::Error::new(e),
            Ok(Ok(())) => anyhow::anyhow!("the allowlist ConfigMap watch ended"),
            Err(e) => anyhow::anyhow!("the allowlist watch task failed: {e}"),
        },
    }
}

/// A full pass in progress: every kind listed again.
#[derive(Debug)]
struct Pass {
    started: Instant,
    /// Kinds whose list has not completed yet.
    pending: HashSet<&'static str>,
    /// No kind failed to list.
    clean: bool,
    judged: u64,
}

struct Auditor {
    client: Client,
    scope: Scope,
    judge: Judge,
    store: Arc<PolicyStore>,
    live: Live,
    publisher: Publisher,
    metrics: AuditMetrics,
    allowlist_metrics: Metrics,
    streams: SelectAll<BoxStream<'static, Watched>>,
    pass: Option<Pass>,
    /// A full pass whose reports are being written: recorded once they all are.
    listed: Option<Pass>,
    flush_at: Option<tokio::time::Instant>,
    ready: Arc<AtomicBool>,
}

impl Auditor {
    async fn run(
        &mut self,
        mut source: Option<JoinHandle<Result<(), configmap::ConfigMapError>>>,
    ) -> anyhow::Result<()> {
        let mut loads = self.store.subscribe();
        loads.borrow_and_update();
        let shutdown = crate::server::shutdown_signal().fuse();
        tokio::pin!(shutdown);
        let mut recount = tokio::time::interval(RECOUNT);
        self.start_pass("start-up").await;
        loop {
            let expiry = self.next_expiry();
            let flush_at = self.flush_at;
            tokio::select! {
                Some((kind, event)) = self.streams.next(), if !self.streams.is_empty() => {
                    self.on_event(kind, event);
                }
                changed = loads.changed() => {
                    if changed.is_err() {
                        anyhow::bail!("the allowlist store closed");
                    }
                    loads.borrow_and_update();
                    self.start_pass("the allowlist changed").await;
                }
                () = sleep_until_expiry(expiry), if expiry.is_some() => {
                    if expiry.is_some_and(|at| crate::unix_now() >= at) {
                        self.start_pass("an allowlist entry expired").await;
                    }
                }
                () = sleep_until(flush_at), if flush_at.is_some() => self.flush().await,
                _ = recount.tick() => {
                    if let Some(loaded) = self.store.current() {
                        self.allowlist_metrics.record_expiring(&loaded.allowlist, crate::unix_now());
                    }
                }
                e = wait_source(&mut source) => return Err(e),
                () = &mut shutdown => {
                    tracing::info!("audit --watch stopped");
                    return Ok(());
                }
            }
        }
    }

    /// The next instant an entry expires, if any.
    fn next_expiry(&self) -> Option<i64> {
        let at = self
            .store
            .current()
            .and_then(|l| l.allowlist.next_expiry(crate::unix_now()));
        self.metrics.record_next_expiry(at);
        at
    }

    /// Lists every kind again (new watches), judging everything under the allowlist in
    /// force now; reports are held until every list is complete.
    async fn start_pass(&mut self, why: &str) {
        let started = Instant::now();
        let mut streams = SelectAll::new();
        let mut pending = HashSet::new();
        let mut clean = true;
        for kind in scope::judged_kinds() {
            let ar = match self.scope.served(&self.client, kind).await {
                Ok(Some(ar)) => ar,
                Ok(None) => {
                    tracing::debug!(kind = kind.as_str(), "not served by this cluster; skipped");
                    self.live.forget(kind);
                    continue;
                }
                // Watched at its newest version anyway: the watcher retries with backoff
                // and reports every failure, and a passing outage heals by itself.
                Err(e) => {
                    tracing::warn!(kind = kind.as_str(), error = %e, "cannot find the served version; watching the newest");
                    self.metrics.record_watch_error(kind);
                    clean = false;
                    scope::api_resource(kind, kind.versions().first().copied().unwrap_or("v1"))
                }
            };
            pending.insert(kind.as_str());
            streams.push(self.watch(kind, ar));
        }
        tracing::info!(why, kinds = pending.len(), "judging every object again");
        self.streams = streams;
        self.listed = None;
        self.pass = Some(Pass {
            started,
            pending,
            clean,
            judged: 0,
        });
        self.flush_at = None;
        if let Some(loaded) = self.store.current() {
            self.allowlist_metrics
                .record_expiring(&loaded.allowlist, crate::unix_now());
        }
    }

    /// The watch of one kind: paged lists, bookmarks, backoff on errors.
    fn watch(&self, kind: Kind, ar: ApiResource) -> BoxStream<'static, Watched> {
        let api = self.scope.api(&self.client, &ar);
        let config = match self.scope.field_selector() {
            Some(f) => watcher::Config::default().fields(&f),
            None => watcher::Config::default(),
        };
        let types = TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        };
        watcher::watcher(api, config)
            .default_backoff()
            .map(move |ev| {
                // List items of built-in kinds come without apiVersion and kind.
                let ev = ev.map(|e| {
                    e.modify(|o| {
                        if o.types.is_none() {
                            o.types = Some(types.clone());
                        }
                    })
                });
                (kind, ev)
            })
            .boxed()
    }

    fn on_event(&mut self, kind: Kind, event: Result<Event<DynamicObject>, watcher::Error>) {
        match event {
            Ok(Event::Init) => self.live.list_started(kind),
            Ok(Event::InitApply(obj) | Event::Apply(obj)) => self.judge(kind, obj),
            Ok(Event::Delete(obj)) => {
                let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
                self.live
                    .deleted(kind, ns, obj.metadata.name.as_deref().unwrap_or_default());
            }
            Ok(Event::InitDone) => {
                self.live.list_done(kind);
                self.list_ended(kind, true);
            }
            Err(e) => {
                self.metrics.record_watch_error(kind);
                tracing::warn!(kind = kind.as_str(), error = %e, "watch failed; retrying");
                self.list_ended(kind, false);
            }
        }
        self.metrics.record_live(&self.live);
        if self.pass.is_none() && self.live.is_dirty() && self.flush_at.is_none() {
            self.flush_at = Some(tokio::time::Instant::now() + DEBOUNCE);
        }
    }

    fn judge(&mut self, kind: Kind, obj: DynamicObject) {
        let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
        if self.scope.leaves_out(ns) {
            return;
        }
        let uid = obj.metadata.uid.clone().unwrap_or_default();
        let m = match super::to_manifest(kind, obj) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "object not judged");
                return;
            }
        };
        let Some(loaded) = self.store.current() else {
            return;
        };
        self.judge.now = crate::unix_now();
        let decision = self.judge.evaluate(&m, &loaded.allowlist);
        self.metrics.record_judged(kind);
        if let Some(pass) = &mut self.pass {
            pass.judged += 1;
        }
        let found = ObjectFindings::from_decision(&decision, &m.api_version, &uid);
        self.live.judged(kind, &m.namespace, &m.name, found);
    }

    /// A list of `kind` completed (or failed): when none is pending, the pass is done
    /// and the reports are written.
    fn list_ended(&mut self, kind: Kind, ok: bool) {
        let Some(pass) = &mut self.pass else {
            return;
        };
        if pass.pending.remove(kind.as_str()) && !ok {
            pass.clean = false;
        }
        if !pass.pending.is_empty() {
            return;
        }
        tracing::info!(
            judged = pass.judged,
            violating = self.live.len(),
            complete = pass.clean,
            took_ms = pass.started.elapsed().as_secs_f64() * 1e3,
            "every object judged"
        );
        self.listed = self.pass.take();
        self.flush_at = Some(tokio::time::Instant::now());
    }

    /// Writes the reports that may have changed; a failed one is tried again later.
    async fn flush(&mut self) {
        self.flush_at = None;
        let mut failed = 0usize;
        for ns in self.live.take_dirty() {
            let report = self.live.report(&ns);
            if let Err(e) = self.publisher.publish(&ns, report).await {
                tracing::warn!(namespace = %ns, error = %e, "PolicyReport not written; retrying");
                self.live.touch(&ns);
                failed += 1;
            }
        }
        if failed > 0 {
            self.flush_at = Some(tokio::time::Instant::now() + RETRY);
            return;
        }
        if let Some(pass) = self.listed.take() {
            if pass.clean {
                self.metrics
                    .record_full_pass(crate::unix_now(), pass.started.elapsed());
            }
            self.ready.store(true, Ordering::Relaxed);
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until the wall clock reaches `at` (seconds since the epoch), or for
/// [`MAX_SLEEP`] at most.
async fn sleep_until_expiry(at: Option<i64>) {
    let Some(at) = at else {
        return std::future::pending().await;
    };
    let target = UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
    let wait = target
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(wait.min(MAX_SLEEP)).await;
}

/// `/metrics`, `/healthz` (always 200) and `/readyz` (200 once the first full pass
/// has been published).
async fn serve_ops(listener: tokio::net::TcpListener, metrics: Metrics, ready: Arc<AtomicBool>) {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ok = ready.load(Ordering::Relaxed);
                async move {
                    if ok {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: first pass not published\n",
                        )
                    }
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server failed");
    }
}
