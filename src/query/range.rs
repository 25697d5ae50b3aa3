//! The parameters the gate's own reports share (the funnel, shadow and
//! clawback reports): `date_start`, `date_end` (days in `timezone`; today
//! when absent), `timezone`, `group[]` where the report groups, `count`,
//! and `page` where it pages.

use jiff::tz::TimeZone;

use super::params::{number, php_array_name, time_zone, unknown_parameter};
use super::report::{MAX_REPORT_ROWS, date_range, days, group};
use super::{Expr, Field, QueryError, field};

/// What a report takes besides the range.
pub struct Takes {
    /// The groups when none are asked for; None: the report takes no
    /// `group[]`.
    pub groups: Option<&'static [&'static str]>,
    pub page: bool,
}

/// A report's range and rows, checked.
#[derive(Debug, Clone)]
pub struct Range {
    pub groups: Vec<&'static Field>,
    pub tz: TimeZone,
    pub count: u64,
    pub page: u64,
    date_start: Option<String>,
    date_end: Option<String>,
}

pub fn parse(raw: &str, takes: &Takes) -> Result<Range, QueryError> {
    let mut r = Range {
        groups: Vec::new(),
        tz: TimeZone::UTC,
        count: 100,
        page: 1,
        date_start: None,
        date_end: None,
    };
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match php_array_name(&k) {
            "date_start" => r.date_start = Some(v.into_owned()),
            "date_end" => r.date_end = Some(v.into_owned()),
            "timezone" => r.tz = time_zone(&v, "timezone")?,
            "group" | "group[]" if takes.groups.is_some() => r.groups.push(group(&v)?),
            "count" => r.count = number(&v, "count", 1, MAX_REPORT_ROWS)?,
            "page" if takes.page => r.page = number(&v, "page", 1, u64::MAX)?,
            "key" => {}
            other => return Err(unknown_parameter(other)),
        }
    }
    if r.groups.len() > 3 {
        return Err(QueryError::new("group", "at most 3 groups"));
    }
    if r.groups.is_empty() {
        r.groups = takes
            .groups
            .unwrap_or_default()
            .iter()
            .filter_map(|n| field(n))
            .collect();
    }
    // Checked now, so a bad date is the parameters' error.
    days(r.date_start.clone(), r.date_end.clone(), &r.tz)?;
    Ok(r)
}

impl Range {
    /// The range as filters on the decision's day.
    pub fn filters(&self) -> Result<Vec<Expr>, QueryError> {
        Ok(date_range(self.date_start.clone(), self.date_end.clone(), &self.tz)?.into())
    }

    /// The range as Unix ms: from `date_start`'s midnight to the one
    /// after `date_end`, in the zone.
    pub fn millis(&self) -> Result<(i64, i64), QueryError> {
        let (start, end) = days(self.date_start.clone(), self.date_end.clone(), &self.tz)?;
        let next = end
            .tomorrow()
            .map_err(|e| QueryError::new("date_end", e.to_string()))?;
        let ms = |d: jiff::civil::Date, field: &'static str| {
            self.tz
                .to_zoned(d.to_datetime(jiff::civil::Time::midnight()))
                .map(|z| z.timestamp().as_millisecond())
                .map_err(|e| QueryError::new(field, e.to_string()))
        };
        Ok((ms(start, "date_start")?, ms(next, "date_end")?))
    }
}
