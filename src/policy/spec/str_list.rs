//! String lists kept as spans of the object's text. A tenant can fill a body with a
//! list of one-character strings (`"h",`: 4 bytes each); as `Vec<Str>` that is 24 bytes
//! per element plus the doubling buffer's slack, about 9× the body. A span is 8 bytes,
//! and the spans are kept in chunks, so the slack is one chunk.
//!
//! Borrowed elements are read back from the text they were decoded from
//! ([`StrList::view`]): the object's JSON, or any part of it that contains the list.
//! Elements with escapes (rare: the apiserver escapes only characters no host or
//! name may contain) are unescaped into one string of their own.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, SeqAccess, Visitor};

use super::Str;
use crate::policy::istio::Names;

/// Spans per chunk after the first (32 KiB).
const CHUNK: usize = 4096;
/// Set in [`Span::len`] for an element kept in [`StrList::owned`].
const OWNED: u32 = 1 << 31;

#[derive(Debug, Clone, Copy)]
struct Span {
    /// Offset from [`StrList::base`], or into [`StrList::owned`].
    start: u32,
    /// Length in bytes, with [`OWNED`] set for an unescaped element.
    len: u32,
}

/// A JSON list of strings; `null` is empty. An empty list is one null pointer: a route
/// can hold a million empty matches, each with its list of gateways.
#[derive(Debug, Default)]
pub struct StrList(Option<Box<Elements>>);

#[derive(Debug)]
struct Elements {
    /// Address of the first borrowed element: the others follow it in the same text.
    base: Option<usize>,
    /// Full chunks of [`CHUNK`] spans, and the last one.
    chunks: Vec<Vec<Span>>,
    len: usize,
    owned: String,
}

impl StrList {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |e| e.len)
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The list read against `text`, the JSON it was decoded from (or any part of it
    /// that contains the list).
    pub fn view<'s>(&'s self, text: &'s str) -> StrView<'s> {
        let Some(e) = self.0.as_deref() else {
            return StrView {
                list: None,
                text: "",
            };
        };
        // Where the first borrowed element lies in `text`; a text that does not contain
        // it is a caller's bug, and reads as empty strings rather than as other bytes.
        let offset = e
            .base
            .and_then(|b| b.checked_sub(text.as_ptr() as usize))
            .filter(|o| *o <= text.len());
        debug_assert!(
            e.base.is_none() || offset.is_some(),
            "a StrList viewed against text it was not decoded from"
        );
        StrView {
            list: Some(e),
            text: offset.and_then(|o| text.get(o..)).unwrap_or_default(),
        }
    }
}

impl Elements {
    fn new() -> Self {
        Self {
            base: None,
            chunks: Vec::new(),
            len: 0,
            owned: String::new(),
        }
    }

    fn push(&mut self, span: Span) -> Result<(), &'static str> {
        if self.len >= u32::MAX as usize {
            return Err("too many elements");
        }
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(span),
            _ => {
                // The first chunk grows from small, as a short list should; later ones
                // are allocated whole, so no buffer is ever copied to grow.
                let mut c = Vec::with_capacity(if self.chunks.is_empty() { 4 } else { CHUNK });
                c.push(span);
                self.chunks.push(c);
            }
        }
        self.len += 1;
        Ok(())
    }

    fn push_borrowed(&mut self, s: &str) -> Result<(), &'static str> {
        let addr = s.as_ptr() as usize;
        let base = *self.base.get_or_insert(addr);
        let span = (|| {
            Some(Span {
                start: u32::try_from(addr.checked_sub(base)?).ok()?,
                len: u32::try_from(s.len()).ok().filter(|l| *l < OWNED)?,
            })
        })();
        match span {
            Some(span) => self.push(span),
            // Before the first element (a decoder that did not read in order) or too
            // far from it: an owned copy is always right.
            None => self.push_owned(s),
        }
    }

    fn push_owned(&mut self, s: &str) -> Result<(), &'static str> {
        let start = u32::try_from(self.owned.len()).map_err(|_| "list too large")?;
        let len = u32::try_from(s.len())
            .ok()
            .filter(|l| *l < OWNED)
            .ok_or("string too large")?;
        self.owned.push_str(s);
        self.push(Span {
            start,
            len: len | OWNED,
        })
    }
}

/// A [`StrList`] with the text its elements are read from.
#[derive(Clone, Copy)]
pub struct StrView<'s> {
    list: Option<&'s Elements>,
    /// The text from the list's first borrowed element on.
    text: &'s str,
}

