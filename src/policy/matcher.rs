//! Compiled allowlist lookups: hosts in O(labels of the host), addresses in
//! O(distinct prefix lengths), independent of the number of entries.

use std::collections::HashMap;

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

/// One allowlist entry as an index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The ports it allows.
    pub ports: PortRule,
    /// Seconds since the epoch from which it no longer grants.
    pub expires: Option<i64>,
    /// Where the entry's owner and reason are kept ([`crate::policy::Allowlist::note`]).
    pub note: Option<u32>,
}

impl Rule {
    /// An entry for every port that never expires.
    pub fn any() -> Self {
        Self {
            ports: PortRule::Any,
            expires: None,
            note: None,
        }
    }

    /// True while the entry grants: not expired at `now` (when `now` is known).
    fn live(&self, now: Option<i64>) -> bool {
        match (self.expires, now) {
            (Some(at), Some(now)) => now < at,
            _ => true,
        }
    }

    /// Orders rules by how long they grant: a rule that never expires last.
    fn lasts(&self) -> i64 {
        self.expires.unwrap_or(i64::MAX)
    }
}

/// The entries that share one key (usually one).
#[derive(Debug, Clone)]
enum Rules {
    One(Rule),
    Many(Vec<Rule>),
}

impl Rules {
    fn push(&mut self, rule: Rule) {
        match self {
            Rules::One(first) => *self = Rules::Many(vec![first.clone(), rule]),
            Rules::Many(all) => all.push(rule),
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, Rule> {
        match self {
            Rules::One(r) => std::slice::from_ref(r).iter(),
            Rules::Many(all) => all.iter(),
        }
    }

    fn iter_mut(&mut self) -> std::slice::IterMut<'_, Rule> {
        match self {
            Rules::One(r) => std::slice::from_mut(r).iter_mut(),
            Rules::Many(all) => all.iter_mut(),
        }
    }
}

/// The entry that grants a lookup: the live match that lasts longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted<'a> {
    /// The entry as written in the allowlist.
    pub entry: Entry<'a>,
    /// When it stops granting.
    pub expires: Option<i64>,
    /// Its owner and reason, if it has any.
    pub note: Option<u32>,
}

/// An allowlist entry, borrowed from the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// `*`.
    Any,
    /// An exact host.
    Exact(&'a str),
    /// `*.` and this domain.
    Wildcard(&'a str),
    /// A network.
    Net(IpNet),
}

impl std::fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Any => f.write_str("*"),
            Entry::Exact(h) => f.write_str(h),
            Entry::Wildcard(d) => write!(f, "*.{d}"),
            Entry::Net(n) => write!(f, "{n}"),
        }
    }
}

/// A host lookup: the outcome, and the entry that granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLookup<'a> {
    /// Allowed, not covered, or covered on other ports.
    pub result: HostMatch,
    /// The granting entry, when allowed.
    pub grant: Option<Granted<'a>>,
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
        /// The ports the covering entries allow, ascending: what would pass.
        allowed: Vec<u16>,
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

    /// Checks these ports against the union of `allowed` (sorted): all allowed, or the
    /// first few denied, their count and `allowed`. Costs O(|allowed| · log |self|).
    fn check(&self, allowed: Vec<u16>) -> HostMatch {
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
        HostMatch::PortsDenied {
            first,
            count,
            allowed,
        }
    }
}

/// Names keyed by their suffix hash, so that a lookup can probe every suffix of a name
/// without rehashing it. The rare names whose key collides with an earlier name's go
/// to an ordinary string map.
#[derive(Debug, Clone, Default)]
struct Table {
    primary: IntMap<u64, (Box<str>, Rules)>,
    collided: HashMap<Box<str>, Rules>,
}

