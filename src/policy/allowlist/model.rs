//! The allowlist document as written: serde types whose values are parsed through
//! `FromStr` inside serde, so a bad value fails with its YAML path and line. Nothing
//! here outlives a load: [`super::Allowlist::compile`] turns it into the indexes.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use std::borrow::Cow;

use ipnet::IpNet;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::{Note, TimeoutScope};
use crate::policy::decision::Mode;
use crate::policy::duration::Duration;
use crate::policy::help::Template as HelpTemplate;
use crate::policy::host::{self, HostPattern};
use crate::policy::matcher::{CidrIndex, HostIndex, PortRule, Rule};

/// An egress-guard allowlist: which hosts and networks the mesh's workloads may reach,
/// globally and per namespace, and how violations are handled.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "egress-guard allowlist")]
pub(super) struct Doc {
    /// `enforce` denies violations; `audit` admits them and reports warnings.
    #[serde(default)]
    pub mode: Mode,
    /// Timeout added to VirtualService http routes without one (`15s`); `0s` or absent: off.
    #[serde(default)]
    pub default_timeout: Option<FromStrValue<Duration>>,
    /// Which routes get the default timeout: `external` (routes that leave the mesh) or `all`.
    #[serde(default)]
    pub timeout_scope: TimeoutScope,
    /// Deny what Istio only warns about (partial wildcards such as `*foo.example.com`).
    #[serde(default)]
    pub strict: bool,
    /// Namespaces never checked (the mesh's control plane).
    #[serde(default)]
    pub exempt_namespaces: Vec<FromStrValue<NamespaceName>>,
    /// Domains inside the mesh, never checked; pod DNS names under them are judged as the address they spell. Default `[cluster.local]`.
    #[serde(default)]
    pub internal_domains: Option<Vec<FromStrValue<Domain>>>,
    /// Label sets: a Gateway whose selector contains one of them configures egress.
    #[serde(default)]
    pub egress_gateway_selectors: Vec<BTreeMap<String, String>>,
    /// Labels of the egress gateway pods: a Gateway whose selector selects them configures egress. Default: Istio's (`app: istio-egressgateway, istio: egressgateway`).
    #[serde(default)]
    pub egress_gateway_labels: Option<Vec<BTreeMap<String, String>>>,
    /// The cluster's pod, service and node networks: addresses inside them are not egress.
    #[serde(default)]
    pub cluster_networks: Vec<FromStrValue<IpNet>>,
    /// The cluster DNS addresses pods may name as nameservers in `dnsConfig`: any other in-cluster address may be a tenant's resolver. Default `[10.96.0.10]` (kubeadm's).
    #[serde(default)]
    pub cluster_dns: Option<Vec<FromStrValue<std::net::IpAddr>>>,
    /// The control plane's users: their Endpoints, EndpointSlices and WorkloadEntries are skipped, and their workloads labelled `gateway.istio.io/managed` are Istio's Gateway API gateways. Default: the endpoint, deployment and replica set controllers and istiod.
    #[serde(default)]
    pub trusted_writers: Option<Vec<String>>,
    /// Image prefixes the injected proxy containers of a pod must use (empty: not checked).
    #[serde(default)]
    pub proxy_images: Vec<String>,
    /// Injection templates a pod may ask for with `inject.istio.io/templates`: those that capture traffic. Default `[sidecar, spire]`.
    #[serde(default)]
    pub injection_templates: Option<Vec<String>>,
    /// Init containers that run before the proxy captures traffic (a mesh without Istio CNI or native sidecars): `deny` (default) or `warn`.
    #[serde(default)]
    pub init_containers_before_capture: Disposition,
    /// How the mesh sets up capture, so that a pod template gets the verdict its pods will get.
    #[serde(default)]
    pub mesh: Mesh,
    /// Hosts allowed for every namespace.
    #[serde(default)]
    pub hosts: HostList,
    /// Networks allowed for every namespace.
    #[serde(default)]
    pub cidrs: CidrList,
    /// The platform's words appended to every denial and audit warning: where to ask for a grant. Placeholders: `{namespace}`, `{kind}`, `{name}`, `{code}`, `{host}` (the first violation's code and value); `{{` and `}}` are braces.
    #[serde(default)]
    pub help: Option<FromStrValue<HelpTemplate>>,
    /// Grants and overrides for one namespace each, by name, or by a name prefix ending in `*` (`team-*`): a namespace's own entry wins over every prefix, a longer prefix over a shorter one.
    #[serde(default)]
    pub namespaces: BTreeMap<FromStrValue<NamespaceKey>, NamespaceDoc>,
}

