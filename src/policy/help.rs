//! The platform's own words on a denial: the allowlist's `help` template (global, or
//! one namespace's), rendered with the object and its first violation. Placeholders are
//! parsed when the allowlist loads, so a typo fails the load, never a review.

use std::fmt;
use std::str::FromStr;

use super::decision::truncated;

/// Longest template accepted: in audit mode the help is a warning of its own, and
/// Kubernetes cuts warnings at 256 characters (the `egress-guard: ` prefix included).
pub const MAX_TEMPLATE: usize = 240;
/// Longest value put in for one placeholder.
const MAX_VALUE: usize = 64;

/// The names a template may use, in the order the error message lists them.
const PLACEHOLDERS: [(&str, Slot); 5] = [
    ("namespace", Slot::Namespace),
    ("kind", Slot::Kind),
    ("name", Slot::Name),
    ("code", Slot::Code),
    ("host", Slot::Host),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Namespace,
    Kind,
    Name,
    Code,
    Host,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Box<str>),
    Slot(Slot),
}

/// A parsed help template: text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Box<[Part]>,
}

/// What a template is rendered with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// The object's namespace.
    pub namespace: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// Its name (or `generateName` prefix).
    pub name: &'a str,
    /// The first violation's code.
    pub code: &'a str,
    /// The first violation's value: the host, address or setting at fault.
    pub host: &'a str,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Template {
    type Err = TemplateError;

    /// `{name}` is a placeholder, `{{` and `}}` are literal braces; anything else in
    /// braces, an unclosed brace, a control character or more than [`MAX_TEMPLATE`]
    /// bytes is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_TEMPLATE {
            return Err(TemplateError(format!(
                "help is {} bytes; at most {MAX_TEMPLATE}",
                s.len()
            )));
        }
        if s.trim().is_empty() {
            return Err(TemplateError("help is empty".to_owned()));
        }
        if s.chars().any(char::is_control) {
            return Err(TemplateError(
                "help holds a control character (a newline?): it is printed on one line".to_owned(),
            ));
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            text.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
                text.push_str(&tail[..1]);
                rest = after;
                continue;
            }
            if tail.starts_with('}') {
                return Err(TemplateError(
                    "help has a `}` without its `{` (write `}}` for a brace)".to_owned(),
                ));
            }
            let Some(end) = tail.find('}') else {
                return Err(TemplateError(
                    "help has a `{` without its `}` (write `{{` for a brace)".to_owned(),
                ));
            };
            let name = &tail[1..end];
            let Some(&(_, slot)) = PLACEHOLDERS.iter().find(|(n, _)| *n == name) else {
                let known: Vec<String> = PLACEHOLDERS
                    .iter()
                    .map(|(n, _)| format!("{{{n}}}"))
                    .collect();
                return Err(TemplateError(format!(
                    "help has an unknown placeholder {{{}}}; use {}",
                    truncated(name, 32),
                    known.join(", ")
                )));
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text).into()));
            }
            parts.push(Part::Slot(slot));
            rest = &tail[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text.into()));
        }
        Ok(Self {
            parts: parts.into(),
        })
    }
}

impl Template {
    /// The help for one object; each value is cut to a bounded length.
    pub fn render(&self, s: &Subject<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Slot(slot) => {
                    let value = match slot {
                        Slot::Namespace => s.namespace,
                        Slot::Kind => s.kind,
                        Slot::Name => s.name,
                        Slot::Code => s.code,
                        Slot::Host => s.host,
                    };
                    out.push_str(&truncated(value, MAX_VALUE));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject<'static> {
        Subject {
            namespace: "payments",
            kind: "ServiceEntry",
            name: "stripe",
            code: "EG101",
            host: "api.stripe.com",
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let t: Template = "ask #egress in {namespace}: {kind} {name} needs {host} ({code})"
            .parse()
            .unwrap();
        assert_eq!(
            t.render(&subject()),
            "ask #egress in payments: ServiceEntry stripe needs api.stripe.com (EG101)"
        );
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t: Template = "{{namespace}} is {namespace}}}".parse().unwrap();
        assert_eq!(t.render(&subject()), "{namespace} is payments}");
    }

    #[test]
    fn mistakes_fail_the_load_with_what_is_wrong() {
        for (bad, says) in [
            (
                "see {nmespace}",
                "unknown placeholder {nmespace}; use {namespace}, {kind}",
            ),
            ("see {namespace", "without its `}`"),
            ("see namespace}", "without its `{`"),
            ("line one\nline two", "control character"),
            ("   ", "empty"),
        ] {
            let err = bad.parse::<Template>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        let long = "x".repeat(MAX_TEMPLATE + 1);
        assert!(
            long.parse::<Template>()
                .unwrap_err()
                .to_string()
                .contains("at most 240")
        );
        assert!("x".repeat(MAX_TEMPLATE).parse::<Template>().is_ok());
    }

    #[test]
    fn values_are_cut() {
        let t: Template = "{host}".parse().unwrap();
        let host = "a".repeat(10_000);
        let out = t.render(&Subject {
            host: &host,
            ..subject()
        });
        assert!(out.len() < MAX_VALUE + 8, "{}", out.len());
    }
}
