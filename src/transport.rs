//! HTTP clients' common ground (a leaf): the TLS provider every reqwest
//! client needs, and what went wrong on the wire, in words an operator can
//! act on, for the RT client and the feeds. Only the error's kind and its
//! causes' kinds are read, never its URL (which can hold a key).

use std::error::Error as _;
use std::io::ErrorKind;

/// reqwest is built without a bundled crypto provider (aws-lc-sys costs a
/// minute of cold build): install ring as the process default. Idempotent;
/// call before building any reqwest client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The kind of a failed HTTP exchange: "DNS lookup failed", "connection
/// refused", "connection reset", "TLS handshake failed", "timed out", ...
pub fn describe(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        return if e.is_connect() {
            "connect timed out"
        } else {
            "timed out"
        };
    }
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if let Some(kind) = io_kind(io) {
                return kind;
            }
            // An io::Error's source() skips the error it wraps: go into it.
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        if c.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return "connection closed before the answer";
        }
        if c.is::<rustls::Error>() {
            return "TLS handshake failed";
        }
        let text = c.to_string();
        if text.starts_with("dns error") || text.contains("failed to lookup address") {
            return "DNS lookup failed";
        }
        if text.contains("certificate") || text.contains("tls handshake") {
            return "TLS handshake failed";
        }
        cause = c.source();
    }
    if e.is_connect() {
        "connect failed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    }
}

fn io_kind(io: &std::io::Error) -> Option<&'static str> {
    Some(match io.kind() {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            "connection reset"
        }
        ErrorKind::UnexpectedEof => "connection closed before the answer",
        ErrorKind::TimedOut => "timed out",
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "host unreachable",
        _ => return None,
    })
}

/// `host:port` of the request that failed, for messages (never the path
/// or query, which can hold a key).
pub fn host_of(e: &reqwest::Error) -> Option<String> {
    let u = e.url()?;
    Some(match (u.host_str(), u.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fail(url: &str) -> reqwest::Error {
        install_crypto_provider();
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap_err()
    }

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn each_failure_is_named_by_its_kind() {
        let port = closed_port();
        let e = fail(&format!("http://127.0.0.1:{port}/?key=SECRET")).await;
        assert_eq!(describe(&e), "connection refused");
        assert_eq!(host_of(&e).as_deref(), Some(&*format!("127.0.0.1:{port}")));

        // A server that closes every connection at once.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
        let e = fail(&format!("http://{addr}/")).await;
        assert!(
            ["connection reset", "connection closed before the answer"].contains(&describe(&e)),
            "{e:?}"
        );
        // https to a server that speaks plain text.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let e = fail(&format!("https://{addr}/")).await;
        assert_eq!(describe(&e), "TLS handshake failed", "{e:?}");
    }
}
