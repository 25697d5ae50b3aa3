//! The gRPC door: Envoy / Istio `ext_authz` (`envoy.service.auth.v3.
//! Authorization/Check`) and `grpc.health.v1` on `doors.grpc.listen`.
//!
//! The same event and decision as `/v1/auth` (see `check`); tonic serves
//! them on the hyper / tower stack the HTTP doors use. Shutdown follows
//! the HTTP listener's: health turns NOT_SERVING when draining starts, the
//! listener closes after `server.drain_delay_ms`, in-flight Checks finish
//! within `server.shutdown_timeout_ms`.

mod check;
mod deadline;
pub mod proto;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

use crate::http::AppState;

/// The service name health is reported under (and `""`, the server's).
pub const SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// The gRPC listener, bound by `Application::build`.
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `doors.grpc.listen`, when set.
    pub async fn bind(config: &crate::config::Config) -> std::io::Result<Option<Listener>> {
        let Some(want) = config.doors.grpc.listen else {
            return Ok(None);
        };
        let listener = TcpListener::bind(want).await?;
        let addr = listener.local_addr()?;
        Ok(Some(Listener { listener, addr }))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A running gRPC server, driven through shutdown by `startup`.
pub struct Serving {
    health: tonic_health::server::HealthReporter,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

/// Serves Check and health on `listener` until [`Serving::stop`].
pub async fn serve(listener: Listener, state: AppState) -> Serving {
    let door = state.config.doors.grpc.clone();
    let server = state.config.server.clone();
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in [SERVICE, ""] {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let registry = state.registry.clone();
    let check = registry
        .scope(|| {
            proto::auth::authorization_server::AuthorizationServer::new(check::Door::new(state))
        })
        .max_decoding_message_size(door.max_message_bytes);
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener.listener).with_nodelay(Some(true));
    let router = tonic::transport::Server::builder()
        // Envoy multiplexes a worker's Checks on one connection: bound
        // them per connection; the door bounds them all (max_concurrency).
        .max_concurrent_streams(door.max_concurrent_streams)
        // The hard limit of any one request, as on the HTTP listener; a
        // caller's shorter grpc-timeout wins.
        .timeout(server.request_timeout())
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(check);
    let done = tokio::spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
            tracing::warn!(error = %e, "gRPC server ended with an error");
        }
    });
    tracing::info!(addr = %listener.addr, "gRPC door listening (ext_authz, grpc.health.v1)");
    Serving { health, stop, done }
}

impl Serving {
    /// Draining: health answers NOT_SERVING, Checks are still served.
    pub async fn drain(&self) {
        for name in [SERVICE, ""] {
            self.health
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
    }

    /// Closes the listener; resolves when in-flight Checks are answered
    /// (the caller bounds the wait).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}
