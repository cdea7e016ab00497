//! Compiled allowlist lookups: hosts in O(labels of the host), addresses in
//! O(distinct prefix lengths), independent of the number of entries.

use std::collections::{HashMap, HashSet};

use ipnet::IpNet;
use nohash_hasher::IntMap;

use super::host::HostPattern;
use super::suffix_hash::SuffixHasher;

/// Which ports an entry allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRule {
    /// Every port.
    Any,
    /// Only these ports (sorted, deduplicated).
    Only(Box<[u16]>),
}

impl PortRule {
    fn merge(&mut self, other: &PortRule) {
        match (&*self, other) {
            (PortRule::Any, _) => {}
            (_, PortRule::Any) => *self = PortRule::Any,
            (PortRule::Only(a), PortRule::Only(b)) => {
                let mut all: Vec<u16> = a.iter().chain(b.iter()).copied().collect();
                all.sort_unstable();
                all.dedup();
                *self = PortRule::Only(all.into());
            }
        }
    }
}

/// Denied ports named in a [`HostMatch::PortsDenied`]; the rest are only counted.
pub const MAX_DENIED_PORTS_NAMED: usize = 5;

/// The outcome of looking a host up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Some entry covers the host on every requested port.
    Allowed,
    /// No entry covers the host.
    NotCovered,
    /// Entries cover the host, but not on some requested ports.
    PortsDenied {
        /// The first few denied ports, ascending.
        first: Vec<u16>,
        /// How many requested ports are denied in all.
        count: usize,
    },
}

/// The ports a reference uses, sorted and deduplicated once so that each lookup checks
/// them in time proportional to the allowlist entry's ports, not to this list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet(Vec<u16>);

impl PortSet {
    /// Sorts and deduplicates.
    pub fn new(mut ports: Vec<u16>) -> Self {
        ports.sort_unstable();
        ports.dedup();
        Self(ports)
    }

    /// The ports, ascending.
    pub fn as_slice(&self) -> &[u16] {
        &self.0
    }

    /// True when no port was given ("any port will do").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks these ports against the union of `allowed` (each sorted): all allowed, or
    /// the first few denied and their count. Costs O(|allowed| · log |self|).
    fn check(&self, allowed: &[u16]) -> HostMatch {
        let inside = allowed
            .iter()
            .filter(|p| self.0.binary_search(p).is_ok())
            .count();
        let count = self.0.len() - inside;
        if count == 0 {
            return HostMatch::Allowed;
        }
        // At most |allowed| ports are skipped before the list is full.
        let first = self
            .0
            .iter()
            .copied()
            .filter(|p| allowed.binary_search(p).is_err())
            .take(MAX_DENIED_PORTS_NAMED)
            .collect();
        HostMatch::PortsDenied { first, count }
    }
}

/// Names keyed by their suffix hash, so that a lookup can probe every suffix of a name
/// without rehashing it. The rare names whose key collides with an earlier name's go
/// to an ordinary string map.
#[derive(Debug, Clone, Default)]
struct Table {
    primary: IntMap<u64, (Box<str>, PortRule)>,
    collided: HashMap<Box<str>, PortRule>,
}

impl Table {
    fn insert(&mut self, key: u64, name: &str, rule: &PortRule) {
        match self.primary.get_mut(&key) {
            None => {
                self.primary.insert(key, (name.into(), rule.clone()));
            }
            Some((n, r)) if &**n == name => r.merge(rule),
            Some(_) => match self.collided.get_mut(name) {
                Some(r) => r.merge(rule),
                None => {
                    self.collided.insert(name.into(), rule.clone());
                }
            },
        }
    }

    fn get(&self, key: u64, name: &str) -> Option<&PortRule> {
        match self.primary.get(&key) {
            Some((n, r)) if &**n == name => Some(r),
            _ => self.collided.get(name),
        }
    }

    fn len(&self) -> usize {
        self.primary.len() + self.collided.len()
    }
}

