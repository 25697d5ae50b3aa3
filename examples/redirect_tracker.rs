//! A tiny click-redirect tracker built on `FraudGateLayer`: every click is
//! scored before the handler runs; blocked clicks get a 403, allowed ones
//! are redirected with fraudgate's decision id as the click id.
//!
//! ```text
//! cargo run --example redirect_tracker -- 3000      # the port (or $PORT; default 3000)
//! # A browser's click: 302 to the landing page, clickid = the decision id.
//! curl -i -A 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36' \
//!   'http://127.0.0.1:3000/go/shoes?offer_id=1&affiliate_id=2&aff_sub1=banner'
//! # curl's own User-Agent is a crawler's (local rule `crawler`): 403.
//! curl -i 'http://127.0.0.1:3000/go/shoes?offer_id=1&affiliate_id=2'
//! ```

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
    let port: u16 = match std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
    {
        Some(p) => p.parse().expect("the port: a number from 0 to 65535"),
        None => 3000,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free");
    let addr = listener.local_addr().unwrap();
    println!("redirect tracker on http://{addr}/go/shoes");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .unwrap();
}
