//! Log set-up: text or JSON lines on stderr through the batching [`log_writer`], and a
//! field formatter for text lines that writes the common values (plain strings,
//! numbers, booleans) directly instead of through `Debug`.
//!
//! The decision line is written once per review, so its formatting is on the request
//! path: `tracing_subscriber`'s default field formatter escapes every string
//! character by character and styles every field name (a decision line took 2.4 µs;
//! 1.3 µs with this one, `cargo bench --bench engine -- log_line`). Lines are byte for
//! byte what the default formatter writes (pinned by a test); anything that is not a
//! plain value, and terminals with colour, go to the default formatter.
//!
//! [`log_writer`]: crate::log_writer

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Writer};

use crate::admission::{Endpoint, Judgement, Rejection, violation_list};
use crate::{cli, log_writer};

/// Initialises `tracing` with text or JSON lines on stderr, batched by a background
/// thread ([`log_writer`]): a request never waits on stderr and does not pay a system
/// call per line. Keep the guard alive until exit; dropping it writes what is left.
pub fn init(format: cli::LogFormat, filter: &str) -> Option<log_writer::LogGuard> {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::fmt::writer::EitherWriter;
    use tracing_subscriber::prelude::*;
    // Per-target levels (`egress_guard=debug,info`): a static filter, checked without
    // the per-event bookkeeping of span-aware filters.
    let targets = filter
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    set_json_logs(format == cli::LogFormat::Json);
    let (batch, guard) = match log_writer::batch(std::io::stderr(), log_writer::LINGER) {
        Ok((w, g)) => (Some(w), Some(g)),
        // No thread for the writer: write each line directly.
        Err(_) => (None, None),
    };
    // One writer type for both cases, so that no line pays for a boxed writer.
    let writer = move || match &batch {
        Some(w) => EitherWriter::A(w.clone()),
        None => EitherWriter::B(std::io::stderr()),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_timer(UtcMicros);
    let registry = tracing_subscriber::registry().with(targets);
    let _ = match format {
        cli::LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_current_span(true))
            .try_init(),
        cli::LogFormat::Text => registry.with(layer.fmt_fields(LineFields)).try_init(),
    };
    guard
}

/// The line timestamp, as the default timer writes it (`2026-11-28T19:25:01.123456Z`),
/// with the part up to the second formatted once per second per thread: calendar
/// arithmetic and seven integer formats were a fifth of a decision line.
#[derive(Debug, Default, Clone, Copy)]
pub struct UtcMicros;

impl tracing_subscriber::fmt::time::FormatTime for UtcMicros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write_utc(w, std::time::SystemTime::now())
    }
}

/// Writes `at` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds).
fn write_utc(w: &mut impl fmt::Write, at: std::time::SystemTime) -> fmt::Result {
    use std::cell::RefCell;
    thread_local! {
        /// The last second formatted on this thread, and its text.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    // Before 1970 is not a time this server logs at; written as the epoch.
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let (date, time) = i64::try_from(secs)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .map(|t| (t.date(), t.time()))
                .unwrap_or((time::Date::MIN, time::Time::MIDNIGHT));
            cached.1.clear();
            write!(
                cached.1,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                date.year(),
                u8::from(date.month()),
                date.day(),
                time.hour(),
                time.minute(),
                time.second()
            )?;
            cached.0 = secs;
        }
        write!(w, "{}.{:06}Z", cached.1, since.subsec_micros())
    })
}

/// The text field formatter: the default formatter's output, written faster for
/// plain values.
#[derive(Debug, Default, Clone, Copy)]
pub struct LineFields;

impl<'w> FormatFields<'w> for LineFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        if writer.has_ansi_escapes() {
            return DefaultFields::new().format_fields(writer, fields);
        }
        let mut v = LineVisitor {
            w: writer,
            empty: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct LineVisitor<'w> {
    w: Writer<'w>,
    empty: bool,
    result: fmt::Result,
}

