//! Durations as Istio accepts them: Go syntax (`1h2m3.5s`, `250ms`), which includes the
//! protobuf JSON form (`1.5s`). Kept to nanoseconds so precision checks are exact.

use std::fmt;
use std::str::FromStr;

/// A non-negative duration with nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    nanos: u128,
}

/// Why a duration string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a Go/protobuf duration.
    #[error("invalid duration {0:?} (expected e.g. \"15s\", \"250ms\", \"1m30s\")")]
    Syntax(String),
    /// Negative durations make no sense for timeouts.
    #[error("negative duration {0:?}")]
    Negative(String),
}

const NANOS_PER_MILLI: u128 = 1_000_000;

impl Duration {
    /// Builds a duration from whole milliseconds.
    pub fn from_millis(ms: u64) -> Self {
        Self {
            nanos: u128::from(ms) * NANOS_PER_MILLI,
        }
    }

    /// True for `0s`.
    pub fn is_zero(self) -> bool {
        self.nanos == 0
    }

    /// Mirrors Istio's `ValidateDuration`: at least 1ms, in whole milliseconds.
    pub fn check_istio(self) -> Result<(), &'static str> {
        if self.nanos < NANOS_PER_MILLI {
            Err("duration must be at least 1ms")
        } else if !self.nanos.is_multiple_of(NANOS_PER_MILLI) {
            Err("only whole milliseconds are supported")
        } else {
            Ok(())
        }
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    /// Go's `time.ParseDuration`: one optional sign, then one or more `<number><unit>`.
    /// A single left-to-right pass: no recursion, no re-parsing, so the cost is linear
    /// in the input whatever it holds.
    fn from_str(raw: &str) -> Result<Self, DurationError> {
        let syntax = || DurationError::Syntax(raw.to_owned());
        let s = raw.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let nanos = if s == "0" {
            0
        } else {
            sum_of_terms(s).ok_or_else(syntax)?
        };
        if negative && nanos > 0 {
            return Err(DurationError::Negative(raw.to_owned()));
        }
        Ok(Self { nanos })
    }
}

/// The total of `<number><unit>` terms, or `None` when `s` is not a sequence of them.
fn sum_of_terms(s: &str) -> Option<u128> {
    if s.is_empty() {
        return None;
    }
    let mut nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => NANOS_PER_MILLI,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        nanos = nanos.checked_add(scaled(num, scale)?)?;
        rest = next;
    }
    Some(nanos)
}

/// `num` (digits with an optional fraction) times `scale`, truncating below 1ns.
fn scaled(num: &str, scale: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if frac.contains('.') {
        return None;
    }
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut total = int.checked_mul(scale)?;
    let mut unit = scale;
    for d in frac.bytes() {
        unit /= 10;
        if unit == 0 {
            break;
        }
        total = total.checked_add(u128::from(d - b'0') * unit)?;
    }
    Some(total)
}

impl fmt::Display for Duration {
    /// Seconds with up to nanosecond fraction, the form both Go and protobuf accept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.nanos / 1_000_000_000;
        let frac = self.nanos % 1_000_000_000;
        if frac == 0 {
            write!(f, "{secs}s")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{secs}.{}s", digits.trim_end_matches('0'))
        }
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        std::time::Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_and_protobuf_forms() {
        let cases = [
            ("15s", 15_000),
            ("1.5s", 1_500),
            ("250ms", 250),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("0.001s", 1),
            (".5s", 500),
            ("0", 0),
            ("0s", 0),
        ];
        for (s, ms) in cases {
            assert_eq!(s.parse::<Duration>(), Ok(Duration::from_millis(ms)), "{s}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "", "15", "s", "1x", "1.2.3s", "abc", "1s2", "-5s", "--1s", "+-1s", "-", "-0s1",
        ] {
            assert!(s.parse::<Duration>().is_err(), "{s:?} should not parse");
        }
        assert_eq!("-0s".parse::<Duration>(), Ok(Duration::from_millis(0)));
        assert_eq!("+1s".parse::<Duration>(), Ok(Duration::from_millis(1000)));
    }

    #[test]
    fn hostile_input_is_linear_and_cannot_overflow_the_stack() {
        // Used to recurse once per leading '-' and parse twice per level: 12,000 dashes
        // overflowed the stack, 26 cost 2^26 parses.
        for n in [26, 12_000, 1_000_000] {
            let s = format!("{}1s", "-".repeat(n));
            assert!(matches!(
                s.parse::<Duration>(),
                Err(DurationError::Syntax(_))
            ));
        }
        let long = "1".repeat(1_000_000) + "s";
        assert!(
            long.parse::<Duration>().is_err(),
            "overflow is a syntax error"
        );
        let many = "1ms".repeat(300_000);
        assert_eq!(many.parse::<Duration>(), Ok(Duration::from_millis(300_000)));
    }

    #[test]
    fn istio_precision_rules() {
        let check = |s: &str| s.parse::<Duration>().unwrap().check_istio();
        assert!(check("1ms").is_ok());
        assert!(check("0.001s").is_ok());
        assert!(check("10s").is_ok());
        assert!(check("0.5ms").is_err());
        assert!(check("1500us").is_err());
        assert!(check("0s").is_err());
        assert!(check("1000us").is_ok());
    }

    #[test]
    fn displays_round_trip() {
        for s in ["15s", "1.5s", "0.25s", "90s", "0.000001s"] {
            let d: Duration = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
        assert_eq!("250ms".parse::<Duration>().unwrap().to_string(), "0.25s");
    }
}
