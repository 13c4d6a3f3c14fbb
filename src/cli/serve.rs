//! `logoutd serve`: flags and environment, resolved into [`Settings`], then the server.

use clap::Args;
use logoutd_core::{
    ConfigError, Environment, Knobs, Settings, SharedClock, SystemClock, describe_flags,
    load_config, parse_issuer,
};
use logoutd_core::{KeyRing, KeySet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Flags of `logoutd serve`. Each overrides its `LOGOUTD_*` variable, which overrides
/// `logoutd.toml` ([`load_config`]); `--help` shows both and each default.
#[derive(Debug, Args)]
#[command(mut_args = describe_flags())]
pub struct ServeArgs {
    /// Config file (TOML; unknown keys are refused). Read when present.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Development mode: generate an API token and print it once.
    #[arg(long)]
    pub dev: bool,
    /// The settings.
    #[command(flatten)]
    pub knobs: Knobs,
}

impl ServeArgs {
    /// Merges flags, the process's environment and the config file into validated settings.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        self.resolve_in(&Environment::from_process())
    }

    /// [`ServeArgs::resolve`] with the `LOGOUTD_*` variables of `env`.
    pub fn resolve_in(self, env: &Environment) -> Result<Settings, ConfigError> {
        load_config(self.knobs, self.config, self.dev, env)
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = args.resolve()?;
    let clock: SharedClock = Arc::new(SystemClock);
    if !settings.allow_loose_key_permissions {
        logoutd_core::check_key_permissions(&settings.keys_dir)?;
    }
    let (_, created) = KeySet::load_or_create_default(&settings.keys_dir, clock.now())?;
    if created {
        tracing::warn!(dir = %settings.keys_dir.display(), "no signing key found; generated an RS256 key");
    }
    // Loaded through the ring so it remembers the manifest it read and reloads only on change.
    if settings.ssf
        && let Some(kid) = logoutd_core::ensure_set_signing_key(&settings.keys_dir, clock.now())?
    {
        tracing::info!(kid = %kid, "SSF is on and no RS256 key was active; generated one for SETs");
    }
    let keys = Arc::new(KeyRing::load(&settings.keys_dir, clock.now())?);
    let stores = logoutd_core::open_store(settings.store.expose()).await?;
    let mut settings = settings;
    let listener = bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    if settings.issuer.as_str() == format!("http://{}", settings.listen) {
        // The default issuer names the address actually bound (port 0 picks one).
        settings.issuer = parse_issuer(&format!("http://{addr}"))?;
    }
    if settings.dev
        && let Some(token) = &settings.api_token
    {
        tracing::warn!("development mode: a generated API token is printed once on stdout");
        logoutd_core::outln!("LOGOUTD_API_TOKEN={}", token.expose());
    }
    tracing::info!(%addr, issuer = %settings.issuer, store = %settings.store, "logoutd listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let delivery = logoutd_core::delivery_runtime(settings.dispatch.delivery_nice)?;
    let parts = logoutd_core::ServerParts {
        settings,
        stores,
        keys,
        clock,
        delivery: Some(delivery.handle().clone()),
    };
    let served = logoutd_core::run_server(listener, parts, shutdown).await;
    delivery.shutdown_background();
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Binds the API listener; a failure names the address, and when it is taken, how to pick
/// another.
async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        let hint = if err.kind() == std::io::ErrorKind::AddrInUse {
            " (another process is listening there; stop it or choose another address with \
             --listen or LOGOUTD_LISTEN)"
        } else {
            ""
        };
        anyhow::Error::new(err).context(format!("cannot listen on {addr}{hint}"))
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    match logoutd_core::stop_signal().await {
        Ok(()) => shutdown.cancel(),
        Err(err) => tracing::error!(error = %err, "cannot install signal handlers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use logoutd_core::{
        DEFAULT_CONFIG_FILE, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_LEASE, DEFAULT_LISTEN,
        HttpSettings, MAX_CONNECTIONS_CEILING, MAX_CONNECTIONS_FLOOR, default_max_connections,
    };
    use std::time::Duration;

    fn resolve(file: &str, flags: &[&str]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logoutd.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec![
            "logoutd",
            "serve",
            "--dev",
            "--config",
            path.to_str().unwrap(),
        ];
        argv.extend_from_slice(flags);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Serve(args) => args.resolve_in(&Environment::default()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn connection_settings_come_from_the_file_and_flags_override_it() {
        let file = "header_read_timeout_ms = 1500\nidle_timeout_ms = 2500\n\
                    body_read_timeout_ms = 3500\nmax_connections = 7\nshutdown_grace_ms = 4500\n\
                    max_waiting_requests = 3\n";
        let http = resolve(
            file,
            &["--max-connections", "9", "--idle-timeout-ms", "600"],
        )
        .unwrap()
        .http;
        assert_eq!(
            http,
            HttpSettings {
                header_read_timeout: Duration::from_millis(1500),
                idle_timeout: Duration::from_millis(600),
                body_read_timeout: Duration::from_millis(3500),
                max_connections: 9,
                shutdown_grace: Duration::from_millis(4500),
                max_waiting_requests: 3,
            }
        );
    }

    #[test]
    fn connection_settings_default_to_the_named_constants() {
        let http = resolve("", &[]).unwrap().http;
        assert_eq!(http, HttpSettings::default());
        assert_eq!(http.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(http.max_connections, default_max_connections());
    }

    #[test]
    fn zero_timeouts_and_caps_are_refused() {
        for flag in [
            "--header-read-timeout-ms",
            "--idle-timeout-ms",
            "--body-read-timeout-ms",
            "--shutdown-grace-ms",
            "--max-connections",
        ] {
            assert!(resolve("", &[flag, "0"]).is_err(), "{flag} 0 accepted");
        }
        assert!(resolve("", &["--max-connections", "2000000"]).is_err());
    }

    #[test]
    fn help_shows_each_default_from_its_constant_and_the_variable_of_each_flag() {
        use clap::CommandFactory as _;
        let mut cli = crate::cli::Cli::command();
        let serve = cli.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for expected in [
            format!(
                "Listen address [default: {}] [env: LOGOUTD_LISTEN]",
                DEFAULT_LISTEN
            ),
            format!(
                "[default: {}] [env: LOGOUTD_ATTEMPT_TIMEOUT_MS]",
                logoutd_core::DEFAULT_SEND_TIMEOUT.as_millis()
            ),
            format!(
                "[default: {}] [env: LOGOUTD_TOKEN_LIFETIME_SECONDS]",
                logoutd_core::DEFAULT_TOKEN_LIFETIME_SECS
            ),
            format!(
                "[default: {}] [env: LOGOUTD_RETRY_CAP_MS]",
                logoutd_core::DEFAULT_RETRY_CAP.as_millis()
            ),
            format!(
                "[default: {}] [env: LOGOUTD_LEASE_SECONDS]",
                DEFAULT_LEASE.as_secs()
            ),
            format!(
                "{} to {}] [env: LOGOUTD_MAX_CONNECTIONS]",
                MAX_CONNECTIONS_FLOOR, MAX_CONNECTIONS_CEILING
            ),
            format!("[default: {}] [env: LOGOUTD_CONFIG]", DEFAULT_CONFIG_FILE),
            "(tests and demos only) [env: LOGOUTD_ALLOW_INSECURE_RP_URLS]".to_owned(),
        ] {
            assert!(help.contains(&expected), "{expected:?} not in {help}");
        }
        assert!(!help.contains("LOGOUTD_DEV"), "{help}");
        assert!(!help.contains("body-limit"), "{help}");
    }
}
