//! The pure policy engine: `evaluate(request, allowlist) -> Decision`.
//!
//! No async, no I/O, no clock, no logging: the webhook, `check`, `audit` and the
//! benchmarks all call [`evaluate`], so their verdicts agree by construction. This
//! module must not import anything from the server, sources or CLI.

pub mod allowlist;
pub mod budget;
pub mod decision;
pub mod duration;
pub mod host;
pub mod istio;
pub mod kinds;
pub mod matcher;
pub mod object_ref;
pub mod review_hash;
pub mod suffix_hash;
pub mod timeouts;
pub mod yaml;

use serde_json::value::RawValue;

pub use allowlist::{Allowlist, AllowlistError};
pub use decision::{Code, Decision, Mode, Skip, Verdict, Violation};
pub use kinds::Kind;
pub use object_ref::ObjectRef;

use std::sync::atomic::AtomicBool;

use budget::Budget;
use kinds::{Context, Export};

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A change to an existing object.
    Update,
    /// A deletion: always allowed.
    Delete,
    /// A connect (exec, proxy): never relevant, always allowed.
    Connect,
}

impl Operation {
    /// The name the admission API uses, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// One object to judge, borrowed from wherever it was decoded.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The kind, or `None` for one egress-guard does not judge.
    pub kind: Option<Kind>,
    /// The operation.
    pub operation: Operation,
    /// The object's namespace.
    pub namespace: &'a str,
    /// The object's name (may be empty on CREATE with `generateName`).
    pub name: &'a str,
    /// The whole object as JSON; `None` is judged as an object without a spec.
    pub object: Option<&'a RawValue>,
    /// On UPDATE, the stored object.
    pub old_object: Option<&'a RawValue>,
    /// Who is writing it (`userInfo.username`; empty when unknown, as in `check`).
    pub user: &'a str,
    /// The subresource written, e.g. `ephemeralcontainers` (empty for the object).
    pub subresource: &'a str,
}

/// The ConfigMap that holds the allowlist, and its key: edits to it are judged as
/// allowlists, with the parser the server reloads it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowlistSource {
    /// The ConfigMap.
    pub configmap: ObjectRef,
    /// The key holding the document.
    pub key: String,
}

/// What the edges supply besides the object and the allowlist.
#[derive(Debug, Clone, Copy, Default)]
pub struct Env<'a> {
    /// Raised by the caller (the server does at its deadline) to stop the evaluation;
    /// the decision then carries an `EG901` "too complex" violation.
    pub cancel: Option<&'a AtomicBool>,
    /// Work units for this evaluation; `None` sizes the budget from the object.
    pub work: Option<u64>,
    /// The time, seconds since the epoch: entries that expire stop granting then.
    /// `None` ignores expiry (a caller without a clock).
    pub now: Option<i64>,
    /// Record which allowlist entry granted each reference ([`Decision::explanations`]).
    pub explain: bool,
    /// The allowlist's own ConfigMap, validated as an allowlist when it is written.
    pub allowlist_source: Option<&'a AllowlistSource>,
    /// Leave out the default-timeout patch: the caller only judges (`/validate`).
    pub judge_only: bool,
}

