//! CPU time and peak memory of this process or a child, from `/proc` (Linux).

use std::collections::HashMap;
use std::time::Duration;

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ; 100 on Linux).
const TICKS_PER_SEC: u64 = 100;

/// User plus system CPU time consumed by this process so far.
pub fn cpu_time() -> Option<Duration> {
    cpu_time_in("/proc/self/stat")
}

/// User plus system CPU time consumed so far by the calling thread.
pub fn thread_cpu_time() -> Option<Duration> {
    cpu_time_in("/proc/thread-self/stat")
}

/// User plus system CPU time consumed so far by process `pid` (not counting its children).
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    cpu_time_in(&format!("/proc/{pid}/stat"))
}

fn cpu_time_in(path: &str) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(path).ok()?)
}

/// utime + stime of a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> Option<Duration> {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SEC,
    ))
}

/// The command (thread) name of a `/proc/.../stat` line: what stands between the first `(`
/// and the last `)`.
fn stat_name(stat: &str) -> Option<&str> {
    let (_, rest) = stat.split_once('(')?;
    Some(rest.rsplit_once(')')?.0)
}

/// What a thread of an in-process run does, told by the name it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The delivery runtime's threads: minting, signing, the POSTs.
    Delivery,
    /// sqlx's SQLite connection threads, which run every statement.
    Sqlite,
    /// Everything else: the API/store runtime, the dispatcher loop, the bench driver's calls.
    Runtime,
}

impl ThreadKind {
    /// The kind of a thread named `comm` (the kernel keeps the first 15 bytes of a name).
    pub fn of(comm: &str) -> Self {
        if comm.starts_with("logoutd-deliver") {
            Self::Delivery
        } else if comm.starts_with("sqlx-sqlite") {
            Self::Sqlite
        } else {
            Self::Runtime
        }
    }
}

/// CPU time consumed so far by each live thread of this process, by thread id.
pub type ThreadTimes = HashMap<u32, (ThreadKind, Duration)>;

/// Most passes over `/proc/self/task` in one reading of [`thread_times`].
const MAX_PASSES: usize = 8;

/// Reads [`ThreadTimes`] from `/proc/self/task`: every thread that a pass listed, with the
/// latest figure read for it.
///
/// The kernel's listing of that directory stops early when the thread it has just listed
/// exits, so a single pass can miss threads that live throughout. Passes are repeated until
/// two in a row list the same threads: a pass cut short lists a thread that has exited,
/// which the next pass no longer lists. Under constant churn it gives up after
/// [`MAX_PASSES`].
pub fn thread_times() -> ThreadTimes {
    let mut previous = one_pass();
    let mut times = previous.clone();
    for _ in 1..MAX_PASSES {
        let pass = one_pass();
        let settled =
            pass.len() == previous.len() && pass.keys().all(|tid| previous.contains_key(tid));
        times.extend(&pass);
        previous = pass;
        if settled {
            break;
        }
    }
    times
}

/// One listing of `/proc/self/task`; threads that exit while it is read are skipped.
fn one_pass() -> ThreadTimes {
    let mut times = ThreadTimes::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return times;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let (Some(name), Some(cpu)) = (stat_name(&stat), stat_cpu(&stat)) {
            times.insert(tid, (ThreadKind::of(name), cpu));
        }
    }
    times
}

/// CPU time between two readings, summed by thread kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSplit {
    /// [`ThreadKind::Delivery`] threads.
    pub delivery: Duration,
    /// [`ThreadKind::Sqlite`] threads.
    pub sqlite: Duration,
    /// [`ThreadKind::Runtime`] threads.
    pub runtime: Duration,
}

impl CpuSplit {
    /// What each kind of thread consumed from `before` to `after`. A thread that started in
    /// between counts from zero; one that ended in between is missing from both sums.
    pub fn between(before: &ThreadTimes, after: &ThreadTimes) -> Self {
        let mut split = Self::default();
        for (tid, (kind, cpu)) in after {
            let earlier = before
                .get(tid)
                .filter(|(k, _)| k == kind)
                .map_or(Duration::ZERO, |(_, c)| *c);
            let spent = cpu.saturating_sub(earlier);
            match kind {
                ThreadKind::Delivery => split.delivery += spent,
                ThreadKind::Sqlite => split.sqlite += spent,
                ThreadKind::Runtime => split.runtime += spent,
            }
        }
        split
    }
}

/// Peak resident set size of this process in KiB (`VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    peak_rss_in("/proc/self/status")
}

/// Peak resident set size of process `pid` in KiB (`VmHWM`).
pub fn peak_rss_kib_of(pid: u32) -> Option<u64> {
    peak_rss_in(&format!("/proc/{pid}/status"))
}

/// Resident set size of this process now, in KiB (`VmRSS`).
pub fn rss_kib() -> Option<u64> {
    status_kib("/proc/self/status", "VmRSS:")
}

/// Open file descriptors of this process.
pub fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

