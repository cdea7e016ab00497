//! egress-guard: a validating and mutating admission webhook that guards egress in
//! Istio meshes.
//!
//! The arrows point one way: `server → admission → policy`, `source → policy`,
//! `check → policy`, `audit → policy`. [`policy`] is pure and imports none of the others.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![warn(missing_docs)]

pub mod check;
pub mod cli;
pub mod policy;
