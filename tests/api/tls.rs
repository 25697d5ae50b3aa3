//! TLS on the public listener and HTTP/2: certificates made here with
//! rcgen (a CA and a leaf for 127.0.0.1), real clients: reqwest over
//! rustls, curl and headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fraudgate::config::{Config, OfferConfig, TlsConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// A test CA that signs leaf certificates for 127.0.0.1 and localhost.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM, and the certificate's DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("fraudgate test CA {name}"));
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// Writes `leaf` where `[server.tls]` reads it (cert first, then key, each
/// replaced whole, as a certificate manager does).
pub fn install(dir: &Path, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    write_file(&cert, &leaf.cert_pem);
    write_file(&key, &leaf.key_pem);
    (cert, key)
}

/// `[server.tls]` for files in `dir`.
pub fn tls_config(dir: &Path, reload_interval_s: u64) -> TlsConfig {
    TlsConfig {
        cert_file: dir.join("cert.pem").display().to_string(),
        key_file: dir.join("key.pem").display().to_string(),
        reload_interval_s,
        handshake_timeout_ms: 5000,
    }
}

/// An app serving `leaf` over TLS; returns it with its https base URL.
pub async fn spawn_tls_app(
    leaf: &Leaf,
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, String, PathBuf) {
    let dir = temp_dir("tls");
    install(&dir, leaf);
    let app = spawn_app_with(|c| {
        c.server.tls = Some(tls_config(&dir, 1));
        tweak(c);
    })
    .await;
    let base = format!("https://127.0.0.1:{}", app.port);
    (app, base, dir)
}

/// A browser-like client (no redirects followed) trusting only `ca_pem`;
/// `h2`: offers h2 in ALPN, else HTTP/1.1 only.
pub fn tls_client(ca_pem: &str, h2: bool) -> reqwest::Client {
    fraudgate::upstream::install_crypto_provider();
    let b = reqwest::Client::builder()
        .no_proxy()
        .user_agent(UA)
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
    let b = if h2 { b } else { b.http1_only() };
    b.build().unwrap()
}

/// `/metrics` of the app at the https `base`.
pub async fn metrics_over_tls(client: &reqwest::Client, base: &str) -> String {
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    r.text().await.unwrap()
}

/// The certificate a fresh handshake with `port` is shown (DER), trusting
/// the CAs of `ca_pems`.
pub async fn presented(port: u16, ca_pems: &[&str]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
    }
    fraudgate::upstream::install_crypto_provider();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn offer_to(landing: &str) -> OfferConfig {
    OfferConfig {
        id: "34713".into(),
        url: format!("{landing}/land?c={{click_id}}&aff={{affiliate_id}}"),
        fallback_url: None,
    }
}

const CLICK: &str = "/click?offer_id=34713&affiliate_id=6251";

#[tokio::test]
async fn a_browser_style_client_completes_tls_on_click_and_gets_the_redirect() {
    let pki = Pki::new("click");
    let (app, base, _dir) = spawn_tls_app(&pki.leaf(), |c| {
        c.offers = vec![offer_to("https://adv.example")];
    })
    .await;

    let r = tls_client(&pki.ca_pem, false)
        .get(format!("{base}{CLICK}"))
        .send()
        .await
        .expect("TLS completes");

    assert_eq!(r.status(), 302);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://adv.example/land?c=") && location.ends_with("&aff=6251"),
        "{location}"
    );
    // The plain-HTTP base of the helpers does not answer on a TLS port.
    assert!(app.http.get(app.url("/healthz")).send().await.is_err());
}

#[tokio::test]
async fn alpn_h2_gives_http2_responses_on_the_doors() {
    let pki = Pki::new("h2");
    let (_app, base, _dir) = spawn_tls_app(&pki.leaf(), |c| {
        c.offers = vec![offer_to("https://adv.example")];
    })
    .await;
    let h2 = tls_client(&pki.ca_pem, true);

    let check = h2
        .get(format!("{base}/v1/check?{}", query("203.0.113.9", &[])))
        .send()
        .await
        .unwrap();
    let click = h2.get(format!("{base}{CLICK}")).send().await.unwrap();

    assert_eq!(check.version(), reqwest::Version::HTTP_2);
    assert_eq!(check.status(), 200);
    assert_eq!(json(check).await["decision"], "allow");
    assert_eq!(click.version(), reqwest::Version::HTTP_2);
    assert_eq!(click.status(), 302);
}

#[tokio::test]
async fn h2c_prior_knowledge_answers_v1_check_on_a_plain_listener() {
    let on = spawn_app_with(|c| c.server.http2.h2c = true).await;
    let off = spawn_app().await;
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .user_agent(UA)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let path = format!("/v1/check?{}", query("203.0.113.10", &[]));

    let r = h2c.get(on.url(&path)).send().await.unwrap();
    let h1 = on.get(&path).await;

    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["decision"], "allow");
    // HTTP/1.1 clients are served on the same port as before.
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), 200);
    // Off (the default): the plain listener speaks HTTP/1.1 only.
    assert!(h2c.get(off.url(&path)).send().await.is_err());
    assert_eq!(off.get(&path).await.status(), 200);
}