/// Host entries indexed for lookups that walk the host's labels, never the entries.
#[derive(Debug, Clone)]
pub struct HostIndex {
    hasher: SuffixHasher,
    any: Option<PortRule>,
    exact: Table,
    /// Keyed by the domain after `*.`.
    wildcard: Table,
}

impl Default for HostIndex {
    fn default() -> Self {
        Self {
            hasher: SuffixHasher::random(),
            any: None,
            exact: Table::default(),
            wildcard: Table::default(),
        }
    }
}

/// Names longer than DNS allows match no entry but `*`: every entry is at most this
/// long, and bounding the walk bounds the cost of a hostile name.
const MAX_NAME: usize = 255;

impl HostIndex {
    /// Adds one allowlist entry; repeated hosts merge their ports.
    pub fn insert(&mut self, pattern: &HostPattern, ports: PortRule) {
        match pattern {
            HostPattern::Any => match &mut self.any {
                Some(r) => r.merge(&ports),
                None => self.any = Some(ports),
            },
            HostPattern::Exact(h) => self.exact.insert(self.hasher.hash(h), h, &ports),
            HostPattern::Wildcard(s) | HostPattern::Partial { suffix: s, .. } => {
                self.wildcard.insert(self.hasher.hash(s), s, &ports)
            }
        }
    }

    /// Number of distinct entries.
    pub fn len(&self) -> usize {
        usize::from(self.any.is_some()) + self.exact.len() + self.wildcard.len()
    }

    /// True when no entry was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks up a normalised host or pattern on `ports` (empty: any port will do).
    /// One right-to-left pass over the name: O(length), whatever the entry count.
    pub fn lookup(&self, host: &HostPattern, ports: &PortSet) -> HostMatch {
        let mut rules: Vec<&PortRule> = Vec::new();
        if let Some(r) = &self.any {
            rules.push(r);
        }
        let (name, exact) = match host {
            HostPattern::Any => ("", false),
            HostPattern::Exact(name) => (&**name, true),
            HostPattern::Wildcard(d) | HostPattern::Partial { suffix: d, .. } => (&**d, false),
        };
        if !name.is_empty() && name.len() <= MAX_NAME {
            let bytes = name.as_bytes();
            self.hasher.suffixes(name, |i, key| {
                // Only the whole name and the suffixes after a dot are looked up; both
                // start on a character boundary, so `get` never fails there.
                let table = match i.checked_sub(1).map(|j| bytes.get(j)) {
                    // The whole name: an exact entry for a host, `*.name` for a wildcard.
                    None if exact => &self.exact,
                    None => &self.wildcard,
                    // A proper parent domain: only a wildcard entry covers it.
                    Some(Some(b'.')) => &self.wildcard,
                    Some(_) => return true,
                };
                rules.extend(name.get(i..).and_then(|rest| table.get(key, rest)));
                true
            });
        }
        if rules.is_empty() {
            return HostMatch::NotCovered;
        }
        if ports.is_empty() || rules.iter().any(|r| **r == PortRule::Any) {
            return HostMatch::Allowed;
        }
        let mut allowed: Vec<u16> = rules
            .iter()
            .flat_map(|r| match r {
                PortRule::Any => &[][..],
                PortRule::Only(p) => &p[..],
            })
            .copied()
            .collect();
        allowed.sort_unstable();
        allowed.dedup();
        ports.check(&allowed)
    }
}

/// CIDR entries grouped by prefix length: containment is one hash probe per length.
#[derive(Debug, Clone, Default)]
pub struct CidrIndex {
    v4: PrefixSets,
    v6: PrefixSets,
}

#[derive(Debug, Clone, Default)]
struct PrefixSets {
    /// Prefix lengths present, ascending.
    lens: Vec<u8>,
    nets: HashSet<(u8, u128)>,
}

