//! The gRPC door (Envoy/Istio ext_authz): a client built on the same
//! generated Envoy types sends Check requests; they get the decision
//! /v1/auth gives the same request.

use std::collections::HashMap;
use std::time::Duration;

use fraudgate::config::{Config, OnError};
use fraudgate::grpc::proto::auth::{
    AttributeContext, CheckRequest, CheckResponse, attribute_context,
    authorization_client::AuthorizationClient, check_response::HttpResponse,
};
use fraudgate::grpc::proto::envoy::config::core::v3 as core;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::*;

const CRAWLER: &str = "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)";

fn with_grpc(c: &mut Config) {
    c.doors.grpc.listen = Some("127.0.0.1:0".parse().unwrap());
}

async fn channel(app: &TestApp) -> Channel {
    let addr = app.grpc_addr.expect("doors.grpc.listen set");
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("gRPC door accepts")
}

/// What Envoy sends: the visitor's address, its request's headers and path.
fn check_request(source: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let address = core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: source.into(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(43210)),
            ..Default::default()
        })),
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: Some(address),
                ..Default::default()
            }),
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    host: "shop.example".into(),
                    scheme: "https".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<HashMap<_, _>>(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn check(app: &TestApp, req: CheckRequest) -> Result<CheckResponse, tonic::Status> {
    let mut client = AuthorizationClient::new(channel(app).await);
    client.check(req).await.map(|r| r.into_inner())
}

/// (gRPC status code, HTTP status for the visitor, headers, body).
fn answer(r: &CheckResponse) -> (i32, u16, HashMap<String, String>, String) {
    let code = r.status.as_ref().expect("status set").code;
    let pairs = |h: &[core::HeaderValueOption]| {
        h.iter()
            .map(|o| o.header.clone().unwrap())
            .map(|h| (h.key, h.value))
            .collect::<HashMap<_, _>>()
    };
    match r.http_response.as_ref().expect("http_response set") {
        HttpResponse::OkResponse(ok) => {
            let visitor = pairs(&ok.response_headers_to_add);
            assert_eq!(
                visitor.get("x-fraudgate-id"),
                pairs(&ok.headers).get("x-fraudgate-id")
            );
            (code, 200, pairs(&ok.headers), String::new())
        }
        HttpResponse::DeniedResponse(d) => (
            code,
            d.status.as_ref().unwrap().code as u16,
            pairs(&d.headers),
            d.body.clone(),
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_grpc_check_gets_the_decision_v1_auth_gives_the_same_request() {
    let app = spawn_app_with(|c| {
        with_grpc(c);
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.doors.grpc.denied_body = "blocked".into();
    })
    .await;
    app.mock
        .on_ip("198.51.100.66", Reply::tags("datacenter\nip"));
    app.mock.on_ip("198.51.100.67", Reply::tags(""));
    app.mock.on_ip("198.51.100.68", Reply::tags(""));
    let cases = [
        ("198.51.100.66", UA, "block", "a datacenter IP"),
        ("198.51.100.67", UA, "allow", "a clean one"),
        ("198.51.100.68", CRAWLER, "block", "a crawler's UA"),
    ];
    for (ip, ua, want, what) in cases {
        let path = "/landing?offer_id=77&affiliate_id=5";
        let http = app
            .http
            .get(app.url("/v1/auth"))
            .header("x-forwarded-for", ip)
            .header("x-original-uri", path)
            .header("user-agent", ua)
            .send()
            .await
            .unwrap();
        let grpc = check(&app, check_request(ip, path, &[("user-agent", ua)]))
            .await
            .unwrap();
        let (code, status, headers, body) = answer(&grpc);
        assert_eq!(headers["x-fraudgate-decision"], want, "{what}");
        assert_eq!(
            http.headers()["x-fraudgate-decision"],
            want,
            "{what} on /v1/auth"
        );
        assert_eq!(status, http.status().as_u16(), "{what}");
        for h in ["x-fraudgate-tags", "x-fraudgate-reason"] {
            assert_eq!(
                headers[h],
                http.headers()[h].to_str().unwrap(),
                "{what}: {h}"
            );
        }
        assert_eq!(headers["x-fraudgate-id"].len(), 36);
        assert_ne!(
            headers["x-fraudgate-id"],
            http.headers()["x-fraudgate-id"].to_str().unwrap()
        );
        match want {
            "block" => assert_eq!((code, status, body.as_str()), (7, 403, "blocked"), "{what}"),
            _ => assert_eq!((code, status), (0, 200), "{what}"),
        }
    }
    let p = app.mock.last_params("198.51.100.67").unwrap();
    assert!(p.contains(&("offer_id".into(), "77".into())), "{p:?}");
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "fraudgate_grpc_checks_total",
            &[("outcome", "denied")]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            "fraudgate_grpc_checks_total",
            &[("outcome", "ok")]
        ),
        1.0
    );
    assert!(sample(&metrics, "fraudgate_decisions_total", &[("door", "grpc")]) >= 3.0);
}

#[tokio::test]
async fn the_grpc_door_fails_open_or_closed_as_configured_with_the_upstream_down() {
    let dead = format!("http://127.0.0.1:{}/", free_port());
    for (mode, want) in [(OnError::Allow, 0), (OnError::Block, 7)] {
        let dead = dead.clone();
        let app = spawn_app_with(move |c| {
            with_grpc(c);
            c.upstream.url = dead;
            c.doors.grpc.on_upstream_error = mode;
        })
        .await;
        let r = check(
            &app,
            check_request("198.51.100.20", "/", &[("user-agent", UA)]),
        )
        .await
        .unwrap();
        let (code, _, headers, _) = answer(&r);
        assert_eq!(code, want, "{mode:?}");
        assert_eq!(headers["x-fraudgate-source"], "fallback", "{mode:?}");
    }
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_caller() {
    // Untrusted caller: the source address Envoy saw, whatever XFF says.
    let app = spawn_app_with(with_grpc).await;
    let req = check_request(
        "198.51.100.7",
        "/",
        &[("x-forwarded-for", "198.51.100.99"), ("user-agent", UA)],
    );
    check(&app, req).await.unwrap();
    assert_eq!(app.mock.calls_for("198.51.100.7"), 1);
    assert_eq!(app.mock.calls_for("198.51.100.99"), 0);

    // Trusted caller whose downstream is a trusted load balancer.
    let app = spawn_app_with(|c| {
        with_grpc(c);
        c.server.trusted_proxies = vec!["127.0.0.1/32".into(), "10.0.0.0/8".into()];
    })
    .await;
    let req = check_request(
        "10.0.0.5",
        "/",
        &[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.8"),
            ("user-agent", UA),
        ],
    );
    check(&app, req).await.unwrap();
    assert_eq!(app.mock.calls_for("198.51.100.8"), 1);
    assert_eq!(
        app.mock.calls_for("10.0.0.5") + app.mock.calls_for("6.6.6.6"),
        0
    );
}

#[tokio::test]
async fn a_check_without_a_source_address_is_invalid_argument() {
    let app = spawn_app_with(|c| {
        with_grpc(c);
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let err = check(&app, CheckRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("source"), "{}", err.message());
    let req = check_request("not an ip", "/", &[]);
    assert_eq!(
        check(&app, req).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert!(!err.message().contains(UPSTREAM_KEY));
    assert_eq!(app.mock.calls(), 0);
}

/// With RT slower than the caller's grpc-timeout, the door's fail mode
/// answers `doors.grpc.timeout_margin_ms` before the caller gives up:
/// never a CANCELLED or DEADLINE_EXCEEDED racing it.
#[tokio::test]
async fn a_slow_upstream_gets_the_fail_mode_answer_before_grpc_timeout() {
    let app = spawn_app_with(|c| {
        with_grpc(c);
        c.doors.grpc.on_upstream_error = OnError::Allow;
    })
    .await;
    app.mock.set_default(Reply::delayed(400, Reply::tags("")));
    let mut client = AuthorizationClient::new(channel(&app).await);
    for i in 0..10 {
        let mut req = tonic::Request::new(check_request(
            &format!("198.51.100.{}", 100 + i),
            "/",
            &[("user-agent", UA)],
        ));
        req.set_timeout(Duration::from_millis(60));
        let r = client
            .check(req)
            .await
            .expect("answered before the timeout");
        let (code, _, headers, _) = answer(&r.into_inner());
        assert_eq!(code, 0);
        assert_eq!(headers["x-fraudgate-source"], "fallback");
    }
}

/// A Check's headers are the visitor's own (Envoy forwards them): an
/// X-Fraudgate-Deadline-Ms of 0 would buy the fail-open fallback and an
/// X-Fraudgate-Event-Type would pick the event, so neither is believed,
/// even from a trusted Envoy.
#[tokio::test]
async fn visitor_sent_fraudgate_headers_in_a_check_are_not_believed() {
    let app = spawn_app_with(|c| {
        with_grpc(c);
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let req = check_request(
        "198.51.100.3",
        "/",
        &[
            ("user-agent", UA),
            ("x-fraudgate-deadline-ms", "0"),
            ("x-fraudgate-event-type", "conversion"),
        ],
    );
    let r = check(&app, req).await.unwrap();
    let (code, status, headers, _) = answer(&r);
    assert_eq!((code, status), (0, 200));
    assert_eq!(headers["x-fraudgate-source"], "upstream");
    assert_eq!(app.mock.calls_for("198.51.100.3"), 1);
    let p = app.mock.last_params("198.51.100.3").unwrap();
    assert!(p.contains(&("event_type".into(), "click".into())), "{p:?}");
}

#[tokio::test]
async fn grpc_health_is_serving_then_not_serving_while_draining_and_checks_finish() {
    let mut app = spawn_app_with(|c| {
        with_grpc(c);
        c.server.drain_delay_ms = 1500;
    })
    .await;
    app.mock.set_default(Reply::delayed(300, Reply::tags("")));
    let mut health = HealthClient::new(channel(&app).await);
    for service in ["", fraudgate::grpc::SERVICE] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(
            r.into_inner().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    // A Check in flight when shutdown starts is still answered.
    let ch = channel(&app).await;
    let in_flight = tokio::spawn(async move {
        AuthorizationClient::new(ch)
            .check(check_request("198.51.100.30", "/", &[("user-agent", UA)]))
            .await
    });
    eventually(Duration::from_secs(5), || async {
        (app.mock.calls() > 0).then_some(())
    })
    .await;
    app.shutdown();
    eventually(Duration::from_secs(5), || {
        let mut health = health.clone();
        async move {
            let r = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()?;
            (r.into_inner().status() == ServingStatus::NotServing).then_some(())
        }
    })
    .await;
    let r = in_flight.await.unwrap().unwrap().into_inner();
    assert_eq!(r.status.unwrap().code, 0);
    let stopped = app.stopped.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("stops within the drain delay and shutdown timeout")
        .unwrap()
        .unwrap();
}
