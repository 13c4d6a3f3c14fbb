//! A logoutd server started inside the benchmark process on 127.0.0.1:0.

use logoutd_core::KeyRing;
use logoutd_core::Settings;
use logoutd_core::Stores;
use logoutd_core::{SharedClock, SystemClock};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running in-process server.
pub struct InProcess {
    /// `http://ADDR` of its API.
    pub base: String,
    /// Its API bearer token.
    pub token: String,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    delivery: tokio::runtime::Runtime,
}

impl InProcess {
    /// Binds `settings.listen` and runs API and dispatcher over `stores` and `keys`.
    pub async fn start(
        settings: Settings,
        stores: Stores,
        keys: Arc<KeyRing>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let token = settings
            .api_token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .unwrap_or_default();
        let shutdown = CancellationToken::new();
        let clock: SharedClock = Arc::new(SystemClock);
        let delivery = logoutd_core::delivery_runtime(settings.dispatch.delivery_nice)?;
        let parts = logoutd_core::ServerParts {
            settings,
            stores,
            keys,
            clock,
            delivery: Some(delivery.handle().clone()),
        };
        let server = tokio::spawn(logoutd_core::run_server(listener, parts, shutdown.clone()));
        Ok(Self {
            base,
            token,
            shutdown,
            server,
            delivery,
        })
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
        self.delivery.shutdown_background();
    }
}