impl PrefixSets {
    fn insert(&mut self, len: u8, bits: u128) {
        if let Err(at) = self.lens.binary_search(&len) {
            self.lens.insert(at, len);
        }
        self.nets.insert((len, bits));
    }

    /// True when the network `bits/len` (already masked) lies inside an entry.
    fn contains(&self, bits: u128, len: u8, width: u8) -> bool {
        self.lens
            .iter()
            .take_while(|l| **l <= len)
            .any(|l| self.nets.contains(&(*l, mask(bits, *l, width))))
    }
}

fn mask(bits: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let keep = u128::MAX << (u32::from(width - len));
        bits & (keep & (u128::MAX >> (128 - u32::from(width))))
    }
}

fn to_bits(net: &IpNet) -> (u128, u8, u8) {
    match net {
        IpNet::V4(n) => (u128::from(u32::from(n.network())), n.prefix_len(), 32),
        IpNet::V6(n) => (u128::from(n.network()), n.prefix_len(), 128),
    }
}

impl CidrIndex {
    /// Adds an allowed network (host bits are ignored).
    pub fn insert(&mut self, net: IpNet) {
        let (bits, len, width) = to_bits(&net.trunc());
        let sets = if width == 32 {
            &mut self.v4
        } else {
            &mut self.v6
        };
        sets.insert(len, bits);
    }

    /// Number of distinct networks.
    pub fn len(&self) -> usize {
        self.v4.nets.len() + self.v6.nets.len()
    }

