//! A batching log writer: request threads append formatted lines to a bounded buffer,
//! and one background thread writes the buffer to its sink with a single system call
//! every few milliseconds, or sooner once it holds enough. A line per admission
//! decision then costs a memory copy on the request path, not a wake-up and a write.
//!
//! Bounded: when the buffer is full (a burst while the sink is slow or blocked), lines
//! are dropped and counted, and the count is written once the sink drains. Flushed on
//! [`LogGuard::flush`] and when the guard is dropped.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer thread lets lines accumulate after the first one arrives.
pub const LINGER: Duration = Duration::from_millis(5);
/// Buffered bytes that cut the linger short.
const FLUSH_AT: usize = 64 * 1024;
/// Buffered bytes past which lines are dropped.
const CAPACITY: usize = 1024 * 1024;

/// The buffer the request threads append to.
#[derive(Default)]
struct State {
    buf: Vec<u8>,
    dropped: u64,
    /// The guard asked for everything to be written (`Some(true)`: and then stop).
    flush: Option<bool>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread: first line of a batch, buffer past `FLUSH_AT`, flush.
    wake: Condvar,
    /// Wakes a [`LogGuard::flush`] caller once the buffer is written.
    flushed: Condvar,
    linger: Duration,
}

impl Shared {
    /// The lock, even if a thread panicked holding it: a log buffer stays usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `tracing_subscriber` writer: cheap to clone, one per event.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Keeps the writer thread alive; dropping it writes what is buffered and stops it.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread for `sink`; `linger` is how long a batch may wait.
pub fn batch<W: Write + Send + 'static>(
    sink: W,
    linger: Duration,
) -> io::Result<(BatchWriter, LogGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buf: Vec::with_capacity(FLUSH_AT),
            ..State::default()
        }),
        wake: Condvar::new(),
        flushed: Condvar::new(),
        linger,
    });
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let shared = shared.clone();
            move || run(&shared, sink)
        })?;
    Ok((
        BatchWriter {
            shared: shared.clone(),
        },
        LogGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut st = self.shared.lock();
        let before = st.buf.len();
        if before + line.len() > CAPACITY {
            st.dropped += 1;
            return Ok(line.len());
        }
        st.buf.extend_from_slice(line);
        let after = st.buf.len();
        drop(st);
        if before == 0 || (before < FLUSH_AT && after >= FLUSH_AT) {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogGuard {
    /// Writes everything buffered so far, and waits for it (at most a second).
    pub fn flush(&self) {
        let mut st = self.shared.lock();
        st.flush.get_or_insert(false);
        self.shared.wake.notify_one();
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while st.flush.is_some() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .flushed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().flush = Some(true);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread: waits for a first line, lingers, swaps the buffer out and
/// writes it with one call.
fn run<W: Write>(shared: &Shared, mut sink: W) {
    let mut out = Vec::with_capacity(FLUSH_AT);
    loop {
        let mut st = shared.lock();
        while st.buf.is_empty() && st.dropped == 0 && st.flush.is_none() {
            st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        if st.flush.is_none() && st.buf.len() < FLUSH_AT {
            st = shared
                .wake
                .wait_timeout_while(st, shared.linger, |s| {
                    s.flush.is_none() && s.buf.len() < FLUSH_AT
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut st.buf, &mut out);
        let dropped = std::mem::take(&mut st.dropped);
        let flush = st.flush;
        drop(st);

        if dropped > 0 {
            let _ = writeln!(
                out,
                "egress-guard: {dropped} log lines dropped: the log sink did not keep up"
            );
        }
        // A sink that fails (a closed stderr) loses the lines; requests never wait on it.
        let _ = sink.write_all(&out).and_then(|()| sink.flush());
        out.clear();
        // Keep one batch's worth of memory, not the high-water mark of a burst.
        out.shrink_to(FLUSH_AT);

        if let Some(stop) = flush {
            let mut st = shared.lock();
            if st.buf.is_empty() {
                st.flush = None;
                shared.flushed.notify_all();
                if stop {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that records each write call.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Calls {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Calls {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
        }
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    #[test]
    fn lines_are_written_in_order_in_few_calls_and_all_by_drop() {
        let sink = Calls::default();
        let (w, guard) = batch(sink.clone(), Duration::from_millis(50)).unwrap();
        for i in 0..1000 {
            w.clone()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let want: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(sink.text(), want);
        assert!(
            sink.count() <= 3,
            "{} write calls for 1000 lines",
            sink.count()
        );
    }

    #[test]
    fn a_line_is_written_within_the_linger_without_a_flush() {
        let sink = Calls::default();
        let (mut w, _guard) = batch(sink.clone(), Duration::from_millis(5)).unwrap();
        w.write_all(b"one\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.text(), "one\n");
    }

    #[test]
    fn flush_waits_for_the_buffered_lines() {
        let sink = Calls::default();
        // A linger far longer than the test: only the flush can write the line.
        let (mut w, guard) = batch(sink.clone(), Duration::from_secs(3600)).unwrap();
        w.write_all(b"before exit\n").unwrap();
        guard.flush();
        assert_eq!(sink.text(), "before exit\n");
        w.write_all(b"after\n").unwrap();
        guard.flush();
        assert_eq!(sink.text(), "before exit\nafter\n");
    }

    /// A sink that blocks until released, as a full pipe does.
    struct Blocked(Arc<(Mutex<bool>, Condvar)>, Calls);

    impl Write for Blocked {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let (open, cv) = &*self.0;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
            self.1.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_sink_bounds_memory_and_counts_what_it_dropped() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Calls::default();
        let (w, guard) = batch(Blocked(gate.clone(), sink.clone()), Duration::ZERO).unwrap();
        let line = vec![b'x'; 1023];
        let mut line = line;
        line.push(b'\n');
        // 4 MiB of lines against a stalled sink: the writer thread holds at most one
        // batch, the buffer at most CAPACITY; the rest is dropped, not queued.
        for _ in 0..4096 {
            w.clone().write_all(&line).unwrap();
        }
        assert!(w.shared.lock().buf.len() <= CAPACITY);
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        drop(guard);
        let text = sink.text();
        let kept = text.lines().filter(|l| l.starts_with('x')).count();
        // One note per batch that followed drops: the writer may take a first count
        // before the last lines were dropped.
        let notes: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("log lines dropped"))
            .collect();
        assert!(!notes.is_empty(), "a note on the dropped lines");
        let dropped: usize = notes
            .iter()
            .map(|n| {
                n.trim_start_matches("egress-guard: ")
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        assert_eq!(kept + dropped, 4096, "{notes:?}");
        assert!(kept <= 2 * CAPACITY / 1024 + 1, "kept {kept}");
    }
}
