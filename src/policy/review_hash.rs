//! Hash sets and maps for what one review builds from its object (duplicate names,
//! exportTo entries, host overlaps). They are keyed by tenant input, so they stay
//! randomly seeded, but with foldhash rather than SipHash: on a list of a million short
//! names hashing was a third of the review. foldhash seeds each map from a per-process
//! random seed; a collision flood would need that seed, and the work budget and the
//! review deadline (checked per element) still bound a review that found one.
//!
//! The allowlist's maps of namespaces and users use them too: they are looked up once
//! or twice per review, and SipHash was about 2% of a ServiceEntry's review.

/// A per-review hash set.
pub type Set<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
/// A per-review hash map.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
