//! Host names and host patterns: parsing, normalisation and wildcard coverage.
//!
//! Everything here is pure string work. Hosts are compared case-insensitively with one
//! trailing dot ignored, so normalisation happens once, when a value is parsed.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why a string is not a valid host name or pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The string is empty.
    #[error("empty host name")]
    Empty,
    /// Longer than DNS allows.
    #[error("host name longer than 255 characters")]
    TooLong,
    /// One label is malformed.
    #[error("label {label:?} is invalid ({reason})")]
    Label {
        /// The offending label.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The top-level label is all digits, which DNS resolvers treat as an address.
    #[error("top-level domain {0:?} cannot be all-numeric")]
    NumericTld(String),
    /// A `*` anywhere but as the whole first label.
    #[error("wildcard is only allowed as the whole first label (\"*.example.com\")")]
    MisplacedWildcard,
    /// An IP address where a name is required.
    #[error("an IP address is not a host name")]
    IpAddress,
}

/// Lowercases and strips one trailing dot, borrowing when nothing changes. A name
/// ending in two dots keeps them (it is invalid either way), so this is idempotent.
pub fn normalize(host: &str) -> Cow<'_, str> {
    let trimmed = match host.strip_suffix('.') {
        Some(t) if !t.ends_with('.') => t,
        _ => host,
    };
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// Why `label` is not a DNS-1123 label (1–63 of `[a-z0-9-]`, alphanumeric at both
/// ends), or `None` when it is one. Kubernetes names are lowercase; Istio's
/// `labels.IsDNS1123Label` also accepts upper case (`upper`). The one implementation
/// of the rule: [`check_label`] and `istio::is_dns1123_label` both call it.
pub fn label_problem(label: &str, upper: bool) -> Option<&'static str> {
    label_bytes_problem(label.as_bytes(), upper)
}

/// [`label_problem`] on a label's bytes.
pub fn label_bytes_problem(b: &[u8], upper: bool) -> Option<&'static str> {
    if b.is_empty() {
        Some("empty")
    } else if b.len() > 63 {
        Some("longer than 63 characters")
    } else if !b.iter().all(|c| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || *c == b'-'
            || (upper && c.is_ascii_uppercase())
    }) {
        Some("only a-z, 0-9 and '-' are allowed")
    } else if b.first() == Some(&b'-') || b.last() == Some(&b'-') {
        Some("must not start or end with '-'")
    } else {
        None
    }
}

/// Checks one lowercase DNS-1123 label, as Kubernetes names and normalised hosts use.
pub fn check_label(label: &str) -> Result<(), HostError> {
    match label_problem(label, false) {
        None => Ok(()),
        Some(reason) => Err(HostError::Label {
            label: label.to_owned(),
            reason,
        }),
    }
}

/// Checks a dotted name made only of DNS-1123 labels (no wildcard).
///
/// Mirrors Istio's `ValidateDNS1123Labels`: an all-numeric last label is rejected.
pub fn check_labels(name: &str) -> Result<(), HostError> {
    let mut last = "";
    for label in name.split('.') {
        check_label(label)?;
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::NumericTld(last.to_owned()));
    }
    Ok(())
}

/// A parsed host reference as it appears in an Istio resource or the allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `*`: every host.
    Any,
    /// `*.suffix`: every name strictly below `suffix`, at any depth.
    Wildcard(Box<str>),
    /// `*foo.suffix`: Envoy matches any name ending in `foo.suffix`. Istio only warns
    /// about these; for coverage they behave like `*.suffix`.
    Partial {
        /// The first label without its `*` (`foo`).
        stem: Box<str>,
        /// The rest of the name after the first label.
        suffix: Box<str>,
    },
    /// A fully qualified or short host name.
    Exact(Box<str>),
}

impl HostPattern {
    /// The pattern for a host that Istio has already accepted, for allowlist matching.
    ///
    /// Unlike `from_str` this never fails. Names Istio lets through that are not DNS
    /// names here (`123`, `outbound_.80_._.svc`, any DestinationRule `sni`) match only
    /// themselves, and a wildcard that does not parse (`*x`, a partial wildcard over
    /// short names) is widened to `*`, which only `*` covers. IP literals are the
    /// caller's business: they are checked as addresses, not as names.
    pub fn from_accepted(raw: &str) -> Self {
        // Without a leading `*` the parse can only end in `Exact` of the normalised
        // name, valid or not: skip re-checking labels a validity rule already read.
        if !raw.starts_with('*') {
            return Self::Exact(normalize(raw).into_owned().into());
        }
        raw.parse().unwrap_or(Self::Any)
    }

    /// True for `*`, `*.x` and `*x.y`.
    pub fn is_wildcard(&self) -> bool {
        !matches!(self, Self::Exact(_))
    }

    /// True when `self` (an allowlist entry) matches every host `other` can match.
    ///
    /// `*.example.com` covers `a.example.com`, `a.b.example.com` and
    /// `*.api.example.com`, but not `example.com`; an exact name covers only itself.
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (Self::Any, _) => true,
            (_, Self::Any) => false,
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(_), _) => false,
            (Self::Wildcard(s), Self::Exact(b)) => is_strict_subdomain(b, s),
            (Self::Wildcard(s), Self::Wildcard(t)) => t == s || is_strict_subdomain(t, s),
            (Self::Wildcard(s), Self::Partial { suffix: t, .. }) => {
                t == s || is_strict_subdomain(t, s)
            }
            (Self::Partial { .. }, _) => false,
        }
    }
}

