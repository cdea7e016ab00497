//! A small fake Kubernetes API server on 127.0.0.1 for the integration tests.
//!
//! It answers the requests kube-rs actually makes, the way the apiserver does:
//!
//! * `GET …/{plural}` lists as a `{Kind}List` with `metadata.resourceVersion`, honours
//!   `fieldSelector` (`metadata.name`, `metadata.namespace`, `metadata.namespace!=`), and pages with `limit` and
//!   `continue` (`metadata.continue`, `metadata.remainingItemCount`). Like a real server
//!   it may return fewer items than `limit` ([`FakeApi::set_max_page`]).
//! * `GET …/{plural}?watch=true&resourceVersion=N` answers `200` with a chunked
//!   `application/json` stream of newline-delimited watch events (`ADDED`, `MODIFIED`,
//!   `DELETED`, `BOOKMARK`, `ERROR`) replayed from an event log, so no event is lost
//!   between a list and the watch that follows it. A watch from a resourceVersion older
//!   than the last compaction gets one `ERROR` event (`410 Expired`) and the stream ends.
//! * `GET …/{plural}/{name}` returns the object or a `404 NotFound` `Status`.
//! * `PATCH …/{plural}/{name}` stores the body as the whole object (server-side apply of
//!   an object one client owns); `DELETE` removes it. Lists honour a `labelSelector`
//!   of `key=value` pairs.
//! * Paths and versions that are not served answer `404` with the apiserver's
//!   `Status` body ("the server could not find the requested resource").
//!
//! The test drives it: [`FakeApi::put`] / [`FakeApi::delete`] change objects and emit
//! events; [`FakeApi::bookmark`], [`FakeApi::drop_watches`] (abort the TCP connection
//! mid-stream, without the final chunk), [`FakeApi::close_watches`] (end cleanly, as on
//! `timeoutSeconds`) and [`FakeApi::expire_watches`] (`410 Gone`) act on the watches
//! open at the time, in order with the events before them. Every request is recorded
//! ([`FakeApi::requests`]).

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// How long [`eventually`] and [`FakeApi::wait_for_request`] wait.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, …
    pub method: String,
    /// The path, e.g. `/api/v1/namespaces/ns/configmaps`.
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
}

impl Request {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A watch request (`watch=true` or `watch=1`).
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !q.is_empty() {
            write!(f, "?{}", q.join("&"))?;
        }
        Ok(())
    }
}

/// A served resource type.
#[derive(Debug, Clone)]
struct ResourceType {
    group: String,
    kind: String,
    plural: String,
    versions: Vec<String>,
}

impl ResourceType {
    fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{version}", self.group)
        }
    }
}

/// (group, plural, namespace, name)
type ObjectKey = (String, String, String, String);

#[derive(Debug, Clone)]
enum Entry {
    Event {
        group: String,
        plural: String,
        namespace: String,
        name: String,
        rv: u64,
        kind: &'static str,
        object: Value,
    },
    Bookmark {
        rv: u64,
    },
    Drop,
    Close,
    Expire,
}

