//! The metadata egress-guard reads: labels and annotations, keeping only Istio's and
//! egress-guard's own keys. Everything else — `last-applied-configuration` (a copy of
//! the whole object), `managedFields` — is skipped without allocating.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

/// `metadata.labels` and `metadata.annotations`, filtered.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// Labels with a relevant key.
    #[serde(deserialize_with = "super::null_default")]
    pub labels: Pairs,
    /// Annotations with a relevant key.
    #[serde(deserialize_with = "super::null_default")]
    pub annotations: Pairs,
}

/// Key/value pairs whose key matters to egress-guard, in document order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pairs(Vec<(String, String)>);

impl Pairs {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every kept pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Keys under `istio.io` (any subdomain) and `egress-guard.io` are the only ones any
/// kind module reads.
fn is_relevant(key: &str) -> bool {
    key.split_once('/').is_some_and(|(prefix, _)| {
        prefix == "istio.io" || prefix.ends_with(".istio.io") || prefix == "egress-guard.io"
    })
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
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
                let mut kept = Vec::new();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    if is_relevant(&key) {
                        let value: Option<String> = map.next_value()?;
                        kept.push((key.into_owned(), value.unwrap_or_default()));
                    } else {
                        map.next_value::<IgnoredAny>()?;
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
    fn keeps_only_istio_and_egress_guard_keys() {
        let m: Meta = serde_json::from_str(
            r#"{"name":"x","labels":{"app":"a","sidecar.istio.io/inject":"false","istio.io/rev":"1-2"},
                "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"big\":1}",
                "egress-guard.io/default-timeout":"5s","proxy.istio.io/config":"{}","notistio.io/x":"y"},
                "managedFields":[{"manager":"kubectl"}]}"#,
        )
        .unwrap();
        assert_eq!(m.labels.get("sidecar.istio.io/inject"), Some("false"));
        assert_eq!(m.labels.get("istio.io/rev"), Some("1-2"));
        assert_eq!(m.labels.get("app"), None);
        assert_eq!(
            m.annotations.get("egress-guard.io/default-timeout"),
            Some("5s")
        );
        assert_eq!(m.annotations.get("proxy.istio.io/config"), Some("{}"));
        assert_eq!(m.annotations.iter().count(), 2);
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
