//! The request pipeline, in one place: AdmissionReview bytes → [`policy::Request`] →
//! [`policy::evaluate`] → [`AdmissionResponse`] → bytes. [`review`] is what the server,
//! the tests and the benchmarks call; the server adds only I/O, metrics and the log line.
//!
//! Decoding reads the review into kube-core's request type with a raw object (the kind
//! module that judges the object decodes only the fields it reads, once), and skips
//! what egress-guard never reads (`options`, the user's groups and extra): a client
//! cannot make the server build a tree of them.

use std::borrow::Cow;
use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOperation,
};
use kube::core::{DynamicObject, NamespaceResourceScope, Resource, Status};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::policy::decision::{MAX_TEXT, MAX_VALUE, truncated};
use crate::policy::{self, Allowlist, Decision, Env, Kind, Operation, Skip, Verdict, Violation};

/// Kubernetes truncates warnings longer than this.
pub const MAX_WARNING_LEN: usize = 256;
/// More warnings than this are summarised in one line.
pub const MAX_WARNINGS: usize = 10;
/// Violations named in a denial message before "and N more".
const MAX_IN_MESSAGE: usize = 5;

/// The webhook endpoint a review arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/validate`: may deny.
    Validate,
    /// `/mutate`: only patches, never denies.
    Mutate,
}

impl Endpoint {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// The object of a review, kept as raw JSON: each kind module decodes what it reads.
#[derive(Debug, Clone)]
pub struct RawObject<'a> {
    raw: &'a RawValue,
    /// Always empty: kube-core's `Resource` needs one, egress-guard reads metadata from
    /// the raw object.
    metadata: ObjectMeta,
}

impl<'a> RawObject<'a> {
    /// The object's JSON.
    pub fn json(&self) -> &'a RawValue {
        self.raw
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self {
            raw: <&RawValue>::deserialize(d)?,
            metadata: ObjectMeta::default(),
        })
    }
}

impl Serialize for RawObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl Resource for RawObject<'_> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Object".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "objects".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What answering a review produced: the HTTP answer and what to record about it.
#[derive(Debug)]
pub struct Reviewed {
    /// HTTP status of the answer.
    pub status: u16,
    /// The answer: an encoded AdmissionReview (`json`) or a plain-text error.
    pub body: Vec<u8>,
    /// True when `body` is JSON.
    pub json: bool,
    /// What happened, for metrics and the log line.
    pub outcome: Outcome,
}

/// How a review ended.
#[derive(Debug)]
pub enum Outcome {
    /// Decoded and judged.
    Judged(Box<Judgement>),
    /// Not judged: the body was unusable or no allowlist was loaded.
    Rejected(Rejection),
}

/// A judged review: the request's identity and the engine's decision.
#[derive(Debug)]
pub struct Judgement {
    /// `request.uid`.
    pub uid: String,
    /// `request.kind.kind` as sent (unbounded: escape before logging).
    pub kind: String,
    /// The kind as a bounded metric label: a kind egress-guard knows, or `other`.
    pub kind_label: &'static str,
    /// `request.namespace`.
    pub namespace: String,
    /// The object's name, or its `generateName` prefix.
    pub name: String,
    /// The operation.
    pub operation: Operation,
    /// `request.dryRun`.
    pub dry_run: bool,
    /// `request.userInfo.username` (unbounded: escape before logging).
    pub user: String,
    /// The distinct violation codes, sorted, comma-separated.
    pub codes: String,
    /// What was answered.
    pub answer: Answer,
    /// The engine's decision.
    pub decision: Decision,
}

/// What an endpoint answered, for logs and metric labels: the one place that maps a
/// decision to an endpoint's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Allowed with nothing to report.
    Allow,
    /// Denied.
    Deny,
    /// Allowed with violations reported (audit mode or unchanged spec).
    Audit,
    /// Allowed with a patch (`/mutate`).
    Patch,
    /// Not checked (DELETE, other kinds, exempt namespace).
    Skip,
}

