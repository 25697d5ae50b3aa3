//! Property-based fuzzing of everything that parses untrusted input:
//! RT verdict bodies, events from queries and JSON, OpenRTB mapping,
//! forwarding headers. Bounded (PROPTEST_CASES, default 512 a property) so
//! it runs in CI; a failing input proptest finds is saved under
//! proptest-regressions/ and replayed first on every later run.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};
use fraudgate::config::Config;
use fraudgate::event::{DEFAULT_MAX_LEN, EventBuilder, Opt};
use fraudgate::http::client_ip::TrustedProxies;
use fraudgate::http::openrtb::map_bid_request;
use fraudgate::verdict::{MAX_TAG_LEN, Tag, Tags};
use proptest::prelude::*;
use serde_json::Value;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        ..ProptestConfig::default()
    }
}

/// Arbitrary JSON, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        "[0-9a-f:.]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("ip".to_string()),
                    Just("ua".to_string()),
                    Just("device".to_string()),
                    Just("site".to_string()),
                    Just("app".to_string()),
                    Just("geo".to_string()),
                    Just("country".to_string()),
                    Just("id".to_string()),
                    Just("publisher".to_string()),
                    Just("ifa".to_string()),
                    Just("os".to_string()),
                    ".{0,8}".prop_map(String::from)
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn verdict_parsing_never_panics_and_round_trips(body in ".{0,300}") {
        if let Ok(tags) = Tags::parse(&body) {
            let mut out = String::new();
            tags.write_rt(&mut out);
            prop_assert_eq!(Tags::parse(&out).unwrap(), tags.clone());
            prop_assert!(tags.iter().all(|t| t.len() <= MAX_TAG_LEN));
        }
    }

    #[test]
    fn documented_tags_parse_whatever_the_case_spacing_and_line_ends(
        picks in prop::collection::vec((0usize..10, any::<bool>(), "[ \t]{0,3}", prop_oneof![Just("\n"), Just("\r\n")]), 0..12)
    ) {
        let mut body = String::new();
        let mut want = Vec::new();
        for (i, upper, pad, nl) in &picks {
            let t = Tag::ALL[*i];
            want.push(t);
            let name = if *upper { t.as_str().to_uppercase() } else { t.as_str().to_string() };
            body.push_str(&format!("{pad}{name}{pad}{nl}"));
        }
        prop_assert_eq!(Tags::parse(&body).unwrap(), Tags::from_known(&want));
    }

    #[test]
    fn events_from_any_query_never_panic_and_respect_rt_lengths(q in ".{0,600}", ua in ".{0,400}", sub in ".{0,400}") {
        let _ = EventBuilder::from_query(&q).and_then(EventBuilder::build);
        let full = format!(
            "event_type=click&ip=1.2.3.4&affiliate_id=1&offer_id=2&ua={}&aff_sub1={}&refer={}&country_code={}",
            form_urlencoded::byte_serialize(ua.as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(sub.as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(sub.repeat(4).as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(sub.as_bytes()).collect::<String>(),
        );
        let e = EventBuilder::from_query(&full).unwrap().build().unwrap();
        prop_assert!(e.ua.chars().count() <= DEFAULT_MAX_LEN);
        for (o, v) in e.optional() {
            prop_assert!(v.chars().count() <= o.max_len(), "{} too long", o.name());
        }
        prop_assert!(e.get(Opt::CountryCode).is_none_or(|c| c.chars().count() <= 2));
    }

    #[test]
    fn events_from_any_json_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), v in json()) {
        let _ = EventBuilder::from_json(&bytes).and_then(EventBuilder::build);
        let _ = EventBuilder::from_json(v.to_string().as_bytes()).and_then(EventBuilder::build);
        let _ = EventBuilder::from_json_value(&v).and_then(EventBuilder::build);
    }

    #[test]
    fn openrtb_mapping_never_panics(v in json(), device in json(), site in json(), ip in "[0-9a-f:.]{0,45}") {
        let door = Config::default().doors.openrtb;
        let _ = map_bid_request(&v, &door);
        let req = serde_json::json!({"id": "x", "device": device, "site": site});
        let _ = map_bid_request(&req, &door);
        let mut with_ip = req.clone();
        with_ip["device"] = serde_json::json!({"ip": ip, "geo": {"country": "USA"}});
        if let Ok(m) = map_bid_request(&with_ip, &door) {
            prop_assert_eq!(m.event.ip, ip.trim().parse::<IpAddr>().unwrap().to_canonical());
        }
    }

    #[test]
    fn forwarding_headers_never_panic_and_never_invent_an_address(
        xff in "[0-9a-f:., \\[\\]]{0,80}",
        real in "[0-9a-f:.]{0,40}",
        trusted_peer in any::<bool>(),
    ) {
        let t = TrustedProxies::new(&["127.0.0.0/8".into(), "10.0.0.0/8".into()], "x-forwarded-for").unwrap();
        let peer: IpAddr = if trusted_peer { "127.0.0.1".parse().unwrap() } else { "203.0.113.1".parse().unwrap() };
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&xff) { h.insert("x-forwarded-for", v); }
        if let Ok(v) = HeaderValue::from_str(&real) { h.insert("x-real-ip", v); }
        let got = t.client_ip(peer, &h);
        if !trusted_peer {
            prop_assert_eq!(got, peer);
        } else {
            // The peer, or an address that the headers spelled out.
            let plain = got.to_string();
            prop_assert!(got == peer || xff.contains(&plain) || real.contains(&plain) || xff.contains(&format!("[{plain}]")),
                "{got} from xff={xff:?} real={real:?}");
        }
    }

    #[test]
    fn json_depth_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..500)) {
        let d = fraudgate::http::body::json_depth(&bytes);
        prop_assert!(d <= bytes.len());
    }
}
