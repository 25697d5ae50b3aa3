//! Load on the gRPC door (`doors.grpc.listen`): CONCURRENCY tasks send
//! Envoy `ext_authz` Checks back to back for SECONDS, all for one visitor
//! (one source IP and User-Agent), so after the first Check every one is a
//! verdict-cache hit: this measures the door's own cost (HTTP/2, protobuf,
//! the event, the decision), as wrk on `/v1/auth` measures the HTTP door's.
//!
//! cargo run --release --example grpc_load -- 127.0.0.1:18191 64 10 [CONNECTIONS]
//!
//! The tasks share CONNECTIONS HTTP/2 connections (default 2: an Envoy
//! with two worker threads holds one each). Prints requests/s and the
//! latency of each Check (p50, p99, max). `scripts/grpcbench.sh` starts
//! the binary and a mock RT and runs it next to wrk on `/v1/auth`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fraudgate::grpc::proto::auth::{
    AttributeContext, CheckRequest, attribute_context, authorization_client::AuthorizationClient,
    check_response::HttpResponse,
};
use fraudgate::grpc::proto::envoy::config::core::v3 as core;
use tonic::transport::{Channel, Endpoint};

const SOURCE_IP: &str = "203.0.113.9";
const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, what: &str| -> Option<u64> {
        args.get(i).map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{what}: a number, not {v:?}"))
        })
    };
    let usage = "usage: grpc_load ADDR CONCURRENCY SECONDS [CONNECTIONS]";
    let addr = args.first().expect(usage);
    let concurrency = arg(1, "CONCURRENCY").expect(usage).max(1) as usize;
    let seconds = arg(2, "SECONDS").expect(usage);
    let connections = arg(3, "CONNECTIONS").unwrap_or(2).max(1) as usize;
    let url = if addr.contains("://") {
        addr.clone()
    } else {
        format!("http://{addr}")
    };

    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let ch = Endpoint::from_shared(url.clone())
            .expect("a gRPC address")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        channels.push(ch);
    }
    let request = check_request();

    // The warm-up: the first Check asks the upstream and fills the cache.
    let first = AuthorizationClient::new(channels[0].clone())
        .check(request.clone())
        .await
        .expect("the first Check")
        .into_inner();
    let decision = match first.http_response {
        Some(HttpResponse::OkResponse(_)) => "allowed (OkResponse)",
        Some(HttpResponse::DeniedResponse(_)) => "blocked (DeniedResponse)",
        _ => "no http_response",
    };
    println!(
        "warm-up Check: {decision}; {concurrency} tasks on {connections} connections for {seconds} s"
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let channel: Channel = channels[i % connections].clone();
            let request = request.clone();
            tokio::spawn(async move { drive(channel, request, deadline).await })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0u64);
    for t in tasks {
        let (l, e) = t.await.expect("a load task");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();

    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "checks {} errors {errors} in {elapsed:.2} s: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        at(0.50),
        at(0.99),
        at(1.0),
    );
}

/// Checks back to back until `deadline`: each answered Check's latency,
/// and how many failed.
async fn drive(channel: Channel, request: CheckRequest, deadline: Instant) -> (Vec<Duration>, u64) {
    let mut client = AuthorizationClient::new(channel);
    let (mut latencies, mut errors) = (Vec::with_capacity(1 << 16), 0);
    loop {
        let t = Instant::now();
        if t >= deadline {
            return (latencies, errors);
        }
        match client.check(request.clone()).await {
            Ok(_) => latencies.push(t.elapsed()),
            Err(_) => errors += 1,
        }
    }
}

/// What Envoy sends for one browser request: the visitor's address, its
/// headers and path (offer and affiliate in the query, as `/v1/auth`
/// reads them).
fn check_request() -> CheckRequest {
    let address = core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: SOURCE_IP.into(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(43210)),
            ..Default::default()
        })),
    };
    let headers = HashMap::from([("user-agent".to_string(), BROWSER_UA.to_string())]);
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: Some(address),
                ..Default::default()
            }),
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "GET".into(),
                    path: "/?offer_id=2&affiliate_id=1".into(),
                    host: "shop.example".into(),
                    scheme: "https".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}