impl Answer {
    /// What `endpoint` answers for `d`: `/validate` follows the verdict, `/mutate`
    /// only ever patches.
    pub fn of(endpoint: Endpoint, d: &Decision) -> Self {
        match (endpoint, d.verdict()) {
            (_, Verdict::Skip) => Answer::Skip,
            (Endpoint::Mutate, _) if d.patch().is_some() => Answer::Patch,
            (Endpoint::Mutate, _) => Answer::Allow,
            (Endpoint::Validate, Verdict::Deny) => Answer::Deny,
            (Endpoint::Validate, Verdict::Audit) => Answer::Audit,
            (Endpoint::Validate, Verdict::Allow) => Answer::Allow,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Allow => "allow",
            Answer::Deny => "deny",
            Answer::Audit => "audit",
            Answer::Patch => "patch",
            Answer::Skip => "skip",
        }
    }
}

/// A review that was not judged.
#[derive(Debug)]
pub struct Rejection {
    /// A bounded reason label (`malformed`, `undecodable`, `no_request`, `not_ready`).
    pub reason: &'static str,
    /// What was wrong.
    pub message: String,
    /// The request's uid, when it could be read.
    pub uid: Option<String>,
}

/// Answers one review body on `endpoint` under `allowlist` (`None`: none loaded yet,
/// so the request is refused with 503), within the engine limits of `env`.
pub fn review(
    endpoint: Endpoint,
    body: &[u8],
    allowlist: Option<&Allowlist>,
    env: &Env<'_>,
) -> Reviewed {
    let req = match decode(body) {
        Ok(r) => r,
        Err(e) => return rejected(e),
    };
    let Some(allowlist) = allowlist else {
        return not_ready(&req);
    };
    // `/validate` answers never carry the timeout patch: do not plan it.
    let env = Env {
        judge_only: endpoint == Endpoint::Validate,
        ..*env
    };
    let request = to_policy_request(&req);
    let decision = policy::evaluate(&request, allowlist, &env);
    let subject = Subject {
        kind: request.kind,
        operation: request.operation,
        name: request.name.to_owned(),
    };
    answer(endpoint, req, subject, decision)
}

/// The answer when a review could not be evaluated within the deadline: `EG901`, which
/// denies in enforce mode and is reported in audit mode, like any violation. Only the
/// envelope is decoded (the object is skipped), so this costs one scan of the body.
pub fn too_complex(endpoint: Endpoint, body: &[u8], allowlist: Option<&Allowlist>) -> Reviewed {
    let req = match decode_as::<Skipped>(body) {
        Ok(req) => req,
        Err(e) => return rejected(e),
    };
    let Some(allowlist) = allowlist else {
        return not_ready(&req);
    };
    let subject = Subject {
        // A CONNECT carries the options of the session (`PodExecOptions`), not the pod.
        kind: match req.operation {
            KubeOperation::Connect
                if req.resource.group.is_empty() && req.resource.resource == "pods" =>
            {
                Some(Kind::Pod)
            }
            _ => Kind::from_group_kind(&req.kind.group, &req.kind.kind),
        },
        operation: operation(&req.operation),
        name: req.name.clone(),
    };
    let namespace = req.namespace.as_deref().unwrap_or_default();
    let mut decision = policy::too_complex(namespace, allowlist);
    let kind: &str = subject.kind.map_or(&req.kind.kind, |k| k.as_str());
    policy::add_help(&mut decision, allowlist, namespace, kind, &subject.name);
    answer(endpoint, req, subject, decision)
}

/// What a review is about, worked out once from the request.
struct Subject {
    kind: Option<Kind>,
    operation: Operation,
    /// The object's name, or its `generateName` prefix.
    name: String,
}