/// Judges one object under one allowlist.
pub fn evaluate(req: &Request<'_>, allowlist: &Allowlist, env: &Env<'_>) -> Decision {
    if matches!(req.operation, Operation::Delete | Operation::Connect) {
        return Decision::skip(Skip::Delete);
    }
    let Some(kind) = req.kind else {
        return Decision::skip(Skip::NotIstio);
    };
    if kind == Kind::ConfigMap {
        // Before the exempt namespaces: the allowlist lives in a platform namespace.
        return match env.allowlist_source {
            Some(src)
                if src.configmap.namespace == req.namespace && src.configmap.name == req.name =>
            {
                allowlist_configmap(req.object.unwrap_or(empty_object()), src)
            }
            _ => Decision::skip(Skip::NotIstio),
        };
    }
    if allowlist.exempt_namespaces.contains(req.namespace) {
        return Decision::skip(Skip::ExemptNamespace);
    }
    // The endpoint controllers copy pod addresses, and istiod registers the workloads
    // that connect to it: their writes are the control plane's own.
    if matches!(
        kind,
        Kind::Endpoints | Kind::EndpointSlice | Kind::WorkloadEntry
    ) && allowlist.trusted_writers.contains(req.user)
    {
        return Decision::skip(Skip::TrustedWriter);
    }
    // Capture is set up when a pod starts; changing a running pod's labels or
    // annotations cannot undo it. Only containers `kubectl debug` adds are new.
    let ephemeral_only = kind == Kind::Pod && req.operation == Operation::Update;
    if ephemeral_only && req.subresource != "ephemeralcontainers" {
        return Decision::skip(Skip::NoEffect);
    }

    let object = req.object.unwrap_or(empty_object());
    let cx = Context {
        allowlist,
        namespace: req.namespace,
        ephemeral_only,
        now: env.now,
        explain: env.explain,
        trusted_writer: allowlist.trusted_writers.contains(req.user),
    };
    let budget = match env.work {
        Some(units) => Budget::new(units, env.cancel),
        None => Budget::for_object(object.get().len(), env.cancel),
    };
    let findings = kinds::inspect(kind, object, &cx, budget);

    let mut decision = Decision {
        mode: allowlist.mode_for(req.namespace),
        violations: findings.violations,
        omitted: findings.omitted,
        warnings: findings.warnings,
        explanations: findings.explanations,
        ..Decision::default()
    };

    if decision.mode == Mode::Audit
        && !decision.violations.is_empty()
        && exported_to_enforcement(&findings.export, allowlist)
    {
        decision.mode = Mode::Enforce;
        decision.violations.push(Violation::new(
            Code::AuditExported,
            export_field(kind),
            "",
            &format!(
                "namespace {} is in audit mode, but this object is visible to namespaces in enforce mode; export it to its own namespace only",
                req.namespace
            ),
        ));
    }

    if req.operation == Operation::Update
        && !decision.violations.is_empty()
        && req
            .old_object
            .is_some_and(|old| same_content(kind, old, object))
    {
        decision.spec_unchanged = true;
    }

    if kind == Kind::VirtualService && !env.judge_only {
        plan_timeouts(
            req.namespace,
            findings.timeout_annotation.as_deref(),
            allowlist,
            &findings.http_routes,
            &mut decision,
        );
    }
    decision
}

/// The most data (keys and values) Kubernetes keeps in one ConfigMap (`MaxSecretSize`).
pub const MAX_CONFIGMAP_DATA: usize = 1024 * 1024;

/// An edit of the allowlist's ConfigMap: denied exactly when the server would refuse to
/// load it (the same parser), so a bad allowlist never reaches the cluster and a good
/// one is never refused. Its load-time warnings come back as admission warnings.
fn allowlist_configmap(object: &RawValue, src: &AllowlistSource) -> Decision {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Data<'a> {
        #[serde(borrow)]
        data: Option<std::collections::BTreeMap<kinds::Str<'a>, kinds::Str<'a>>>,
    }
    let path = format!("data[{}]", src.key);
    let invalid = |message: &str| Decision {
        mode: Mode::Enforce,
        violations: vec![Violation::new(Code::InvalidAllowlist, &path, "", message)],
        ..Decision::default()
    };
    let data = match serde_json::from_str::<Data>(object.get()) {
        Ok(d) => d.data.unwrap_or_default(),
        Err(e) => return invalid(&format!("the ConfigMap does not decode: {e}")),
    };
    // Kubernetes stores no ConfigMap whose data is larger than this, so a larger one is
    // denied as the apiserver would deny it, before its YAML costs a parse.
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_CONFIGMAP_DATA {
        return invalid(&format!(
            "the ConfigMap's data is {size} bytes; Kubernetes stores at most \
             {MAX_CONFIGMAP_DATA}"
        ));
    }
    let Some(text) = data.get(src.key.as_str()) else {
        return invalid(
            "the allowlist key is missing: the server would keep its last good allowlist",
        );
    };
    match Allowlist::from_yaml(text) {
        Ok(a) => Decision {
            mode: Mode::Enforce,
            warnings: a
                .warnings
                .iter()
                .map(|w| format!("allowlist: {w}"))
                .collect(),
            ..Decision::default()
        },
        Err(e) => invalid(&e.to_string()),
    }
}

