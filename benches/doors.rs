//! Each front door's whole in-process path on a cache hit: the service
//! every connection calls (URI limit, load shedding, routing, middleware,
//! client keys, parsing, scoring, the decision log's record, rendering),
//! without the socket. `/healthz` is the floor every door shares.
//! The decision log is on, as by default. Figures: docs/performance.md.
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, header};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fraudgate::config::{Config, OfferConfig, Secret};
use fraudgate::http::AppService;
use fraudgate::startup::Application;

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
const UA_Q: &str = "Mozilla%2F5.0%20(Windows%20NT%2010.0%3B%20Win64%3B%20x64)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F120.0%20Safari%2F537.36";
const IP: &str = "203.0.113.9";

/// One door's request, built afresh per call (a request is consumed).
struct Door {
    id: &'static str,
    method: Method,
    uri: String,
    body: Option<String>,
    browser: bool,
}

impl Door {
    fn request(&self) -> Request<Body> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.as_str());
        if self.browser {
            b = b.header(header::USER_AGENT, UA);
        }
        match &self.body {
            Some(json) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json.clone())),
            None => b.body(Body::empty()),
        }
        .unwrap()
    }
}

fn doors() -> Vec<Door> {
    let one = format!("event_type=click&ip={IP}&ua={UA_Q}&key=k&at=1&affiliate_id=1&offer_id=2");
    let event = format!(
        r#"{{"event_type":"click","ip":"{IP}","ua":"{UA}","affiliate_id":"1","offer_id":"2"}}"#
    );
    let batch = format!("[{}]", [event.as_str(); 10].join(","));
    let bid = format!(
        r#"{{"id":"r1","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"site":{{"id":"2","publisher":{{"id":"1"}}}},"device":{{"ip":"{IP}","ua":"{UA}"}},"tmax":120}}"#
    );
    let get = |id, uri: String, browser| Door {
        id,
        method: Method::GET,
        uri,
        body: None,
        browser,
    };
    let post = |id, uri: &str, body: String| Door {
        id,
        method: Method::POST,
        uri: uri.to_owned(),
        body: Some(body),
        browser: false,
    };
    vec![
        get("healthz", "/healthz".into(), false),
        get("check_get", format!("/v1/check?{one}"), false),
        post("check_post", "/v1/check", event),
        get("rt_dropin", format!("/?{one}"), false),
        get("auth", "/v1/auth?offer_id=2&affiliate_id=1".into(), true),
        get("click", "/click?offer_id=2&affiliate_id=1".into(), true),
        get("imp", "/imp?offer_id=2&affiliate_id=1".into(), true),
        post("openrtb", "/v1/openrtb", bid),
        post("batch_10", "/v1/check/batch", batch),
    ]
}

/// A FraudScore RT stand-in that finds every event clean.
async fn clean_rt() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "" }));
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

fn door_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("fraudgate-bench-doors-{}", std::process::id()));
    let service: AppService = rt.block_on(async {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.upstream.url = format!("http://{}/", clean_rt().await);
        config.upstream.key = Secret::new("bench");
        config.decision_log.path = dir.to_string_lossy().into_owned();
        config.offers.push(OfferConfig {
            id: "2".into(),
            url: "https://advertiser.example/landing?clickid={click_id}".into(),
            fallback_url: None,
        });
        let app = Application::build(config).await.unwrap();
        fraudgate::http::service(app.state().clone())
    });
    let peer: SocketAddr = format!("{IP}:40000").parse().unwrap();
    let doors = doors();
    // Each door's first call is the miss that fills the cache.
    for d in &doors {
        let r = rt
            .block_on(service.clone().call(d.request(), peer))
            .unwrap();
        assert!(
            r.status().is_success() || r.status().is_redirection(),
            "{}: {}",
            d.id,
            r.status()
        );
    }
    let mut g = c.benchmark_group("door");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    for d in &doors {
        g.bench_function(format!("{}/cache_hit", d.id), |b| {
            b.to_async(&rt).iter(|| service.call(d.request(), peer))
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, door_benches);
criterion_main!(benches);