impl Table {
    fn insert(&mut self, key: u64, name: &str, rule: Rule) {
        match self.primary.get_mut(&key) {
            None => {
                self.primary.insert(key, (name.into(), Rules::One(rule)));
            }
            Some((n, r)) if &**n == name => r.push(rule),
            Some(_) => match self.collided.get_mut(name) {
                Some(r) => r.push(rule),
                None => {
                    self.collided.insert(name.into(), Rules::One(rule));
                }
            },
        }
    }

    /// The stored name (borrowed from the index) and its rules.
    fn get(&self, key: u64, name: &str) -> Option<(&str, &Rules)> {
        match self.primary.get(&key) {
            Some((n, r)) if &**n == name => Some((n, r)),
            _ => self.collided.get_key_value(name).map(|(n, r)| (&**n, r)),
        }
    }

    fn len(&self) -> usize {
        self.primary.len() + self.collided.len()
    }

    fn rules_mut(&mut self) -> impl Iterator<Item = &mut Rule> {
        let primary = self.primary.values_mut().map(|(_, r)| r);
        primary
            .chain(self.collided.values_mut())
            .flat_map(Rules::iter_mut)
    }
}

/// Host entries indexed for lookups that walk the host's labels, never the entries.
#[derive(Debug, Clone)]
pub struct HostIndex {
    hasher: SuffixHasher,
    any: Option<Rules>,
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
    /// Adds one allowlist entry; entries for the same host are kept side by side.
    pub fn insert(&mut self, pattern: &HostPattern, rule: Rule) {
        match pattern {
            HostPattern::Any => match &mut self.any {
                Some(r) => r.push(rule),
                None => self.any = Some(Rules::One(rule)),
            },
            HostPattern::Exact(h) => self.exact.insert(self.hasher.hash(h), h, rule),
            HostPattern::Wildcard(s) | HostPattern::Partial { suffix: s, .. } => {
                self.wildcard.insert(self.hasher.hash(s), s, rule)
            }
        }
    }

    /// Applies `f` to every entry's rule (when lists are merged).
    pub fn rules_mut(&mut self, f: impl Fn(&mut Rule)) {
        let any = self.any.iter_mut().flat_map(Rules::iter_mut);
        any.chain(self.exact.rules_mut())
            .chain(self.wildcard.rules_mut())
            .for_each(f);
    }

    /// Number of distinct hosts and patterns.
    pub fn len(&self) -> usize {
        usize::from(self.any.is_some()) + self.exact.len() + self.wildcard.len()
    }

    /// True when no entry was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks up a normalised host or pattern on `ports` (empty: any port will do), with
    /// the entries live at `now`. One right-to-left pass over the name: O(length),
    /// whatever the entry count.
    pub fn lookup<'s>(
        &'s self,
        host: &HostPattern,
        ports: &PortSet,
        now: Option<i64>,
    ) -> HostLookup<'s> {
        let mut matched: Vec<(Entry<'s>, &'s Rule)> = Vec::new();
        let mut add = |entry: Entry<'s>, rules: &'s Rules| {
            for r in rules.iter().filter(|r| r.live(now)) {
                matched.push((entry, r));
            }
        };
        if let Some(r) = &self.any {
            add(Entry::Any, r);
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
                let (table, whole_exact) = match i.checked_sub(1).map(|j| bytes.get(j)) {
                    // The whole name: an exact entry for a host, `*.name` for a wildcard.
                    None if exact => (&self.exact, true),
                    None => (&self.wildcard, false),
                    // A proper parent domain: only a wildcard entry covers it.
                    Some(Some(b'.')) => (&self.wildcard, false),
                    Some(_) => return true,
                };
                if let Some((n, rules)) = name.get(i..).and_then(|rest| table.get(key, rest)) {
                    let entry = if whole_exact {
                        Entry::Exact(n)
                    } else {
                        Entry::Wildcard(n)
                    };
                    add(entry, rules);
                }
                true
            });
        }
        let grant = matched
            .iter()
            .max_by_key(|(_, r)| r.lasts())
            .map(|(entry, r)| Granted {
                entry: *entry,
                expires: r.expires,
                note: r.note,
            });
        let result = if matched.is_empty() {
            HostMatch::NotCovered
        } else if ports.is_empty() || matched.iter().any(|(_, r)| r.ports == PortRule::Any) {
            HostMatch::Allowed
        } else {
            let mut allowed: Vec<u16> = matched
                .iter()
                .flat_map(|(_, r)| match &r.ports {
                    PortRule::Any => &[][..],
                    PortRule::Only(p) => &p[..],
                })
                .copied()
                .collect();
            allowed.sort_unstable();
            allowed.dedup();
            ports.check(allowed)
        };
        HostLookup {
            grant: (result == HostMatch::Allowed).then_some(grant).flatten(),
            result,
        }
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
    /// Keyed by the allowlist's own networks, so a tenant's lookups cannot crowd one
    /// bucket: a fast hash (one lookup per prefix length per address).
    nets: HashMap<(u8, u128), Rules, foldhash::fast::RandomState>,
}

