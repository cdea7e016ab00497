//! The decode vocabulary: how a kind reads the fields it judges out of an object's
//! JSON, typed and borrowed from the object's bytes, and the Istio serde types several
//! kinds share. Nothing here judges: a decode error comes back as a [`SpecError`]
//! value, and the caller decides what it means.
//!
//! Below everything that judges: this module imports nothing from `judge`, `kinds` or
//! `kind`.

use std::fmt;

use serde::Deserialize;

mod borrowed;
mod meta;
mod str_list;
mod streamed;

pub use borrowed::Str;
pub use meta::{Keys, Meta, NoKeys, Pairs, pairs_of};
pub use str_list::{StrList, StrView};
pub use streamed::Streamed;

/// A field that does not decode: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The field path (`spec.http[1].weight`).
    pub path: String,
    /// serde's message.
    pub message: String,
}

impl SpecError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// An object as a kind reads it: the metadata keys `K` and its typed `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    default,
    bound(deserialize = "S: Deserialize<'de> + Default, K: Keys + Default")
)]
pub struct Object<S, K: Keys = NoKeys> {
    /// Labels and annotations the kind reads.
    #[serde(deserialize_with = "null_default")]
    pub metadata: Meta<K>,
    /// The spec.
    #[serde(deserialize_with = "null_default")]
    pub spec: S,
}

/// Decodes a whole object's JSON `text` as a `T`.
pub fn decode<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, SpecError> {
    decode_at(text, "")
}

/// Decodes JSON `text` found at path `at` (empty: a whole object); an error names the
/// field under `at`.
pub fn decode_at<'a, T: Deserialize<'a>>(text: &'a str, at: &str) -> Result<T, SpecError> {
    // Plain serde_json first: tracking the path costs as much as the decode itself, and
    // is only needed to name the field of an object that does not decode.
    if let Ok(v) = serde_json::from_str::<T>(text) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (at, inner.as_str()) {
            ("", ".") => "spec".to_owned(),
            ("", p) => p.to_owned(),
            (a, ".") => a.to_owned(),
            (a, p) if p.starts_with('[') => format!("{a}{p}"),
            (a, p) => format!("{a}.{p}"),
        };
        SpecError::new(path, e.into_inner().to_string())
    })
}

/// Deserializes `null` as the default, as Kubernetes clients treat them alike.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Istio's `Destination`: a route target, a mirror, or a Sidecar's `egressProxy`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Destination<'a> {
    /// The registry host it selects.
    #[serde(borrow, deserialize_with = "null_default")]
    pub host: Str<'a>,
    /// A DestinationRule subset.
    #[serde(borrow, deserialize_with = "null_default")]
    pub subset: Str<'a>,
    /// The port.
    pub port: Option<PortSelector>,
}

/// A destination port.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PortSelector {
    /// The number, as written.
    pub number: i64,
}

/// A service or server port: ServiceEntry `ports[]`, Gateway `servers[].port`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Port<'a> {
    /// The number, as written.
    pub number: i64,
    /// The protocol name.
    #[serde(borrow, deserialize_with = "null_default")]
    pub protocol: Str<'a>,
    /// The port name.
    #[serde(borrow, deserialize_with = "null_default")]
    pub name: Str<'a>,
    /// Where the proxy connects, when it differs from `number`.
    pub target_port: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Spec {
        hosts: Vec<String>,
        port: Option<PortSelector>,
    }

    #[test]
    fn a_field_that_does_not_decode_is_named_by_its_path() {
        let e = decode::<Object<Spec>>(r#"{"spec":{"hosts":["a",3]}}"#).unwrap_err();
        assert_eq!(e.path, "spec.hosts[1]");
        let e = decode_at::<Spec>(r#"{"port":{"number":"x"}}"#, "spec.tls[2]").unwrap_err();
        assert_eq!(e.path, "spec.tls[2].port.number");
        let e = decode::<Object<Spec>>("3").unwrap_err();
        assert_eq!(e.path, "spec");
    }

    #[test]
    fn null_metadata_and_spec_are_empty() {
        let o: Object<Spec> = decode(r#"{"metadata":null,"spec":null}"#).unwrap();
        assert!(o.spec.hosts.is_empty() && o.spec.port.is_none());
    }
}
