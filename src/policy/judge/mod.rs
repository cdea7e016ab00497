//! What a kind module reports while it reads an object ([`Findings`]): violations,
//! warnings, and egress references, each judged against the allowlist the moment it is
//! found ([`EgressRef`], the one way a kind says where traffic may go).
//!
//! Everything here is bounded: the first [`MAX_VIOLATIONS`] violations and
//! [`MAX_WARNINGS`] warnings are kept (the rest are counted), texts are cut, and every
//! call charges the work [`Budget`]. Field paths are built lazily, only for what is
//! reported, so valid fields cost no allocation.
//!
//! Imports `spec` (the decode vocabulary) and the leaf modules below it; never `kinds`
//! or `kind`.

use std::fmt;
use std::ops::ControlFlow;

use serde::Deserialize;

use crate::policy::allowlist::Allowlist;
use crate::policy::budget::Budget;
use crate::policy::decision::{Code, MAX_TEXT, MAX_VALUE, Violation, truncated, truncated_display};
use crate::policy::istio::{self, Failure};
use crate::policy::spec::{self, SpecError, Streamed};
use crate::policy::timeouts;

mod egress;
mod export;
mod fetch;

pub use egress::{
    EgressRef, HostEgress, HostField, Reach, Target, is_external, is_ip_literal, is_loopback,
    kube_ip, target,
};
pub use export::{Export, ExportOf, export_scope};

/// Violations kept per object; more are counted in [`Findings::omitted`].
pub const MAX_VIOLATIONS: usize = 100;
/// Warnings kept per object; one more line says how many were left out.
pub const MAX_WARNINGS: usize = 100;

/// What is needed from outside the object to judge it.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The allowlist in force.
    pub allowlist: &'a Allowlist,
    /// The object's namespace.
    pub namespace: &'a str,
    /// Only the containers `kubectl debug` adds are judged (a Pod UPDATE through the
    /// `ephemeralcontainers` subresource).
    pub ephemeral_only: bool,
    /// On UPDATE, the object as stored: what it was admitted with, which the change is
    /// judged against (a tenant's later edits to it are never trusted).
    pub old: Option<&'a serde_json::value::RawValue>,
    /// The time, seconds since the epoch, for entries that expire (`None`: ignored).
    pub now: Option<i64>,
    /// Record which entry granted each reference.
    pub explain: bool,
    /// Written by one of the allowlist's `trustedWriters` (the control plane).
    pub trusted_writer: bool,
    /// The object is the allowlist's own ConfigMap, holding the allowlist under this key.
    pub allowlist_key: Option<&'a str>,
}

impl Context<'_> {
    /// True when the namespace may reach every address (both address families), as a
    /// construct that forwards to any destination the client picks needs.
    pub fn may_reach_any_address(&self) -> bool {
        let everything = [
            ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
            ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
        ];
        everything
            .iter()
            .all(|n| self.allowlist.net_allowed(self.namespace, n, self.now))
    }
}

impl<'a> Context<'a> {
    /// An object in `namespace` judged under `allowlist`, with no clock, no
    /// explanations, written by no one in particular.
    pub fn new(allowlist: &'a Allowlist, namespace: &'a str) -> Self {
        Self {
            allowlist,
            namespace,
            ephemeral_only: false,
            old: None,
            now: None,
            explain: false,
            trusted_writer: false,
            allowlist_key: None,
        }
    }
}

/// How long before an entry used by an object expires that the object is warned.
pub const EXPIRY_WARNING: i64 = 14 * 86_400;

/// Everything one kind module finds in one object.
#[derive(Debug)]
pub struct Findings<'b> {
    /// Validity, allowlist and bypass violations, in field order (the first
    /// [`MAX_VIOLATIONS`]).
    pub violations: Vec<Violation>,
    /// Violations found beyond those kept.
    pub omitted: usize,
    /// Non-fatal findings (the first [`MAX_WARNINGS`]).
    pub warnings: Vec<String>,
    omitted_warnings: usize,
    /// The routes a default timeout may be added to, for kinds that `/mutate` patches.
    pub timeouts: Option<timeouts::Routes>,
    /// Who the object's egress is visible to.
    pub export: Export,
    /// Which entry granted each reference (the first [`MAX_WARNINGS`]), when asked.
    pub explanations: Vec<String>,
    budget: Budget<'b>,
}