impl Entry {
    fn rv(&self) -> Option<u64> {
        match self {
            Entry::Event { rv, .. } | Entry::Bookmark { rv } => Some(*rv),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    rv: u64,
    uids: u64,
    types: Vec<ResourceType>,
    objects: BTreeMap<ObjectKey, Value>,
    log: Vec<Entry>,
    compacted_rv: u64,
    max_page: Option<usize>,
    requests: Vec<Request>,
}

struct Shared {
    state: Mutex<State>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The running fake; the server stops when it is dropped.
pub struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeApi {
    /// Binds 127.0.0.1:0 and serves ConfigMaps (`v1`). Needs a tokio runtime.
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (changed, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rv: 100,
                ..State::default()
            }),
            changed,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let fake = FakeApi {
            addr,
            shared,
            server,
        };
        fake.serve_kind("", "ConfigMap", "configmaps", &["v1"]);
        fake
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        egress_guard::install_crypto_provider();
        let config = kube::Config::new(self.url().parse().expect("url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Serves a namespaced kind of `group` at `versions` (a CRD's served versions).
    pub fn serve_kind(&self, group: &str, kind: &str, plural: &str, versions: &[&str]) {
        self.shared.lock().types.push(ResourceType {
            group: group.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            versions: versions.iter().map(|v| (*v).to_owned()).collect(),
        });
    }

    /// Lists return at most `n` items per page, whatever `limit` asks for.
    pub fn set_max_page(&self, n: usize) {
        self.shared.lock().max_page = Some(n);
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Creates or replaces an object (`apiVersion`, `kind`, `metadata.namespace` and
    /// `metadata.name` set); open watches get `ADDED` or `MODIFIED`. Returns its
    /// resourceVersion.
    pub fn put(&self, object: Value) -> u64 {
        self.store(object, true)
    }

    /// Changes an object without any watch event, as if the event had been compacted
    /// away before a watch could see it. Only a relist finds the new state.
    pub fn put_unseen(&self, object: Value) -> u64 {
        self.store(object, false)
    }

    fn store(&self, object: Value, announce: bool) -> u64 {
        store(&self.shared, object, announce)
    }

    /// The stored object, as last written (by the test or by a client's PATCH).
    pub fn object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let st = self.shared.lock();
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let plural = &st
            .types
            .iter()
            .find(|t| t.group == group && t.kind == kind)?
            .plural;
        st.objects
            .get(&(
                group.to_owned(),
                plural.clone(),
                namespace.to_owned(),
                name.to_owned(),
            ))
            .cloned()
    }

    /// Deletes an object; open watches get `DELETED` with its last state at the new
    /// resourceVersion. Returns that resourceVersion.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> u64 {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let plural = self
            .shared
            .lock()
            .types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
            .unwrap_or_else(|| panic!("fake does not serve {api_version} {kind}"))
            .plural
            .clone();
        remove(
            &self.shared,
            &(
                group.to_owned(),
                plural,
                namespace.to_owned(),
                name.to_owned(),
            ),
        )
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} to delete"))
    }

    /// Advances the resourceVersion (as other objects in the cluster change) and sends
    /// open watches a `BOOKMARK` carrying it. Returns it.
    pub fn bookmark(&self) -> u64 {
        let rv = {
            let mut st = self.shared.lock();
            st.rv += 1;
            let rv = st.rv;
            st.log.push(Entry::Bookmark { rv });
            rv
        };
        self.shared.notify();
        rv
    }

    /// Open watches send what is queued before this call, then the connection is
    /// aborted: no terminating chunk, as when a load balancer or the apiserver dies.
    pub fn drop_watches(&self) {
        self.control(Entry::Drop);
    }

    /// Open watches end cleanly after what is queued (as when `timeoutSeconds` expires).
    pub fn close_watches(&self) {
        self.control(Entry::Close);
    }

    /// The watch cache is compacted at the current resourceVersion: open watches get
    /// an `ERROR` event with a `410 Expired` `Status` and end, and watches from an older
    /// resourceVersion get the same.
    pub fn expire_watches(&self) {
        {
            let mut st = self.shared.lock();
            st.compacted_rv = st.rv;
            st.log.push(Entry::Expire);
        }
        self.shared.notify();
    }

    fn control(&self, entry: Entry) {
        self.shared.lock().log.push(entry);
        self.shared.notify();
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// Requests to exactly `path` so far.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// All requests, one per line, for assertion messages.
    pub fn request_log(&self) -> String {
        self.requests().iter().map(|r| format!("  {r}\n")).collect()
    }

    /// Waits (up to [`DEADLINE`]) for a request matching `pred`; returns it.
    pub async fn wait_for_request(
        &self,
        what: &str,
        mut pred: impl FnMut(&Request) -> bool,
    ) -> Request {
        let mut found = None;
        eventually(what, || {
            found = self.requests().into_iter().find(|r| pred(r));
            found.is_some()
        })
        .await;
        found.unwrap_or_else(|| unreachable!())
    }

    /// Proves that a watch client has consumed every event sent so far: sends a
    /// bookmark, drops the connection, and waits for the re-watch from the bookmark's
    /// resourceVersion. A kube-runtime watcher only re-watches when its consumer polls
    /// for the next event, so everything before the bookmark has been handled.
    pub async fn sync_watch(&self, path: &str) {
        let rv = self.bookmark();
        self.drop_watches();
        let rv = rv.to_string();
        self.wait_for_request(
            &format!("a re-watch of {path} from resourceVersion {rv}"),
            |r| r.path == path && r.is_watch() && r.param("resourceVersion") == Some(rv.as_str()),
        )
        .await;
    }
}

/// Polls `cond` every 10 ms until it holds; panics after [`DEADLINE`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if cond() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A ConfigMap object.
pub fn configmap(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": namespace, "name": name},
        "data": data,
    })
}

// === the server ===

/// Removes an object and announces `DELETED` at a new resourceVersion; `None` when
/// there is no such object.
fn remove(shared: &Shared, key: &ObjectKey) -> Option<u64> {
    let rv = {
        let mut st = shared.lock();
        let mut object = st.objects.remove(key)?;
        st.rv += 1;
        let rv = st.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.log.push(Entry::Event {
            group: key.0.clone(),
            plural: key.1.clone(),
            namespace: key.2.clone(),
            name: key.3.clone(),
            rv,
            kind: "DELETED",
            object,
        });
        rv
    };
    shared.notify();
    Some(rv)
}

/// Creates or replaces an object; see [`FakeApi::put`].
fn store(shared: &Shared, mut object: Value, announce: bool) -> u64 {
    let rv = {
        let mut st = shared.lock();
        let api_version = object["apiVersion"]
            .as_str()
            .expect("apiVersion")
            .to_owned();
        let kind = object["kind"].as_str().expect("kind").to_owned();
        let group = api_version
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_owned();
        let ty = st
            .types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
            .unwrap_or_else(|| panic!("fake does not serve {api_version} {kind}"))
            .clone();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .expect("metadata.namespace")
            .to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_owned();
        let key = (
            group.clone(),
            ty.plural.clone(),
            namespace.clone(),
            name.clone(),
        );
        st.rv += 1;
        let rv = st.rv;
        let existing_uid = st.objects.get(&key).map(|o| o["metadata"]["uid"].clone());
        let uid = match existing_uid {
            Some(uid) => uid,
            None => {
                st.uids += 1;
                json!(format!("00000000-0000-4000-8000-{:012}", st.uids))
            }
        };
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        meta["uid"] = uid;
        meta["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
        let kind = if st.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.objects.insert(key, object.clone());
        if announce {
            st.log.push(Entry::Event {
                group,
                plural: ty.plural,
                namespace,
                name,
                rv,
                kind,
                object,
            });
        }
        rv
    };
    shared.notify();
    rv
}

fn status(code: StatusCode, reason: &str, message: &str, details: Value) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_served() -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        json!({}),
    )
}

fn bad_request(message: &str) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, json!({}))
}