impl<'s> StrView<'s> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.list.map_or(0, |e| e.len)
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`.
    pub fn get(&self, i: usize) -> Option<&'s str> {
        let span = self.list?.chunks.get(i / CHUNK)?.get(i % CHUNK)?;
        Some(self.read(*span))
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = &'s str> + Clone + use<'s> {
        let this = *self;
        let chunks = self.list.map_or(&[][..], |e| e.chunks.as_slice());
        chunks.iter().flatten().map(move |s| this.read(*s))
    }

    fn read(&self, span: Span) -> &'s str {
        let (text, len) = if span.len & OWNED != 0 {
            (
                self.list.map_or("", |e| e.owned.as_str()),
                span.len & !OWNED,
            )
        } else {
            (self.text, span.len)
        };
        let start = span.start as usize;
        text.get(start..start + len as usize).unwrap_or_default()
    }
}

impl<'s> Names<'s> for StrView<'s> {
    fn count(&self) -> usize {
        self.len()
    }
    fn name(&self, i: usize) -> Option<&'s str> {
        self.get(i)
    }
}

impl fmt::Debug for StrView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<StrList, E> {
                Ok(StrList::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<StrList, E> {
                Ok(StrList::default())
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<StrList, D::Error> {
                d.deserialize_seq(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrList, A::Error> {
                let mut list = Elements::new();
                while let Some(Str(e)) = seq.next_element::<Str<'de>>()? {
                    match e {
                        Cow::Borrowed(s) => list.push_borrowed(s),
                        Cow::Owned(s) => list.push_owned(&s),
                    }
                    .map_err(de::Error::custom)?;
                }
                Ok(StrList((list.len > 0).then(|| Box::new(list))))
            }
        }
        d.deserialize_option(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(json: &str) -> Vec<String> {
        let list: StrList = serde_json::from_str(json).unwrap();
        let view = list.view(json);
        assert_eq!(view.iter().count(), list.len());
        (0..list.len())
            .map(|i| view.get(i).unwrap().to_owned())
            .collect()
    }

    #[test]
    fn reads_back_every_element_in_order() {
        assert_eq!(
            decoded(r#"["a", "", "esc\"aped", "b.c", "\u0061pi"]"#),
            ["a", "", "esc\"aped", "b.c", "api"]
        );
        assert!(decoded("null").is_empty());
        assert!(decoded("[]").is_empty());
        // An empty list allocates nothing and is a pointer wide.
        assert!(serde_json::from_str::<StrList>("[]").unwrap().0.is_none());
        assert_eq!(std::mem::size_of::<StrList>(), 8);
        // Escaped first: the base is the first borrowed element, wherever it is.
        assert_eq!(decoded(r#"["\n", "x", "\t", "y"]"#), ["\n", "x", "\t", "y"]);
        // Only the escaped elements are copied.
        let list: StrList = serde_json::from_str(r#"["a\"b", "plain", "c"]"#).unwrap();
        assert_eq!(list.0.as_ref().map(|e| e.owned.as_str()), Some("a\"b"));
    }

    #[test]
    fn a_long_list_spans_chunks_and_reads_from_a_containing_text() {
        let n = 3 * CHUNK + 7;
        let list_json = format!(
            "[{}]",
            (0..n)
                .map(|i| format!("\"h{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        // The list inside an object: decoded as a field, read against the whole text.
        let object = format!(r#"{{"other": "x", "hosts": {list_json}}}"#);
        #[derive(Deserialize)]
        struct O {
            hosts: StrList,
        }
        let o: O = serde_json::from_str(&object).unwrap();
        let view = o.hosts.view(&object);
        assert_eq!(view.len(), n);
        assert_eq!(view.get(0), Some("h0"));
        assert_eq!(view.get(CHUNK), Some(format!("h{CHUNK}").as_str()));
        assert_eq!(view.get(n - 1), Some(format!("h{}", n - 1).as_str()));
        assert_eq!(view.get(n), None);
        assert!(view.iter().enumerate().all(|(i, h)| h == format!("h{i}")));
        // Memory: a chunk per CHUNK elements, no buffer of the whole list's size.
        assert_eq!(o.hosts.0.as_ref().map(|e| e.chunks.len()), Some(4));
        // Nothing copied: every element is a span of the text.
        assert_eq!(o.hosts.0.as_ref().map(|e| e.owned.len()), Some(0));
    }

    #[test]
    fn anything_but_a_list_of_strings_is_an_error() {
        for bad in [r#""a""#, "[1]", r#"["a", null]"#, "{}"] {
            assert!(serde_json::from_str::<StrList>(bad).is_err(), "{bad}");
        }
    }
}
