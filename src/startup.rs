//! Building and running the application: bind, serve, drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{AppState, Surface};
use crate::score::{Scorer, ScorerError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Scorer(#[from] ScorerError),
    #[error(transparent)]
    Feeds(#[from] crate::feeds::state::StateError),
    #[error("{0}")]
    Log(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::CertError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    /// `server.admin_listen`: the operator's endpoints on a port of their own.
    admin: Option<(TcpListener, SocketAddr)>,
    /// `[server.tls]`: TLS on `listener`.
    tls: Option<Arc<crate::tls::Tls>>,
    /// `doors.grpc.listen`: the ext_authz gRPC door.
    grpc: Option<crate::grpc::Listener>,
    state: AppState,
}

/// Everything `serve` would refuse before it binds, checked without side
/// effects (no threads, no connections, no files written): rule and list
/// files, the policy, the IVT map, the RT client, `log.file`. `check-config`
/// and `serve` both run it, so they refuse the same things with the same
/// message. `serve` then builds these parts again, inside its app's
/// metrics registry (their metric handles belong there), at a cost of
/// tens of milliseconds once.
pub fn preflight(config: &Config) -> Result<(), StartupError> {
    crate::score::rules_of(config)?;
    crate::policy::Policy::from_config(&config.policy).map_err(ScorerError::from)?;
    crate::score::ivt_of(config)?;
    crate::score::upstream_of(config)?;
    crate::telemetry::check_file(&config.log).map_err(StartupError::Log)?;
    if let Some(tls) = &config.server.tls {
        crate::tls::check(tls)?;
    }
    Ok(())
}

impl Application {
    /// Builds the scorer and binds the listener (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let registry = crate::metrics::Registry::new();
        let scorer = registry.scope(|| Scorer::new(&config))?;
        if let Some(fleet) = scorer.fleet() {
            fleet.start(scorer.rules().clone(), scorer.cache().clone());
            tracing::info!(prefix = %config.redis.key_prefix, "Redis configured: sharing verdicts, purges and lists with the fleet");
        }
        let feeds = registry.scope(|| {
            crate::feeds::Feeds::new(
                &config.feeds,
                Some(scorer.rules().clone()),
                scorer.fleet().cloned(),
            )
        })?;
        if scorer.upstream_enabled() {
            tracing::info!(url = %config.upstream.url, timeout_ms = config.upstream.timeout_ms, "FraudScore RT upstream enabled");
        } else {
            tracing::warn!(
                "no upstream key configured (upstream.key / FRAUDGATE_UPSTREAM__KEY): FraudScore RT is disabled; local rules decide \
                 what they recognise, everything else gets the fallback policy (policy.on_upstream_error = {})",
                config.policy.on_upstream_error.as_str()
            );
        }
        let tls = match &config.server.tls {
            Some(t) => Some(Arc::new(registry.scope(|| crate::tls::Tls::new(t))?)),
            None => None,
        };
        let want = config.server.listen;
        let listener = TcpListener::bind(want)
            .await
            .map_err(|source| StartupError::Bind { addr: want, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr: want, source })?;
        let admin = match config.server.admin_listen {
            Some(want) => {
                if !want.ip().is_loopback() {
                    tracing::warn!(admin_listen = %want, "the operator's endpoints (/metrics, /ui, the admin API, the decision log's query side) listen beyond loopback: keep the port private, and set auth.report_keys and auth.admin_keys");
                }
                let l = TcpListener::bind(want)
                    .await
                    .map_err(|source| StartupError::Bind { addr: want, source })?;
                let a = l
                    .local_addr()
                    .map_err(|source| StartupError::Bind { addr: want, source })?;
                Some((l, a))
            }
            None => None,
        };
        let grpc = crate::grpc::Listener::bind(&config)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.doors.grpc.listen.unwrap_or(want),
                source,
            })?;
        Ok(Application {
            listener,
            addr,
            admin,
            tls,
            grpc,
            state: AppState::new(scorer, config, registry, Arc::new(feeds)),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The operator listener's address, when `server.admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, a)| *a)
    }

    /// The gRPC door's address, when `doors.grpc.listen` is set.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(crate::grpc::Listener::addr)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then shuts down without dropping
    /// a request: `/readyz` turns 503 and responses carry `Connection:
    /// close` while new connections are still accepted for
    /// `server.drain_delay_ms` (load balancers notice and move away); then
    /// the listener closes and in-flight requests, then the decision log's
    /// last records, get at most `server.shutdown_timeout_ms` together.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            addr,
            admin,
            tls,
            grpc,
            state,
        } = self;
        let server = state.config.server.clone();
        let draining = state.draining.clone();
        spawn_rule_reloads(&state, tls.clone());
        spawn_feeds(&state);
        let log = state.scorer.log().cloned();
        let grpc = match grpc {
            Some(l) => Some(crate::grpc::serve(l, state.clone()).await),
            None => None,
        };
        let (service, op_service) = services(state, admin.is_some());
        // One reference count per request, not one per part.
        let (service, op_service) = (
            std::sync::Arc::new(service),
            op_service.map(std::sync::Arc::new),
        );
        let (admin_listener, admin_addr) = admin.unzip();
        let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
        let lanes = match server.threading {
            crate::config::Threading::PerCore => Some(Arc::new(crate::http::lanes::Lanes::start(
                server.connection_threads(),
                crate::http::lanes::Idle {
                    spin: server.idle_spin(),
                },
            )?)),
            crate::config::Threading::Shared => None,
        };
        let conns = crate::http::conn::Connections::new(&server, drain_rx.clone(), lanes);
        // The operator's port (slow scrapes, reports, admin calls) stays on
        // the shared runtime, off the doors' connection threads.
        let op_conns = crate::http::conn::Connections::new(&server, drain_rx, None);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let serve = |operator: bool, stream: tokio::net::TcpStream, peer: SocketAddr| match (
            &op_service,
            operator,
        ) {
            (Some(op), true) => op_conns.serve(stream, peer, op.clone(), None, graceful.watcher()),
            _ => conns.serve(
                stream,
                peer,
                service.clone(),
                tls.clone(),
                graceful.watcher(),
            ),
        };
        match admin_addr {
            Some(admin) => {
                tracing::info!(%addr, %admin, "fraudgate listening: the doors on addr, the operator's endpoints on admin")
            }
            None => tracing::info!(%addr, tls = tls.is_some(), "fraudgate listening"),
        }
        accept_until(&listener, admin_listener.as_ref(), &serve, shutdown).await;

        draining.store(true, Ordering::Relaxed);
        let _ = drain_tx.send(true);
        if let Some(g) = &grpc {
            g.drain().await;
        }
        tracing::info!(
            drain_delay_ms = server.drain_delay_ms,
            "shutdown: /readyz is 503; still accepting while load balancers move away"
        );
        let drain = tokio::time::sleep(server.drain_delay());
        accept_until(&listener, admin_listener.as_ref(), &serve, drain).await;
        drop(listener);
        drop(admin_listener);
        let grpc = async {
            if let Some(g) = grpc {
                g.stop().await;
            }
        };
        finish(graceful, grpc, log, &server).await;
        Ok(())
    }
}