/// An h2c connection on the app's port, driven by hyper's client so its
/// end is seen (the task finishes when the server closes it).
async fn h2c_connection(
    port: u16,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_a_busy_one_kept() {
    let app = spawn_app_with(|c| {
        c.server.http2.h2c = true;
        c.server.http2.idle_timeout_s = 1;
    })
    .await;
    let healthz = || {
        hyper::Request::get(app.url("/healthz"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let (mut idle, idle_conn) = h2c_connection(app.port).await;
    let (mut busy, busy_conn) = h2c_connection(app.port).await;
    assert_eq!(idle.send_request(healthz()).await.unwrap().status(), 200);
    // A request every 200 ms for 3 s on one; nothing more on the other.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(busy.send_request(healthz()).await.unwrap().status(), 200);
    }
    assert!(!busy_conn.is_finished(), "a busy connection stays open");
    // (Closed by then: 1 s idle, and 2 s to spare.)
    assert!(idle_conn.is_finished(), "the idle connection was closed");
    idle_conn.await.unwrap().unwrap();
    // Then the busy one goes idle too.
    tokio::time::timeout(Duration::from_secs(10), busy_conn)
        .await
        .expect("closed once idle")
        .unwrap()
        .unwrap();
}

// Multi-threaded: the outside tools block this thread while the app serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_tls_1_1_and_a_silent_client_on_the_tls_port_fail_cleanly() {
    let pki = Pki::new("bad-clients");
    let (_app, base, _dir) = spawn_tls_app(&pki.leaf(), |c| {
        c.server.tls.as_mut().unwrap().handshake_timeout_ms = 300;
    })
    .await;
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();

    // Plain HTTP on the TLS port: refused, never answered in clear.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .ok();
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    // A client that says nothing is cut at the handshake timeout.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("closed within the handshake timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // TLS 1.1 (openssl can still offer it): no shared version.
    if let Some(openssl) = tool("openssl") {
        let out = Command::new("timeout")
            .arg("30")
            .arg(openssl)
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // s_client exits 0 either way: read what it agreed on.
        assert!(
            text.contains("Cipher is (NONE)"),
            "TLS 1.1 accepted: {text}"
        );
    }

    // Still serving, and each refusal counted.
    let m = metrics_over_tls(&tls_client(&pki.ca_pem, false), &base).await;
    let failed = sample(
        &m,
        "fraudgate_tls_handshakes_total",
        &[("outcome", "failed")],
    );
    let timeout = sample(
        &m,
        "fraudgate_tls_handshakes_total",
        &[("outcome", "timeout")],
    );
    assert!(failed >= 1.0, "{m}");
    assert!(timeout >= 1.0, "{m}");
    assert!(sample(&m, "fraudgate_tls_handshakes_total", &[("outcome", "ok")]) >= 1.0);
}

#[tokio::test]
async fn a_missing_file_bad_pem_or_a_key_of_another_certificate_is_refused_by_name() {
    let pki = Pki::new("refused");
    let (a, b) = (pki.leaf(), pki.leaf());
    let dir = temp_dir("tls-refused");
    let mut cases = Vec::new();
    // No such file.
    cases.push(("server.tls.cert_file", dir.join("nope")));
    // Not PEM.
    let d = temp_dir("tls-badpem");
    install(&d, &a);
    write_file(&d.join("cert.pem"), "not a certificate\n");
    cases.push(("server.tls.cert_file", d));
    // The key of another certificate.
    let d = temp_dir("tls-mismatch");
    install(&d, &a);
    write_file(&d.join("key.pem"), &b.key_pem);
    cases.push(("server.tls.key_file", d));

    for (key, d) in cases {
        let mut c = Config::default();
        c.server.listen = "127.0.0.1:0".parse().unwrap();
        c.server.tls = Some(tls_config(&d, 1));
        let preflight = fraudgate::startup::preflight(&c).unwrap_err().to_string();
        let build = match fraudgate::Application::build(c).await {
            Ok(_) => panic!("{key}: built"),
            Err(e) => e.to_string(),
        };
        assert!(preflight.starts_with(key), "{preflight}");
        assert_eq!(preflight, build);
        assert!(!preflight.contains("PRIVATE KEY"), "{preflight}");
    }
}

// Multi-threaded: the outside tools block this thread while the app serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_chromium_complete_tls_on_click() {
    // The advertiser's landing page, plain HTTP on loopback.
    let landing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let landing_url = format!("http://{}", landing.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = landing.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = "<html><body><p id=landed>landed</p></body></html>";
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
            });
        }
    });
    let pki = Pki::new("outside");
    let (_app, base, dir) = spawn_tls_app(&pki.leaf(), |c| {
        c.offers = vec![offer_to(&landing_url)];
    })
    .await;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();

    if let Some(curl) = tool("curl") {
        let out = Command::new(curl)
            .args(["-sS", "-m", "30", "-o", "/dev/null", "--cacert"])
            .arg(&ca)
            .args([
                "-A",
                UA,
                "-w",
                "%{http_code} %{http_version} %{redirect_url}",
            ])
            .arg(format!("{base}{CLICK}"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            said.starts_with("302 ") && said.contains(&format!(" {landing_url}/land?c=")),
            "{said}"
        );
    }
    if let Some(chromium) = tool("chromium") {
        // The test CA is not in Chromium's store: certificate errors are
        // ignored, the TLS handshake and the redirect are real.
        let profile = temp_dir("chromium-tls");
        let out = Command::new("timeout")
            .arg("60")
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .args([
                "--ignore-certificate-errors",
                "--disable-background-networking",
            ])
            .args([
                "--disable-quic",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg("--virtual-time-budget=10000")
            .arg(format!("--user-data-dir={}", profile.display()))
            // Headless Chromium's own UA is a crawler's to the rules.
            .arg(format!("--user-agent={UA}"))
            .arg("--dump-dom")
            .arg(format!("{base}{CLICK}"))
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(dom.contains("id=\"landed\""), "{dom}\n{err}");
    }
}
