//! Hashes of every suffix of a string in one right-to-left pass.
//!
//! Host matching asks "is this suffix of the name an entry?" for every label boundary
//! (allowlist wildcards) or every character (VirtualService host overlaps). Hashing each
//! suffix from scratch costs O(length²) per name, which a hostile 3 MiB object turns
//! into minutes. A polynomial hash over the string, evaluated right to left, gives the
//! hash of `s[i..]` from the hash of `s[i+1..]` in O(1).
//!
//! Arithmetic is modulo the Mersenne prime 2⁶¹−1 with a random base per hasher, so
//! nobody can prepare colliding strings in advance (polynomial hashes modulo 2⁶⁴ can be
//! broken for every base at once). Callers that need certainty compare the strings on a
//! hit; a hit is rare, so the comparison costs nothing in aggregate.

use std::hash::{BuildHasher, RandomState};

const P: u64 = (1 << 61) - 1;

/// `a·b mod 2⁶¹−1`.
fn mul(a: u64, b: u64) -> u64 {
    let prod = u128::from(a) * u128::from(b);
    // Split at bit 61: 2⁶¹ ≡ 1, so high·2⁶¹ + low ≡ high + low.
    let low = (prod as u64) & P;
    let high = (prod >> 61) as u64;
    reduce(low + high)
}

fn reduce(x: u64) -> u64 {
    let x = (x & P) + (x >> 61);
    if x >= P { x - P } else { x }
}

/// A keyed polynomial hash whose suffix hashes can be computed incrementally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuffixHasher {
    base: u64,
}

impl SuffixHasher {
    /// A hasher with a fresh random base.
    pub fn random() -> Self {
        let seed = RandomState::new().hash_one(0x5eed_u64);
        // Any base in [2³², P − 2³²) works; stay clear of tiny values.
        Self {
            base: (1 << 32) + seed % (P - (1 << 33)),
        }
    }

    /// The hash of `s`, equal to the suffix hash [`Self::suffixes`] yields for `s[0..]`.
    pub fn hash(&self, s: &str) -> u64 {
        let mut h = Suffixes::new(*self);
        for &b in s.as_bytes().iter().rev() {
            h.push_front(b);
        }
        h.key()
    }

    /// Walks `s` right to left; calls `f(i, key)` with the key of `s[i..]` for every
    /// `i` from `s.len() - 1` down to 0 (the empty suffix is not visited). Stops early
    /// when `f` returns `false`.
    pub fn suffixes(&self, s: &str, mut f: impl FnMut(usize, u64) -> bool) {
        let mut h = Suffixes::new(*self);
        for (i, &b) in s.as_bytes().iter().enumerate().rev() {
            h.push_front(b);
            if !f(i, h.key()) {
                return;
            }
        }
    }

    /// The key of the empty string.
    pub fn empty(&self) -> u64 {
        Suffixes::new(*self).key()
    }
}

/// The running state of a right-to-left walk.
struct Suffixes {
    hasher: SuffixHasher,
    /// Hash of the bytes seen so far.
    hash: u64,
    /// `base^len`.
    pow: u64,
    len: u64,
}

impl Suffixes {
    fn new(hasher: SuffixHasher) -> Self {
        Self {
            hasher,
            hash: 0,
            pow: 1,
            len: 0,
        }
    }

    /// Prepends one byte: `H(c·t) = (c+1)·base^|t| + H(t)`. The +1 keeps NUL bytes from
    /// hashing like nothing.
    fn push_front(&mut self, byte: u8) {
        self.hash = reduce(self.hash + mul(u64::from(byte) + 1, self.pow));
        self.pow = mul(self.pow, self.hasher.base);
        self.len += 1;
    }

    /// The hash mixed with the length: two strings share a key only if both agree.
    fn key(&self) -> u64 {
        self.hash ^ self.len.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_keys_equal_whole_string_hashes() {
        let h = SuffixHasher::random();
        let s = "api.eu.example.com";
        let mut seen = Vec::new();
        h.suffixes(s, |i, key| {
            seen.push(i);
            assert_eq!(key, h.hash(&s[i..]), "suffix {}", &s[i..]);
            true
        });
        assert_eq!(seen.len(), s.len());
        assert_eq!(h.hash(""), h.empty());
    }

    #[test]
    fn different_strings_get_different_keys() {
        let h = SuffixHasher::random();
        let words = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "\0",
            "\0\0",
            "a.b",
            "a.c",
            "example.com",
        ];
        for (i, a) in words.iter().enumerate() {
            for b in &words[i + 1..] {
                assert_ne!(h.hash(a), h.hash(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn modular_arithmetic_stays_reduced() {
        for (a, b) in [(P - 1, P - 1), (P - 1, 2), (1 << 60, 1 << 60), (0, P - 1)] {
            let want = (u128::from(a) * u128::from(b) % u128::from(P)) as u64;
            assert_eq!(mul(a, b), want);
        }
        assert_eq!(reduce(P), 0);
        assert_eq!(reduce(2 * P - 1), P - 1);
    }
}
