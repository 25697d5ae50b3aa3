use super::*;

#[test]
fn params_parse_and_bad_ones_are_named() {
    let q = Query::from_params(
        Events::Click,
        "field=ip,ua&field=affiliate_id&sort=ip_desc&page=2&page_size=10&tz=Europe%2FBerlin",
        false,
    )
    .unwrap();
    assert_eq!(q.columns(), ["ip", "ua", "affiliate_id"]);
    assert_eq!(q.sort, [("ip".to_string(), true)]);
    for (raw, field) in [
        ("field=nope", "field"),
        ("page_size=1000001", "page_size"),
        ("page=0", "page"),
        ("tz=Mars%2FOlympus", "tz"),
        ("sort=ip", "sort"),
        ("sort=ua_asc&field=ip", "sort"),
        ("filter=%5B", "filter"),
        ("bogus=1", "bogus"),
        ("page=1&page=2", "page"),
    ] {
        let e = Query::from_params(Events::All, raw, false).unwrap_err();
        assert_eq!(e.field, field, "{raw}: {e}");
    }
    let g = Query::from_params(
        Events::All,
        "group=affiliate_id&group=date&field=count,block_rate,uniq_ip,tag_proxy&having=%5B%22count_ge%22%2C10%5D",
        true,
    )
    .unwrap();
    assert_eq!(
        g.columns(),
        [
            "affiliate_id",
            "date",
            "count",
            "block_rate",
            "uniq_ip",
            "tag_proxy"
        ]
    );
    assert_eq!(
        Query::from_params(Events::All, "group=x", true)
            .unwrap_err()
            .field,
        "group"
    );
    assert_eq!(
        Query::from_params(Events::All, "group=ip&field=tag_nope", true)
            .unwrap_err()
            .field,
        "field"
    );
}

#[test]
fn buckets_are_local_and_dst_correct() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    // 2026-03-29 01:30 UTC = 03:30 CEST (after the spring change).
    let ms = jiff::Timestamp::from_second(1_774_747_800)
        .unwrap()
        .as_millisecond();
    assert_eq!(bucket(ms, TimeUnit::Hour, &berlin), "2026-03-29 03:00");
    assert_eq!(bucket(ms, TimeUnit::Date, &TimeZone::UTC), "2026-03-29");
    assert_eq!(bucket(ms, TimeUnit::Week, &berlin), "2026-03-23");
    assert_eq!(bucket(ms, TimeUnit::Month, &berlin), "2026-03");
    // Local midnight of a DST day.
    let start = local_ms("2026-03-29", &berlin, "filter").unwrap();
    assert_eq!(start, 1_774_738_800_000, "2026-03-28 23:00 UTC");
    assert!(local_ms("29/03/2026", &berlin, "filter").is_err());
}

/// The query side names the decision log's columns by hand (fields,
/// report groups, rollup dimensions): each name must be a column the
/// stores keep, so a renamed column cannot leave a query naming the old.
#[test]
fn every_column_the_query_side_names_is_one_the_log_keeps() {
    use crate::decision_log::columns::NAMES;
    use crate::decision_log::sqlite::ROLLUP_DIMS;
    for f in FIELDS.iter().chain(DATA_API_FIELDS) {
        match (f.kind, f.column) {
            (Kind::Time(_), _) => {}
            (_, Column::Own(c)) => assert!(NAMES.contains(&c), "{}: {c}", f.name),
            (_, Column::Extra(_)) => assert!(NAMES.contains(&"extra")),
        }
    }
    for d in ROLLUP_DIMS {
        assert!(NAMES.contains(&d), "rollup dimension {d}");
    }
}

/// A lower bound on the event's time bounds the decision's too (an event
/// time is at most a day ahead of its decision): the store seeks on its
/// time key; an upper bound on the event's time cannot (late postbacks).
#[test]
fn a_lower_datetime_bound_seeks_on_the_decision_time() {
    let f = |e: &str| form_urlencoded::byte_serialize(e.as_bytes()).collect::<String>();
    let sql = |filter: &str| {
        let q = Query::from_params(
            Events::All,
            &format!("field=id&filter={}", f(filter)),
            false,
        )
        .unwrap();
        super::sqlite::build(&q, &["d_20261206".into()], false).unwrap()
    };
    let ge = sql(r#"["datetime_ge","2026-12-06 10:00:00"]"#);
    assert!(ge.text.contains("at >= 1796551200"), "{}", ge.text);
    assert!(
        ge.text.contains("ts >= 1796464800000"),
        "a day earlier: {}",
        ge.text
    );
    assert!(ge.text.contains("_k >="), "the time key: {}", ge.text);
    let le = sql(r#"["datetime_le","2026-12-06 10:00:00"]"#);
    assert!(!le.text.contains("ts >="), "{}", le.text);
}
