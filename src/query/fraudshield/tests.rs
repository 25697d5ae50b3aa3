//! Requests as reference 001 and the PHP SDK write them, parsed; the
//! interval report's buckets.

use std::collections::BTreeMap;

use super::params::{Report, Request};
use super::trackers::Trackers;
use super::{interval, pairs, rate, terms};
use crate::query::QueryError;

fn parse(report: Report, query: &str) -> Result<Request, QueryError> {
    let map = BTreeMap::from([("adserver-eu".to_owned(), 81)]);
    Request::parse(report, &pairs(query, None)?, &Trackers::new(&map))
}

const DATES: &str = "date_start=2017-05-05&date_end=2017-06-05&timezone=UTC";

#[test]
fn the_docs_fraud_request_with_two_filters_parses() {
    let r = parse(
        Report::Fraud,
        &format!(
            "tracker_id=81&group[]=sub_id&group[]=partner&search_fields[]={{\"term\":\"min_conversions\",\"query\":50}}&search_fields[]={{\"term\":\"max_rejection_rate\",\"query\":30}}&{DATES}&user_id=xyz&api_token=T"
        ),
    )
    .unwrap();
    assert_eq!(r.groups, ["sub_id", "partner"]);
    assert_eq!(r.tracker, Some(81));
    assert_eq!(r.having.len(), 2);
    assert_eq!(r.user_id.as_deref(), Some("xyz"));
    assert!(
        r.echo.iter().all(|(k, _)| k != "api_token"),
        "the key is never echoed"
    );
}

#[test]
fn the_php_sdk_forms_parse_indexed_arrays_booleans_and_sorting() {
    let r = parse(
        Report::Goal,
        &format!(
            "tracker_id=81&group%5B0%5D=product&group%5B1%5D=affiliate&search_fields%5B0%5D=%7B%22term%22%3A%22min_conversions%22%2C%22query%22%3A5%7D&{DATES}&sorting%5Brejected%5D=desc"
        ),
    )
    .unwrap();
    assert_eq!(r.groups, ["product", "affiliate"]);
    assert_eq!(r.sorting, [("rejected".to_owned(), true)]);
    let r = parse(
        Report::Conversion,
        &format!("click=0&goal=1&tracker_id=81&count=50&page=1&{DATES}"),
    )
    .unwrap();
    assert!(!r.click && r.goal);
    assert_eq!((r.count, r.page), (50, 1));
}

#[test]
fn a_missing_mandatory_parameter_is_named() {
    for (report, query, field) in [
        (Report::Fraud, DATES.to_owned(), "tracker_id"),
        (
            Report::Conversion,
            format!("tracker_id=81&{DATES}"),
            "count",
        ),
        (
            Report::Scroll,
            "tracker_id=81&count=5&timezone=UTC".to_owned(),
            "date_start",
        ),
        (
            Report::Conversion,
            format!("tracker_id=81&count=5&{DATES}"),
            "page",
        ),
        (Report::Goal, format!("tracker_id=81&{DATES}"), "group"),
        (Report::Global, DATES.to_owned(), "group"),
        (
            Report::Interval,
            format!("group[]=tracker_id&{DATES}"),
            "time_interval",
        ),
        (
            Report::Fraud,
            "tracker_id=81&date_start=2017-05-05&date_end=2017-05-06".to_owned(),
            "timezone",
        ),
    ] {
        let e = parse(report, &query).unwrap_err();
        assert_eq!(e.field, field, "{report:?} {query}: {e}");
    }
}

