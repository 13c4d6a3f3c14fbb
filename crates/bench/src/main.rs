//! The `logoutd-bench` binary: parses the command line and hands over to the benchmarks.

fn main() -> std::process::ExitCode {
    logoutd_bench::cli::main()
}