impl LineVisitor<'_> {
    /// Writes `name=` after the separator; `false` when the field is not a plain
    /// `name=value` field (the message, raw identifiers) or writing failed.
    fn key(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err() || name == "message" || name.starts_with("r#") {
            return false;
        }
        let pad = self.separator();
        self.result = write_all(&mut self.w, &[pad, name, "="]);
        self.result.is_ok()
    }

    /// What goes before the next field: nothing before the first, a space after.
    fn separator(&mut self) -> &'static str {
        if std::mem::replace(&mut self.empty, false) {
            ""
        } else {
            " "
        }
    }

    /// The default formatter, for what this one does not write itself.
    fn fallback(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_ok() {
            let first = std::mem::replace(&mut self.empty, false);
            let mut v = DefaultVisitor::new(self.w.by_ref(), first);
            record(&mut v);
            self.result = v.finish();
        }
    }

    fn number(&mut self, field: &Field, value: impl fmt::Display, debug: &dyn fmt::Debug) {
        if self.key(field) {
            self.result = write!(self.w, "{value}");
        } else {
            self.fallback(|v| v.record_debug(field, debug));
        }
    }
}

fn write_all(w: &mut Writer<'_>, parts: &[&str]) -> fmt::Result {
    parts.iter().try_for_each(|p| w.write_str(p))
}

/// Printable ASCII without quote or backslash: `Debug` writes it unchanged between
/// quotes, and it holds nothing a terminal would interpret.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl Visit for LineVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !plain(value) {
            return self.fallback(|v| v.record_str(field, value));
        }
        if self.key(field) {
            self.result = write_all(&mut self.w, &["\"", value, "\""]);
        } else if field.name() == "message" && self.result.is_ok() {
            let pad = self.separator();
            self.result = write_all(&mut self.w, &[pad, value]);
        } else {
            self.fallback(|v| v.record_str(field, value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.fallback(|v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            self.result = write!(self.w, "{value:?}");
        } else {
            self.fallback(|v| v.record_debug(field, value));
        }
    }
}

/// Writes the one line of a judged review, carrying the whole request context. No
/// span: the line is the only event of a review. Request strings are escaped and cut,
/// so a crafted uid or kind cannot forge or flood log lines.
pub fn decision(endpoint: Endpoint, j: &Judgement, revision: &str, elapsed: Duration) {
    let d = &j.decision;
    // The message as a `str` field (not `format_args!`) takes the fast path.
    tracing::info!(
        message = "admission decision",
        uid = %Clean(&j.uid),
        endpoint = endpoint.as_str(),
        operation = j.operation.as_str(),
        kind = %Clean(&j.kind),
        namespace = %Clean(&j.namespace),
        name = %Clean(&j.name),
        user = %Clean(&j.user),
        dry_run = j.dry_run,
        decision = j.answer.as_str(),
        mode = d.mode.as_str(),
        codes = j.codes.as_str(),
        // Built only when there is something to say: an allowed review costs nothing.
        values = %Clean(&if d.violations.is_empty() { String::new() } else { violation_list(d, Clean::MAX) }),
        violations = d.violation_count(),
        patched = d.patched_routes.len(),
        allowlist_revision = revision,
        elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
    );
}

/// Writes the line of a review that was not judged.
pub fn not_judged(endpoint: Endpoint, r: &Rejection) {
    tracing::warn!(
        message = "review not judged",
        endpoint = endpoint.as_str(),
        reason = r.reason,
        uid = %Clean(r.uid.as_deref().unwrap_or_default()),
        error = %Clean(&r.message),
    );
}

/// Request text for a log line: quoted, with quotes, backslashes and control
/// characters escaped, and at most [`Clean::MAX`] characters, so a value from the
/// request body can neither break a text-format line, nor add a field to it, nor flood
/// the log.
pub(crate) struct Clean<'a>(pub(crate) &'a str);

impl Clean<'_> {
    const MAX: usize = 256;
}

/// Set when log lines are text: JSON lines quote and escape values themselves.
static QUOTE_LOG_VALUES: AtomicBool = AtomicBool::new(true);

