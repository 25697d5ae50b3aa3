//! Certificate rotation on a live TLS listener: new files are picked up
//! with no failed request, SIGHUP alone picks them up when polling is off,
//! a bad pair keeps the old certificate, and an HTTP/2 connection is told
//! GOAWAY when shutdown's drain starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::binary::{listening_port, spawn_binary};
use crate::helpers::*;
use crate::tls::{Pki, install, metrics_over_tls, presented, spawn_tls_app, tls_client};

#[tokio::test]
async fn a_certificate_swap_is_picked_up_with_no_failed_request() {
    let pki = Pki::new("swap");
    let (old, new) = (pki.leaf(), pki.leaf());
    let (app, base, dir) = spawn_tls_app(&old, |_| {}).await;
    assert_eq!(presented(app.port, &[&pki.ca_pem]).await, old.der);
    // Clients that keep a connection and clients that make one a request
    // (a handshake each), until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for fresh in [false, true, false, true] {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .user_agent(UA)
            .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()]);
        if fresh {
            b = b.pool_max_idle_per_host(0);
        }
        let http = b.build().unwrap();
        let url = format!("{base}/v1/check?{}", query("203.0.113.20", &[]));
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    eventually(Duration::from_secs(5), || async {
        (ok.load(Ordering::Relaxed) > 20).then_some(())
    })
    .await;

    install(&dir, &new);
    eventually(Duration::from_secs(10), || async {
        (presented(app.port, &[&pki.ca_pem]).await == new.der).then_some(())
    })
    .await;
    let at_swap = ok.load(Ordering::Relaxed);
    eventually(Duration::from_secs(5), || async {
        (ok.load(Ordering::Relaxed) > at_swap + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");
    let m = metrics_over_tls(&tls_client(&pki.ca_pem, false), &base).await;
    assert!(sample(&m, "fraudgate_tls_cert_reloads_total", &[("outcome", "ok")]) >= 1.0);
}

/// The binary as deployed with `reload_interval_s = 0`: a certificate
/// manager replaces the files, then sends SIGHUP; only then do new
/// handshakes get the new certificate.
#[tokio::test]
async fn with_polling_off_sighup_makes_the_binary_serve_the_new_certificate() {
    let pki = Pki::new("sighup");
    let (a, b) = (pki.leaf(), pki.leaf());
    let dir = temp_dir("tls-hup");
    let (cert, key) = install(&dir, &a);
    let p = spawn_binary(&[
        ("FRAUDGATE_SERVER__TLS__CERT_FILE", cert.to_str().unwrap()),
        ("FRAUDGATE_SERVER__TLS__KEY_FILE", key.to_str().unwrap()),
        ("FRAUDGATE_SERVER__TLS__RELOAD_INTERVAL_S", "0"),
        ("FRAUDGATE_DECISION_LOG__ENABLED", "false"),
    ]);
    let port = listening_port(&p).await;
    assert_eq!(presented(port, &[&pki.ca_pem]).await, a.der);

    install(&dir, &b);
    // Polling is off: only SIGHUP can pick the change up. (A negative
    // check: this short window is the time it is given to go wrong.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        presented(port, &[&pki.ca_pem]).await,
        a.der,
        "before SIGHUP"
    );
    p.signal("HUP");
    eventually(Duration::from_secs(10), || async {
        (presented(port, &[&pki.ca_pem]).await == b.der).then_some(())
    })
    .await;

    let base = format!("https://127.0.0.1:{port}");
    let m = metrics_over_tls(&tls_client(&pki.ca_pem, false), &base).await;
    assert_eq!(
        sample(&m, "fraudgate_tls_cert_reloads_total", &[("outcome", "ok")]),
        1.0,
        "one reload, the SIGHUP's"
    );
    let out = p.out.lock().unwrap().clone();
    assert!(out.contains("TLS certificate loaded"), "{out}");
}

#[tokio::test]
async fn a_bad_certificate_on_reload_keeps_the_old_one() {
    let pki = Pki::new("bad-reload");
    let (old, other, new) = (pki.leaf(), pki.leaf(), pki.leaf());
    let (app, base, dir) = spawn_tls_app(&old, |_| {}).await;
    let client = tls_client(&pki.ca_pem, false);
    let errors = || async {
        let m = metrics_over_tls(&client, &base).await;
        sample(
            &m,
            "fraudgate_tls_cert_reloads_total",
            &[("outcome", "error")],
        )
    };

    // A key that belongs to another certificate, then a truncated PEM.
    write_file(&dir.join("key.pem"), &other.key_pem);
    eventually(Duration::from_secs(10), || async {
        (errors().await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(presented(app.port, &[&pki.ca_pem]).await, old.der);
    write_file(&dir.join("key.pem"), &old.key_pem);
    write_file(
        &dir.join("cert.pem"),
        &old.cert_pem[..old.cert_pem.len() / 2],
    );
    eventually(Duration::from_secs(10), || async {
        (errors().await >= 2.0).then_some(())
    })
    .await;

    assert_eq!(presented(app.port, &[&pki.ca_pem]).await, old.der);
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A good pair afterwards is served.
    install(&dir, &new);
    eventually(Duration::from_secs(10), || async {
        (presented(app.port, &[&pki.ca_pem]).await == new.der).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_http2_connection_is_told_goaway_when_the_drain_starts() {
    let pki = Pki::new("goaway");
    let (mut app, base, _dir) = spawn_tls_app(&pki.leaf(), |c| {
        c.server.drain_delay_ms = 3000;
    })
    .await;
    // One HTTP/2 connection, held by hyper's client so its end is seen.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let tls = tls_connector(&pki.ca_pem)
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = |path: &str| {
        hyper::Request::get(format!("{base}{path}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    assert_eq!(
        send.send_request(req("/healthz")).await.unwrap().status(),
        200
    );

    let started = std::time::Instant::now();
    app.shutdown();
    // The connection ends (GOAWAY, nothing in flight) while the drain
    // still runs: well before drain_delay_ms.
    tokio::time::timeout(Duration::from_secs(2), conn)
        .await
        .expect("GOAWAY ends the connection during the drain")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    // New connections are still served during the drain.
    let r = tls_client(&pki.ca_pem, true)
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

fn tls_connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    fraudgate::upstream::install_crypto_provider();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
