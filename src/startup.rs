//! Building and running the application: bind, serve, drain on shutdown.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{AppState, router};
use crate::score::{Scorer, ScorerError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Scorer(#[from] ScorerError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    grace: Duration,
}

impl Application {
    /// Builds the scorer and binds the listener (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let metrics = crate::metrics::install();
        let scorer = Scorer::new(&config)?;
        if scorer.upstream_enabled() {
            tracing::info!(url = %config.upstream.url, timeout_ms = config.upstream.timeout_ms, "FraudScore RT upstream enabled");
        } else {
            tracing::warn!(
                "no upstream key configured (upstream.key / FRAUDGATE_UPSTREAM__KEY): FraudScore RT is disabled, \
                 decisions come from the fallback policy (policy.on_upstream_error = {})",
                config.policy.on_upstream_error.as_str()
            );
        }
        let want = config.server.listen;
        let listener = TcpListener::bind(want)
            .await
            .map_err(|source| StartupError::Bind { addr: want, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr: want, source })?;
        let grace = config.server.shutdown_grace();
        Ok(Application {
            listener,
            addr,
            grace,
            state: AppState::new(scorer, config, metrics),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets
    /// in-flight requests finish for at most the grace period, and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            addr,
            state,
            grace,
        } = self;
        let draining = state.draining.clone();
        let began = Arc::new(tokio::sync::Notify::new());
        let began_tx = began.clone();
        let signal = async move {
            shutdown.await;
            draining.store(true, Ordering::Relaxed);
            tracing::info!(
                grace_s = grace.as_secs(),
                "shutdown: no new connections, draining in-flight requests"
            );
            began_tx.notify_one();
        };
        tracing::info!(%addr, "fraudgate listening");
        spawn_rule_reloads(&state);
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, app).with_graceful_shutdown(signal);
        tokio::select! {
            r = server.into_future() => r,
            _ = async { began.notified().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("grace period over with requests still in flight; exiting");
                Ok(())
            }
        }
    }
}

/// Re-reads rule files when they change (mtime polling) and on SIGHUP.
/// File I/O and compiling run on the blocking pool, never on the runtime.
fn spawn_rule_reloads(state: &AppState) {
    let rules = state.scorer.rules().clone();
    if !rules.enabled() {
        return;
    }
    let every = rules.reload_interval_s();
    if every > 0 {
        let rules = rules.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let r = rules.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload(false)).await;
            }
        });
    }
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading rule files");
            let r = rules.clone();
            let _ = tokio::task::spawn_blocking(move || r.reload(true)).await;
        }
    });
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
