//! logoutd's benchmarks, each reporting its figure next to the limit measured in the same
//! run, and the loopback receiver they deliver to. They drive `logoutd serve` the way users
//! run it, or the library in process for profiling; none of this ships in `logoutd`.
//!
//! - [`cli`]: the `logoutd-bench` commands.
//!
//! - [`api`]: management API latency (create, PATCH, GET) under concurrent load.
//! - [`sign`]: full logout tokens per second per core against the raw signature rate.
//! - [`deliver`]: end-to-end deliveries into a loopback receiver ([`sink`], its own process),
//!   CPU per delivery against the raw signature cost, peak RSS, end-session API latency and
//!   duplicate deliveries. [`drive`] is its measured part; with `--serve` on SQLite
//!   ([`served`]) and over PostgreSQL ([`cluster`], a throwaway database) it runs the
//!   [`nodes`] as `logoutd serve` child processes. [`compare`] sums up `benches/compare.sh`.
//! - [`ssf`]: what SSF push streams add, runs of `deliver --serve` without and with them in
//!   alternating pairs: the added CPU per SET next to the CPU per logout token.
//! - [`hol`]: a healthy RP's time to its last receipt with and without [`hostile`] RPs on
//!   other origins (head-of-line blocking across origins).
//! - [`slow_clients`]: how long the API stays unreachable while stalled connections that sent
//!   half their headers are open, under a small descriptor limit.

pub mod api;
pub mod cli;
mod cluster;
pub mod compare;
#[cfg(feature = "postgres")]
mod database;
pub mod deliver;
pub mod drive;
pub mod hol;
pub mod hostile;
pub mod in_process;
pub mod nodes;
pub mod proc_stats;
pub mod served;
pub mod sign;
pub mod sink;
pub mod slow_clients;
pub mod soak;
pub mod ssf;

/// The `logoutd` binary the benchmarks run as a server: `LOGOUTD_BIN` when set, else the one
/// next to this executable (cargo builds both into the same directory).
pub fn logoutd_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("LOGOUTD_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("logoutd");
    anyhow::ensure!(
        path.is_file(),
        "no logoutd binary at {}: build it (`cargo build --release`) or set LOGOUTD_BIN",
        path.display()
    );
    Ok(path)
}