/// True when an object visible to `export` reaches a namespace in enforce mode.
fn exported_to_enforcement(export: &Export, allowlist: &Allowlist) -> bool {
    match export {
        Export::Local => false,
        Export::Everywhere => allowlist.any_enforce(),
        Export::To { enforced } => *enforced,
    }
}

/// Where a kind says who sees it.
fn export_field(kind: Kind) -> &'static str {
    match kind {
        Kind::ServiceEntry | Kind::VirtualService | Kind::DestinationRule => "spec.exportTo",
        Kind::Service => "metadata.annotations[networking.istio.io/exportTo]",
        _ => "metadata.namespace",
    }
}

/// Adds the default-timeout patch for a VirtualService, honouring the annotation.
fn plan_timeouts(
    namespace: &str,
    annotation: Option<&str>,
    allowlist: &Allowlist,
    routes: &[kinds::HttpRouteInfo],
    decision: &mut Decision,
) {
    let default = allowlist.default_timeout_for(namespace);
    let timeout = match annotation.map(timeouts::parse_override) {
        None => default,
        Some(Ok(timeouts::Override::OptOut)) => None,
        Some(Ok(timeouts::Override::Timeout(d))) => Some(d),
        Some(Err(e)) => {
            decision.warnings.push(format!(
                "metadata.annotations[{}]: {e}; using the default timeout",
                timeouts::ANNOTATION
            ));
            default
        }
    };
    if let Some(t) = timeout {
        let (patch, paths) = timeouts::plan(routes, t, allowlist.timeout_scope);
        decision.patch = patch;
        decision.patched_routes = paths;
        decision.default_timeout = Some(t);
    }
}

/// "UPDATE left what is judged unchanged": the `spec`, or the top-level fields that
/// play its part (Endpoints' `subsets`, an EndpointSlice's addresses and ports).
/// Byte-equal JSON is the fast path (the apiserver encodes both the same way),
/// structural equality the fallback.
fn same_content(kind: Kind, old: &RawValue, new: &RawValue) -> bool {
    let fields: &[&str] = match kind {
        Kind::Endpoints => &["subsets"],
        Kind::EndpointSlice => &["addressType", "endpoints", "ports"],
        _ => &["spec"],
    };
    let (Some(a), Some(b)) = (top_level(old), top_level(new)) else {
        return false;
    };
    fields
        .iter()
        .all(|f| same_json(a.get(f).copied(), b.get(f).copied()))
}

/// An object's top-level fields, borrowed.
fn top_level(object: &RawValue) -> Option<std::collections::HashMap<&str, &RawValue>> {
    serde_json::from_str(object.get()).ok()
}

/// Past this size, content is compared byte for byte only: a tree of a large free-form
/// field (an EnvoyFilter patch) costs tens of times its size in memory.
const MAX_STRUCTURAL_COMPARE: usize = 64 * 1024;

fn same_json(a: Option<&RawValue>, b: Option<&RawValue>) -> bool {
    let (a, b) = (
        a.map_or("null", RawValue::get),
        b.map_or("null", RawValue::get),
    );
    if a == b {
        return true;
    }
    // Unequal bytes of a large field count as a change: the relief for unchanged
    // objects is then not given, which only means the violations are enforced.
    if a.len().max(b.len()) > MAX_STRUCTURAL_COMPARE {
        return false;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[allow(clippy::expect_used)]
fn empty_object() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("{}".to_owned()).expect("`{}` is valid JSON"))
}
