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
pub mod judge;
pub mod kind;
mod kinds;
pub mod matcher;
pub mod object_ref;
pub mod review_hash;
pub mod spec;
pub mod suffix_hash;
pub mod timeouts;
pub mod url;
pub mod yaml;

use serde_json::value::RawValue;

pub use allowlist::{Allowlist, AllowlistError};
pub use decision::{Code, Decision, Limit, Mode, Skip, Verdict, Violation};
pub use kind::{KINDS, Kind, KindRow};
pub use kinds::configmap::MAX_CONFIGMAP_DATA;
pub use object_ref::ObjectRef;

use std::sync::atomic::AtomicBool;

use budget::Budget;
use judge::{Context, Export, Findings};

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
    let object = req.object.unwrap_or(empty_object());
    if kind == Kind::ConfigMap {
        // Before the exempt namespaces: the allowlist lives in a platform namespace.
        return match env.allowlist_source {
            Some(src)
                if src.configmap.namespace == req.namespace && src.configmap.name == req.name =>
            {
                let cx = Context {
                    allowlist_key: Some(&src.key),
                    ..Context::new(allowlist, req.namespace)
                };
                let findings = inspect(
                    kind,
                    object,
                    &cx,
                    Budget::for_object(object.get().len(), env.cancel),
                );
                Decision {
                    mode: Mode::Enforce,
                    violations: findings.violations,
                    omitted: findings.omitted,
                    warnings: findings.warnings,
                    ..Decision::default()
                }
            }
            _ => Decision::skip(Skip::NotIstio),
        };
    }
    if allowlist.exempt_namespaces.contains(req.namespace) {
        return Decision::skip(Skip::ExemptNamespace);
    }
    let row = kind.row();
    let trusted_writer = allowlist.trusted_writers.contains(req.user);
    // The endpoint controllers copy pod addresses, and istiod registers the workloads
    // that connect to it: their writes are the control plane's own.
    if row.trusted_writers && trusted_writer {
        return Decision::skip(Skip::TrustedWriter);
    }
    // Capture is set up when a pod starts; changing a running pod's labels or
    // annotations cannot undo it. Only containers `kubectl debug` adds are new.
    let ephemeral_only = kind == Kind::Pod && req.operation == Operation::Update;
    if ephemeral_only && req.subresource != "ephemeralcontainers" {
        return Decision::skip(Skip::NoEffect);
    }

    let cx = Context {
        ephemeral_only,
        now: env.now,
        explain: env.explain,
        trusted_writer,
        ..Context::new(allowlist, req.namespace)
    };
    let budget = match env.work {
        Some(units) => Budget::new(units, env.cancel),
        None => Budget::for_object(object.get().len(), env.cancel),
    };
    let findings = inspect(kind, object, &cx, budget);

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
            row.export_field,
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
            .is_some_and(|old| same_content(row.compared, old, object))
    {
        decision.spec_unchanged = true;
    }

    if row.webhook.mutate && !env.judge_only {
        plan_timeouts(
            req.namespace,
            &findings.timeouts.unwrap_or_default(),
            allowlist,
            &mut decision,
        );
    }
    decision
}

/// Runs `kind`'s judge over one object, within `budget`.
pub fn inspect<'b>(
    kind: Kind,
    object: &RawValue,
    cx: &Context<'_>,
    budget: Budget<'b>,
) -> Findings<'b> {
    let mut out = Findings::new(budget);
    out.charge(object.get().len());
    (kind.row().judge)(object, cx, &mut out);
    out.finish()
}

/// The decision for a review that could not be judged within the caller's deadline:
/// `EG901`, which denies in enforce mode and is reported in audit mode, like any
/// violation.
pub fn too_complex(namespace: &str, allowlist: &Allowlist) -> Decision {
    Decision {
        mode: allowlist.mode_for(namespace),
        violations: vec![Violation::too_complex(Limit::Deadline)],
        ..Decision::default()
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

/// Adds the default-timeout patch for a VirtualService, honouring the annotation.
fn plan_timeouts(
    namespace: &str,
    routes: &timeouts::Routes,
    allowlist: &Allowlist,
    decision: &mut Decision,
) {
    let default = allowlist.default_timeout_for(namespace);
    let timeout = match routes.annotation.as_deref().map(timeouts::parse_override) {
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
        let (patch, paths) = timeouts::plan(&routes.http, t, allowlist.timeout_scope);
        decision.patch = patch;
        decision.patched_routes = paths;
        decision.default_timeout = Some(t);
    }
}

/// "UPDATE left what is judged unchanged": the kind's compared top-level fields (the
/// `spec`, or the fields that play its part: Endpoints' `subsets`, an EndpointSlice's
/// addresses and ports). Byte-equal JSON is the fast path (the apiserver encodes both
/// the same way), structural equality the fallback.
fn same_content(fields: &[&str], old: &RawValue, new: &RawValue) -> bool {
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
