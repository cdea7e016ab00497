//! Compiled allowlist lookups: hosts in O(labels of the host), addresses in
//! O(distinct prefix lengths), independent of the number of entries.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::host::HostPattern;

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

    fn allows(&self, port: u16) -> bool {
        match self {
            PortRule::Any => true,
            PortRule::Only(ports) => ports.binary_search(&port).is_ok(),
        }
    }
}

/// The outcome of looking a host up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Some entry covers the host on every requested port.
    Allowed,
    /// No entry covers the host.
    NotCovered,
    /// Entries cover the host, but not on these ports.
    PortsDenied(Vec<u16>),
}

/// Host entries indexed for lookups that walk the host's labels, never the entries.
#[derive(Debug, Clone, Default)]
pub struct HostIndex {
    any: Option<PortRule>,
    exact: HashMap<Box<str>, PortRule>,
    /// Keyed by the domain after `*.`.
    wildcard: HashMap<Box<str>, PortRule>,
}

impl HostIndex {
    /// Adds one allowlist entry; repeated hosts merge their ports.
    pub fn insert(&mut self, pattern: &HostPattern, ports: PortRule) {
        let slot = match pattern {
            HostPattern::Any => self.any.get_or_insert(PortRule::Only(Box::new([]))),
            HostPattern::Exact(h) => self
                .exact
                .entry(h.clone())
                .or_insert(PortRule::Only(Box::new([]))),
            HostPattern::Wildcard(s) | HostPattern::Partial { suffix: s, .. } => self
                .wildcard
                .entry(s.clone())
                .or_insert(PortRule::Only(Box::new([]))),
        };
        slot.merge(&ports);
    }

    /// Number of distinct entries.
    pub fn len(&self) -> usize {
        usize::from(self.any.is_some()) + self.exact.len() + self.wildcard.len()
    }

    /// True when no entry was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks up a normalised host or pattern; `ports` empty means "any port will do".
    pub fn lookup(&self, host: &HostPattern, ports: &[u16]) -> HostMatch {
        let mut rule: Option<PortRule> = self.any.clone();
        let mut add = |r: Option<&PortRule>| {
            if let Some(r) = r {
                match &mut rule {
                    Some(acc) => acc.merge(r),
                    None => rule = Some(r.clone()),
                }
            }
        };
        match host {
            HostPattern::Any => {}
            HostPattern::Exact(name) => {
                add(self.exact.get(&**name));
                for suffix in strict_suffixes(name) {
                    add(self.wildcard.get(suffix));
                }
            }
            HostPattern::Wildcard(domain) | HostPattern::Partial { suffix: domain, .. } => {
                add(self.wildcard.get(&**domain));
                for suffix in strict_suffixes(domain) {
                    add(self.wildcard.get(suffix));
                }
            }
        }
        match rule {
            None => HostMatch::NotCovered,
            Some(rule) => {
                let denied: Vec<u16> = ports.iter().copied().filter(|p| !rule.allows(*p)).collect();
                if denied.is_empty() {
                    HostMatch::Allowed
                } else {
                    HostMatch::PortsDenied(denied)
                }
            }
        }
    }
}

/// `a.b.c` yields `b.c`, `c`: every proper parent domain, without allocating.
fn strict_suffixes(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.').map(move |(i, _)| &name[i + 1..])
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

    /// True when the address lies inside an allowed network.
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        self.contains_net(&IpNet::from(addr))
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
                HostMatch::PortsDenied(vec![3306]),
            ),
            ("db.example.com", &[], HostMatch::Allowed),
            ("x.corp.example", &[80], HostMatch::Allowed),
            (
                "x.corp.example",
                &[8080],
                HostMatch::PortsDenied(vec![8080]),
            ),
        ];
        for (host, ports, want) in cases {
            assert_eq!(&idx.lookup(&p(host), ports), want, "{host} {ports:?}");
        }
    }

    #[test]
    fn ports_merge_across_matching_entries() {
        let idx = index(&[
            ("db.example.com", Some(&[5432])),
            ("*.example.com", Some(&[3306])),
            ("db.example.com", Some(&[6432])),
        ]);
        assert_eq!(
            idx.lookup(&p("db.example.com"), &[5432, 3306, 6432]),
            HostMatch::Allowed
        );
        assert_eq!(idx.len(), 2);
        let any = index(&[("db.example.com", Some(&[5432])), ("*", None)]);
        assert_eq!(any.lookup(&p("db.example.com"), &[1]), HostMatch::Allowed);
    }

    #[test]
    fn star_entry_covers_everything() {
        let idx = index(&[("*", None)]);
        for host in ["*", "*.com", "a", "a.b.c"] {
            assert_eq!(idx.lookup(&p(host), &[]), HostMatch::Allowed, "{host}");
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
        assert!(idx.contains_addr("203.0.113.200".parse().unwrap()));
        assert!(!idx.contains_addr("198.51.100.1".parse().unwrap()));
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
