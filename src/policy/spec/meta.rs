//! The metadata a kind reads: the labels and annotations it knows by name ([`Keys`]).
//! Everything else — `last-applied-configuration` (a copy of the whole object),
//! `managedFields`, any other key — is skipped without allocating, so a map of a
//! million keys costs the time to read it and at most one string per known key.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::Str;

/// The label and annotation keys one kind reads; its row in the kinds table lists the
/// same constant, so what is decoded is what the table says the kind reads.
pub trait Keys {
    /// The keys.
    const KEYS: &'static [&'static str];
}

/// A kind that reads no labels or annotations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NoKeys;

impl Keys for NoKeys {
    const KEYS: &'static [&'static str] = &[];
}

/// `metadata.labels` and `metadata.annotations`, filtered to `K`'s keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, bound(deserialize = ""))]
pub struct Meta<K: Keys> {
    /// Labels with a key in `K`.
    #[serde(deserialize_with = "super::null_default")]
    pub labels: Pairs<K>,
    /// Annotations with a key in `K`.
    #[serde(deserialize_with = "super::null_default")]
    pub annotations: Pairs<K>,
}

impl<K: Keys> Default for Meta<K> {
    fn default() -> Self {
        Self {
            labels: Pairs::default(),
            annotations: Pairs::default(),
        }
    }
}

/// The pairs whose key is one of `K`'s, at most one per key: a key that appears twice
/// keeps its last value, as Kubernetes' own JSON decoding does.
pub struct Pairs<K>(Vec<(&'static str, String)>, PhantomData<fn() -> K>);

impl<K> Default for Pairs<K> {
    fn default() -> Self {
        Self(Vec::new(), PhantomData)
    }
}

impl<K> Clone for Pairs<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<K> PartialEq for Pairs<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K> Eq for Pairs<K> {}

impl<K> fmt::Debug for Pairs<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Keys> Pairs<K> {
    /// The value of `key` (one of `K`'s), if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        debug_assert!(
            K::KEYS.contains(&key),
            "{key} is not kept: add it to the kind's keys"
        );
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

impl<'de, K: Keys> Deserialize<'de> for Pairs<K> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PairsVisitor(K::KEYS))
            .map(|kept| Pairs(kept, PhantomData))
    }
}

/// The kept pairs of a map, for keys known only at run time (comparing the metadata
/// of two versions of an object).
pub fn pairs_of(json: &str, keys: &'static [&'static str]) -> Option<Vec<(&'static str, String)>> {
    let mut de = serde_json::Deserializer::from_str(json);
    de::Deserializer::deserialize_map(&mut de, PairsVisitor(keys)).ok()
}

struct PairsVisitor(&'static [&'static str]);

impl<'de> Visitor<'de> for PairsVisitor {
    type Value = Vec<(&'static str, String)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kept: Vec<(&'static str, String)> = Vec::new();
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            let Some(known) = self.0.iter().find(|k| **k == key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = map.next_value::<Option<String>>()?.unwrap_or_default();
            match kept.iter_mut().find(|(k, _)| k == known) {
                Some(pair) => pair.1 = value,
                None => kept.push((known, value)),
            }
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Read;
    impl Keys for Read {
        const KEYS: &'static [&'static str] = &[
            "sidecar.istio.io/inject",
            "istio.io/dataplane-mode",
            "egress-guard.io/default-timeout",
            "proxy.istio.io/config",
        ];
    }

    #[test]
    fn keeps_only_the_keys_the_kind_reads() {
        let m: Meta<Read> = serde_json::from_str(
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
        // is bounded by the kind's keys, and a repeated key keeps its last value.
        let mut json = String::from("{\"annotations\":{");
        for i in 0..100_000 {
            json.push_str(&format!("\"k{i}.istio.io/x\":\"v\","));
            json.push_str(&format!("\"sidecar.istio.io/inject\":\"{i}\","));
        }
        json.push_str("\"proxy.istio.io/config\":\"{}\"}}");
        let m: Meta<Read> = serde_json::from_str(&json).unwrap();
        assert_eq!(m.annotations.iter().count(), 2);
        assert_eq!(m.annotations.get("sidecar.istio.io/inject"), Some("99999"));
        assert_eq!(m.annotations.get("proxy.istio.io/config"), Some("{}"));
    }

    #[test]
    fn null_maps_and_values_are_empty() {
        let m: Meta<Read> = serde_json::from_str(
            r#"{"labels":null,"annotations":{"sidecar.istio.io/inject":null}}"#,
        )
        .unwrap();
        assert_eq!(m.labels, Pairs::default());
        assert_eq!(m.annotations.get("sidecar.istio.io/inject"), Some(""));
    }

    #[test]
    fn pairs_of_reads_a_map_with_keys_given_at_run_time() {
        let kept = pairs_of(r#"{"a":"1","b":"2","a":"3"}"#, &["a"]).unwrap();
        assert_eq!(kept, [("a", "3".to_owned())]);
        assert_eq!(pairs_of("[1]", &["a"]), None);
    }
}
