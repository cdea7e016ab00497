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
                // The manifests write `$(POD_NAMESPACE)/...` for the kubelet to expand; left
                // unexpanded, it would be watched as a namespace that cannot exist, and the
                // server would wait for it without saying why.
                if ns.contains("$(") {
                    return Err(format!(
                        "{s:?}: {ns} was not expanded; the kubelet replaces $(VAR) in args only \
                         when the container's env defines VAR"
                    ));
                }
                if !is_namespace_name(ns) {
                    return Err(format!(
                        "{s:?}: {ns:?} is not a namespace name (lower-case letters, digits \
                         and '-', at most 63)"
                    ));
                }
                Ok(Self {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

/// An RFC 1123 label, as Kubernetes requires of a namespace's name.
fn is_namespace_name(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|&b| alnum(b) || b == b'-')
        && bytes.first().copied().is_some_and(alnum)
        && bytes.last().copied().is_some_and(alnum)
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
        for bad in [
            "x", "/x", "x/", "a/b/c", "", "Egress/x", "-a/x", "a-/x", "a.b/x",
        ] {
            assert!(bad.parse::<ObjectRef>().is_err(), "{bad}");
        }
        let long = format!("{}/x", "a".repeat(64));
        assert!(long.parse::<ObjectRef>().is_err());
        assert!(format!("{}/x", "a".repeat(63)).parse::<ObjectRef>().is_ok());
    }

    #[test]
    fn an_unexpanded_variable_says_so() {
        let e = "$(POD_NAMESPACE)/egress-guard-allowlist"
            .parse::<ObjectRef>()
            .unwrap_err();
        assert!(e.contains("$(POD_NAMESPACE) was not expanded"), "{e}");
    }
}