impl PrefixSets {
    fn insert(&mut self, len: u8, bits: u128, rule: Rule) {
        if let Err(at) = self.lens.binary_search(&len) {
            self.lens.insert(at, len);
        }
        match self.nets.get_mut(&(len, bits)) {
            Some(r) => r.push(rule),
            None => {
                self.nets.insert((len, bits), Rules::One(rule));
            }
        }
    }

    /// The live entry that lasts longest among those containing `bits/len`.
    fn find(&self, bits: u128, len: u8, width: u8, now: Option<i64>) -> Option<(u8, u128, &Rule)> {
        self.lens
            .iter()
            .take_while(|l| **l <= len)
            .filter_map(|l| {
                let key = (*l, mask(bits, *l, width));
                let rules = self.nets.get(&key)?;
                let best = rules
                    .iter()
                    .filter(|r| r.live(now))
                    .max_by_key(|r| r.lasts())?;
                Some((key.0, key.1, best))
            })
            .max_by_key(|(_, _, r)| r.lasts())
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

fn from_bits(bits: u128, len: u8, width: u8) -> Option<IpNet> {
    if width == 32 {
        let addr = std::net::Ipv4Addr::from(u32::try_from(bits).ok()?);
        ipnet::Ipv4Net::new(addr, len).ok().map(IpNet::V4)
    } else {
        ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(bits), len)
            .ok()
            .map(IpNet::V6)
    }
}

impl CidrIndex {
    /// Adds an allowed network (host bits are ignored).
    pub fn insert(&mut self, net: IpNet, rule: Rule) {
        let (bits, len, width) = to_bits(&net.trunc());
        let sets = if width == 32 {
            &mut self.v4
        } else {
            &mut self.v6
        };
        sets.insert(len, bits, rule);
    }

    /// Number of distinct networks.
    pub fn len(&self) -> usize {
        self.v4.nets.len() + self.v6.nets.len()
    }

    /// Applies `f` to every entry's rule (when lists are merged).
    pub fn rules_mut(&mut self, f: impl Fn(&mut Rule)) {
        let v4 = self.v4.nets.values_mut();
        v4.chain(self.v6.nets.values_mut())
            .flat_map(Rules::iter_mut)
            .for_each(f);
    }

    /// True when no network was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry granting every address of `net` at `now`, if one does.
    pub fn grant(&self, net: &IpNet, now: Option<i64>) -> Option<Granted<'_>> {
        let (bits, len, width) = to_bits(&net.trunc());
        let sets = if width == 32 { &self.v4 } else { &self.v6 };
        let (l, b, rule) = sets.find(bits, len, width, now)?;
        Some(Granted {
            entry: from_bits(b, l, width).map_or(Entry::Any, Entry::Net),
            expires: rule.expires,
            note: rule.note,
        })
    }