/// Encodes the endpoint's answer to a judged request.
fn answer<T: Resource>(
    endpoint: Endpoint,
    req: AdmissionRequest<T>,
    subject: Subject,
    mut decision: Decision,
) -> Reviewed {
    let answer = Answer::of(endpoint, &decision);
    let codes = decision.codes();
    let response = respond(endpoint, &req, &subject.name, &codes, &mut decision).into_review();
    let body = match encode(response) {
        Ok(b) => b,
        // Serialising strings and numbers cannot fail; if it ever did, fail closed.
        Err(e) => {
            let msg = format!("egress-guard could not encode its answer: {e}");
            return error_answer(500, &req.uid, &req.types.api_version, "encode", msg);
        }
    };
    Reviewed {
        status: 200,
        body,
        json: true,
        outcome: Outcome::Judged(Box::new(Judgement {
            operation: subject.operation,
            answer,
            uid: req.uid,
            kind: req.kind.kind,
            kind_label: subject.kind.map_or("other", Kind::as_str),
            namespace: req.namespace.unwrap_or_default(),
            name: subject.name,
            user: req.user_info.username.unwrap_or_default(),
            dry_run: req.dry_run,
            codes,
            decision,
        })),
    }
}

/// The answer to a body that is not a usable AdmissionReview.
fn rejected(e: ReviewError) -> Reviewed {
    match e {
        ReviewError::Undecodable {
            uid,
            api_version,
            message,
        } => {
            let msg = format!("egress-guard could not decode the request: {message}");
            error_answer(200, &uid, &api_version, "undecodable", msg)
        }
        e => {
            let reason = if matches!(e, ReviewError::NoRequest) {
                "no_request"
            } else {
                "malformed"
            };
            Reviewed {
                status: 400,
                body: format!("{e}\n").into_bytes(),
                json: false,
                outcome: Outcome::Rejected(Rejection {
                    reason,
                    message: e.to_string(),
                    uid: None,
                }),
            }
        }
    }
}

/// The answer while no allowlist is loaded: 503 with an error review.
fn not_ready<T: Resource>(req: &AdmissionRequest<T>) -> Reviewed {
    let msg = "egress-guard has no allowlist loaded yet".to_owned();
    error_answer(503, &req.uid, &req.types.api_version, "not_ready", msg)
}

/// An object the deadline path does not read: skipped without allocating.
#[derive(Debug, Default)]
struct Skipped(ObjectMeta);

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Self::default())
    }
}

impl Serialize for Skipped {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl Resource for Skipped {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Object".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "objects".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0
    }
}

/// An AdmissionReview that refuses a request it could identify but not judge.
fn error_answer(
    status: u16,
    uid: &str,
    api_version: &str,
    reason: &'static str,
    message: String,
) -> Reviewed {
    // An undecodable request is answered with HTTP 200 and a 400 review.
    let code = if status == 200 { 400 } else { status };
    let review = error_review_with(uid, api_version, &message, code);
    let (status, body, json) = match serde_json::to_vec(&review) {
        Ok(b) => (status, b, true),
        Err(_) => (500, format!("{message}\n").into_bytes(), false),
    };
    Reviewed {
        status,
        body,
        json,
        outcome: Outcome::Rejected(Rejection {
            reason,
            message,
            uid: Some(uid.to_owned()),
        }),
    }
}

fn operation(op: &KubeOperation) -> Operation {
    match op {
        KubeOperation::Create => Operation::Create,
        KubeOperation::Update => Operation::Update,
        KubeOperation::Delete => Operation::Delete,
        KubeOperation::Connect => Operation::Connect,
    }
}

/// A review body that cannot be answered with an AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or not an AdmissionReview; no uid could be read.
    #[error("malformed AdmissionReview: {0}")]
    Malformed(String),
    /// Valid JSON with a `request.uid`, but the request does not decode.
    #[error("undecodable AdmissionReview request {uid}: {message}")]
    Undecodable {
        /// The request's uid, to answer with.
        uid: String,
        /// The review's apiVersion, echoed in the answer.
        api_version: String,
        /// What failed.
        message: String,
    },
    /// A well-formed AdmissionReview without `request`.
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// Decodes a review body into its request.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<RawObject<'_>>, ReviewError> {
    decode_as(body)
}

/// The review as the apiserver sends it, minus what is never read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<T> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<RequestFields<T>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestFields<T> {
    uid: String,
    kind: kube::core::GroupVersionKind,
    resource: kube::core::GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<kube::core::GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<kube::core::GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: KubeOperation,
    user_info: User,
    object: Option<T>,
    old_object: Option<T>,
    #[serde(default)]
    dry_run: bool,
}

