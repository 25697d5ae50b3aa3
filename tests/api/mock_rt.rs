//! An in-process mock of FraudScore RT on a random port, speaking raw
//! HTTP/1.1 over TCP so it can also hang, reset connections and send
//! garbage. Counts calls per `ip` and keeps every query it received.
//! Shared by the integration tests and `examples/mock_rt.rs`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the mock does for a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 text/plain with this body.
    Tags(String),
    /// Wait, then do the inner reply.
    Delay(Duration, Box<Reply>),
    /// This status with a short body.
    Status(u16),
    /// Never answer (keeps the connection open).
    Hang,
    /// Close the connection with a TCP reset, no answer.
    Reset,
    /// 200 with binary junk and no content type.
    Garbage,
    /// 200 text/plain, 8 KiB.
    Huge,
    /// 200 text/html error page.
    Html,
    /// 200 with a body of exactly this content and this content type.
    Raw(&'static str, String),
}

impl Reply {
    pub fn tags(body: &str) -> Self {
        Reply::Tags(body.to_owned())
    }
    pub fn delayed(ms: u64, inner: Reply) -> Self {
        Reply::Delay(Duration::from_millis(ms), Box::new(inner))
    }
}

#[derive(Default)]
struct State {
    default: Option<Reply>,
    by_ip: HashMap<String, Reply>,
    calls_by_ip: HashMap<String, usize>,
    queries: Vec<String>,
}

#[derive(Clone)]
pub struct MockRt {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    calls: Arc<AtomicUsize>,
}

impl MockRt {
    pub async fn start() -> MockRt {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> MockRt {
        let listener = TcpListener::bind(addr).await.expect("bind mock");
        let mock = MockRt {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            calls: Arc::default(),
        };
        let m = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let _ = sock.set_nodelay(true);
                tokio::spawn(m.clone().serve(sock));
            }
        });
        mock
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Reply for every IP without a rule of its own.
    pub fn set_default(&self, r: Reply) {
        self.state.lock().unwrap().default = Some(r);
    }

    pub fn on_ip(&self, ip: &str, r: Reply) {
        self.state.lock().unwrap().by_ip.insert(ip.to_owned(), r);
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn calls_for(&self, ip: &str) -> usize {
        *self.state.lock().unwrap().calls_by_ip.get(ip).unwrap_or(&0)
    }

    pub fn distinct_ips(&self) -> usize {
        self.state.lock().unwrap().calls_by_ip.len()
    }

    /// Decoded query parameters of the last call for `ip`.
    pub fn last_params(&self, ip: &str) -> Option<Vec<(String, String)>> {
        let st = self.state.lock().unwrap();
        st.queries.iter().rev().find_map(|q| {
            let p: Vec<(String, String)> =
                form_urlencoded::parse(q.as_bytes()).into_owned().collect();
            p.iter().any(|(k, v)| k == "ip" && v == ip).then_some(p)
        })
    }

    async fn serve(self, mut sock: TcpStream) {
        let mut buf = Vec::with_capacity(4096);
        loop {
            // Read one request head (GET has no body).
            let head_end = loop {
                if let Some(i) = find(&buf, b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            buf.drain(..head_end);
            let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let query = target
                .split_once('?')
                .map(|(_, q)| q.to_owned())
                .unwrap_or_default();
            let ip = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "ip")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let reply = {
                let mut st = self.state.lock().unwrap();
                *st.calls_by_ip.entry(ip.clone()).or_default() += 1;
                st.queries.push(query);
                st.by_ip
                    .get(&ip)
                    .or(st.default.as_ref())
                    .cloned()
                    .unwrap_or_else(|| Reply::tags(""))
            };
            self.calls.fetch_add(1, Ordering::SeqCst);
            if !respond(&mut sock, reply).await {
                return;
            }
        }
    }
}

/// Writes the reply; false when the connection is finished.
async fn respond(sock: &mut TcpStream, mut reply: Reply) -> bool {
    loop {
        match reply {
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                reply = *inner;
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return false;
            }
            Reply::Reset => {
                let _ = sock.set_zero_linger();
                return false;
            }
            Reply::Tags(body) => return write(sock, 200, "text/plain", body.as_bytes()).await,
            Reply::Status(code) => return write(sock, code, "text/plain", b"error").await,
            Reply::Garbage => {
                return write(sock, 200, "", &[0xff, 0xfe, 0x00, 0x13, 0x37, 0x80]).await;
            }
            Reply::Huge => return write(sock, 200, "text/plain", &vec![b'a'; 8192]).await,
            Reply::Html => {
                return write(
                    sock,
                    200,
                    "text/html",
                    b"<html><body>Service unavailable</body></html>",
                )
                .await;
            }
            Reply::Raw(ct, body) => return write(sock, 200, ct, body.as_bytes()).await,
        }
    }
}

async fn write(sock: &mut TcpStream, status: u16, ct: &str, body: &[u8]) -> bool {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    if !ct.is_empty() {
        out.push_str(&format!("content-type: {ct}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    sock.write_all(&bytes).await.is_ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
