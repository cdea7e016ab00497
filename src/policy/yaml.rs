//! YAML parsing for text that tenants and platform teams write (the allowlist, the
//! `proxy.istio.io/config` annotation, the manifests `check` reads): one streaming
//! parser under budgets, so that neither size nor aliases nor nesting can make a small
//! document expensive.

use serde::de::DeserializeOwned;

/// What one document may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nesting depth of collections.
    pub depth: usize,
    /// Parsed nodes (scalars, sequences, mappings).
    pub nodes: usize,
    /// Events replayed for aliases in all: an alias bomb's expansion stops here.
    pub replayed: usize,
}

/// Parses `text` as one YAML document into `T` within `limits`. Merge keys (`<<`) are
/// applied and duplicate keys refused, as Istio's YAML reader does. The error names the
/// field path (when known) and the line.
pub fn from_str<T: DeserializeOwned>(text: &str, limits: Limits) -> Result<T, Error> {
    let options = options(limits);
    // Plain first: tracking the path costs a tenth of the parse, and is only needed to
    // name the field of a document that does not parse. A failed document is parsed a
    // second time to name it, under the same limits.
    if let Ok(v) =
        serde_saphyr::with_deserializer_from_str_with_options(text, options.clone(), |de| {
            T::deserialize(de)
        })
    {
        return Ok(v);
    }
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| {
        let line = e.location().map(|l| l.line());
        let message = message(&e);
        let message = if matches!(path.as_str(), "" | "." | "?") {
            message
        } else {
            format!("{path}: {message}")
        };
        Error { message, line }
    })
}

/// A document [`from_str`] could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The field path (when known), the reason, and the line and column.
    pub message: String,
    /// The line at fault, from 1, when the parser knows it.
    pub line: Option<u64>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parses every document of a multi-document stream (`---`), skipping empty ones,
/// within `limits` for the whole stream.
pub fn documents<T: DeserializeOwned>(text: &str, limits: Limits) -> Result<Vec<T>, String> {
    serde_saphyr::from_multiple_with_options(text, options(limits)).map_err(|e| message(&e))
}

/// The limits for a manifest file of `len` bytes: a node takes at least a byte or two,
/// so its size bounds the nodes; aliases and nesting stay those of hand-written YAML.
pub fn manifest_limits(len: usize) -> Limits {
    Limits {
        depth: 128,
        nodes: len.max(10_000),
        replayed: 100_000,
    }
}

/// The parser's message, without advice meant for the program rather than for whoever
/// wrote the YAML. It ends with the line and column when the parser knows them.
fn message(e: &serde_saphyr::Error) -> String {
    e.without_snippet()
        .to_string()
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
}

fn options(limits: Limits) -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: limits.depth,
            max_nodes: limits.nodes,
            max_events: limits.nodes.saturating_mul(2),
            max_aliases: limits.replayed,
            max_anchors: limits.replayed,
            max_recorded_anchor_events: limits.replayed,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: limits.replayed,
        },
        with_snippet: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        depth: 16,
        nodes: 10_000,
        replayed: 1_000,
    };

    #[test]
    fn alias_bombs_stop_at_the_replay_budget() {
        // Each level multiplies by 10: nine levels would be a billion scalars.
        let mut bomb = String::from("a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 1..9 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
            ));
        }
        let started = std::time::Instant::now();
        assert!(from_str::<serde_json::Value>(&bomb, SMALL).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn deep_nesting_stops_at_the_depth_budget() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(from_str::<serde_json::Value>(&deep, SMALL).is_err());
        let ok = format!("a: {}{}", "[".repeat(8), "]".repeat(8));
        assert!(from_str::<serde_json::Value>(&ok, SMALL).is_ok());
    }

    #[test]
    fn merge_keys_apply_and_duplicate_keys_are_refused() {
        let merged: serde_json::Value =
            from_str("base: &b {x: 1}\nit:\n  <<: *b\n  y: 2\n", SMALL).unwrap();
        assert_eq!(merged["it"]["x"], 1);
        let dup = from_str::<serde_json::Value>("a: 1\na: 2\n", SMALL)
            .unwrap_err()
            .message;
        assert!(dup.contains("duplicate"), "{dup}");
        assert!(!dup.contains("DuplicateKeyPolicy"), "{dup}");
    }
}