    /// True when no network was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when every address of `net` lies inside one allowed network.
    pub fn contains_net(&self, net: &IpNet) -> bool {
        let (bits, len, width) = to_bits(&net.trunc());
        let sets = if width == 32 { &self.v4 } else { &self.v6 };
        sets.contains(bits, len, width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        s.parse().unwrap()
    }

    fn index(entries: &[(&str, Option<&[u16]>)]) -> HostIndex {
        let mut idx = HostIndex::default();
        for (host, ports) in entries {
            let rule = ports.map_or(PortRule::Any, |p| PortRule::Only(p.into()));
            idx.insert(&p(host), rule);
        }
        idx
    }

    #[test]
    fn host_lookups() {
        let idx = index(&[
            ("api.github.com", None),
            ("*.googleapis.com", None),
            ("db.example.com", Some(&[5432])),
            ("*.corp.example", Some(&[443, 80])),
        ]);
        let cases: &[(&str, &[u16], HostMatch)] = &[
            ("api.github.com", &[], HostMatch::Allowed),
            ("api.github.com", &[443, 80], HostMatch::Allowed),
            ("github.com", &[], HostMatch::NotCovered),
            ("evil-api.github.com", &[], HostMatch::NotCovered),
            ("storage.googleapis.com", &[], HostMatch::Allowed),
            ("a.b.googleapis.com", &[], HostMatch::Allowed),
            ("googleapis.com", &[], HostMatch::NotCovered),
            ("*.googleapis.com", &[], HostMatch::Allowed),
            ("*.storage.googleapis.com", &[], HostMatch::Allowed),
            ("*.com", &[], HostMatch::NotCovered),
            ("*", &[], HostMatch::NotCovered),
            ("db.example.com", &[5432], HostMatch::Allowed),
            (
                "db.example.com",
                &[5432, 3306],
                HostMatch::PortsDenied {
                    first: vec![3306],
                    count: 1,
                },
            ),
            ("db.example.com", &[], HostMatch::Allowed),
            ("x.corp.example", &[80], HostMatch::Allowed),
            (
                "x.corp.example",
                &[8080],
                HostMatch::PortsDenied {
                    first: vec![8080],
                    count: 1,
                },
            ),
        ];
        for (host, ports, want) in cases {
            let ports = PortSet::new(ports.to_vec());
            assert_eq!(&idx.lookup(&p(host), &ports), want, "{host} {ports:?}");
        }
    }

    #[test]
    fn ports_merge_across_matching_entries() {
        let idx = index(&[
            ("db.example.com", Some(&[5432])),
            ("*.example.com", Some(&[3306])),
            ("db.example.com", Some(&[6432])),
        ]);
        let ports = |p: &[u16]| PortSet::new(p.to_vec());
        assert_eq!(
            idx.lookup(&p("db.example.com"), &ports(&[5432, 3306, 6432])),
            HostMatch::Allowed
        );
        assert_eq!(idx.len(), 2);
        let any = index(&[("db.example.com", Some(&[5432])), ("*", None)]);
        assert_eq!(
            any.lookup(&p("db.example.com"), &ports(&[1])),
            HostMatch::Allowed
        );
    }

    #[test]
    fn star_entry_covers_everything() {
        let idx = index(&[("*", None)]);
        for host in ["*", "*.com", "a", "a.b.c"] {
            assert_eq!(
                idx.lookup(&p(host), &PortSet::default()),
                HostMatch::Allowed,
                "{host}"
            );
        }
    }

    #[test]
    fn cidr_containment() {
        let mut idx = CidrIndex::default();
        for net in [
            "203.0.113.0/24",
            "10.1.0.0/16",
            "2001:db8::/32",
            "192.0.2.7/32",
        ] {
            idx.insert(net.parse().unwrap());
        }
        let cases = [
            ("203.0.113.9/32", true),
            ("203.0.113.0/24", true),
            ("203.0.113.128/25", true),
            ("203.0.112.0/23", false),
            ("203.0.114.1/32", false),
            ("10.1.200.0/24", true),
            ("10.0.0.0/8", false),
            ("192.0.2.7/32", true),
            ("192.0.2.8/32", false),
            ("2001:db8:1::/48", true),
            ("2001:db8::1/128", true),
            ("2001:db9::/32", false),
            ("2001::/16", false),
            ("::ffff:203.0.113.9/128", false),
        ];
        for (net, want) in cases {
            assert_eq!(idx.contains_net(&net.parse().unwrap()), want, "{net}");
        }
    }

    #[test]
    fn many_ports_are_checked_without_a_product() {
        let idx = index(&[("db.example.com", Some(&[5432, 6432]))]);
        let ports = PortSet::new((1..=60_000).rev().collect());
        match idx.lookup(&p("db.example.com"), &ports) {
            HostMatch::PortsDenied { first, count } => {
                assert_eq!(first, [1, 2, 3, 4, 5]);
                assert_eq!(count, 59_998);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_names_only_match_the_star_entry() {
        let long = format!("{}.example.com", "a.".repeat(200));
        let idx = index(&[("*.example.com", None)]);
        let host = HostPattern::from_accepted(&long);
        assert_eq!(
            idx.lookup(&host, &PortSet::default()),
            HostMatch::NotCovered
        );
        let star = index(&[("*", None)]);
        assert_eq!(star.lookup(&host, &PortSet::default()), HostMatch::Allowed);
    }

    #[test]
    fn colliding_keys_still_match_by_name() {
        let mut t = Table::default();
        t.insert(7, "a.example", &PortRule::Any);
        t.insert(7, "b.example", &PortRule::Only(Box::new([1])));
        assert_eq!(t.get(7, "a.example"), Some(&PortRule::Any));
        assert_eq!(t.get(7, "b.example"), Some(&PortRule::Only(Box::new([1]))));
        assert_eq!(t.get(7, "c.example"), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn zero_prefix_allows_whole_family() {
        let mut idx = CidrIndex::default();
        idx.insert("0.0.0.0/0".parse().unwrap());
        assert!(idx.contains_net(&"8.8.8.0/24".parse().unwrap()));
        assert!(!idx.contains_net(&"2001:db8::/32".parse().unwrap()));
        idx.insert("::/0".parse().unwrap());
        assert!(idx.contains_net(&"2001:db8::/32".parse().unwrap()));
    }
}
