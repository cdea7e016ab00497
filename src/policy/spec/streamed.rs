//! Lists judged one element at a time. While its object decodes, such a list is kept as
//! its JSON text; each element is decoded when it is judged and dropped after. A list a
//! tenant can make as long as the body allows (a VirtualService's routes) then costs
//! the time to read it, not one struct per element.

use std::fmt;
use std::marker::PhantomData;
use std::ops::ControlFlow;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{SpecError, decode_at};

/// A list field decoded element by element by [`Streamed::walk`].
pub struct Streamed<'a, T> {
    raw: Option<&'a RawValue>,
    element: PhantomData<fn() -> T>,
}

impl<T> Default for Streamed<'_, T> {
    fn default() -> Self {
        Self {
            raw: None,
            element: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Streamed<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Streamed")
            .field(&self.raw.map(RawValue::get))
            .finish()
    }
}

impl<'de: 'a, 'a, T> Deserialize<'de> for Streamed<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `null` is an absent list, as Kubernetes clients treat them alike.
        Ok(Self {
            raw: Option::<&'a RawValue>::deserialize(d)?,
            element: PhantomData,
        })
    }
}

impl<'a, T> Streamed<'a, T> {
    /// The same list, read as elements of another type: a first walk can decode only
    /// the few fields that a second, full walk needs to know about every element.
    pub fn retyped<U>(&self) -> Streamed<'a, U> {
        Streamed {
            raw: self.raw,
            element: PhantomData,
        }
    }
}

impl<'a, T: Deserialize<'a>> Streamed<'a, T> {
    /// Whether some element satisfies `pred`, decoding one at a time and stopping at
    /// the first that does; `None` when the list or an element before it does not
    /// decode.
    pub fn any(&self, mut pred: impl FnMut(T) -> bool) -> Option<bool> {
        struct Any<'p, T, P>(&'p mut P, PhantomData<fn() -> T>);
        impl<'de, T: Deserialize<'de>, P: FnMut(T) -> bool> Visitor<'de> for Any<'_, T, P> {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
                while let Some(element) = seq.next_element::<T>()? {
                    if (self.0)(element) {
                        // The rest is left unread: drain it so the list ends cleanly.
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
        let Some(raw) = self.raw else {
            return Some(false);
        };
        let mut de = serde_json::Deserializer::from_str(raw.get());
        de.deserialize_seq(Any(&mut pred, PhantomData)).ok()
    }
}

impl<'a, T: Deserialize<'a> + Default> Streamed<'a, T> {
    /// True when the list is absent, `null` or `[]`. Any other value is not empty: a
    /// value that is not a list is reported by [`Streamed::walk`].
    pub fn is_empty(&self) -> bool {
        self.raw.is_none_or(|r| {
            r.get()
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .is_some_and(|inner| inner.trim().is_empty())
        })
    }

    /// Decodes the elements in order and hands each to `visit` with its index, until
    /// the end or until `visit` breaks. An element that does not decode (or a value that
    /// is not a list) ends the walk, as it would have ended the decode of the whole
    /// object, and comes back as the error, named by its path under `at`.
    pub fn walk(
        &self,
        at: &dyn Fn() -> String,
        mut visit: impl FnMut(usize, T) -> ControlFlow<()>,
    ) -> Result<(), SpecError> {
        let Some(raw) = self.raw else { return Ok(()) };
        let mut failed = None;
        let mut stopped = false;
        let walk = Walk {
            visit: &mut visit,
            failed: &mut failed,
            stopped: &mut stopped,
            element: PhantomData,
        };
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let result = de.deserialize_seq(walk);
        match (result, failed) {
            (Ok(()), _) => Ok(()),
            // Stopped by the visitor: the rest of the list was never read.
            (Err(_), None) if stopped => Ok(()),
            // The element at `i` did not decode: decode it again on its own, tracking
            // the path, to name the field.
            (Err(e), Some(i)) => {
                let at = format!("{}[{i}]", at());
                Err(match nth_element(raw.get(), i) {
                    Some(text) => match decode_at::<T>(text, &at) {
                        Err(named) => named,
                        // Cannot happen: the same text failed a moment ago.
                        Ok(_) => SpecError::new(at, "element does not decode"),
                    },
                    None => SpecError::new(at, e.to_string()),
                })
            }
            (Err(e), None) => Err(SpecError::new(at(), e.to_string())),
        }
    }
}

/// The visitor of one walk over a list.
struct Walk<'w, T, F> {
    visit: &'w mut F,
    failed: &'w mut Option<usize>,
    stopped: &'w mut bool,
    element: PhantomData<fn() -> T>,
}

impl<'de, T, F> Visitor<'de> for Walk<'_, T, F>
where
    T: Deserialize<'de>,
    F: FnMut(usize, T) -> ControlFlow<()>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            match seq.next_element::<T>() {
                Ok(Some(element)) => {
                    if (self.visit)(i, element).is_break() {
                        *self.stopped = true;
                        return Err(de::Error::custom("walk stopped"));
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    *self.failed = Some(i);
                    return Err(e);
                }
            }
            i += 1;
        }
    }
}

