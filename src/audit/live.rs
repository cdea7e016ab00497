//! The violations live in the cluster, as `audit --watch` last judged them: a state
//! machine fed watch events, tested without a cluster. It keeps only what a report
//! needs of each violating object ([`ObjectFindings`]); a clean object costs nothing.
//! Every change names the namespace whose report it touches (the dirty set).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::report::{self, ObjectFindings, Outcome, PolicyReport};
use crate::policy::{Code, Kind};

/// (namespace, kind, name): a report's results come out in kind, then name order.
type Key = (String, &'static str, String);

#[derive(Debug)]
struct Entry {
    kind: Kind,
    /// The list of its kind in which it was last seen.
    listing: u64,
    found: ObjectFindings,
}

/// Live findings, by object.
#[derive(Debug, Default)]
pub struct Live {
    objects: BTreeMap<Key, Entry>,
    /// The current list of each kind.
    listing: HashMap<&'static str, u64>,
    next_listing: u64,
    dirty: BTreeSet<String>,
    /// Results by code and outcome; a pair once seen stays, at 0 when cleared.
    counts: BTreeMap<(Code, Outcome), i64>,
}

impl Live {
    /// A list of `kind` starts: what it does not list again is gone when it ends.
    pub fn list_started(&mut self, kind: Kind) {
        self.next_listing += 1;
        self.listing.insert(kind.as_str(), self.next_listing);
    }

    /// One object judged: `found` is what its decision found (`None`: nothing).
    pub fn judged(&mut self, kind: Kind, ns: &str, name: &str, found: Option<ObjectFindings>) {
        let listing = self.listing.get(kind.as_str()).copied().unwrap_or(0);
        let key = (ns.to_owned(), kind.as_str(), name.to_owned());
        match found {
            Some(found) => {
                let changed = self.objects.get(&key).is_none_or(|e| e.found != found);
                if changed {
                    self.count(Some(&found), 1);
                    let old = self.objects.insert(
                        key,
                        Entry {
                            kind,
                            listing,
                            found,
                        },
                    );
                    self.count(old.as_ref().map(|e| &e.found), -1);
                    self.dirty.insert(ns.to_owned());
                } else if let Some(e) = self.objects.get_mut(&key) {
                    e.listing = listing;
                }
            }
            None => self.remove(&key),
        }
    }

    /// One object deleted.
    pub fn deleted(&mut self, kind: Kind, ns: &str, name: &str) {
        self.remove(&(ns.to_owned(), kind.as_str(), name.to_owned()));
    }

    /// The list of `kind` is complete: its objects not seen in it were deleted meanwhile.
    pub fn list_done(&mut self, kind: Kind) {
        let listing = self.listing.get(kind.as_str()).copied().unwrap_or(0);
        self.retain(|e| e.kind != kind || e.listing == listing);
    }

    /// `kind` is no longer served: nothing of it is live.
    pub fn forget(&mut self, kind: Kind) {
        self.listing.remove(kind.as_str());
        self.retain(|e| e.kind != kind);
    }

    /// Marks a namespace's report to be rebuilt (e.g. one found written at start-up).
    pub fn touch(&mut self, ns: &str) {
        self.dirty.insert(ns.to_owned());
    }

    /// The namespaces whose reports may have changed since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.dirty)
    }

    /// True when some report may have changed.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The report of `ns` as it stands; `None` when the namespace is clean.
    pub fn report(&self, ns: &str) -> Option<PolicyReport> {
        let from = (ns.to_owned(), "", String::new());
        report::build(
            ns,
            self.objects
                .range(from..)
                .take_while(|((n, _, _), _)| n == ns)
                .map(|((_, _, name), e)| (e.kind, name.as_str(), &e.found)),
        )
    }

    /// Live results by code and outcome (pairs that were live once stay, at 0).
    pub fn counts(&self) -> &BTreeMap<(Code, Outcome), i64> {
        &self.counts
    }

    /// Violating objects held.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when nothing violates.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.objects.remove(key) {
            self.count(Some(&old.found), -1);
            self.dirty.insert(key.0.clone());
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let gone: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, e)| !keep(e))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.remove(k);
        }
    }

    fn count(&mut self, found: Option<&ObjectFindings>, by: i64) {
        if let Some(o) = found {
            for f in &o.findings {
                *self.counts.entry((f.code, o.outcome)).or_default() += by;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::Finding;

    fn mk_found(code: Code, outcome: Outcome, value: &str) -> Option<ObjectFindings> {
        Some(ObjectFindings {
            api_version: "networking.istio.io/v1".into(),
            uid: "u".into(),
            outcome,
            findings: vec![Finding {
                code,
                path: "spec.hosts[0]".into(),
                value: value.into(),
                message: "m".into(),
                count: 1,
            }],
        })
    }

    fn se_fail(value: &str) -> Option<ObjectFindings> {
        mk_found(Code::HostNotAllowed, Outcome::Fail, value)
    }

    fn names(live: &Live, ns: &str) -> Vec<String> {
        live.report(ns).map_or_else(Vec::new, |r| {
            r.results
                .iter()
                .map(|r| format!("{}/{} {}", r.resources[0].kind, r.resources[0].name, r.rule))
                .collect()
        })
    }

    #[test]
    fn a_changed_verdict_dirties_its_namespace_and_an_unchanged_one_does_not() {
        let mut live = Live::default();
        live.judged(Kind::ServiceEntry, "a", "exfil", se_fail("x.example"));
        assert_eq!(live.take_dirty(), BTreeSet::from(["a".to_owned()]));
        live.judged(Kind::ServiceEntry, "a", "exfil", se_fail("x.example"));
        assert!(!live.is_dirty(), "same findings, same report");
        live.judged(Kind::ServiceEntry, "a", "exfil", se_fail("y.example"));
        assert!(live.is_dirty());
        live.take_dirty();
        live.judged(Kind::ServiceEntry, "b", "clean", None);
        assert!(
            !live.is_dirty(),
            "a clean object that was clean changes nothing"
        );
        live.judged(Kind::ServiceEntry, "a", "exfil", None);
        assert_eq!(live.take_dirty(), BTreeSet::from(["a".to_owned()]));
        assert!(live.is_empty() && live.report("a").is_none());
    }

    #[test]
    fn reports_are_per_namespace_in_kind_then_name_order() {
        let mut live = Live::default();
        live.judged(Kind::ServiceEntry, "a", "z", se_fail("x"));
        live.judged(
            Kind::Sidecar,
            "a",
            "default",
            mk_found(Code::AllowAnyOutbound, Outcome::Fail, "ALLOW_ANY"),
        );
        live.judged(Kind::ServiceEntry, "a", "b", se_fail("x"));
        live.judged(Kind::ServiceEntry, "ab", "other", se_fail("x"));
        assert_eq!(
            names(&live, "a"),
            [
                "ServiceEntry/b EG101",
                "ServiceEntry/z EG101",
                "Sidecar/default EG301"
            ]
        );
        assert_eq!(names(&live, "ab"), ["ServiceEntry/other EG101"]);
        assert!(live.report("b").is_none());
    }

    #[test]
    fn a_relist_forgets_what_it_no_longer_lists() {
        let mut live = Live::default();
        live.list_started(Kind::ServiceEntry);
        live.judged(Kind::ServiceEntry, "a", "kept", se_fail("x"));
        live.judged(Kind::ServiceEntry, "a", "gone", se_fail("x"));
        live.judged(Kind::ServiceEntry, "b", "gone-too", se_fail("x"));
        live.list_started(Kind::Sidecar);
        live.judged(
            Kind::Sidecar,
            "b",
            "default",
            mk_found(Code::AllowAnyOutbound, Outcome::Warn, "ALLOW_ANY"),
        );
        live.list_done(Kind::ServiceEntry);
        live.list_done(Kind::Sidecar);
        live.take_dirty();
        // The watch expired (410) and the relist no longer has two of them.
        live.list_started(Kind::ServiceEntry);
        live.judged(Kind::ServiceEntry, "a", "kept", se_fail("x"));
        assert!(!live.is_dirty());
        live.list_done(Kind::ServiceEntry);
        assert_eq!(
            live.take_dirty(),
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(names(&live, "a"), ["ServiceEntry/kept EG101"]);
        assert_eq!(
            names(&live, "b"),
            ["Sidecar/default EG301"],
            "other kinds stay"
        );
        live.forget(Kind::Sidecar);
        assert!(live.report("b").is_none());
    }

    #[test]
    fn counts_follow_the_live_results() {
        let mut live = Live::default();
        live.judged(Kind::ServiceEntry, "a", "1", se_fail("x"));
        live.judged(Kind::ServiceEntry, "a", "2", se_fail("x"));
        live.judged(
            Kind::Sidecar,
            "b",
            "s",
            mk_found(Code::AllowAnyOutbound, Outcome::Warn, "A"),
        );
        assert_eq!(live.counts()[&(Code::HostNotAllowed, Outcome::Fail)], 2);
        assert_eq!(live.counts()[&(Code::AllowAnyOutbound, Outcome::Warn)], 1);
        // The namespace went to audit mode: the same code now warns.
        live.judged(
            Kind::ServiceEntry,
            "a",
            "1",
            mk_found(Code::HostNotAllowed, Outcome::Warn, "x"),
        );
        live.deleted(Kind::ServiceEntry, "a", "2");
        assert_eq!(live.counts()[&(Code::HostNotAllowed, Outcome::Fail)], 0);
        assert_eq!(live.counts()[&(Code::HostNotAllowed, Outcome::Warn)], 1);
        live.deleted(Kind::Sidecar, "b", "s");
        live.deleted(Kind::Sidecar, "b", "s");
        assert_eq!(live.counts()[&(Code::AllowAnyOutbound, Outcome::Warn)], 0);
        assert_eq!(live.len(), 1);
    }
}