fn json_response(body: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `metadata.name=x,metadata.namespace=y,metadata.namespace!=z`: the name and namespace
/// asked for, and the namespaces excluded.
#[derive(Debug, Clone, Default)]
struct Fields {
    name: Option<String>,
    namespace: Option<String>,
    not_namespaces: Vec<String>,
}

fn parse_fields(selector: Option<&str>) -> Result<Fields, String> {
    let mut fields = Fields::default();
    for term in selector.unwrap_or("").split(',').filter(|t| !t.is_empty()) {
        let (key, value, negated) = if let Some((k, v)) = term.split_once("!=") {
            (k, v, true)
        } else if let Some((k, v)) = term.split_once("==") {
            (k, v, false)
        } else if let Some((k, v)) = term.split_once('=') {
            (k, v, false)
        } else {
            return Err(format!("invalid field selector: {term:?}"));
        };
        match (key, negated) {
            ("metadata.name", false) => fields.name = Some(value.to_owned()),
            ("metadata.namespace", false) => fields.namespace = Some(value.to_owned()),
            ("metadata.namespace", true) => fields.not_namespaces.push(value.to_owned()),
            ("metadata.name", true) => {
                return Err(format!(
                    "fake apiserver: unsupported field selector {term:?}"
                ));
            }
            (other, _) => {
                return Err(format!("field label not supported: {other}"));
            }
        }
    }
    Ok(fields)
}

fn matches(fields: &Fields, namespace: &str, name: &str) -> bool {
    fields.name.as_deref().is_none_or(|n| n == name)
        && fields.namespace.as_deref().is_none_or(|n| n == namespace)
        && !fields.not_namespaces.iter().any(|n| n == namespace)
}

/// Where a request points.
struct Target {
    ty: ResourceType,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn resolve(st: &State, path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        [plural] => (None, *plural, None),
        [plural, name] if *plural != "namespaces" => (None, *plural, Some(*name)),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        _ => return None,
    };
    let ty = st
        .types
        .iter()
        .find(|t| {
            t.group == group && t.plural == plural && t.versions.iter().any(|v| v == version)
        })?
        .clone();
    Some(Target {
        ty,
        version: version.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
    })
}

/// The object as served at `version`.
fn at_version(object: &Value, ty: &ResourceType, version: &str) -> Value {
    let mut o = object.clone();
    o["apiVersion"] = json!(ty.api_version(version));
    o
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let query = parse_query(uri.query());
    let request = Request {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
    };
    let mut st = shared.lock();
    st.requests.push(request.clone());
    if method == Method::PATCH || method == Method::DELETE {
        let Some(target) = resolve(&st, &request.path).filter(|t| t.name.is_some()) else {
            return not_served();
        };
        drop(st);
        return write(&shared, &target, &method, &body);
    }
    if method != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            json!({}),
        );
    }
    let Some(target) = resolve(&st, &request.path) else {
        return not_served();
    };
    if let Some(name) = &target.name {
        return get(&st, &target, name);
    }
    let fields = match parse_fields(request.param("fieldSelector")) {
        Ok(f) => f,
        Err(message) => return bad_request(&message),
    };
    let labels = request.param("labelSelector").unwrap_or("");
    if request.is_watch() && !labels.is_empty() {
        return bad_request("fake apiserver: labelSelector is not supported on watches");
    }
    if request.is_watch() {
        drop(st);
        return watch(shared, target, fields, &request);
    }
    list(&st, &target, &fields, &request)
}