/// Only the user name is read; groups and extra are skipped.
#[derive(Deserialize)]
struct User {
    #[serde(default)]
    username: Option<String>,
}

fn decode_as<'de, T: Resource + Deserialize<'de>>(
    body: &'de [u8],
) -> Result<AdmissionRequest<T>, ReviewError> {
    let envelope = match serde_json::from_slice::<Envelope<T>>(body) {
        Ok(e) => e,
        Err(e) => return Err(salvage_uid(body, e)),
    };
    let r = envelope.request.ok_or(ReviewError::NoRequest)?;
    Ok(AdmissionRequest {
        types: kube::core::TypeMeta {
            api_version: envelope.api_version,
            kind: envelope.kind,
        },
        uid: r.uid,
        kind: r.kind,
        resource: r.resource,
        sub_resource: r.sub_resource,
        request_kind: r.request_kind,
        request_resource: r.request_resource,
        request_sub_resource: r.request_sub_resource,
        name: r.name,
        namespace: r.namespace,
        operation: r.operation,
        user_info: k8s_openapi::api::authentication::v1::UserInfo {
            username: r.user_info.username,
            ..Default::default()
        },
        object: r.object,
        old_object: r.old_object,
        dry_run: r.dry_run,
        options: None,
    })
}

/// When the full decode fails, reads just enough to answer the apiserver by uid.
fn salvage_uid(body: &[u8], err: serde_json::Error) -> ReviewError {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope {
        #[serde(default)]
        api_version: String,
        request: Option<UidOnly>,
    }
    #[derive(Deserialize)]
    struct UidOnly {
        uid: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            api_version,
            request: Some(UidOnly { uid }),
        }) if !uid.is_empty() && api_version.starts_with("admission.k8s.io/") => {
            ReviewError::Undecodable {
                uid: truncated(&uid, MAX_VALUE),
                api_version: truncated(&api_version, MAX_VALUE),
                message: truncated(&err.to_string(), MAX_TEXT),
            }
        }
        Ok(Envelope { request: None, .. }) => ReviewError::NoRequest,
        _ => ReviewError::Malformed(truncated(&err.to_string(), MAX_TEXT)),
    }
}

/// The policy's view of an admission request.
pub fn to_policy_request<'a>(req: &'a AdmissionRequest<RawObject<'_>>) -> policy::Request<'a> {
    policy::Request {
        // A CONNECT carries the options of the session (`PodExecOptions`), not the pod.
        kind: match req.operation {
            KubeOperation::Connect
                if req.resource.group.is_empty() && req.resource.resource == "pods" =>
            {
                Some(Kind::Pod)
            }
            _ => Kind::from_group_kind(&req.kind.group, &req.kind.kind),
        },
        operation: operation(&req.operation),
        namespace: req.namespace.as_deref().unwrap_or_default(),
        name: object_name(req),
        object: req.object.as_ref().map(RawObject::json),
        old_object: req.old_object.as_ref().map(RawObject::json),
        user: req.user_info.username.as_deref().unwrap_or_default(),
        subresource: req.sub_resource.as_deref().unwrap_or_default(),
    }
}

/// The request's name, or the object's `generateName` prefix on CREATE.
pub fn object_name<'a>(req: &'a AdmissionRequest<RawObject<'_>>) -> &'a str {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta<'a> {
        #[serde(borrow, default)]
        generate_name: Option<&'a str>,
    }
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(borrow, default)]
        metadata: Option<Meta<'a>>,
    }
    if !req.name.is_empty() {
        return &req.name;
    }
    req.object
        .as_ref()
        .and_then(|o| serde_json::from_str::<Named<'_>>(o.json().get()).ok())
        .and_then(|n| n.metadata?.generate_name)
        .unwrap_or_default()
}

/// Builds the answer for one endpoint from the engine's decision. On `/mutate` the
/// decision's patch moves into the answer (it is left empty).
pub fn respond<T: Resource>(
    endpoint: Endpoint,
    req: &AdmissionRequest<T>,
    name: &str,
    codes: &str,
    d: &mut Decision,
) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    match endpoint {
        Endpoint::Validate => validate_response(resp, req, name, codes, d),
        Endpoint::Mutate => mutate_response(resp, d),
    }
}

