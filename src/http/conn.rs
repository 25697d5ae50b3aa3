//! Serving one accepted connection: TLS first when the listener has it,
//! then HTTP/1.1 or HTTP/2, chosen by ALPN on TLS and, on a plain listener
//! with `server.http2.h2c`, by the client's first bytes (the HTTP/2
//! preface). The handshake and the sniffing happen in the connection's own
//! task: a slow client never holds the accept loop.
//!
//! A plain listener without h2c serves HTTP/1.1 exactly as before HTTP/2
//! existed here: the same builder, the same I/O stack, nothing per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::AppService;
use super::idle::Activity;
use super::lanes::Lanes;
use super::write_timeout::WriteTimeout;
use crate::config::ServerConfig;
use crate::tls::Tls;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How the listeners' connections are served; cheap to clone.
#[derive(Clone)]
pub struct Connections {
    inner: Arc<Inner>,
    /// `server.threading = "per_core"`: the threads connections are
    /// handed to (none: the accepting runtime serves them).
    lanes: Option<Arc<Lanes>>,
}

struct Inner {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    h2c: bool,
    write_timeout: Duration,
    /// A plain client must have said which HTTP it speaks within this.
    sniff_timeout: Duration,
    /// Turns true when shutdown's drain starts: HTTP/2 connections get a
    /// GOAWAY then, as HTTP/1 responses get `Connection: close`.
    drain: watch::Receiver<bool>,
    /// `server.http2.idle_timeout_s`: an HTTP/2 connection with no request
    /// in flight this long gets a GOAWAY.
    idle_timeout: Option<Duration>,
}

impl Connections {
    /// `lanes`: the threads to hand connections to (see [`Lanes`]).
    pub fn new(
        server: &ServerConfig,
        drain: watch::Receiver<bool>,
        lanes: Option<Arc<Lanes>>,
    ) -> Self {
        Connections {
            lanes,
            inner: Arc::new(Inner {
                http1: http1_builder(server),
                http2: http2_builder(server),
                h2c: server.http2.h2c,
                write_timeout: server.write_timeout(),
                sniff_timeout: server.header_read_timeout(),
                drain,
                idle_timeout: server.http2.idle_timeout(),
            }),
        }
    }

    /// Hands an accepted connection to a task of its own, on a lane's
    /// thread when there are lanes. `tls`: the listener's, when it has
    /// one; `watcher` keeps shutdown waiting for the connection until it
    /// ends.
    pub fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        svc: Arc<AppService>,
        tls: Option<Arc<Tls>>,
        watcher: Watcher,
    ) {
        let _ = stream.set_nodelay(true);
        let this = self.inner.clone();
        let Some(lanes) = &self.lanes else {
            tokio::spawn(this.connection(stream, peer, svc, tls, watcher));
            return;
        };
        // The socket moves to the lane's event loop: out of this one's,
        // into that one's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "connection lost before it was served");
                return;
            }
        };
        lanes.pick().spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => this.connection(stream, peer, svc, tls, watcher).await,
                Err(e) => tracing::warn!(error = %e, "connection not served"),
            }
        });
    }
}

