//! A connection whose writes must make progress: a peer that stops
//! reading leaves a write pending on a full socket, and hyper polls the
//! response body only when the socket takes bytes, so neither an ended
//! answer nor a cut query would ever close it. Past `timeout` without a
//! byte taken, the write fails and hyper drops the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub struct WriteTimeout<T> {
    io: T,
    timeout: Duration,
    /// Armed while a write waits; boxed once per stall, not per write.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteTimeout<T> {
    pub fn new(io: T, timeout: Duration) -> Self {
        WriteTimeout {
            io,
            timeout,
            stalled: None,
        }
    }

    /// A write's outcome: progress ends a stall; Pending starts or
    /// continues one, failing it once it has lasted `timeout`.
    fn settle<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => self.check(cx).map(Err),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    /// After the inner write said Pending: has the stall lasted too long?
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer took no bytes within server.write_timeout_ms",
        ))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.settle(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.settle(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.settle(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_after_the_timeout() {
        let (near, far) = tokio::io::duplex(64);
        let mut w = WriteTimeout::new(near, Duration::from_secs(10));
        // Taken: the buffer has room.
        w.write_all(&[1; 64]).await.unwrap();
        // Full, and nobody reads: the write fails once 10 s have passed.
        let started = tokio::time::Instant::now();
        let err = w.write_all(&[2; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(10));
        // A reader that keeps taking bytes is never cut.
        let (near, far2) = tokio::io::duplex(64);
        let mut w = WriteTimeout::new(near, Duration::from_secs(10));
        let reader = tokio::spawn(async move {
            let mut far2 = far2;
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut far2, &mut sink)
                .await
                .unwrap();
            sink.len()
        });
        for _ in 0..100 {
            w.write_all(&[3; 64]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), 6400);
        drop(far);
    }
}