/// Grants and overrides for one namespace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct NamespaceDoc {
    /// Hosts only this namespace may use (on objects not exported beyond it).
    #[serde(default)]
    pub hosts: HostList,
    /// Networks only this namespace may use.
    #[serde(default)]
    pub cidrs: CidrList,
    /// Overrides the global mode here.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Overrides the global default timeout here (`0s`: off).
    #[serde(default)]
    pub default_timeout: Option<FromStrValue<Duration>>,
    /// May a Sidecar here use `ALLOW_ANY` or `egressProxy`.
    #[serde(default)]
    pub allow_any_outbound: bool,
    /// May EnvoyFilters be created here.
    #[serde(default)]
    pub allow_envoy_filter: bool,
    /// May workloads here skip the sidecar's capture or replace the proxy.
    #[serde(default)]
    pub allow_capture_opt_out: bool,
    /// Replaces the global `help` for this namespace's objects.
    #[serde(default)]
    pub help: Option<FromStrValue<HelpTemplate>>,
}

/// How the mesh installs capture: what the injector will do to the pods of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mesh {
    /// Istio CNI installs the capture rules before any container runs (default false: `istio-init` does).
    #[serde(default)]
    pub cni: bool,
    /// The proxy runs as a native sidecar (an init container that keeps running), so `istio-init` runs first: `auto` (Istio's own rule: Kubernetes 1.33 or newer), `true` or `false`.
    #[serde(default)]
    pub native_sidecars: NativeSidecars,
}

/// Whether injected proxies are native sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NativeSidecars {
    /// Istio's default: on from Kubernetes 1.33 (`ENABLE_NATIVE_SIDECARS` unset).
    #[default]
    Auto,
    /// Always.
    True,
    /// Never.
    False,
}

/// What to do about a risk some meshes accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// A violation.
    #[default]
    Deny,
    /// A warning.
    Warn,
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

/// How a string value is described in the JSON Schema.
pub(super) trait Described {
    /// The schema's name.
    const NAME: &'static str;
    /// What the string holds.
    const DESCRIPTION: &'static str;
    /// A regular expression it matches, when one is simple enough to state.
    const PATTERN: Option<&'static str> = None;
    /// Also a YAML date: written unquoted (`expires: 2026-12-10`), YAML 1.1 readers
    /// (PyYAML, and so most CI schema checks) load it as a date, not a string, where
    /// the server reads the same text.
    const YAML_DATE: bool = false;
}

impl Described for Duration {
    const NAME: &'static str = "Duration";
    const DESCRIPTION: &'static str = "a Go duration: 15s, 250ms, 1m30s";
    const PATTERN: Option<&'static str> =
        Some(r"^\+?(0|([0-9]*\.?[0-9]+(ns|us|µs|μs|ms|s|m|h))+)$");
}

impl Described for HelpTemplate {
    const NAME: &'static str = "HelpTemplate";
    const DESCRIPTION: &'static str = "text on one line, at most 240 bytes, with the placeholders {namespace}, {kind}, {name}, {code} and {host}";
    const PATTERN: Option<&'static str> = Some(r"^[^\u0000-\u001f\u007f]{1,240}$");
}

impl Described for NamespaceName {
    const NAME: &'static str = "NamespaceName";
    const DESCRIPTION: &'static str = "a Kubernetes namespace name";
    const PATTERN: Option<&'static str> = Some("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$");
}

impl Described for Domain {
    const NAME: &'static str = "Domain";
    const DESCRIPTION: &'static str = "a domain name without wildcards (cluster.local)";
}

impl Described for IpNet {
    const NAME: &'static str = "Cidr";
    const DESCRIPTION: &'static str =
        "an IPv4 or IPv6 network in CIDR notation (203.0.113.0/24, 2001:db8::/32)";
}

