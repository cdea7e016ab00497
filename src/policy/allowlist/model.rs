//! The allowlist document as written: serde types whose values are parsed through
//! `FromStr` inside serde, so a bad value fails with its YAML path and line. Nothing
//! here outlives a load: [`super::Allowlist::compile`] turns it into the indexes.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::TimeoutScope;
use crate::policy::decision::Mode;
use crate::policy::duration::Duration;
use crate::policy::host::{self, HostPattern};
use crate::policy::matcher::PortRule;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Doc {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub default_timeout: Option<FromStrValue<Duration>>,
    #[serde(default)]
    pub timeout_scope: TimeoutScope,
    #[serde(default)]
    pub strict: bool,
    #[serde(default)]
    pub exempt_namespaces: Vec<FromStrValue<NamespaceName>>,
    #[serde(default)]
    pub internal_domains: Option<Vec<FromStrValue<Domain>>>,
    #[serde(default)]
    pub egress_gateway_selectors: Vec<BTreeMap<String, String>>,
    #[serde(default)]
    pub egress_gateway_labels: Option<Vec<BTreeMap<String, String>>>,
    #[serde(default)]
    pub cluster_networks: Vec<FromStrValue<IpNet>>,
    #[serde(default)]
    pub trusted_writers: Option<Vec<String>>,
    #[serde(default)]
    pub proxy_images: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<HostEntry>,
    #[serde(default)]
    pub cidrs: Vec<CidrEntry>,
    #[serde(default)]
    pub namespaces: BTreeMap<FromStrValue<NamespaceName>, NamespaceDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct NamespaceDoc {
    #[serde(default)]
    pub hosts: Vec<HostEntry>,
    #[serde(default)]
    pub cidrs: Vec<CidrEntry>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub default_timeout: Option<FromStrValue<Duration>>,
    #[serde(default)]
    pub allow_any_outbound: bool,
    #[serde(default)]
    pub allow_envoy_filter: bool,
    #[serde(default)]
    pub allow_capture_opt_out: bool,
}

/// A YAML scalar parsed through `FromStr`, so a bad value fails inside serde and the
/// error carries the YAML path and line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct FromStrValue<T>(pub T);

impl<'de, T> Deserialize<'de> for FromStrValue<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: FromStr> Visitor<'_> for V<T>
        where
            T::Err: fmt::Display,
        {
            type Value = FromStrValue<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                s.parse().map(FromStrValue).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A Kubernetes namespace name (DNS-1123 label).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespaceName(pub(super) String);

impl FromStr for NamespaceName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        host::check_label(s)
            .map(|()| Self(s.to_owned()))
            .map_err(|e| format!("invalid namespace name {s:?}: {e}"))
    }
}

/// An internal domain suffix such as `cluster.local`.
#[derive(Debug, Clone)]
pub(super) struct Domain(pub Box<str>);

impl FromStr for Domain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<HostPattern>() {
            Ok(HostPattern::Exact(d)) => Ok(Self(d)),
            Ok(_) => Err(format!("internal domain {s:?} must not be a wildcard")),
            Err(e) => Err(format!("invalid internal domain {s:?}: {e}")),
        }
    }
}

/// When an entry stops granting: an RFC 3339 time, or a date, which grants through the
/// whole day (UTC) and stops at the start of the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// Seconds since the epoch from which the entry no longer grants.
    pub at: i64,
    /// As written.
    pub text: Box<str>,
}

impl FromStr for Expiry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use time::format_description::well_known::Rfc3339;
        let bad = || {
            format!(
                "invalid expires {s:?}: use a date (2026-12-31) or an RFC 3339 time (2026-12-31T18:00:00Z)"
            )
        };
        let at = if s.len() == 10 {
            let mut parts = s.splitn(3, '-');
            let (y, m, d) = (parts.next(), parts.next(), parts.next());
            let (Some(y), Some(m), Some(d)) = (y, m, d) else {
                return Err(bad());
            };
            let (y, m, d): (i32, u8, u8) = (
                y.parse().map_err(|_| bad())?,
                m.parse().map_err(|_| bad())?,
                d.parse().map_err(|_| bad())?,
            );
            let month = time::Month::try_from(m).map_err(|_| bad())?;
            let date = time::Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
            date.midnight().assume_utc().unix_timestamp() + 86_400
        } else {
            time::OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|_| bad())?
                .unix_timestamp()
        };
        Ok(Self { at, text: s.into() })
    }
}

