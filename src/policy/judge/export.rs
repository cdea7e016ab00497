//! Who an object is visible to: Istio's `exportTo` (or the Service annotation), checked
//! as Istio checks it and summarised for the export rules (a namespace-only grant
//! leaks when the object is exported, EG105; an audit-mode object seen by enforced
//! namespaces is enforced, EG107).

use super::{Context, Findings};
use crate::policy::decision::Mode;
use crate::policy::istio;
use crate::policy::spec::{Str, Streamed};

/// Who an object is visible to, as far as its egress is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Export {
    /// Only its own namespace.
    #[default]
    Local,
    /// Other namespaces too (named, not `*`): the first of them in enforce mode, which
    /// is all that is asked of them (a list as long as the body allows is not kept).
    To {
        /// The first namespace it is exported to that is in enforce mode.
        enforced: Option<Box<str>>,
    },
    /// Every namespace.
    Everywhere,
}

impl Export {
    /// True when visible beyond its own namespace.
    pub fn beyond_namespace(&self) -> bool {
        *self != Export::Local
    }
}

/// Which object's `exportTo` is checked: the values Istio allows differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOf {
    /// A ServiceEntry (`~` is allowed).
    pub service_entry: bool,
    /// The object has a `workloadSelector`.
    pub workload_selector: bool,
}

impl Findings<'_> {
    /// Checks `exportTo` (`validateExportTo`) one entry at a time, records who the
    /// object is visible to, and says whether that goes beyond its namespace. No
    /// `exportTo` means the mesh default: everywhere.
    pub fn export_to(
        &mut self,
        values: &Streamed<'_, Str<'_>>,
        of: ExportOf,
        cx: &Context<'_>,
    ) -> bool {
        let mut check = istio::ExportTo::new(istio::ExportScope {
            namespace: cx.namespace,
            service_entry: of.service_entry,
            workload_selector: of.workload_selector,
        });
        let mut scope = ScopeBuilder::default();
        let decoded = self.each(values, "spec.exportTo", |i, v, out| {
            if !out.charge(1 + v.len()) {
                return;
            }
            scope.add(&v, cx);
            if let Some(found) = check.entry(i, &v.0) {
                out.found(|| format!("spec.exportTo[{i}]"), &v, &found);
            }
        });
        if decoded {
            for (code, message) in check.finish() {
                self.violation(code, "spec.exportTo", "", &message);
            }
        }
        self.export = scope.finish();
        self.export.beyond_namespace()
    }
}

/// Who an object with these `exportTo` values is visible to.
pub fn export_scope<'v>(values: impl Iterator<Item = &'v str>, cx: &Context<'_>) -> Export {
    let mut scope = ScopeBuilder::default();
    for v in values {
        scope.add(v, cx);
    }
    scope.finish()
}

/// [`export_scope`] one value at a time.
#[derive(Debug, Default)]
struct ScopeBuilder {
    any: bool,
    everywhere: bool,
    others: bool,
    enforced: Option<Box<str>>,
}

impl ScopeBuilder {
    fn add(&mut self, v: &str, cx: &Context<'_>) {
        self.any = true;
        if v == "*" {
            self.everywhere = true;
        } else if !(v == "." || v == "~" || v == cx.namespace) {
            self.others = true;
            // One namespace in enforce mode decides it; the rest need no lookup.
            if self.enforced.is_none() && cx.allowlist.mode_for(v) == Mode::Enforce {
                self.enforced = Some(v.into());
            }
        }
    }

    fn finish(self) -> Export {
        match self {
            Self { any: false, .. }
            | Self {
                everywhere: true, ..
            } => Export::Everywhere,
            Self { others: false, .. } => Export::Local,
            Self { enforced, .. } => Export::To { enforced },
        }
    }
}
