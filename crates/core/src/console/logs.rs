//! Log lines reach stderr in batches, written by a thread of their own.
//!
//! Each delivery attempt logs a line. Written one `write` at a time, every line costs the
//! thread that logs it a system call and, when stderr is a pipe or journald's socket, waking
//! the reader: a delivery thread spent about two thirds as much on that as on an ES256
//! signature. Here a line is appended to a buffer in memory instead, and a flusher thread
//! writes what has gathered every [`INTERVAL`], or as soon as [`HIGH_WATER`] bytes are
//! waiting. The lines keep their order. When the reader of stderr stalls and [`CAP`] bytes are
//! waiting, the logging thread writes them itself and so waits for the reader, as an
//! unbuffered stderr would: nothing is dropped.
//!
//! [`flush`] writes what is waiting at once; the process calls it before it exits, before it
//! prints an error of its own, and when it panics. A process killed with SIGKILL loses at most
//! the last [`INTERVAL`] of lines, which the outbox records in full.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once};
use std::time::Duration;

/// Longest time a line waits in memory.
pub(crate) const INTERVAL: Duration = Duration::from_millis(20);
/// Waiting bytes that wake the flusher before its interval is up.
pub(crate) const HIGH_WATER: usize = 64 * 1024;
/// Waiting bytes at which the logging thread writes them itself.
pub(crate) const CAP: usize = 4 * 1024 * 1024;

/// Lines waiting for the flusher.
struct Batcher {
    pending: Mutex<Vec<u8>>,
    /// Wakes the flusher before its interval is up.
    full: Condvar,
    /// Held while a batch is taken and written, so that batches leave in the order they were
    /// taken.
    writing: Mutex<()>,
    high_water: usize,
    cap: usize,
}

static LOGS: Batcher = Batcher::new(HIGH_WATER, CAP);
static START: Once = Once::new();
/// Set when the flusher could not be started, so that lines are written as they come.
static DIRECT: AtomicBool = AtomicBool::new(false);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Batcher {
    const fn new(high_water: usize, cap: usize) -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
            full: Condvar::new(),
            writing: Mutex::new(()),
            high_water,
            cap,
        }
    }

    /// Queues `line`; at the cap, writes everything waiting to `out` before returning.
    fn append<W: Write>(&self, line: &[u8], out: impl FnOnce() -> W) -> io::Result<()> {
        let waiting = {
            let mut pending = lock(&self.pending);
            pending.extend_from_slice(line);
            pending.len()
        };
        if waiting >= self.cap {
            self.write_out(&mut out())?;
        } else if waiting >= self.high_water {
            self.full.notify_one();
        }
        Ok(())
    }

    /// Takes what is waiting and writes it to `out`, keeping the buffer's memory for the next
    /// batch.
    fn write_out(&self, out: &mut impl Write) -> io::Result<()> {
        let _turn = lock(&self.writing);
        let mut batch = std::mem::take(&mut *lock(&self.pending));
        if batch.is_empty() {
            return Ok(());
        }
        let written = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        let mut pending = lock(&self.pending);
        if pending.is_empty() && batch.capacity() <= self.high_water * 2 {
            *pending = batch;
        }
        written
    }

    /// Waits for the interval to pass or the high-water mark to be reached.
    fn wait(&self) {
        let pending = lock(&self.pending);
        if pending.len() < self.high_water {
            // Whether it timed out or was woken, what is waiting is written next.
            drop(self.full.wait_timeout(pending, INTERVAL));
        }
    }
}

/// The writer handed to the `tracing` formatter: each event arrives as one `write_all`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BatchedStderr;

impl BatchedStderr {
    /// Starts the flusher thread (once) and returns the writer. Without a flusher, every line
    /// is written as it comes.
    pub(crate) fn start() -> Self {
        START.call_once(|| {
            let started = std::thread::Builder::new()
                .name("logoutd-logs".into())
                .spawn(|| {
                    loop {
                        LOGS.wait();
                        flush();
                    }
                });
            if started.is_err() {
                DIRECT.store(true, Ordering::Relaxed);
            }
        });
        Self
    }
}

impl Write for BatchedStderr {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        if DIRECT.load(Ordering::Relaxed) {
            return io::stderr().lock().write(line);
        }
        LOGS.append(line, || io::stderr().lock())?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = BatchedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Writes every waiting line now.
pub(crate) fn flush() {
    // A log line that cannot be written has nowhere else to go.
    let _ = LOGS.write_out(&mut io::stderr().lock());
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;

    /// Stands for stderr where a test expects nothing to be written to it.
    fn unused() -> Closed {
        panic!("written below the cap")
    }

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_wait_until_written_then_leave_whole_and_in_order() {
        let logs = Batcher::new(64, 1024);
        let mut out = Vec::new();
        logs.append(b"one\n", unused).ok();
        logs.append(b"two\n", unused).ok();
        assert!(out.is_empty());
        logs.write_out(&mut out).ok();
        assert_eq!(out, b"one\ntwo\n");
        logs.write_out(&mut out).ok();
        assert_eq!(out, b"one\ntwo\n", "a written line is not written again");
    }

    #[test]
    fn at_the_cap_the_logging_thread_writes_everything_waiting_itself() {
        let logs = Batcher::new(4, 10);
        let mut out = Vec::new();
        logs.append(b"12345\n", unused).ok();
        logs.append(b"67890\n", || &mut out).ok();
        assert_eq!(out, b"12345\n67890\n");
        assert!(lock(&logs.pending).is_empty());
    }

    #[test]
    fn a_failed_write_reaches_the_caller() {
        let logs = Batcher::new(64, 1024);
        logs.append(b"line\n", unused).ok();
        assert!(logs.write_out(&mut Closed).is_err());
    }
}
