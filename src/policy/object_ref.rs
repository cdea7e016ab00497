//! `NAMESPACE/NAME` references to one namespaced object, such as the allowlist
//! ConfigMap. A plain value type: the CLI parses it, sources and the engine read it.

use std::fmt;
use std::str::FromStr;

/// A `NAMESPACE/NAME` reference to one namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl FromStr for ObjectRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_round_trip() {
        let r: ObjectRef = "egress-guard/allowlist".parse().unwrap();
        assert_eq!(
            r,
            ObjectRef {
                namespace: "egress-guard".into(),
                name: "allowlist".into()
            }
        );
        assert_eq!(r.to_string().parse::<ObjectRef>(), Ok(r));
        for bad in ["x", "/x", "x/", "a/b/c", ""] {
            assert!(bad.parse::<ObjectRef>().is_err(), "{bad}");
        }
    }
}