fn get(st: &State, target: &Target, name: &str) -> Response {
    let key = (
        target.ty.group.clone(),
        target.ty.plural.clone(),
        target.namespace.clone().unwrap_or_default(),
        name.to_owned(),
    );
    match st.objects.get(&key) {
        Some(o) => json_response(&at_version(o, &target.ty, &target.version)),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} \"{name}\" not found", target.ty.plural),
            json!({"name": name, "group": target.ty.group, "kind": target.ty.plural}),
        ),
    }
}

/// `a=b,c=d`: every pair must be among the object's labels.
fn has_labels(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        term.split_once('=')
            .is_some_and(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v))
    })
}

/// A server-side apply (`PATCH`, the whole object in the body) or a `DELETE` of one
/// object, announced to open watches.
fn write(shared: &Shared, target: &Target, method: &Method, body: &[u8]) -> Response {
    let name = target.name.clone().unwrap_or_default();
    let namespace = target.namespace.clone().unwrap_or_default();
    let key = (
        target.ty.group.clone(),
        target.ty.plural.clone(),
        namespace.clone(),
        name.clone(),
    );
    if *method == Method::DELETE {
        if !shared.lock().objects.contains_key(&key) {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{} \"{name}\" not found", target.ty.plural),
                json!({"name": name}),
            );
        }
        let (api_version, kind) = (
            target.ty.api_version(&target.version),
            target.ty.kind.clone(),
        );
        remove(shared, &key);
        return json_response(
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success",
            "details": {"name": name, "kind": kind, "group": api_version}}),
        );
    }
    let mut object: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("fake apiserver: PATCH body is not JSON: {e}")),
    };
    object["apiVersion"] = json!(target.ty.api_version(&target.version));
    object["kind"] = json!(target.ty.kind);
    object["metadata"]["namespace"] = json!(namespace);
    object["metadata"]["name"] = json!(name);
    store(shared, object, true);
    let stored = shared.lock().objects.get(&key).cloned().unwrap_or_default();
    json_response(&stored)
}