/// The service of the public listener, and of the operator's when
/// `server.admin_listen` gives it a port of its own.
fn services(
    state: AppState,
    operator_port: bool,
) -> (crate::http::AppService, Option<crate::http::AppService>) {
    let registry = state.registry.clone();
    let public = if operator_port {
        Surface::Doors
    } else {
        Surface::All
    };
    let service = registry.scope(|| crate::http::service_for(state.clone(), public));
    let operator = operator_port
        .then(|| registry.scope(|| crate::http::service_for(state, Surface::Operator)));
    (service, operator)
}

/// The end of shutdown, after the listeners closed: in-flight requests
/// (and the gRPC door's Checks) finish, then the decision log is written and closed.
async fn finish(
    graceful: hyper_util::server::graceful::GracefulShutdown,
    grpc: impl Future<Output = ()>,
    log: Option<crate::decision_log::DecisionLog>,
    server: &crate::config::ServerConfig,
) {
    tracing::info!(
        shutdown_timeout_ms = server.shutdown_timeout().as_millis() as u64,
        "shutdown: no new connections, finishing in-flight requests"
    );
    // One deadline for the requests and the decision log together:
    // the process ends within shutdown_timeout_ms of the listener
    // closing, whatever the store does.
    let deadline = tokio::time::Instant::now() + server.shutdown_timeout();
    tokio::select! {
        _ = async { tokio::join!(graceful.shutdown(), grpc) } => {}
        _ = tokio::time::sleep_until(deadline) => {
            tracing::warn!("shutdown timeout over with requests still in flight; exiting");
        }
    }
    if let Some(log) = log {
        // Everything decided is written, and the store closed, before
        // the process ends; what the store has not taken by the
        // deadline is counted as dropped.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        log.close(left).await;
    }
}

/// Accepts connections on the public listener (and the operator's, when
/// there is one) and hands them to `serve` until `stop` resolves.
async fn accept_until(
    listener: &TcpListener,
    operator: Option<&TcpListener>,
    serve: &impl Fn(bool, tokio::net::TcpStream, SocketAddr),
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let (accepted, is_operator) = tokio::select! {
            a = listener.accept() => (a, false),
            a = async {
                match operator {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => (a, true),
            _ = &mut stop => return,
        };
        match accepted {
            Ok((stream, peer)) => serve(is_operator, stream, peer),
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Re-reads rule files (and the TLS certificate) when they change (mtime
/// polling) and on SIGHUP. File I/O and compiling run on the blocking
/// pool, never on the runtime.
fn spawn_rule_reloads(state: &AppState, tls: Option<Arc<crate::tls::Tls>>) {
    if let Some(tls) = &tls {
        tls.spawn_polling();
    }
    let rules = state.scorer.rules().clone();
    let every = rules.reload_interval_s();
    if rules.enabled() && every > 0 {
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
    // SIGHUP does what the admin reload does (also with rules off: the
    // config file's changes are still told).
    #[cfg(unix)]
    {
        let state = state.clone();
        // Installed now, before the listener answers: a SIGHUP sent as
        // soon as "listening" is logged must not find the default action
        // (ending the process) still in place.
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        tokio::spawn(async move {
            let Ok(mut hup) = hup else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading rule files");
                let _ = crate::http::admin::reload_files(&state).await;
                if let Some(tls) = &tls {
                    tls.reload(true).await;
                }
            }
        });
    }
}

/// Starts the feed schedulers (their metrics go to this app's registry:
/// handles were registered when the feeds were built).
fn spawn_feeds(state: &AppState) {
    if !state.feeds.is_empty() {
        tracing::info!(feeds = state.feeds.all().len(), "feeds scheduled");
        state.feeds.spawn();
    }
}

/// Resolves on SIGINT or SIGTERM.
#[cfg(unix)]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    // Installed now, not when first polled: a signal sent as soon as the
    // server answers (before its accept loop polls this) is not lost.
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async fn recv(s: std::io::Result<Signal>) {
        match s {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    }
    async move {
        tokio::select! {
            _ = recv(int) => {},
            _ = recv(term) => {},
        }
    }
}

#[cfg(not(unix))]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
