//! `interval.json`: one row per time bucket (hour, day, week, month or
//! year in the request's `timezone`, DST-correct) from `date_start` to
//! `date_end`, every bucket present, zeros where nothing happened: the
//! clicks, goals, conversions (approved, rejected) and the rates. Its
//! data sources name what `search_fields` may filter by; they do not
//! split the buckets (reference 001 prints one row per bucket).

use std::collections::HashMap;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde_json::{Map, Value, json};

use super::terms::{CLICK_EVENT_TYPE, GOAL_EVENT_TYPE, conversion_filter, event_type_is};
use super::{Request, Row, count, query, rate};
use crate::query::report::MAX_REPORT_ROWS;
use crate::query::{Agg, Field, Kind, Query, QueryError, Shape, TimeUnit, bucket};

fn interval(r: &Request) -> Result<(&'static Field, TimeUnit), QueryError> {
    match r.interval.map(|f| (f, f.kind)) {
        Some((f, Kind::Time(unit))) => Ok((f, unit)),
        _ => Err(QueryError::new(
            "time_interval",
            "time_interval is mandatory",
        )),
    }
}

pub fn queries(r: &Request) -> Result<Vec<Query>, QueryError> {
    let (f, _) = interval(r)?;
    buckets(r)?;
    let shape = |aggs| Shape::Groups {
        groups: vec![f],
        aggs,
        having: None,
    };
    let cap = MAX_REPORT_ROWS + 1;
    Ok(vec![
        query(
            r,
            conversion_filter(),
            shape(vec![Agg::Count, Agg::Allowed, Agg::Blocked]),
            cap,
        ),
        query(
            r,
            Some(event_type_is(CLICK_EVENT_TYPE)),
            shape(vec![Agg::Count]),
            cap,
        ),
        query(
            r,
            Some(event_type_is(GOAL_EVENT_TYPE)),
            shape(vec![Agg::Count]),
            cap,
        ),
    ])
}

pub fn render(r: &Request, sets: Vec<Vec<Row>>) -> Result<Value, QueryError> {
    let (f, _) = interval(r)?;
    let by_bucket = |set: &[Row]| -> HashMap<String, Row> {
        set.iter()
            .filter_map(|row| Some((row.get(f.name)?.as_str()?.to_owned(), row.clone())))
            .collect()
    };
    let [conversions, clicks, goals] =
        [0, 1, 2].map(|i| sets.get(i).map_or_else(HashMap::new, |s| by_bucket(s)));
    let empty = Row::new();
    let results: Vec<Value> = buckets(r)?
        .into_iter()
        .map(|(text, start)| {
            let c = conversions.get(&text).unwrap_or(&empty);
            let click = clicks.get(&text).map_or(0, |row| count(row, "count"));
            let goal = goals.get(&text).map_or(0, |row| count(row, "count"));
            let (conversion, rejected) = (count(c, "count"), count(c, "blocked"));
            let mut out = Map::new();
            out.insert("intervals".into(), start.into());
            out.insert("click".into(), click.into());
            out.insert("goal".into(), goal.into());
            out.insert("conversion".into(), conversion.into());
            out.insert("approved".into(), count(c, "allowed").into());
            out.insert("rejected".into(), rejected.into());
            out.insert("conversion_rate".into(), rate(conversion, click));
            out.insert("rejection_rate".into(), rate(rejected, conversion));
            Value::Object(out)
        })
        .collect();
    Ok(json!({ "results": results }))
}

/// Every bucket from `date_start` to `date_end`: its text as the stores
/// compute it (`query::bucket`) and its start in ISO 8601, as
/// `2017-05-05T00:00:00+0000`. At most [`MAX_REPORT_ROWS`].
pub fn buckets(r: &Request) -> Result<Vec<(String, String)>, QueryError> {
    let (_, unit) = interval(r)?;
    let tz = &r.tz;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |ts: Timestamp| -> Result<(), QueryError> {
        let text = bucket(ts.as_millisecond(), unit, tz);
        if out.last().is_some_and(|(t, _)| *t == text) {
            return Ok(());
        }
        if out.len() as u64 == MAX_REPORT_ROWS {
            return Err(QueryError::new(
                "time_interval",
                format!(
                    "more than {MAX_REPORT_ROWS} buckets: a longer time_interval or a shorter range"
                ),
            ));
        }
        out.push((text, start(ts, unit, tz)?));
        Ok(())
    };
    let midnight = |d: Date| -> Result<Timestamp, QueryError> {
        tz.to_zoned(d.to_datetime(Time::midnight()))
            .map(|z| z.timestamp())
            .map_err(|e| QueryError::new("date_start", e.to_string()))
    };
    // The walk below steps a day (or a quarter hour) at a time: bound the
    // range first, so a request cannot make it run for long.
    let days = (r.date_end - r.date_start).get_days();
    if days > MAX_RANGE_DAYS {
        return Err(QueryError::new(
            "date_end",
            format!("at most {MAX_RANGE_DAYS} days from date_start"),
        ));
    }
    if unit == TimeUnit::Hour {
        // Quarter hours: every local hour is seen, whatever the zone's
        // offsets and DST steps.
        let end = midnight(
            r.date_end
                .tomorrow()
                .map_err(|e| QueryError::new("date_end", e.to_string()))?,
        )?;
        let mut t = midnight(r.date_start)?;
        while t < end {
            push(t)?;
            t = t
                .checked_add(Span::new().minutes(15))
                .map_err(|e| QueryError::new("date_end", e.to_string()))?;
        }
    } else {
        let mut d = r.date_start;
        while d <= r.date_end {
            push(midnight(d)?)?;
            d = d
                .tomorrow()
                .map_err(|e| QueryError::new("date_end", e.to_string()))?;
        }
    }
    Ok(out)
}

/// The longest range an interval report walks (ten years).
const MAX_RANGE_DAYS: i32 = 3_660;

/// The start of the bucket holding `ts`, in ISO 8601 with the offset.
fn start(ts: Timestamp, unit: TimeUnit, tz: &TimeZone) -> Result<String, QueryError> {
    let z = ts.to_zoned(tz.clone());
    let d = z.date();
    let civil: DateTime = match unit {
        TimeUnit::Hour => d.to_datetime(Time::new(z.hour(), 0, 0, 0).unwrap_or(Time::midnight())),
        TimeUnit::Week => (d - Span::new().days(i64::from(d.weekday().to_monday_zero_offset())))
            .to_datetime(Time::midnight()),
        TimeUnit::Month => d.first_of_month().to_datetime(Time::midnight()),
        TimeUnit::Year => d.first_of_year().to_datetime(Time::midnight()),
        TimeUnit::Date | TimeUnit::Datetime => d.to_datetime(Time::midnight()),
    };
    let z = tz
        .to_zoned(civil)
        .map_err(|e| QueryError::new("timezone", e.to_string()))?;
    Ok(z.strftime("%Y-%m-%dT%H:%M:%S%z").to_string())
}