fn validate_response<T: Resource>(
    mut resp: AdmissionResponse,
    req: &AdmissionRequest<T>,
    name: &str,
    codes: &str,
    d: &Decision,
) -> AdmissionResponse {
    let mut warnings = Warnings::default();
    if d.skipped == Some(Skip::NotIstio) {
        warnings.push(|| {
            format!(
                "{PREFIX}{} is not a kind egress-guard checks; not checked",
                truncated(&req.kind.kind, MAX_FIELD_IN_MESSAGE)
            )
        });
    }
    if d.violations.is_empty() {
        for w in &d.warnings {
            warnings.push(|| note(w));
        }
        return warnings.apply(resp);
    }
    let subject = format!(
        "{} {}",
        truncated(&req.kind.kind, MAX_FIELD_IN_MESSAGE),
        qualified_name(req.namespace.as_deref(), name)
    );
    if !d.allowed() {
        resp = resp.deny(denial_message(&subject, d));
        resp.result.code = 403;
        resp.result.reason = "Forbidden".to_owned();
        return resp;
    }
    let why = if d.spec_unchanged {
        "spec unchanged, not enforced"
    } else {
        "audit mode, not enforced"
    };
    warnings.help = d
        .help
        .as_deref()
        .map(|h| truncated(&note(h), MAX_WARNING_LEN));
    for v in &d.violations {
        warnings.push(|| format!("egress-guard ({why}): {}", describe(v)));
    }
    warnings.extra += d.omitted;
    for w in &d.warnings {
        warnings.push(|| note(w));
    }
    resp.audit_annotations = audit_annotations(codes, d);
    warnings.apply(resp)
}

/// The `/mutate` answer. The patch moves from the decision into the response: it is
/// proportional to the routes (a million of them fit in a 3 MiB body), so not copied.
fn mutate_response(resp: AdmissionResponse, d: &mut Decision) -> AdmissionResponse {
    let mut warnings = Warnings::default();
    for n in d.mutation_notes() {
        warnings.push(|| note(&n));
    }
    if d.patch().is_none() {
        return warnings.apply(resp);
    }
    let patch = std::mem::take(&mut d.patch);
    match resp.clone().with_patch(patch) {
        Ok(patched) => warnings.apply(patched),
        // A patch of strings and indexes always serialises; if it ever did not,
        // admitting unpatched beats failing every VirtualService change.
        Err(e) => {
            let mut w = Warnings::default();
            w.push(|| note(&format!("timeout patch not applied: {e}")));
            w.apply(resp)
        }
    }
}

/// What every warning a tenant sees starts with: `kubectl` prints warnings from every
/// webhook and from the apiserver alike, and this says whose it is.
const PREFIX: &str = "egress-guard: ";

/// A warning from the engine or the mutation, prefixed once.
fn note(text: &str) -> String {
    format!("{PREFIX}{text}")
}

/// Longest kind, namespace or name quoted in a message.
const MAX_FIELD_IN_MESSAGE: usize = 128;
/// Longest path or value quoted per violation in a message, warning or annotation.
const MAX_QUOTED: usize = 128;
/// Longest violation reason quoted in a message.
const MAX_REASON: usize = 200;

/// `namespace/name`, or just the name for cluster-scoped requests.
fn qualified_name(namespace: Option<&str>, name: &str) -> String {
    let name = truncated(name, MAX_FIELD_IN_MESSAGE);
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{}/{name}", truncated(ns, MAX_FIELD_IN_MESSAGE)),
        _ => name,
    }
}

/// `EG101 spec.hosts[0] "x": reason`, each part cut so that one violation stays short.
pub fn describe(v: &Violation) -> String {
    format!(
        "{} {} {:?}: {}",
        v.code,
        truncated(&v.path, MAX_QUOTED),
        truncated(&v.value, MAX_QUOTED),
        truncated(&v.message, MAX_REASON)
    )
}

