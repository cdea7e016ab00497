//! The pure policy engine: `evaluate(request, allowlist) -> Decision`.
//!
//! No async, no I/O, no clock, no logging: the webhook, `check`, `audit` and the
//! benchmarks all call [`evaluate`], so their verdicts agree by construction. This
//! module must not import anything from the server, sources or CLI.

pub mod allowlist;
pub mod budget;
pub mod decision;
pub mod duration;
pub mod help;
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
    let mut decision = decide(req, allowlist, env);
    let kind = req.kind.map_or("", Kind::as_str);
    add_help(&mut decision, allowlist, req.namespace, kind, req.name);
    decision
}

/// Renders the platform's help for a decision with violations (a denial, or the
/// warnings of audit mode), from the namespace's template or the global one.
pub fn add_help(d: &mut Decision, allowlist: &Allowlist, namespace: &str, kind: &str, name: &str) {
    let Some(first) = d.violations.first() else {
        return;
    };
    d.help = allowlist.help_for(namespace).map(|t| {
        t.render(&help::Subject {
            namespace,
            kind,
            name,
            code: first.code.as_str(),
            host: &first.value,
        })
    });
}

fn decide(req: &Request<'_>, allowlist: &Allowlist, env: &Env<'_>) -> Decision {
    let Some(kind) = req.kind else {
        return Decision::skip(Skip::NotIstio);
    };
    let object = req.object.unwrap_or(empty_object());
    if kind == Kind::ConfigMap {
        if req.operation == Operation::Delete {
            return Decision::skip(Skip::Delete);
        }
        return allowlist_configmap(req, object, allowlist, env);
    }
    if allowlist.exempt_namespaces.contains(req.namespace) {
        return Decision::skip(Skip::ExemptNamespace);
    }
    let trusted_writer = allowlist.trusted_writers.contains(req.user);
    let base = Context {
        now: env.now,
        explain: env.explain,
        trusted_writer,
        old: req.old_object,
        ..Context::new(allowlist, req.namespace)
    };
    match (kind, req.operation, req.subresource) {
        // A session in a running container (`kubectl exec`, `attach`).
        (Kind::Pod, Operation::Connect, sub @ ("exec" | "attach")) => {
            return judged(
                allowlist,
                req,
                env,
                object,
                |cx, out| {
                    kinds::pod::session::judge(object, sub, cx, out);
                },
                &base,
            );
        }
        // The platform's backstop NetworkPolicy, changed or deleted.
        (Kind::NetworkPolicy, Operation::Delete, _) => {
            return match req.old_object {
                Some(old) => judged(
                    allowlist,
                    req,
                    env,
                    old,
                    |cx, out| {
                        kinds::network_policy::judge_backstop(old, None, cx, out);
                    },
                    &base,
                ),
                None => Decision::skip(Skip::Delete),
            };
        }
        (_, Operation::Delete | Operation::Connect, _) => return Decision::skip(Skip::Delete),
        // Status writes (the kubelet's), bindings and resizes change no image, label
        // or container a tenant controls.
        (Kind::Pod, Operation::Update, sub) if !sub.is_empty() && sub != "ephemeralcontainers" => {
            return Decision::skip(Skip::NoEffect);
        }
        _ => {}
    }
    let row = kind.row();
    // The endpoint controllers copy pod addresses, and istiod registers the workloads
    // that connect to it: their writes are the control plane's own.
    if row.trusted_writers && trusted_writer {
        return Decision::skip(Skip::TrustedWriter);
    }
    // `kubectl debug` adds ephemeral containers to a running pod; only they are new.
    let ephemeral_only =
        kind == Kind::Pod && req.operation == Operation::Update && !req.subresource.is_empty();

    let cx = Context {
        ephemeral_only,
        ..base
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
        && let Some(seen_by) = enforced_by(&findings.export, allowlist)
    {
        decision.mode = Mode::Enforce;
        decision.violations.push(Violation::new(
            Code::AuditExported,
            row.export_field,
            seen_by,
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
            .is_some_and(|old| same_content(row, old, object))
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

/// The allowlist's own ConfigMap is judged as an allowlist, with the parser the server
/// reloads it with; every other ConfigMap is not judged.
fn allowlist_configmap(
    req: &Request<'_>,
    object: &RawValue,
    allowlist: &Allowlist,
    env: &Env<'_>,
) -> Decision {
    // Before the exempt namespaces: the allowlist lives in a platform namespace.
    match env.allowlist_source {
        Some(src) if src.configmap.namespace == req.namespace && src.configmap.name == req.name => {
            let cx = Context {
                allowlist_key: Some(&src.key),
                ..Context::new(allowlist, req.namespace)
            };
            let findings = inspect(
                Kind::ConfigMap,
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
    }
}

/// The decision of one judge that is not a kind's own (a session, a deleted
/// backstop), in the namespace's mode.
fn judged(
    allowlist: &Allowlist,
    req: &Request<'_>,
    env: &Env<'_>,
    sized_by: &RawValue,
    judge: impl FnOnce(&Context<'_>, &mut Findings<'_>),
    cx: &Context<'_>,
) -> Decision {
    let mut out = Findings::new(Budget::for_object(sized_by.get().len(), env.cancel));
    judge(cx, &mut out);
    let findings = out.finish();
    Decision {
        mode: allowlist.mode_for(req.namespace),
        violations: findings.violations,
        omitted: findings.omitted,
        warnings: findings.warnings,
        ..Decision::default()
    }
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

/// Where an object visible to `export` reaches a namespace in enforce mode, as the
/// `EG107` value: `*` (every namespace, the default when `exportTo` is unset) or the
/// first enforced namespace named.
fn enforced_by<'e>(export: &'e Export, allowlist: &Allowlist) -> Option<&'e str> {
    match export {
        Export::Local => None,
        Export::Everywhere => allowlist.any_enforce().then_some("*"),
        Export::To { enforced } => enforced.as_deref(),
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
            decision.mutation_warnings.push(format!(
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
/// addresses and ports) and every label and annotation it reads (`keys`: removing a
/// Service's `networking.istio.io/exportTo` widens who sees it with the spec as it
/// was). Byte-equal JSON is the fast path (the apiserver encodes both the same way),
/// structural equality the fallback.
fn same_content(row: &kind::KindRow, old: &RawValue, new: &RawValue) -> bool {
    let (Some(a), Some(b)) = (top_level(old), top_level(new)) else {
        return false;
    };
    row.compared
        .iter()
        .all(|f| same_json(a.get(f).copied(), b.get(f).copied()))
        && (row.keys.is_empty() || same_keys(row.keys, a.get("metadata"), b.get("metadata")))
}

/// True when two objects' metadata agree on the labels and annotations in `keys`.
fn same_keys(keys: &'static [&'static str], a: Option<&&RawValue>, b: Option<&&RawValue>) -> bool {
    let kept = |meta: Option<&&RawValue>| -> Option<[Vec<(&'static str, String)>; 2]> {
        let Some(meta) = meta else {
            return Some([Vec::new(), Vec::new()]);
        };
        let fields = top_level(meta)?;
        let pairs = |field: &str| match fields.get(field) {
            None => Some(Vec::new()),
            Some(map) if map.get() == "null" => Some(Vec::new()),
            Some(map) => {
                let mut kept = spec::pairs_of(map.get(), keys)?;
                kept.sort_unstable();
                Some(kept)
            }
        };
        Some([pairs("labels")?, pairs("annotations")?])
    };
    match (kept(a), kept(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
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