impl<'b> Findings<'b> {
    /// An empty report that may spend `budget`.
    pub fn new(budget: Budget<'b>) -> Self {
        Self {
            violations: Vec::new(),
            omitted: 0,
            warnings: Vec::new(),
            omitted_warnings: 0,
            timeouts: None,
            export: Export::Local,
            explanations: Vec::new(),
            budget,
        }
    }

    /// Spends work; false once the budget is gone, after which loops should stop.
    pub fn charge(&mut self, units: usize) -> bool {
        self.budget.charge(units)
    }

    /// True once the budget is spent or the evaluation was cancelled.
    pub fn exhausted(&self) -> bool {
        self.budget.exhausted()
    }

    /// Closes the report: a spent budget becomes an `EG901` violation in front, and
    /// left-out warnings are counted in a last line.
    pub fn finish(mut self) -> Self {
        if self.budget.exhausted() {
            self.violations.insert(
                0,
                Violation::too_complex(crate::policy::decision::Limit::Budget),
            );
        }
        if self.omitted_warnings > 0 {
            self.warnings
                .push(format!("and {} more warnings", self.omitted_warnings));
        }
        self
    }

    /// Records a violation (bounded: see [`MAX_VIOLATIONS`]).
    pub fn violation(&mut self, code: Code, path: impl AsRef<str>, value: &str, message: &str) {
        self.record(code, || path, value, message);
    }

    /// Records a violation whose path is built only if it is kept: a check that fails
    /// for every element of a long list spends its time judging, not formatting.
    pub fn record<P: AsRef<str>>(
        &mut self,
        code: Code,
        path: impl FnOnce() -> P,
        value: impl fmt::Display,
        message: &str,
    ) {
        if self.room() {
            self.budget.charge(1);
            let value = truncated_display(value, MAX_VALUE);
            self.violations
                .push(Violation::new(code, path().as_ref(), &value, message));
        } else {
            self.omit();
        }
    }

    /// True while another violation would be kept.
    fn room(&self) -> bool {
        self.violations.len() < MAX_VIOLATIONS
    }

    /// Counts `n` violations a check found past the kept ones without writing them.
    pub fn omit_many(&mut self, n: usize) {
        self.budget.charge(n);
        self.omitted += n;
    }

    /// Counts a violation past the kept ones.
    fn omit(&mut self) {
        self.budget.charge(1);
        self.omitted += 1;
    }

    /// Records one finding of a check over a list; its path and message are built only
    /// while the violation is kept.
    pub fn found(&mut self, path: impl FnOnce() -> String, value: &str, found: &istio::Found<'_>) {
        if self.room() {
            let (code, message) = found.failure();
            self.record(code, path, value, &message);
        } else {
            self.omit();
        }
    }

    /// Records that the field at `path` does not decode (`EG219`).
    pub fn invalid_spec(&mut self, path: &str, error: &str) {
        self.violation(
            Code::InvalidSpec,
            path,
            "",
            &format!("spec does not decode: {error}"),
        );
    }

    /// Records a decode error (`EG219`).
    pub fn spec_error(&mut self, e: &SpecError) {
        self.invalid_spec(&e.path, &e.message);
    }

    /// Decodes a whole object as a `T`; a field that does not decode is recorded
    /// (`EG219`) and the object is not judged further.
    pub fn decoded<'a, T: Deserialize<'a>>(&mut self, object: &'a str) -> Option<T> {
        spec::decode(object).map_err(|e| self.spec_error(&e)).ok()
    }

    /// Decodes `text` found at `at`; an error is recorded (`EG219`).
    pub fn decoded_at<'a, T: Deserialize<'a>>(&mut self, text: &'a str, at: &str) -> Option<T> {
        spec::decode_at(text, at)
            .map_err(|e| self.spec_error(&e))
            .ok()
    }

    /// Judges the elements of `list` in order with `judge`, until the end or a spent
    /// budget. An element that does not decode (or a value that is not a list) is an
    /// `EG219` violation at its path under `at` and ends the walk, as it would have ended
    /// the decode of the whole object. Returns false when that happened, so that a
    /// second walk over the same list need not report it again.
    pub fn each<'a, T: Deserialize<'a> + Default>(
        &mut self,
        list: &Streamed<'a, T>,
        at: &str,
        judge: impl FnMut(usize, T, &mut Self),
    ) -> bool {
        self.each_at(list, &|| at.to_owned(), judge)
    }