/// One concise line: kind, namespace/name, then the first few violations' code, path and
/// value, and how many more there are. At most a few kilobytes whatever the object.
pub fn denial_message(subject: &str, d: &Decision) -> String {
    let shown: Vec<String> = d
        .violations
        .iter()
        .take(MAX_IN_MESSAGE)
        .map(describe)
        .collect();
    let mut msg = format!("egress-guard denied {subject}: {}", shown.join("; "));
    let more = d.violation_count().saturating_sub(shown.len());
    if more > 0 {
        msg.push_str(&format!("; and {more} more"));
    }
    if let Some(help) = &d.help {
        msg.push_str(". ");
        msg.push_str(help);
    }
    msg
}

/// Annotations for the audit log: the distinct codes, and the violations (as many as
/// fit in 1 KiB), and the mode.
fn audit_annotations(codes: &str, d: &Decision) -> HashMap<String, String> {
    HashMap::from([
        ("codes".to_owned(), codes.to_owned()),
        ("violations".to_owned(), violation_list(d, MAX_ANNOTATION)),
        ("mode".to_owned(), d.mode.as_str().to_owned()),
    ])
}

/// Longest audit annotation value.
const MAX_ANNOTATION: usize = 1024;

/// `EG101 spec.hosts[0]=evil.example, …`: each violation's code, path and value, as
/// many as fit in `max` bytes (the audit annotation, the decision log line).
pub fn violation_list(d: &Decision, max: usize) -> String {
    let mut listed = String::new();
    for v in &d.violations {
        let item = format!(
            "{} {}={}",
            v.code,
            truncated(&v.path, MAX_QUOTED),
            truncated(&v.value, MAX_QUOTED)
        );
        if listed.len() + item.len() + 2 > max {
            listed.push_str(", …");
            break;
        }
        if !listed.is_empty() {
            listed.push_str(", ");
        }
        listed.push_str(&item);
    }
    listed
}

/// Warnings for one response: at most [`MAX_WARNINGS`], each at most
/// [`MAX_WARNING_LEN`] bytes; beyond that they are only counted, never built.
#[derive(Debug, Default)]
struct Warnings {
    kept: Vec<String>,
    extra: usize,
    /// The platform's help, always last and never counted away.
    help: Option<String>,
}

impl Warnings {
    fn push(&mut self, w: impl FnOnce() -> String) {
        // Room is kept for the "and N more" line and the help.
        if self.kept.len() < MAX_WARNINGS - 1 - usize::from(self.help.is_some()) {
            self.kept.push(truncated(&w(), MAX_WARNING_LEN));
        } else {
            self.extra += 1;
        }
    }

    fn apply(mut self, mut resp: AdmissionResponse) -> AdmissionResponse {
        if self.extra > 0 {
            self.kept
                .push(note(&format!("and {} more warnings", self.extra)));
        }
        self.kept.extend(self.help);
        if !self.kept.is_empty() {
            resp.warnings = Some(self.kept);
        }
        resp
    }
}

/// Encodes a review for the wire. kube-core serialises `response.patch` as an array of
/// byte values; the AdmissionReview contract (and every apiserver client library) uses
/// the base64 string form of `[]byte`, so the patch is rewritten as base64.
pub fn encode(mut review: AdmissionReview<DynamicObject>) -> serde_json::Result<Vec<u8>> {
    let Some(patch) = review.response.as_mut().and_then(|r| r.patch.take()) else {
        return serde_json::to_vec(&review);
    };
    serde_json::to_vec(&PatchedReview {
        types: &review.types,
        response: PatchedResponse {
            response: review.response.as_ref(),
            patch: Base64(&patch),
        },
    })
}

/// A review whose response carries a patch, encoded as the apiserver reads it: kube's
/// response serialises its `patch` bytes as a list of numbers, and the apiserver wants
/// base64 (Go's `[]byte`). Written straight into the output: a detour through
/// `serde_json::Value` costs 32 bytes per byte of patch.
#[derive(Serialize)]
struct PatchedReview<'a> {
    #[serde(flatten)]
    types: &'a kube::core::TypeMeta,
    response: PatchedResponse<'a>,
}

/// The response's own fields (its `patch` taken out) and the patch.
#[derive(Serialize)]
struct PatchedResponse<'a> {
    #[serde(flatten)]
    response: Option<&'a AdmissionResponse>,
    patch: Base64<'a>,
}

struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&base64::display::Base64Display::new(
            self.0,
            &base64::engine::general_purpose::STANDARD,
        ))
    }
}

/// An answer for a request that could be identified but not judged: denied with 400,
/// so a `failurePolicy: Fail` webhook fails closed with a clear reason.
pub fn error_review(uid: &str, api_version: &str, message: &str) -> AdmissionReview<DynamicObject> {
    error_review_with(uid, api_version, message, 400)
}

/// [`error_review`] with the status code the HTTP answer carries too: 503 while no
/// allowlist is loaded, 500 when the answer cannot be encoded.
fn error_review_with(
    uid: &str,
    api_version: &str,
    message: &str,
    code: u16,
) -> AdmissionReview<DynamicObject> {
    let reason = match code {
        503 => "ServiceUnavailable",
        500 => "InternalError",
        _ => "BadRequest",
    };
    let mut resp = AdmissionResponse::invalid(message);
    resp.uid = uid.to_owned();
    resp.types.api_version = api_version.to_owned();
    resp.result = Status::failure(message, reason).with_code(code);
    resp.into_review()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/admission/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn answer(endpoint: Endpoint, name: &str) -> serde_json::Value {
        let a = Allowlist::from_yaml(policy::allowlist::EXAMPLE).unwrap();
        let r = review(endpoint, &fixture(name), Some(&a), &Env::default());
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn denies_with_403_and_a_message_naming_everything() {
        let r = answer(Endpoint::Validate, "validate-create-serviceentry-v1-exfil");
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
        let resp = &r["response"];
        assert_eq!(resp["allowed"], false);
        assert_eq!(resp["status"]["code"], 403);
        let msg = resp["status"]["message"].as_str().unwrap();
        for part in [
            "ServiceEntry",
            "default/",
            "EG101",
            "spec.hosts[0]",
            "upload.evil.example.org",
        ] {
            assert!(msg.contains(part), "{msg} lacks {part}");
        }
    }

    #[test]
    fn echoes_v1beta1_and_uid() {
        let body = fixture("validate-create-serviceentry-v1-review-v1beta1-exfil");
        let uid =
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["request"]["uid"].clone();
        let r = answer(
            Endpoint::Validate,
            "validate-create-serviceentry-v1-review-v1beta1-exfil",
        );
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(r["response"]["uid"], uid);
    }

    #[test]
    fn mutate_returns_a_base64_json_patch_and_a_warning() {
        let r = answer(
            Endpoint::Mutate,
            "mutate-create-virtualservice-v1-github-api",
        );
        let resp = &r["response"];
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["patchType"], "JSONPatch");
        use base64::Engine as _;
        let patch = base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().expect("patch is a base64 string"))
            .unwrap();
        let patch: serde_json::Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(
            patch,
            serde_json::json!([{"op": "add", "path": "/spec/http/0/timeout", "value": "15s"}])
        );
        assert!(
            resp["warnings"][0]
                .as_str()
                .unwrap()
                .contains("spec.http[0]")
        );
    }

    #[test]
    fn unchanged_spec_update_is_allowed_with_warnings() {
        let a = Allowlist::from_yaml("hosts: [nothing.example]\n").unwrap();
        let body = fixture("validate-update-serviceentry-v1-github-api");
        let req = decode(&body).unwrap();
        let mut d = policy::evaluate(&to_policy_request(&req), &a, &policy::Env::default());
        let codes = d.codes();
        let resp = respond(Endpoint::Validate, &req, "github-api", &codes, &mut d);
        assert!(resp.allowed);
        let w = resp.warnings.unwrap();
        assert!(
            w[0].contains("spec unchanged") && w[0].contains("EG101"),
            "{w:?}"
        );
    }

    #[test]
    fn warnings_are_bounded() {
        let mut w = Warnings::default();
        let mut built = 0;
        for i in 0..30 {
            w.push(|| {
                built += 1;
                format!("{i}{}", "x".repeat(400))
            });
        }
        assert_eq!(
            built,
            MAX_WARNINGS - 1,
            "warnings past the cap are never built"
        );
        let w = w.apply(AdmissionResponse::invalid("t")).warnings.unwrap();
        assert_eq!(w.len(), MAX_WARNINGS);
        assert!(w.iter().all(|w| w.len() <= MAX_WARNING_LEN));
        assert!(w[MAX_WARNINGS - 1].contains("21 more"));
    }

    #[test]
    fn a_huge_object_gets_a_small_answer() {
        // 50,000 hosts of 60 characters, none allowed: 50,000 violations.
        let mut review: serde_json::Value =
            serde_json::from_slice(&fixture("validate-create-serviceentry-v1-exfil")).unwrap();
        let hosts: Vec<String> = (0..50_000)
            .map(|i| format!("{i:0>50}.evil.example"))
            .collect();
        review["request"]["object"]["spec"]["hosts"] = serde_json::json!(hosts);
        review["request"]["object"]["spec"]["exportTo"] = serde_json::json!(vec!["\""; 20_000]);
        let body = serde_json::to_vec(&review).unwrap();
        let a = Allowlist::from_yaml(policy::allowlist::EXAMPLE).unwrap();
        let r = review_body(Endpoint::Validate, &body, &a);
        assert!(
            r.body.len() < 4096,
            "{} bytes answer a {} byte request",
            r.body.len(),
            body.len()
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let msg = v["response"]["status"]["message"].as_str().unwrap();
        assert!(msg.contains("more"), "{msg}");
        assert_eq!(v["response"]["allowed"], false);
    }

    #[test]
    fn audit_mode_answers_are_bounded_too() {
        let mut review: serde_json::Value =
            serde_json::from_slice(&fixture("validate-create-serviceentry-v1-exfil")).unwrap();
        let hosts: Vec<String> = (0..5_000)
            .map(|i| format!("{}{i}.evil.example", "a".repeat(60)))
            .collect();
        review["request"]["object"]["spec"]["hosts"] = serde_json::json!(hosts);
        let body = serde_json::to_vec(&review).unwrap();
        let a = Allowlist::from_yaml("mode: audit\nhosts: [api.github.com]\n").unwrap();
        let r = review_body(Endpoint::Validate, &body, &a);
        assert!(r.body.len() < 8192, "{} bytes", r.body.len());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let resp = &v["response"];
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["warnings"].as_array().unwrap().len(), MAX_WARNINGS);
        assert!(
            resp["auditAnnotations"]["violations"]
                .as_str()
                .unwrap()
                .len()
                <= MAX_ANNOTATION
        );
    }

    #[test]
    fn too_complex_denies_in_enforce_and_warns_in_audit() {
        let body = fixture("validate-create-serviceentry-v1-exfil");
        let enforce = Allowlist::from_yaml("hosts: [a.example]\n").unwrap();
        let r = too_complex(Endpoint::Validate, &body, Some(&enforce));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["code"], 403);
        assert!(
            v["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("EG901")
        );
        let audit = Allowlist::from_yaml("mode: audit\nhosts: [a.example]\n").unwrap();
        let r = too_complex(Endpoint::Validate, &body, Some(&audit));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["response"]["allowed"], true);
        assert!(
            v["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("EG901")
        );
    }

    fn review_body(endpoint: Endpoint, body: &[u8], a: &Allowlist) -> Reviewed {
        review(endpoint, body, Some(a), &Env::default())
    }

    #[test]
    fn salvages_the_uid_of_undecodable_requests() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"abc","kind":7}}"#;
        match decode(body) {
            Err(ReviewError::Undecodable {
                uid, api_version, ..
            }) => {
                assert_eq!(uid, "abc");
                assert_eq!(api_version, "admission.k8s.io/v1");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}"),
            Err(ReviewError::NoRequest)
        ));
        assert!(matches!(
            decode(b"not json"),
            Err(ReviewError::Malformed(_))
        ));
        let r =
            serde_json::to_value(error_review("abc", "admission.k8s.io/v1beta1", "bad")).unwrap();
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(r["response"]["uid"], "abc");
        assert_eq!(r["response"]["allowed"], false);
        assert_eq!(r["response"]["status"]["code"], 400);
    }
}