impl Described for std::net::IpAddr {
    const NAME: &'static str = "IpAddress";
    const DESCRIPTION: &'static str = "an IPv4 or IPv6 address (10.96.0.10)";
}

impl Described for Expiry {
    const NAME: &'static str = "Expiry";
    const DESCRIPTION: &'static str =
        "when the entry stops granting: a date (through that whole day, UTC) or an RFC 3339 time";
    const PATTERN: Option<&'static str> = Some(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T.+)?$");
    const YAML_DATE: bool = true;
}

impl<T: Described> JsonSchema for FromStrValue<T> {
    fn schema_name() -> Cow<'static, str> {
        T::NAME.into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        if T::YAML_DATE {
            // No `type: string`: a date object is no JSON type, so it passes `not` and,
            // not being a string, the pattern; every JSON type but a string is refused.
            return json_schema!({
                "description": T::DESCRIPTION,
                "pattern": T::PATTERN.unwrap_or(".*"),
                "not": {"type": ["number", "boolean", "null", "array", "object"]}
            });
        }
        match T::PATTERN {
            Some(p) => {
                json_schema!({"type": "string", "description": T::DESCRIPTION, "pattern": p})
            }
            None => json_schema!({"type": "string", "description": T::DESCRIPTION}),
        }
    }
}

/// The fields an entry map may carry besides its host or network.
fn info_properties(generator: &mut SchemaGenerator) -> serde_json::Map<String, serde_json::Value> {
    let expiry = generator.subschema_for::<FromStrValue<Expiry>>();
    let mut props = serde_json::Map::new();
    props.insert(
        "owner".into(),
        serde_json::json!({"type": "string", "description": "who asked for the entry"}),
    );
    props.insert(
        "reason".into(),
        serde_json::json!({"type": "string", "description": "why (free text, e.g. a ticket)"}),
    );
    props.insert("expires".into(), expiry.to_value());
    props
}

impl JsonSchema for HostEntry {
    fn schema_name() -> Cow<'static, str> {
        "HostEntry".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut props = info_properties(generator);
        props.insert("host".into(), serde_json::json!({"type": "string", "description": "a host (api.example.com), a wildcard (*.example.com: any subdomain) or *"}));
        props.insert(
            "ports".into(),
            serde_json::json!({"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}, "minItems": 1, "description": "only these ports (omit for every port)"}),
        );
        json_schema!({
            "description": "an allowed host: a string, or an object with owner, reason, expiry and ports",
            "oneOf": [
                {"type": "string"},
                {"type": "object", "properties": props, "required": ["host"], "additionalProperties": false}
            ]
        })
    }
}

impl JsonSchema for CidrEntry {
    fn schema_name() -> Cow<'static, str> {
        "CidrEntry".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut props = info_properties(generator);
        props.insert(
            "cidr".into(),
            generator.subschema_for::<FromStrValue<IpNet>>().to_value(),
        );
        json_schema!({
            "description": "an allowed network: a CIDR string, or an object with owner, reason and expiry",
            "oneOf": [
                {"type": "string"},
                {"type": "object", "properties": props, "required": ["cidr"], "additionalProperties": false}
            ]
        })
    }
}

/// The allowlist's JSON Schema, generated from this model: for editors
/// (`# yaml-language-server: $schema=...`) and CI.
pub fn schema() -> Schema {
    schemars::schema_for!(Doc)
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

/// A key of `namespaces`: a namespace name, or a prefix ending in `*` (`team-*`) that
/// names every namespace starting with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespaceKey(pub(super) String);

impl FromStr for NamespaceKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let Some(prefix) = s.strip_suffix('*') else {
            return s.parse::<NamespaceName>().map(|n| Self(n.0));
        };
        // Any namespace name may follow the prefix, so it is a name's start: 1 to 62
        // characters of [a-z0-9-], not starting with `-`.
        let ok = (1..=62).contains(&prefix.len())
            && !prefix.starts_with('-')
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid namespace prefix {s:?}: the start of a namespace name ([a-z0-9-], not starting with '-') followed by one '*'"
            ))
        }
    }
}

