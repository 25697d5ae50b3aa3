//! A tiny click-redirect tracker built on `FraudGateLayer`: every click is
//! scored before the handler runs; blocked clicks get a 403, allowed ones
//! are redirected with fraudgate's decision id as the click id.
//!
//! cargo run --example redirect_tracker
//! curl -i 'http://127.0.0.1:3000/go/shoes?offer_id=1&affiliate_id=2&aff_sub1=banner'
//! curl -i -A 'curl/8' 'http://127.0.0.1:3000/go/shoes?offer_id=1&affiliate_id=2'   # crawler: 403

use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use fraudgate::http::layer::FraudGateLayer;
use fraudgate::score::Scorer;
use fraudgate::{Config, Decision};

async fn go(Path(campaign): Path<String>, Extension(d): Extension<Decision>) -> Response {
    let target = match campaign.as_str() {
        "shoes" => "https://shop.example/shoes",
        "hats" => "https://shop.example/hats",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let location = format!("{target}?clickid={}", d.id);
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response()
}

#[tokio::main]
async fn main() {
    // Embedded defaults plus FRAUDGATE_* env: works without an RT key
    // (local rules decide), uses RT when FRAUDGATE_UPSTREAM__KEY is set.
    let config = Config::load(None).expect("config");
    let scorer = Scorer::new(&config).expect("scorer");
    let app = Router::new()
        .route("/go/{campaign}", get(go))
        .layer(FraudGateLayer::new(scorer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await
        .unwrap();
    println!("redirect tracker on http://127.0.0.1:3000/go/shoes");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .unwrap();
}
