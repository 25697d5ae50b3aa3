//! FraudGateLayer in a user's own axum app.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Extension, Router};
use fraudgate::Decision;
use fraudgate::http::layer::FraudGateLayer;
use fraudgate::score::Scorer;

use crate::helpers::*;

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_layer_passes_allowed_requests_with_the_decision_and_blocks_others() {
    let mock = MockRt::start().await;
    mock.on_ip("127.0.0.1", Reply::tags(""));
    let scorer = Scorer::new(&test_config(&mock)).unwrap();
    let app = Router::new()
        .route(
            "/go",
            get(|Extension(d): Extension<Decision>| async move {
                format!("ok {} {}", d.id, d.source.as_str())
            }),
        )
        .layer(FraudGateLayer::new(scorer));
    let base = serve(app).await;
    let http = http();

    let r = http
        .get(format!("{base}/go?offer_id=1&affiliate_id=2&utm=x"))
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("ok ") && body.ends_with(" upstream"),
        "{body}"
    );
    let p = mock.last_params("127.0.0.1").unwrap();
    assert!(p.contains(&("offer_id".into(), "1".into())));
    assert!(p.contains(&("event_type".into(), "click".into())));

    let r = http
        .get(format!("{base}/go?offer_id=1&affiliate_id=2"))
        .header("user-agent", "curl/8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(json(r).await["tags"], serde_json::json!(["crawler"]));

    let r = http
        .get(format!("{base}/go?affiliate_id=2"))
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "offer_id");
}

#[tokio::test]
async fn the_layer_takes_a_custom_extractor_and_blocked_response() {
    let mock = MockRt::start().await;
    mock.on_ip("127.0.0.1", Reply::tags("proxy"));
    let scorer = Scorer::new(&test_config(&mock)).unwrap();
    let layer = FraudGateLayer::new(scorer)
        .extractor(|parts| {
            // Offer from the path, affiliate from a header.
            let mut b = fraudgate::event::EventBuilder::new();
            b.set("offer_id", parts.uri.path().trim_start_matches("/o/"))?;
            let aff = parts
                .headers
                .get("x-aff")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            b.set("affiliate_id", aff)?;
            Ok(b)
        })
        .blocked_response(|d| {
            (
                axum::http::StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
                format!("no: {}", d.id),
            )
                .into_response()
        });
    let app = Router::new()
        .route("/o/{offer}", get(|| async { "passed" }))
        .layer(layer);
    let base = serve(app).await;
    let r = http()
        .get(format!("{base}/o/777"))
        .header("x-aff", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 451);
    let p = mock.last_params("127.0.0.1").unwrap();
    assert!(
        p.contains(&("offer_id".into(), "777".into()))
            && p.contains(&("affiliate_id".into(), "5".into()))
    );
}

use axum::response::IntoResponse;