/// True when `name` ends with `.suffix` (so `name` is strictly below `suffix`).
pub fn is_strict_subdomain(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len()
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

impl FromStr for HostPattern {
    type Err = HostError;

    /// Parses and normalises a host or wildcard pattern with Istio's syntax rules
    /// (`ValidateWildcardDomain`): a wildcard may only be the first label.
    fn from_str(raw: &str) -> Result<Self, HostError> {
        if raw.is_empty() {
            return Err(HostError::Empty);
        }
        if raw.len() > 255 {
            return Err(HostError::TooLong);
        }
        let host = normalize(raw);
        if host.is_empty() {
            return Err(HostError::Empty);
        }
        if host == "*" {
            return Ok(Self::Any);
        }
        if host.parse::<IpAddr>().is_ok() {
            return Err(HostError::IpAddress);
        }
        let (first, rest) = match host.split_once('.') {
            Some((first, rest)) => (first, Some(rest)),
            None => (&*host, None),
        };
        if let Some(rest) = rest {
            if rest.contains('*') {
                return Err(HostError::MisplacedWildcard);
            }
            check_labels(rest)?;
        }
        match (first.strip_prefix('*'), rest) {
            (Some(""), Some(rest)) => Ok(Self::Wildcard(rest.into())),
            (Some(stem), Some(rest)) => {
                if stem.contains('*') {
                    return Err(HostError::MisplacedWildcard);
                }
                // Istio's wildcard label is `*label` or `*-label` (`IsWildcardDNS1123Label`).
                check_label(stem.strip_prefix('-').unwrap_or(stem))?;
                Ok(Self::Partial {
                    stem: stem.into(),
                    suffix: rest.into(),
                })
            }
            // `*foo` with no dot: a partial wildcard over short names.
            (Some(_), None) => Err(HostError::MisplacedWildcard),
            (None, _) => {
                if first.contains('*') {
                    return Err(HostError::MisplacedWildcard);
                }
                check_label(first)?;
                if rest.is_none() && first.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HostError::NumericTld(first.to_owned()));
                }
                Ok(Self::Exact(host.into_owned().into()))
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Wildcard(s) => write!(f, "*.{s}"),
            Self::Partial { stem, suffix } => write!(f, "*{stem}.{suffix}"),
            Self::Exact(h) => f.write_str(h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalizes_case_and_one_trailing_dot() {
        assert_eq!(normalize("API.GitHub.com."), "api.github.com");
        assert_eq!(normalize("a.b"), "a.b");
        assert!(matches!(normalize("a.b"), Cow::Borrowed(_)));
        assert_eq!(p("Api.GitHub.COM.").to_string(), "api.github.com");
    }

    #[test]
    fn parses_and_round_trips() {
        for s in [
            "*",
            "*.example.com",
            "*foo.example.com",
            "*-foo.example.com",
            "api.github.com",
            "reviews",
            "xn--bcher-kva.example",
            "a-b.c-d.io",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn rejects_invalid_hosts() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.com", ["abcdefghij"; 25].join("."));
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            (".", "empty"),
            ("*.*.example.com", "misplaced"),
            ("api.*.example.com", "misplaced"),
            ("foo*.example.com", "misplaced"),
            ("f*o.example.com", "misplaced"),
            ("*foo", "misplaced"),
            ("*--foo.example.com", "label"),
            ("*foo-.example.com", "label"),
            ("-api.example.com", "label"),
            ("api-.example.com", "label"),
            ("api..example.com", "label"),
            ("api_x.example.com", "label"),
            ("a b.example.com", "label"),
            (&long_label, "label"),
            ("example.123", "numeric"),
            ("123", "numeric"),
            ("10.0.0.1", "ip"),
            ("::1", "ip"),
            (&long_name, "long"),
        ];
        for (input, kind) in cases {
            let err = input
                .parse::<HostPattern>()
                .expect_err(&format!("{input:?} should be rejected"));
            let matches = matches!(
                (*kind, &err),
                ("empty", HostError::Empty)
                    | ("misplaced", HostError::MisplacedWildcard)
                    | ("label", HostError::Label { .. })
                    | ("numeric", HostError::NumericTld(_))
                    | ("ip", HostError::IpAddress)
                    | ("long", HostError::TooLong)
            );
            assert!(matches, "{input:?}: expected {kind}, got {err:?}");
        }
    }

    #[test]
    fn accepted_hosts_always_have_a_pattern() {
        let cases = [
            ("API.example.com.", "api.example.com"),
            ("*.example.com", "*.example.com"),
            ("*-foo.example.com", "*-foo.example.com"),
            ("123", "123"),
            ("outbound_.80_._.Svc.example", "outbound_.80_._.svc.example"),
            ("Not_A.Host-Name", "not_a.host-name"),
            ("*x", "*"),
            ("*", "*"),
        ];
        for (raw, want) in cases {
            assert_eq!(HostPattern::from_accepted(raw).to_string(), want, "{raw}");
        }
    }

    #[test]
    fn wildcard_coverage_follows_the_spec() {
        let cases = [
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", "*.api.example.com", true),
            ("*.example.com", "*.example.com", true),
            ("*.example.com", "*.com", false),
            ("*.example.com", "*foo.example.com", true),
            ("*.example.com", "*", false),
            ("api.example.com", "*.example.com", false),
            ("api.example.com", "api.example.com", true),
            ("api.example.com", "API.example.com.", true),
            ("*", "*", true),
            ("*", "*.x.y", true),
            ("*", "a", true),
        ];
        for (entry, host, want) in cases {
            assert_eq!(p(entry).covers(&p(host)), want, "{entry} covers {host}");
        }
    }

    #[test]
    fn strict_subdomain_needs_a_dot_boundary() {
        assert!(is_strict_subdomain("a.example.com", "example.com"));
        assert!(!is_strict_subdomain("aexample.com", "example.com"));
        assert!(!is_strict_subdomain("example.com", "example.com"));
    }
}