impl Described for NamespaceKey {
    const NAME: &'static str = "NamespaceKey";
    const DESCRIPTION: &'static str =
        "a Kubernetes namespace name, or the start of one followed by * (team-*)";
    const PATTERN: Option<&'static str> =
        Some(r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?|[a-z0-9][-a-z0-9]{0,61}\*)$");
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

// === lists indexed as they are read ===

/// A `hosts` list, indexed entry by entry as the parser reads it: a large allowlist
/// never exists as a list of entries next to its index.
#[derive(Debug, Default)]
pub(super) struct HostList {
    pub index: HostIndex,
    /// Notes of the entries that have them, numbered from 0 in this list.
    pub notes: Vec<Note>,
    /// The list contains `*`.
    pub any: bool,
}

/// A `cidrs` list, indexed as it is read.
#[derive(Debug, Default)]
pub(super) struct CidrList {
    pub index: CidrIndex,
    /// Notes of the entries that have them, numbered from 0 in this list.
    pub notes: Vec<Note>,
}

/// A rule for an entry at `position` (`hosts[3] api.example.com`), with a note when the
/// entry says who, why or until when.
fn rule_for(
    ports: PortRule,
    info: EntryInfo,
    position: impl FnOnce() -> String,
    notes: &mut Vec<Note>,
) -> Rule {
    let expires = info.expires.as_ref().map(|x| x.at);
    let note = if info.is_empty() {
        None
    } else {
        let id = u32::try_from(notes.len()).ok();
        if id.is_some() {
            notes.push(Note {
                entry: position().into(),
                info,
            });
        }
        id
    };
    Rule {
        ports,
        expires,
        note,
    }
}

/// Visits a YAML sequence, handing each element and its position to `add`.
struct Indexing<T, L>(PhantomData<(T, L)>);

impl<'de, T: Deserialize<'de>, L: Default + AddEntry<T>> Visitor<'de> for Indexing<T, L> {
    type Value = L;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }
    /// `hosts:` with nothing after it: no entries.
    fn visit_unit<E: de::Error>(self) -> Result<L, E> {
        Ok(L::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<L, E> {
        Ok(L::default())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<L, A::Error> {
        let mut list = L::default();
        let mut i = 0usize;
        while let Some(entry) = seq.next_element::<T>()? {
            list.add(i, entry);
            i += 1;
        }
        Ok(list)
    }
}

/// Adds one parsed entry to an index.
trait AddEntry<T> {
    fn add(&mut self, position: usize, entry: T);
}

impl AddEntry<HostEntry> for HostList {
    fn add(&mut self, i: usize, e: HostEntry) {
        self.any |= e.host == HostPattern::Any;
        let host = &e.host;
        let rule = rule_for(
            e.ports,
            e.info,
            || format!("hosts[{i}] {host}"),
            &mut self.notes,
        );
        self.index.insert(host, rule);
    }
}

impl AddEntry<CidrEntry> for CidrList {
    fn add(&mut self, i: usize, c: CidrEntry) {
        let net = c.net;
        let rule = rule_for(
            PortRule::Any,
            c.info,
            || format!("cidrs[{i}] {net}"),
            &mut self.notes,
        );
        self.index.insert(net, rule);
    }
}

impl<'de> Deserialize<'de> for HostList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Indexing::<HostEntry, HostList>(PhantomData))
    }
}

impl<'de> Deserialize<'de> for CidrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Indexing::<CidrEntry, CidrList>(PhantomData))
    }
}

/// In the schema, the lists are what they are written as: arrays of entries.
macro_rules! schema_as_vec {
    ($list:ty, $entry:ty) => {
        impl JsonSchema for $list {
            fn inline_schema() -> bool {
                <Vec<$entry>>::inline_schema()
            }
            fn schema_name() -> Cow<'static, str> {
                <Vec<$entry>>::schema_name()
            }
            fn json_schema(generator: &mut SchemaGenerator) -> Schema {
                <Vec<$entry>>::json_schema(generator)
            }
        }
    };
}
schema_as_vec!(HostList, HostEntry);
schema_as_vec!(CidrList, CidrEntry);

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
