//! The work one evaluation may do. Every loop over request data charges it; when it is
//! spent, or the caller raises the cancel flag (the server does at its deadline), the
//! engine stops and the decision says the object was too complex to evaluate.
//!
//! The engine's checks are linear in the object, so a real object spends a tiny part of
//! its budget; the budget is the safety net for a cost nobody foresaw.

use std::sync::atomic::{AtomicBool, Ordering};

/// Units every evaluation gets regardless of size.
const BASE: u64 = 200_000;
/// Units per byte of the object's JSON.
const PER_BYTE: u64 = 64;

/// A work counter with an optional cancel flag.
#[derive(Debug)]
pub struct Budget<'a> {
    left: u64,
    cancel: Option<&'a AtomicBool>,
    exhausted: bool,
}

impl<'a> Budget<'a> {
    /// A budget of `units`.
    pub fn new(units: u64, cancel: Option<&'a AtomicBool>) -> Self {
        Self {
            left: units,
            cancel,
            exhausted: false,
        }
    }

    /// The budget for an object of `len` bytes: linear in its size.
    pub fn for_object(len: usize, cancel: Option<&'a AtomicBool>) -> Self {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        Self::new(BASE.saturating_add(len.saturating_mul(PER_BYTE)), cancel)
    }

    /// Spends `units`; false once the budget is spent or the evaluation was cancelled.
    pub fn charge(&mut self, units: usize) -> bool {
        if self.exhausted {
            return false;
        }
        self.left = self
            .left
            .saturating_sub(u64::try_from(units).unwrap_or(u64::MAX));
        if self.left == 0 || self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            self.exhausted = true;
        }
        !self.exhausted
    }

    /// True once the budget is spent or the evaluation was cancelled.
    pub fn exhausted(&self) -> bool {
        self.exhausted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_out_and_stays_out() {
        let mut b = Budget::new(10, None);
        assert!(b.charge(9));
        assert!(!b.charge(1));
        assert!(b.exhausted());
        assert!(!b.charge(0));
    }

    #[test]
    fn the_cancel_flag_stops_it() {
        let flag = AtomicBool::new(false);
        let mut b = Budget::for_object(10, Some(&flag));
        assert!(b.charge(1));
        flag.store(true, Ordering::Relaxed);
        assert!(!b.charge(1));
    }
}