    /// [`Findings::each`] with the path written only if an element does not decode.
    pub fn each_at<'a, T: Deserialize<'a> + Default>(
        &mut self,
        list: &Streamed<'a, T>,
        at: &dyn Fn() -> String,
        mut judge: impl FnMut(usize, T, &mut Self),
    ) -> bool {
        if self.exhausted() {
            return true;
        }
        let walked = list.walk(at, |i, element| {
            judge(i, element, self);
            if self.exhausted() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        match walked {
            Ok(()) => true,
            Err(e) => {
                self.spec_error(&e);
                false
            }
        }
    }

    /// Records a warning (bounded: see [`MAX_WARNINGS`]); built only when kept.
    pub fn warn(&mut self, warning: impl FnOnce() -> String) {
        self.budget.charge(1);
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(truncated(&warning(), MAX_TEXT));
        } else {
            self.omitted_warnings += 1;
        }
    }

    /// Records the outcome of a rule: a violation on failure, the value on success.
    pub fn rule<T>(
        &mut self,
        path: impl Fn() -> String,
        value: impl fmt::Display,
        r: Result<T, Failure>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err((code, message)) => {
                self.record(code, path, value, &message);
                None
            }
        }
    }

    /// A port number (`agent.ValidatePort`): the port, or a violation quoting it.
    pub fn port(&mut self, path: impl Fn() -> String, number: i64) -> Option<u16> {
        match istio::port_number(number) {
            Ok(p) => Some(p),
            Err((code, message)) => {
                self.record(code, path, number, &message);
                None
            }
        }
    }

    /// Records every failure of a rule that can fail several ways.
    pub fn rules(&mut self, path: impl Fn() -> String, value: &str, failures: Vec<Failure>) {
        for (code, message) in failures {
            self.record(code, &path, value, &message);
        }
    }

    /// Applies the partial-wildcard policy to a ServiceEntry, VirtualService or
    /// DestinationRule host (`ValidatePartialWildCard`): Istio only warns, which has
    /// caused outages, so `strict` denies. Warnings start with the code.
    pub fn partial_wildcard(&mut self, cx: &Context<'_>, path: impl Fn() -> String, value: &str) {
        if !istio::is_partial_wildcard(value) {
            return;
        }
        if cx.allowlist.strict {
            self.violation(
                Code::PartialWildcard,
                path(),
                value,
                "partial wildcards are denied in strict mode; use \"*.domain\"",
            );
        } else {
            self.warn(|| {
                format!(
                    "{} {}: partial wildcard {value:?} matches unpredictably (Istio only warns); use \"*.domain\"",
                    Code::PartialWildcard,
                    path()
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Route<'a> {
        #[serde(borrow)]
        name: &'a str,
    }

    #[test]
    fn a_spent_budget_stops_the_walk_quietly() {
        let list: Streamed<'_, Route<'_>> =
            serde_json::from_str(r#"[{"name": "a"}, {"name": "b"}, {"name": "c"}]"#).unwrap();
        let mut out = Findings::new(Budget::new(1_000, None));
        let mut seen = 0;
        let decoded = out.each(&list, "spec.http", |_, _, out| {
            seen += 1;
            out.charge(10_000);
        });
        assert!(decoded);
        assert_eq!(seen, 1);
        assert!(out.violations.is_empty());
    }

    #[test]
    fn an_element_that_does_not_decode_is_an_eg219_at_its_path() {
        let list: Streamed<'_, Route<'_>> =
            serde_json::from_str(r#"[{"name": "a"}, {"name": 7}]"#).unwrap();
        let mut out = Findings::new(Budget::new(u64::MAX, None));
        let mut seen = Vec::new();
        let decoded = out.each(&list, "spec.http", |i, r, _| {
            seen.push((i, r.name.to_owned()))
        });
        assert!(!decoded);
        assert_eq!(seen, [(0, "a".to_owned())]);
        let v: Vec<_> = out
            .violations
            .iter()
            .map(|v| (v.code, v.path.as_str()))
            .collect();
        assert_eq!(v, [(Code::InvalidSpec, "spec.http[1].name")]);
    }
}