impl Inner {
    /// One connection, start to end.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        svc: Arc<AppService>,
        tls: Option<Arc<Tls>>,
        watcher: Watcher,
    ) {
        match tls {
            Some(tls) => {
                // Below TLS: a stalled peer is seen at the socket.
                let io = WriteTimeout::new(stream, self.write_timeout);
                let stream = match tls.accept(io).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS connection refused");
                        return;
                    }
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                self.serve_io(TokioIo::new(stream), h2, peer, svc, watcher)
                    .await;
            }
            None if self.h2c => {
                let Some(h2) = sniff(&stream, self.sniff_timeout).await else {
                    return;
                };
                let io = WriteTimeout::new(stream, self.write_timeout);
                self.serve_io(TokioIo::new(io), h2, peer, svc, watcher)
                    .await;
            }
            None => {
                let io = WriteTimeout::new(stream, self.write_timeout);
                self.serve_io(TokioIo::new(io), false, peer, svc, watcher)
                    .await;
            }
        }
    }

    async fn serve_io<I>(&self, io: I, h2: bool, peer: SocketAddr, svc: Arc<AppService>, w: Watcher)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        if !h2 {
            let service = hyper::service::service_fn(move |req| {
                let svc = svc.clone();
                async move { svc.call(req, peer).await }
            });
            ended(w.watch(self.http1.serve_connection(io, service)).await);
            return;
        }
        // Held until the connection ends: shutdown waits for it. It needs
        // no signal of its own: the drain, which always comes first, has
        // sent the GOAWAY by then.
        let _counted = w;
        let idle = Activity::new();
        let requests = idle.clone();
        let service = hyper::service::service_fn(move |req| {
            let svc = svc.clone();
            let busy = requests.busy();
            async move {
                let r = svc.call(req, peer).await;
                drop(busy);
                r
            }
        });
        let mut conn = std::pin::pin!(self.http2.serve_connection(io, service));
        let mut drain = self.drain.clone();
        let draining = async move {
            if drain.wait_for(|d| *d).await.is_err() {
                std::future::pending::<()>().await
            }
        };
        let idle_timeout = self.idle_timeout;
        let gone_idle = async move {
            match idle_timeout {
                Some(t) => idle.expired(t).await,
                None => std::future::pending().await,
            }
        };
        let r = tokio::select! {
            r = conn.as_mut() => r,
            () = draining => {
                // In-flight streams finish; the client opens new ones
                // elsewhere (its load balancer has moved on).
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            () = gone_idle => {
                tracing::debug!(%peer, "closing an idle HTTP/2 connection");
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        ended(r);
    }
}

fn ended(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Whether a plain client opened with the HTTP/2 preface: Some(true) yes,
/// Some(false) anything else (HTTP/1.1); None when it closed or sent
/// nothing within `within`. Peeks, so HTTP/1 reads the bytes itself.
async fn sniff(stream: &TcpStream, within: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != PREFACE[..n] {
            return Some(false);
        }
        if n == PREFACE.len() {
            return Some(true);
        }
        // A preface cut across packets: the rest is on its way (peek
        // would return the same bytes at once, so wait a little).
        tokio::time::sleep(Duration::from_millis(2)).await;
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// HTTP/1 connection settings from `[server]`.
fn http1_builder(server: &ServerConfig) -> http1::Builder {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        // Slow clients (slowloris) are cut off while sending headers.
        .header_read_timeout(Some(server.header_read_timeout()))
        // Request line + headers; past it hyper answers 431.
        .max_buf_size(server.max_header_bytes)
        .keep_alive(true);
    http1
}

/// HTTP/2 connection settings from `[server]` and `[server.http2]`.
fn http2_builder(server: &ServerConfig) -> http2::Builder<TokioExecutor> {
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        // Requests one connection multiplexes; more are refused by stream.
        .max_concurrent_streams(server.http2.max_concurrent_streams)
        // The HTTP/1 header limit, for the decoded header list.
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
        // Dead peers are found by PING, not by the next request failing.
        .keep_alive_interval(server.http2.keep_alive_interval())
        .keep_alive_timeout(
            server
                .http2
                .keep_alive_interval()
                .unwrap_or(Duration::from_secs(20)),
        );
    http2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_preface_is_told_from_http1_even_when_cut() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        for (sent, want) in [
            (&b"GET / HTTP/1.1\r\n"[..], Some(false)),
            (&b"POST /v1/check HTTP/1.1\r\n"[..], Some(false)),
            (&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], Some(true)),
            (&b""[..], None),
        ] {
            let client = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut c = TcpStream::connect(addr).await.unwrap();
                // Split in two writes to cut the preface across packets.
                let (a, b) = sent.split_at(sent.len() / 2);
                c.write_all(a).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                c.write_all(b).await.unwrap();
                c.shutdown().await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
            let (s, _) = l.accept().await.unwrap();
            assert_eq!(sniff(&s, Duration::from_secs(5)).await, want, "{sent:?}");
            client.await.unwrap();
        }
    }
}