fn list(st: &State, target: &Target, fields: &Fields, request: &Request) -> Response {
    let ty = &target.ty;
    let labels = request.param("labelSelector").unwrap_or("");
    let items: Vec<Value> = st
        .objects
        .iter()
        .filter(|((g, p, ns, name), _)| {
            *g == ty.group
                && *p == ty.plural
                && target.namespace.as_deref().is_none_or(|n| n == ns)
                && matches(fields, ns, name)
        })
        .filter(|(_, o)| has_labels(o, labels))
        .map(|(_, o)| {
            let mut o = at_version(o, ty, &target.version);
            if ty.group.is_empty() {
                // Built-in types' list items carry no apiVersion/kind in JSON.
                let m = o.as_object_mut().unwrap_or_else(|| unreachable!());
                m.remove("apiVersion");
                m.remove("kind");
            }
            o
        })
        .collect();
    let limit = match request.param("limit").map(str::parse::<usize>) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return bad_request("limit: invalid value"),
    };
    let (offset, list_rv): (usize, u64) = match request.param("continue") {
        None | Some("") => (0, st.rv),
        Some(token) => match token
            .strip_prefix("fake-continue:")
            .and_then(|t| t.split_once(':'))
            .and_then(|(rv, off)| Some((off.parse().ok()?, rv.parse().ok()?)))
        {
            Some(v) => v,
            None => {
                return bad_request(&format!("continue key is not valid: {token}"));
            }
        },
    };
    let page = match (limit, st.max_page) {
        (Some(l), Some(m)) => l.min(m),
        (Some(n), None) | (None, Some(n)) => n,
        (None, None) => usize::MAX,
    };
    let total = items.len();
    let end = offset.saturating_add(page).min(total);
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if end < total {
        metadata["continue"] = json!(format!("fake-continue:{list_rv}:{end}"));
        metadata["remainingItemCount"] = json!(total - end);
    }
    let items: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(end.saturating_sub(offset))
        .collect();
    json_response(&json!({
        "kind": format!("{}List", ty.kind),
        "apiVersion": ty.api_version(&target.version),
        "metadata": metadata,
        "items": items,
    }))
}

struct Cursor {
    shared: Arc<Shared>,
    rx: tokio::sync::watch::Receiver<u64>,
    target: Target,
    fields: Fields,
    /// Next log entry to look at.
    pos: usize,
    /// Control entries before this index predate the watch.
    opened_at: usize,
    pending: VecDeque<Bytes>,
    finished: bool,
    /// The resourceVersion of the last event or bookmark sent (or the start).
    last_rv: u64,
    deadline: tokio::time::Instant,
}

enum Step {
    Send(Bytes),
    Drop,
    Close,
    Wait,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn gone(requested: u64, compacted: u64) -> Bytes {
    line(
        "ERROR",
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("too old resource version: {requested} ({compacted})"),
            "reason": "Expired",
            "code": 410,
        }),
    )
}