#[test]
fn what_a_report_does_not_take_is_named() {
    for (report, query, field) in [
        (
            Report::Fraud,
            format!("tracker_id=81&{DATES}&count=5"),
            "count",
        ),
        (
            Report::Fraud,
            format!("tracker_id=81&{DATES}&group[]=country_code"),
            "group",
        ),
        (
            Report::Fraud,
            format!(
                "tracker_id=81&{DATES}&group[]=sub_id&group[]=partner&group[]=affiliate&group[]=product"
            ),
            "group",
        ),
        (
            Report::Global,
            format!("group[]=affiliate&{DATES}"),
            "group",
        ),
        (
            Report::Conversion,
            format!("tracker_id=81&count=5&{DATES}&group[]=sub_id"),
            "group[]",
        ),
        (
            Report::Conversion,
            format!("tracker_id=81&count=5&{DATES}&click=maybe"),
            "click",
        ),
        (
            Report::Conversion,
            format!("tracker_id=82&count=5&{DATES}"),
            "tracker_id",
        ),
        (
            Report::Conversion,
            format!("tracker_id=81&count=5&{DATES}&sorting[rejected]=desc"),
            "sorting[rejected]",
        ),
        (
            Report::Fraud,
            format!("tracker_id=81&{DATES}&sorting[nothing]=desc"),
            "sorting[nothing]",
        ),
        (
            Report::Interval,
            format!("group[]=tracker_id&time_interval=week&chart_type=pie&{DATES}"),
            "chart_type",
        ),
        (
            Report::Fraud,
            format!("tracker_id=81&{DATES}&timezone=UTC"),
            "timezone",
        ),
        (
            Report::Fraud,
            "tracker_id=81&date_start=2017-06-05&date_end=2017-05-05&timezone=UTC".to_owned(),
            "date_end",
        ),
    ] {
        let e = parse(report, &query).unwrap_err();
        assert_eq!(e.field, field, "{report:?} {query}: {e}");
    }
}

fn buckets(query: &str) -> Vec<String> {
    let r = parse(Report::Interval, &format!("group[]=tracker_id&{query}")).unwrap();
    interval::buckets(&r)
        .unwrap()
        .into_iter()
        .map(|(_, iso)| iso)
        .collect()
}

#[test]
fn intervals_are_every_bucket_of_the_range_in_iso_8601() {
    assert_eq!(
        buckets("time_interval=day&date_start=2017-05-05&date_end=2017-05-08&timezone=UTC"),
        [
            "2017-05-05T00:00:00+0000",
            "2017-05-06T00:00:00+0000",
            "2017-05-07T00:00:00+0000",
            "2017-05-08T00:00:00+0000"
        ]
    );
    // Weeks start on Monday: 2017-05-05 is a Friday.
    assert_eq!(
        buckets("time_interval=week&date_start=2017-05-05&date_end=2017-06-05&timezone=UTC")[..2],
        ["2017-05-01T00:00:00+0000", "2017-05-08T00:00:00+0000"]
    );
    // The day Berlin moves to summer time has 23 hours.
    let hours = buckets(
        "time_interval=hour&date_start=2026-03-29&date_end=2026-03-29&timezone=Europe/Berlin",
    );
    assert_eq!(hours.len(), 23);
    assert_eq!(hours[2], "2026-03-29T03:00:00+0200");
    assert_eq!(
        buckets("time_interval=month&date_start=2026-01-31&date_end=2026-03-01&timezone=UTC"),
        [
            "2026-01-01T00:00:00+0000",
            "2026-02-01T00:00:00+0000",
            "2026-03-01T00:00:00+0000"
        ]
    );
    let r = parse(
        Report::Interval,
        "group[]=tracker_id&time_interval=hour&date_start=2020-01-01&date_end=2026-01-01&timezone=UTC",
    )
    .unwrap();
    assert_eq!(interval::buckets(&r).unwrap_err().field, "time_interval");
}

#[test]
fn rates_round_to_two_decimals_as_the_docs_print_them() {
    assert_eq!(rate(69, 84), serde_json::json!(82.14));
    assert_eq!(rate(15, 84), serde_json::json!(17.86));
    assert_eq!(rate(86, 84), serde_json::json!(102.38));
    assert_eq!(rate(2704, 28634), serde_json::json!(9.44));
    assert_eq!(rate(6, 0), serde_json::json!("N/A"));
}

#[test]
fn a_post_form_and_its_url_may_repeat_a_parameter_with_the_same_value() {
    let p = pairs(
        "count=10&group[0]=a",
        Some(b"count=10&group[0]=a&next_page_id=x"),
    )
    .unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p[2], ("next_page_id".into(), "x".into()));
    let e = pairs("count=10", Some(b"count=20")).unwrap_err();
    assert_eq!(e.field, "count");
}

#[test]
fn session_times_print_as_the_docs_print_them() {
    assert_eq!(terms::duration(406, true), "0D, 00:06:46");
    assert_eq!(terms::duration(147, true), "0D, 00:02:27");
    assert_eq!(terms::duration(0, false), "00:00:00");
    assert_eq!(terms::duration(93_784, true), "1D, 02:03:04");
    assert_eq!(terms::duration(93_784, false), "26:03:04");
    assert_eq!(terms::duration(-3, true), "-0D, 00:00:03");
}
