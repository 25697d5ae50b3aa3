//! TLS on the public listener (`[server.tls]`): rustls with the ring
//! provider, TLS 1.2 and 1.3 only, ALPN `h2` then `http/1.1`, the
//! certificate reloaded when its files change or on SIGHUP without
//! touching a connection already made.

pub mod certs;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub use certs::{CertError, Certs, Reloaded};

use crate::config::TlsConfig;
use crate::metrics::{TLS_CERT_RELOADS, TLS_HANDSHAKES};

/// ALPN protocols offered, in the server's order of preference.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Stateful session cache size (TLS 1.2 session ids); tickets need none.
const SESSION_CACHE: usize = 4096;

/// Everything `serve` would refuse in `[server.tls]`, checked without
/// side effects: the files are read, parsed and matched.
pub fn check(config: &TlsConfig) -> Result<(), CertError> {
    certs::load(Path::new(&config.cert_file), Path::new(&config.key_file)).map(drop)
}

/// The public listener's TLS side: the acceptor, its certificate, and the
/// counters of handshakes and reloads (registered once, at build).
pub struct Tls {
    acceptor: TlsAcceptor,
    certs: Arc<Certs>,
    handshake_timeout: Duration,
    reload_interval: Option<Duration>,
    handshakes: Outcomes<3>,
    reloads: Outcomes<2>,
}

/// A counter per outcome label, registered at build so the hot path only
/// increments handles.
struct Outcomes<const N: usize>([metrics::Counter; N]);

impl<const N: usize> Outcomes<N> {
    fn new(name: &'static str, labels: [&'static str; N]) -> Self {
        Outcomes(labels.map(|o| metrics::counter!(name, "outcome" => o)))
    }
}

const HANDSHAKE_OK: usize = 0;
const HANDSHAKE_FAILED: usize = 1;
const HANDSHAKE_TIMEOUT: usize = 2;
const RELOAD_OK: usize = 0;
const RELOAD_ERROR: usize = 1;

/// A handshake that did not end in a TLS connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake not finished within server.tls.handshake_timeout_ms")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
}

impl Tls {
    /// Reads the certificate (blocking: at startup) and builds the server
    /// side. Call inside the app's metrics scope.
    pub fn new(config: &TlsConfig) -> Result<Self, CertError> {
        crate::transport::install_crypto_provider();
        let certs = Arc::new(Certs::open(
            Path::new(&config.cert_file),
            Path::new(&config.key_file),
        )?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let internal = |message: String| CertError {
            key: "server.tls",
            message,
        };
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| internal(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        // Resumption without a full handshake: stateless tickets (TLS 1.2
        // and 1.3, keys rotated by rustls) and a bounded id cache.
        server.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| internal(e.to_string()))?;
        server.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            certs,
            handshake_timeout: config.handshake_timeout(),
            reload_interval: (config.reload_interval_s > 0)
                .then(|| Duration::from_secs(config.reload_interval_s)),
            handshakes: Outcomes::new(TLS_HANDSHAKES, ["ok", "failed", "timeout"]),
            reloads: Outcomes::new(TLS_CERT_RELOADS, ["ok", "error"]),
        })
    }

    /// The handshake, bounded by `server.tls.handshake_timeout_ms` (a
    /// client that stalls in it holds a task, never the accept loop).
    pub async fn accept<IO>(&self, io: IO) -> Result<TlsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let r = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(io)).await;
        let (i, r) = match r {
            Ok(Ok(s)) => (HANDSHAKE_OK, Ok(s)),
            Ok(Err(e)) => (HANDSHAKE_FAILED, Err(HandshakeError::Failed(e))),
            Err(_) => (HANDSHAKE_TIMEOUT, Err(HandshakeError::Timeout)),
        };
        self.handshakes.0[i].increment(1);
        r
    }

    /// The certificate new handshakes are given (first of the chain).
    pub fn served_certificate(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.certs.leaf()
    }

    /// Reads the files again on the blocking pool: on SIGHUP (`force`) or
    /// when polled (only if they changed). A bad pair keeps the old
    /// certificate, with a warning and `fraudgate_tls_cert_reloads_total
    /// {outcome="error"}`.
    pub async fn reload(&self, force: bool) {
        let certs = self.certs.clone();
        let r = tokio::task::spawn_blocking(move || certs.reload(force)).await;
        match r {
            Ok(Ok(Reloaded::Unchanged)) => {}
            Ok(Ok(Reloaded::Swapped)) => {
                self.reloads.0[RELOAD_OK].increment(1);
                tracing::info!(cert_file = %self.certs.cert_file().display(), "TLS certificate loaded; new handshakes get it");
            }
            Ok(Err(e)) => {
                self.reloads.0[RELOAD_ERROR].increment(1);
                tracing::warn!(error = %e, "TLS certificate not reloaded; still serving the previous one");
            }
            Err(e) => {
                self.reloads.0[RELOAD_ERROR].increment(1);
                tracing::warn!(error = %e, "TLS certificate reload did not finish");
            }
        }
    }

    /// Polls the files every `server.tls.reload_interval_s` (when > 0).
    pub fn spawn_polling(self: &Arc<Self>) {
        let Some(every) = self.reload_interval else {
            return;
        };
        let tls = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                // Ends with the application (its last Arc dropped).
                let Some(tls) = tls.upgrade() else { return };
                tls.reload(false).await;
            }
        });
    }
}