impl Cursor {
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(Ok(b));
            }
            if self.finished {
                return None;
            }
            self.rx.borrow_and_update();
            match self.step() {
                Step::Send(b) => return Some(Ok(b)),
                Step::Drop => {
                    // Let hyper flush what was already written, then abort.
                    flush_barrier().await;
                    return Some(Err(std::io::Error::other(
                        "fake apiserver dropped the connection",
                    )));
                }
                Step::Close => {
                    flush_barrier().await;
                    return None;
                }
                Step::Wait => {
                    tokio::select! {
                        _ = self.rx.changed() => {}
                        () = tokio::time::sleep_until(self.deadline) => return None,
                    }
                }
            }
        }
    }

    fn step(&mut self) -> Step {
        let st = self.shared.lock();
        while let Some(entry) = st.log.get(self.pos) {
            let idx = self.pos;
            self.pos += 1;
            match entry {
                Entry::Event {
                    group,
                    plural,
                    namespace,
                    name,
                    kind,
                    object,
                    rv,
                } => {
                    if *group == self.target.ty.group
                        && *plural == self.target.ty.plural
                        && self
                            .target
                            .namespace
                            .as_deref()
                            .is_none_or(|n| n == namespace)
                        && matches(&self.fields, namespace, name)
                    {
                        self.last_rv = *rv;
                        return Step::Send(line(
                            kind,
                            &at_version(object, &self.target.ty, &self.target.version),
                        ));
                    }
                }
                Entry::Bookmark { rv } => {
                    self.last_rv = *rv;
                    return Step::Send(line(
                        "BOOKMARK",
                        &json!({
                            "kind": self.target.ty.kind,
                            "apiVersion": self.target.ty.api_version(&self.target.version),
                            "metadata": {"resourceVersion": rv.to_string()},
                        }),
                    ));
                }
                Entry::Drop if idx >= self.opened_at => return Step::Drop,
                Entry::Close if idx >= self.opened_at => return Step::Close,
                Entry::Expire if idx >= self.opened_at => {
                    self.finished = true;
                    return Step::Send(gone(self.last_rv, st.compacted_rv));
                }
                Entry::Drop | Entry::Close | Entry::Expire => {}
            }
        }
        Step::Wait
    }
}

async fn flush_barrier() {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
}

fn watch(shared: Arc<Shared>, target: Target, fields: Fields, request: &Request) -> Response {
    let timeout = match request.param("timeoutSeconds").map(str::parse::<u64>) {
        None => 1800,
        Some(Ok(t)) => t,
        Some(Err(_)) => return bad_request("timeoutSeconds: invalid value"),
    };
    let rv_param = request.param("resourceVersion").unwrap_or("");
    let (pos, opened_at, pending, finished, last_rv) = {
        let st = shared.lock();
        let mut pending = VecDeque::new();
        let mut finished = false;
        let mut last_rv = st.rv;
        let start = match rv_param {
            // "" and "0": start with ADDED for every current object.
            "" | "0" => {
                for ((g, p, ns, name), o) in &st.objects {
                    if *g == target.ty.group
                        && *p == target.ty.plural
                        && target.namespace.as_deref().is_none_or(|n| n == ns)
                        && matches(&fields, ns, name)
                    {
                        pending
                            .push_back(line("ADDED", &at_version(o, &target.ty, &target.version)));
                    }
                }
                st.log.len()
            }
            rv => {
                let Ok(rv) = rv.parse::<u64>() else {
                    return bad_request(&format!("invalid resource version: {rv}"));
                };
                last_rv = rv;
                if rv < st.compacted_rv {
                    pending.push_back(gone(rv, st.compacted_rv));
                    finished = true;
                }
                st.log
                    .iter()
                    .position(|e| e.rv().is_some_and(|r| r > rv))
                    .unwrap_or(st.log.len())
            }
        };
        (start, st.log.len(), pending, finished, last_rv)
    };
    let cursor = Cursor {
        rx: shared.changed.subscribe(),
        shared,
        target,
        fields,
        pos,
        opened_at,
        pending,
        finished,
        last_rv,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        let item = c.next().await?;
        Some((item, c))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
