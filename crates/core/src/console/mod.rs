//! What the `logoutd` binaries share with their terminal: logs to stderr in batches, lines to
//! stdout that never panic, and the signal that stops a long-running command.

pub(crate) mod logs;

/// Writes one line to stdout. A closed pipe (`logoutd keys jwks | head`) ends the process
/// quietly with the conventional status 141 instead of a panic; other write errors are
/// ignored, as a terminal that went away is no reason to crash.
pub fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.write_all(b"\n"))
        && err.kind() == std::io::ErrorKind::BrokenPipe
    {
        logs::flush();
        std::process::exit(141);
    }
}

/// `println!` that never panics; see [`print_line`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

/// Waits for SIGTERM or SIGINT, and logs which one came.
pub async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    Ok(())
}

/// Sets up the `tracing` subscriber, writing through [`logs::BatchedStderr`] with the filter
/// in `LOGOUTD_LOG` (default `info`) and JSON lines when `LOGOUTD_LOG_FORMAT=json`, and a
/// panic hook that writes the waiting lines before the panic's message.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        logs::flush();
        report(info);
    }));
    let filter = EnvFilter::try_from_env("LOGOUTD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOGOUTD_LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colour codes only for a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(logs::BatchedStderr::start());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Builds the multi-threaded runtime a command runs on (`worker_threads` when given), or
/// prints why it cannot.
pub fn runtime(worker_threads: Option<usize>) -> Option<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    match builder.enable_all().build() {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            logs::flush();
            eprintln!("error: cannot start the async runtime: {err}");
            None
        }
    }
}

/// Ends a command: lets the runtime's threads stop (they may still log), writes the waiting
/// log lines, and turns an error into a message on stderr and a failure status.
pub fn finish(
    runtime: tokio::runtime::Runtime,
    result: anyhow::Result<std::process::ExitCode>,
) -> std::process::ExitCode {
    drop(runtime);
    logs::flush();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
