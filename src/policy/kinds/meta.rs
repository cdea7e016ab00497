//! The metadata egress-guard reads: the labels and annotations it knows by name
//! ([`KEYS`]). Everything else — `last-applied-configuration` (a copy of the whole
//! object), `managedFields`, any other key — is skipped without allocating, so a map of
//! a million keys costs the time to read it and at most one string per known key.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::Str;

/// Every label and annotation key a kind module reads. [`Pairs::get`] of any other key
/// is a bug (and panics in debug builds): the value would never have been kept.
pub const KEYS: &[&str] = &[
    "egress-guard.io/default-timeout",
    "gateway.istio.io/managed",
    "inject.istio.io/templates",
    "istio.io/dataplane-mode",
    "istio.io/use-waypoint",
    "networking.istio.io/exportTo",
    "proxy.istio.io/config",
    "sidecar.istio.io/bootstrapOverride",
    "sidecar.istio.io/inject",
    "sidecar.istio.io/interceptionMode",
    "sidecar.istio.io/nativeSidecar",
    "sidecar.istio.io/overrides",
    "sidecar.istio.io/proxyImage",
    "sidecar.istio.io/status",
    "sidecar.istio.io/userVolumeMount",
    "traffic.sidecar.istio.io/excludeInterfaces",
    "traffic.sidecar.istio.io/excludeOutboundIPRanges",
    "traffic.sidecar.istio.io/excludeOutboundPorts",
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
];

/// `metadata.labels` and `metadata.annotations`, filtered.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// Labels with a key in [`KEYS`].
    #[serde(deserialize_with = "super::null_default")]
    pub labels: Pairs,
    /// Annotations with a key in [`KEYS`].
    #[serde(deserialize_with = "super::null_default")]
    pub annotations: Pairs,
}

/// The pairs whose key is in [`KEYS`], at most one per key: a key that appears twice
/// keeps its last value, as Kubernetes' own JSON decoding does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pairs(Vec<(&'static str, String)>);

impl Pairs {
    /// The value of `key` (one of [`KEYS`]), if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        debug_assert!(KEYS.contains(&key), "{key} is not kept: add it to KEYS");
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every kept pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str()))
    }
}

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut kept: Vec<(&'static str, String)> = Vec::new();
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    let Some(known) = KEYS.iter().find(|k| **k == key) else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    let value = map.next_value::<Option<String>>()?.unwrap_or_default();
                    match kept.iter_mut().find(|(k, _)| k == known) {
                        Some(pair) => pair.1 = value,
                        None => kept.push((known, value)),
                    }
                }
                Ok(Pairs(kept))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_keys_egress_guard_reads() {
        let m: Meta = serde_json::from_str(
            r#"{"name":"x","labels":{"app":"a","sidecar.istio.io/inject":"false","istio.io/dataplane-mode":"none","istio.io/rev":"1-2"},
                "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"big\":1}",
                "egress-guard.io/default-timeout":"5s","proxy.istio.io/config":"{}","notistio.io/x":"y"},
                "managedFields":[{"manager":"kubectl"}]}"#,
        )
        .unwrap();
        assert_eq!(m.labels.get("sidecar.istio.io/inject"), Some("false"));
        assert_eq!(m.labels.get("istio.io/dataplane-mode"), Some("none"));
        // Keys no module reads are not kept, under istio.io or not.
        assert_eq!(m.labels.iter().count(), 2);
        assert_eq!(
            m.annotations.get("egress-guard.io/default-timeout"),
            Some("5s")
        );
        assert_eq!(m.annotations.get("proxy.istio.io/config"), Some("{}"));
        assert_eq!(m.annotations.iter().count(), 2);
    }

    #[test]
    fn keeps_one_value_per_known_key_however_many_keys_come() {
        // A hundred thousand keys under istio.io, the known ones repeated: what is kept
        // is bounded by KEYS, and a repeated key keeps its last value.
        let mut json = String::from("{\"annotations\":{");
        for i in 0..100_000 {
            json.push_str(&format!("\"k{i}.istio.io/x\":\"v\","));
            json.push_str(&format!("\"sidecar.istio.io/inject\":\"{i}\","));
        }
        json.push_str("\"proxy.istio.io/config\":\"{}\"}}");
        let m: Meta = serde_json::from_str(&json).unwrap();
        assert_eq!(m.annotations.iter().count(), 2);
        assert_eq!(m.annotations.get("sidecar.istio.io/inject"), Some("99999"));
        assert_eq!(m.annotations.get("proxy.istio.io/config"), Some("{}"));
    }

    #[test]
    fn every_key_a_kind_module_reads_is_kept() {
        use super::super::{pod, proxy_config, service, service_entry};
        for key in pod::KEYS_READ.iter().chain(&[
            proxy_config::ANNOTATION,
            service::EXPORT_TO,
            service_entry::USE_WAYPOINT,
            crate::policy::timeouts::ANNOTATION,
        ]) {
            assert!(KEYS.contains(key), "{key}");
        }
    }

    #[test]
    fn null_maps_and_values_are_empty() {
        let m: Meta = serde_json::from_str(
            r#"{"labels":null,"annotations":{"sidecar.istio.io/status":null}}"#,
        )
        .unwrap();
        assert_eq!(m.labels, Pairs::default());
        assert_eq!(m.annotations.get("sidecar.istio.io/status"), Some(""));
    }
}