    /// True when every address of `net` lies inside one allowed network.
    pub fn contains_net(&self, net: &IpNet) -> bool {
        self.grant(net, None).is_some()
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
            let ports = ports.map_or(PortRule::Any, |p| PortRule::Only(p.into()));
            idx.insert(
                &p(host),
                Rule {
                    ports,
                    ..Rule::any()
                },
            );
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
                    allowed: vec![5432],
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
                    allowed: vec![80, 443],
                },
            ),
        ];
        for (host, ports, want) in cases {
            let ports = PortSet::new(ports.to_vec());
            assert_eq!(
                &idx.lookup(&p(host), &ports, None).result,
                want,
                "{host} {ports:?}"
            );
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
            idx.lookup(&p("db.example.com"), &ports(&[5432, 3306, 6432]), None)
                .result,
            HostMatch::Allowed
        );
        assert_eq!(idx.len(), 2);
        let any = index(&[("db.example.com", Some(&[5432])), ("*", None)]);
        assert_eq!(
            any.lookup(&p("db.example.com"), &ports(&[1]), None).result,
            HostMatch::Allowed
        );
    }

    #[test]
    fn star_entry_covers_everything() {
        let idx = index(&[("*", None)]);
        for host in ["*", "*.com", "a", "a.b.c"] {
            assert_eq!(
                idx.lookup(&p(host), &PortSet::default(), None).result,
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
            idx.insert(net.parse().unwrap(), Rule::any());
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
        match idx.lookup(&p("db.example.com"), &ports, None).result {
            HostMatch::PortsDenied { first, count, .. } => {
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
            idx.lookup(&host, &PortSet::default(), None).result,
            HostMatch::NotCovered
        );
        let star = index(&[("*", None)]);
        assert_eq!(
            star.lookup(&host, &PortSet::default(), None).result,
            HostMatch::Allowed
        );
    }

    #[test]
    fn colliding_keys_still_match_by_name() {
        let mut t = Table::default();
        t.insert(7, "a.example", Rule::any());
        let one = Rule {
            ports: PortRule::Only(Box::new([1])),
            ..Rule::any()
        };
        t.insert(7, "b.example", one.clone());
        let rules = |name| {
            t.get(7, name)
                .map(|(_, r)| r.iter().cloned().collect::<Vec<_>>())
        };
        assert_eq!(rules("a.example"), Some(vec![Rule::any()]));
        assert_eq!(rules("b.example"), Some(vec![one]));
        assert_eq!(rules("c.example"), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn expired_entries_stop_granting_and_the_longest_lived_grant_is_named() {
        let mut idx = HostIndex::default();
        let until = |at| Rule {
            expires: Some(at),
            note: Some(at as u32),
            ..Rule::any()
        };
        idx.insert(&p("api.example.com"), until(100));
        idx.insert(&p("*.example.com"), until(200));
        let any = PortSet::default();
        let at = |now| idx.lookup(&p("api.example.com"), &any, Some(now));
        let early = at(50);
        assert_eq!(early.result, HostMatch::Allowed);
        let g = early.grant.unwrap();
        assert_eq!(
            (g.entry, g.expires),
            (Entry::Wildcard("example.com"), Some(200))
        );
        assert_eq!(at(150).grant.unwrap().entry, Entry::Wildcard("example.com"));
        assert_eq!(at(200).result, HostMatch::NotCovered);
        // Without a clock, expiry is not evaluated.
        assert_eq!(
            idx.lookup(&p("api.example.com"), &any, None).result,
            HostMatch::Allowed
        );
    }

    #[test]
    fn zero_prefix_allows_whole_family() {
        let mut idx = CidrIndex::default();
        idx.insert("0.0.0.0/0".parse().unwrap(), Rule::any());
        assert!(idx.contains_net(&"8.8.8.0/24".parse().unwrap()));
        assert!(!idx.contains_net(&"2001:db8::/32".parse().unwrap()));
        idx.insert("::/0".parse().unwrap(), Rule::any());
        assert!(idx.contains_net(&"2001:db8::/32".parse().unwrap()));
    }
}