/// The text of the `n`th element of a JSON list, skipping the ones before it.
fn nth_element(list: &str, n: usize) -> Option<&str> {
    struct Nth(usize);
    impl<'de> Visitor<'de> for Nth {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            for _ in 0..self.0 {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(None);
                }
            }
            let nth = seq.next_element::<&'de RawValue>()?;
            // The rest is left unread: drain it so the list ends cleanly.
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(nth)
        }
    }
    let mut de = serde_json::Deserializer::from_str(list);
    de.deserialize_seq(Nth(n)).ok().flatten().map(RawValue::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Route<'a> {
        #[serde(borrow)]
        name: &'a str,
        weight: u32,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Spec<'a> {
        #[serde(borrow)]
        http: Streamed<'a, Route<'a>>,
    }

    /// Whether the list was empty, the elements seen, and the error's path.
    type Walked = (bool, Vec<(usize, String, u32)>, Option<String>);

    fn walk(json: &str) -> Walked {
        let spec: Spec<'_> = serde_json::from_str(json).unwrap();
        let mut seen = Vec::new();
        let result = spec.http.walk(&|| "spec.http".to_owned(), |i, r| {
            seen.push((i, r.name.to_owned(), r.weight));
            ControlFlow::Continue(())
        });
        (spec.http.is_empty(), seen, result.err().map(|e| e.path))
    }

    #[test]
    fn walks_every_element_in_order() {
        let (empty, seen, error) =
            walk(r#"{"http": [{"name": "a", "weight": 1}, {}, {"name": "c"}]}"#);
        assert!(!empty);
        assert_eq!(
            seen,
            [(0, "a".into(), 1), (1, "".into(), 0), (2, "c".into(), 0)]
        );
        assert_eq!(error, None);
    }

    #[test]
    fn absent_null_and_empty_lists_are_empty() {
        for json in [
            r#"{}"#,
            r#"{"http": null}"#,
            r#"{"http": []}"#,
            r#"{"http": [ ]}"#,
        ] {
            let (empty, seen, error) = walk(json);
            assert!(empty, "{json}");
            assert!(seen.is_empty() && error.is_none(), "{json}");
        }
        assert!(!walk(r#"{"http": [{}]}"#).0);
    }

    #[test]
    fn a_bad_element_is_named_by_its_path_and_ends_the_walk() {
        let (_, seen, error) =
            walk(r#"{"http": [{"name": "a"}, {"weight": "heavy"}, {"name": "c"}]}"#);
        assert_eq!(seen, [(0, "a".into(), 0)]);
        assert_eq!(error.as_deref(), Some("spec.http[1].weight"));
    }

    #[test]
    fn a_value_that_is_not_a_list_is_an_error_at_the_list() {
        for json in [
            r#"{"http": "routes"}"#,
            r#"{"http": {"name": "a"}}"#,
            r#"{"http": [3]}"#,
        ] {
            let (_, seen, error) = walk(json);
            assert!(seen.is_empty(), "{json}");
            let want = if json.contains("[3]") {
                "spec.http[0]"
            } else {
                "spec.http"
            };
            assert_eq!(error.as_deref(), Some(want), "{json}");
        }
    }

    #[test]
    fn a_visitor_that_breaks_stops_the_walk_quietly() {
        let spec: Spec<'_> =
            serde_json::from_str(r#"{"http": [{"name": "a"}, {"name": "b"}, {"weight": "x"}]}"#)
                .unwrap();
        let mut seen = 0;
        let result = spec.http.walk(&|| "spec.http".to_owned(), |_, _| {
            seen += 1;
            ControlFlow::Break(())
        });
        assert_eq!(seen, 1);
        assert!(
            result.is_ok(),
            "the bad element after the stop is never read"
        );
    }

    #[test]
    fn any_stops_at_the_first_match_and_fails_on_bad_input() {
        let spec: Spec<'_> =
            serde_json::from_str(r#"{"http": [{"name": "a"}, {"name": "b"}, {"weight": "x"}]}"#)
                .unwrap();
        let mut seen = Vec::new();
        let found = spec.http.any(|r: Route<'_>| {
            seen.push(r.name);
            r.name == "b"
        });
        assert_eq!((found, seen), (Some(true), vec!["a", "b"]));
        assert_eq!(spec.http.any(|r: Route<'_>| r.name == "c"), None);
        let names: Streamed<'_, Named<'_>> = spec.http.retyped();
        assert_eq!(
            names.any(|n| n.name == "z"),
            Some(false),
            "weight is not read"
        );
        assert_eq!(Spec::default().http.any(|_| true), Some(false));
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Named<'a> {
        #[serde(borrow)]
        name: &'a str,
    }

    #[test]
    fn nth_element_finds_the_text() {
        assert_eq!(
            nth_element(r#"[1, {"a": [2]}, 3]"#, 1),
            Some(r#"{"a": [2]}"#)
        );
        assert_eq!(nth_element("[1]", 3), None);
    }
}