/// Who asked for an entry, why, and until when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryInfo {
    /// Who asked for it (a team, a person).
    pub owner: Option<Box<str>>,
    /// Why (free text, e.g. a ticket).
    pub reason: Option<Box<str>>,
    /// When it stops granting.
    pub expires: Option<Expiry>,
}

impl EntryInfo {
    /// True when nothing was said about the entry.
    pub fn is_empty(&self) -> bool {
        self.owner.is_none() && self.reason.is_none() && self.expires.is_none()
    }
}

/// The fields every entry map may carry besides its host or CIDR.
struct InfoFields {
    owner: Option<String>,
    reason: Option<String>,
    expires: Option<FromStrValue<Expiry>>,
}

impl From<InfoFields> for EntryInfo {
    fn from(f: InfoFields) -> Self {
        Self {
            owner: f.owner.map(String::into_boxed_str),
            reason: f.reason.map(String::into_boxed_str),
            expires: f.expires.map(|e| e.0),
        }
    }
}

/// An allowed host: a string, or `{host, ports?, owner?, reason?, expires?}`.
#[derive(Debug)]
pub(super) struct HostEntry {
    pub host: HostPattern,
    pub ports: PortRule,
    pub info: EntryInfo,
}

fn parse_entry_host<E: de::Error>(s: &str) -> Result<HostPattern, E> {
    match s.parse::<HostPattern>() {
        Ok(HostPattern::Partial { .. }) => Err(E::custom(format!(
            "invalid host {s:?}: partial wildcards are not allowed in the allowlist, use \"*.domain\""
        ))),
        Ok(p) => Ok(p),
        Err(host::HostError::IpAddress) => Err(E::custom(format!(
            "invalid host {s:?}: IP addresses belong in `cidrs`"
        ))),
        Err(e) => Err(E::custom(format!("invalid host {s:?}: {e}"))),
    }
}

impl<'de> Deserialize<'de> for HostEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            host: String,
            #[serde(default)]
            ports: Option<Vec<u16>>,
            #[serde(default)]
            owner: Option<String>,
            #[serde(default)]
            reason: Option<String>,
            #[serde(default)]
            expires: Option<FromStrValue<Expiry>>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HostEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a host string or {host, ports, owner, reason, expires}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HostEntry, E> {
                Ok(HostEntry {
                    host: parse_entry_host(s)?,
                    ports: PortRule::Any,
                    info: EntryInfo::default(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HostEntry, A::Error> {
                let w = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let ports = match w.ports {
                    None => PortRule::Any,
                    Some(p) if p.is_empty() => {
                        return Err(de::Error::custom(format!(
                            "host {:?}: `ports` must not be empty (omit it to allow every port)",
                            w.host
                        )));
                    }
                    Some(p) if p.contains(&0) => {
                        return Err(de::Error::custom(format!(
                            "host {:?}: port 0 is not a valid port",
                            w.host
                        )));
                    }
                    Some(mut p) => {
                        p.sort_unstable();
                        p.dedup();
                        PortRule::Only(p.into())
                    }
                };
                Ok(HostEntry {
                    host: parse_entry_host(&w.host)?,
                    ports,
                    info: InfoFields {
                        owner: w.owner,
                        reason: w.reason,
                        expires: w.expires,
                    }
                    .into(),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// An allowed network: a CIDR or address string, or `{cidr, owner?, reason?, expires?}`.
#[derive(Debug)]
pub(super) struct CidrEntry {
    pub net: IpNet,
    pub info: EntryInfo,
}

impl<'de> Deserialize<'de> for CidrEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            cidr: FromStrValue<IpNet>,
            #[serde(default)]
            owner: Option<String>,
            #[serde(default)]
            reason: Option<String>,
            #[serde(default)]
            expires: Option<FromStrValue<Expiry>>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CidrEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CIDR string or {cidr, owner, reason, expires}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CidrEntry, E> {
                Ok(CidrEntry {
                    net: s.parse().map_err(E::custom)?,
                    info: EntryInfo::default(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CidrEntry, A::Error> {
                let w = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(CidrEntry {
                    net: w.cidr.0,
                    info: InfoFields {
                        owner: w.owner,
                        reason: w.reason,
                        expires: w.expires,
                    }
                    .into(),
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates_grant_through_the_whole_day() {
        let d: Expiry = "2026-12-31".parse().unwrap();
        let t: Expiry = "2027-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(d.at, t.at);
        let offset: Expiry = "2026-12-31T23:00:00-01:00".parse().unwrap();
        assert_eq!(offset.at, t.at);
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "tomorrow",
            "2026-1-1",
            "31/12/2026",
        ] {
            assert!(bad.parse::<Expiry>().is_err(), "{bad}");
        }
    }
}