/// Tells [`Clean`] whether lines are written as JSON (values are encoded by the JSON
/// layer) or as text (values are quoted here).
pub fn set_json_logs(json: bool) {
    QUOTE_LOG_VALUES.store(!json, Ordering::Relaxed);
}

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = QUOTE_LOG_VALUES.load(Ordering::Relaxed);
        let q = if quote { "\"" } else { "" };
        // Nearly every value (uids, kinds, names) is short and plain: one write.
        if self.0.len() <= Self::MAX && plain(self.0) {
            f.write_str(q)?;
            f.write_str(self.0)?;
            return f.write_str(q);
        }
        f.write_str(q)?;
        for (i, c) in self.0.chars().enumerate() {
            if i == Self::MAX {
                f.write_char('…')?;
                break;
            }
            if c.is_control() || (quote && (c == '"' || c == '\\')) {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        f.write_str(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn timestamps_are_those_of_the_default_timer() {
        use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
        let at = |s: u64, us: u64| {
            let mut out = String::new();
            write_utc(
                &mut out,
                UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us),
            )
            .unwrap();
            out
        };
        // Known instants, in an order that makes the per-second cache change and stay.
        for (s, us, want) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (1_764_358_701, 123_456, "2025-11-28T19:38:21.123456Z"),
            (1_764_358_701, 7, "2025-11-28T19:38:21.000007Z"),
            (951_782_400, 999_999, "2000-02-29T00:00:00.999999Z"),
            (4_102_444_799, 1, "2099-12-31T23:59:59.000001Z"),
            (1_764_358_701, 0, "2025-11-28T19:38:21.000000Z"),
        ] {
            assert_eq!(at(s, us), want);
        }
        // The same shape as tracing-subscriber's own timer, now: equal to the second
        // (tried again if the two calls straddle one).
        let shape = |t: &str| t.len() == 27 && t.as_bytes()[19] == b'.' && t.ends_with('Z');
        let same_second = (0..3).any(|_| {
            let mut theirs = String::new();
            SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            let mut ours = String::new();
            UtcMicros.format_time(&mut Writer::new(&mut ours)).unwrap();
            assert!(shape(&theirs) && shape(&ours), "{theirs} {ours}");
            theirs[..19] == ours[..19]
        });
        assert!(same_second);
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// The same events, formatted by the default field formatter and by this one.
    fn both(emit: impl Fn()) -> (String, String) {
        let run = |fast: bool| {
            let buf = Buf::default();
            let builder = tracing_subscriber::fmt()
                .with_writer(buf.clone())
                .with_ansi(false)
                .without_time();
            if fast {
                tracing::subscriber::with_default(builder.fmt_fields(LineFields).finish(), &emit);
            } else {
                tracing::subscriber::with_default(builder.finish(), &emit);
            }
            String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
        };
        (run(false), run(true))
    }

    #[test]
    fn lines_are_those_of_the_default_formatter() {
        let (default, fast) = both(|| {
            let err = io::Error::other("disk \"full\"\nreally");
            let long = "x".repeat(300);
            for s in [
                "plain",
                "",
                "quo\"te",
                "back\\slash",
                "new\nline",
                "esc\x1b[31m",
                "ünï",
            ] {
                tracing::info!(
                    uid = s,
                    n = 7u64,
                    neg = -3i64,
                    ok = true,
                    f = 1.5,
                    "message {s}"
                );
                tracing::info!(message = s, r#type = s, kind = %Clean(s), shown = ?s);
                tracing::warn!(%err, e = &err as &dyn std::error::Error, "failed");
                tracing::info!(s);
            }
            tracing::info!(kind = %Clean(&long), "long");
            tracing::info!(only = "field");
        });
        assert_eq!(default.matches("logging::tests: ").count(), 30, "{default}");
        assert_eq!(fast, default);
    }

    #[test]
    fn clean_quotes_escapes_and_cuts() {
        set_json_logs(false);
        assert_eq!(Clean("plain-1").to_string(), "\"plain-1\"");
        assert_eq!(Clean("a\"b\\c\nd").to_string(), r#""a\"b\\c\nd""#);
        let cut = Clean(&"y".repeat(300)).to_string();
        assert_eq!(cut, format!("\"{}…\"", "y".repeat(256)));
        assert_eq!(Clean(&"z".repeat(256)).to_string().len(), 258);
    }
}
