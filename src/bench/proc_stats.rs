//! CPU time and peak memory of this process or a child, from `/proc` (Linux).

use std::time::Duration;

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ; 100 on Linux).
const TICKS_PER_SEC: u64 = 100;

/// User plus system CPU time consumed by this process so far.
pub fn cpu_time() -> Option<Duration> {
    cpu_time_in("/proc/self/stat")
}

/// User plus system CPU time consumed so far by process `pid` (not counting its children).
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    cpu_time_in(&format!("/proc/{pid}/stat"))
}

fn cpu_time_in(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SEC,
    ))
}

/// Peak resident set size of this process in KiB (`VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    peak_rss_in("/proc/self/status")
}

/// Peak resident set size of process `pid` in KiB (`VmHWM`).
pub fn peak_rss_kib_of(pid: u32) -> Option<u64> {
    peak_rss_in(&format!("/proc/{pid}/status"))
}

fn peak_rss_in(path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_figures() {
        assert!(cpu_time().is_some());
        assert!(peak_rss_kib().unwrap() > 0);
        let pid = std::process::id();
        assert!(cpu_time_of(pid).is_some());
        assert!(peak_rss_kib_of(pid).unwrap() > 0);
    }
}
