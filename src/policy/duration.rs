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

    fn from_str(raw: &str) -> Result<Self, DurationError> {
        let syntax = || DurationError::Syntax(raw.to_owned());
        let s = raw.trim();
        if let Some(rest) = s.strip_prefix('-') {
            if rest.parse::<Duration>().is_ok_and(|d| !d.is_zero()) {
                return Err(DurationError::Negative(raw.to_owned()));
            }
            return rest.parse::<Duration>().map_err(|_| syntax());
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if s == "0" {
            return Ok(Self { nanos: 0 });
        }
        if s.is_empty() {
            return Err(syntax());
        }
        let mut nanos: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(syntax)?;
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
                _ => return Err(syntax()),
            };
            nanos = nanos
                .checked_add(scaled(num, scale).ok_or_else(syntax)?)
                .ok_or_else(syntax)?;
            rest = next;
        }
        Ok(Self { nanos })
    }
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
        for s in ["", "15", "s", "1x", "1.2.3s", "abc", "1s2", "-5s"] {
            assert!(s.parse::<Duration>().is_err(), "{s:?} should not parse");
        }
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