fn peak_rss_in(path: &str) -> Option<u64> {
    status_kib(path, "VmHWM:")
}

fn status_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_figures() {
        assert!(cpu_time().is_some());
        assert!(peak_rss_kib().unwrap() > 0);
        assert!(rss_kib().unwrap() > 0);
        assert!(open_fds().unwrap() > 0);
        assert!(thread_cpu_time().is_some());
        let pid = std::process::id();
        assert!(cpu_time_of(pid).is_some());
        assert!(peak_rss_kib_of(pid).unwrap() > 0);
    }

    #[test]
    fn reads_a_stat_line_whose_name_has_spaces_and_parentheses() {
        let line = "42 (tokio (rt) worker) S 1 2 3 4 5 6 7 8 9 10 250 125 0 0 20 0 4 0 100";
        assert_eq!(stat_cpu(line), Some(Duration::from_millis(3750)));
        assert_eq!(stat_name(line), Some("tokio (rt) worker"));
        assert_eq!(stat_cpu("42 (short) S 1 2"), None);
    }

    #[test]
    fn names_tell_the_thread_kinds_apart() {
        assert_eq!(ThreadKind::of("logoutd-deliver"), ThreadKind::Delivery);
        assert_eq!(ThreadKind::of("sqlx-sqlite-wor"), ThreadKind::Sqlite);
        assert_eq!(ThreadKind::of("tokio-rt-worker"), ThreadKind::Runtime);
        assert_eq!(ThreadKind::of("logoutd"), ThreadKind::Runtime);
    }

    #[test]
    fn a_split_counts_new_threads_from_zero_and_reused_ids_afresh() {
        let ms = Duration::from_millis;
        let before = ThreadTimes::from([
            (1, (ThreadKind::Runtime, ms(100))),
            (2, (ThreadKind::Sqlite, ms(50))),
            (3, (ThreadKind::Delivery, ms(10))),
            (9, (ThreadKind::Delivery, ms(500))),
        ]);
        let after = ThreadTimes::from([
            (1, (ThreadKind::Runtime, ms(130))),
            (2, (ThreadKind::Sqlite, ms(90))),
            // A thread id reused by a thread of another kind counts from zero.
            (3, (ThreadKind::Sqlite, ms(7))),
            (4, (ThreadKind::Delivery, ms(20))),
        ]);
        let split = CpuSplit::between(&before, &after);
        assert_eq!(split.runtime, ms(30));
        assert_eq!(split.sqlite, ms(47));
        assert_eq!(split.delivery, ms(20));
        assert_eq!(split.runtime + split.sqlite + split.delivery, ms(97));
    }

    /// A listing of `/proc/self/task` that stops early drops the threads after the one that
    /// exited; with a single pass, about one reading in three hundred here missed the
    /// sentinel.
    #[test]
    fn a_reading_lists_every_thread_while_others_exit() {
        use std::sync::mpsc;
        let (mut missing, mut readings) = (0, 0);
        for round in 0..400u64 {
            // Threads are listed in the order they started, so these come before the
            // sentinel. Their lifetimes are spread over 3 ms (a sleep to stagger the exits,
            // not to wait for anything), so they exit one after another while readings run.
            let exiting: Vec<_> = (0..32u64)
                .map(|n| {
                    let micros = (n * 97 + round * 13) % 3000;
                    std::thread::spawn(move || std::thread::sleep(Duration::from_micros(micros)))
                })
                .collect();
            let (tid_tx, tid_rx) = mpsc::channel();
            let (done, wait) = mpsc::channel::<()>();
            let sentinel = std::thread::spawn(move || {
                let tid = rustix::thread::gettid().as_raw_nonzero().get();
                tid_tx.send(u32::try_from(tid).unwrap()).unwrap();
                wait.recv().is_err()
            });
            let tid = tid_rx.recv().unwrap();
            while exiting.iter().any(|thread| !thread.is_finished()) {
                readings += 1;
                if !thread_times().contains_key(&tid) {
                    missing += 1;
                }
            }
            for thread in exiting {
                thread.join().unwrap();
            }
            drop(done);
            assert!(sentinel.join().unwrap());
        }
        assert_eq!(
            missing, 0,
            "a live thread was missing from {missing} of {readings} readings"
        );
    }

    #[test]
    fn this_threads_time_is_in_the_reading() {
        let tid = u32::try_from(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
        let before = thread_times();
        let mine = |t: &ThreadTimes| t.get(&tid).map(|(_, cpu)| *cpu);
        let start = mine(&before).expect("the calling thread is listed");
        // Spin until the kernel has charged this thread 30 ms more (ticks are 10 ms).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut after = thread_times();
        let mut x = 0u64;
        while mine(&after).unwrap() < start + Duration::from_millis(30) {
            assert!(std::time::Instant::now() < deadline, "no CPU time charged");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            after = thread_times();
        }
        let split = CpuSplit::between(&before, &after);
        assert!(split.runtime + split.sqlite + split.delivery >= Duration::from_millis(30));
    }
}
