//! A Fraudshield report request, checked: the parameters each report
//! documents (reference 001), mandatory ones named when missing, the
//! forms its PHP SDK sends (`http_build_query`: `group[0]=`,
//! `search_fields[0]=`, booleans as `0`/`1`, `sorting[rejected]=desc`).

use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::cursor::Cursor;
use super::search::{self, Search};
use super::trackers::Trackers;
use crate::query::params::{number, php_array_name, time_zone, unknown_parameter};
use crate::query::report::{MAX_REPORT_ROWS, date_range, time_interval};
use crate::query::{Expr, Field, QueryError};

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Conversion,
    Scroll,
    Fraud,
    Goal,
    Global,
    Interval,
}

impl Report {
    pub const ALL: [Report; 6] = [
        Report::Conversion,
        Report::Scroll,
        Report::Fraud,
        Report::Goal,
        Report::Global,
        Report::Interval,
    ];

    pub const fn path(self) -> &'static str {
        match self {
            Report::Conversion => "/api/v1/reports/conversion.json",
            Report::Scroll => "/api/v1/reports/conversion_scroll.json",
            Report::Fraud => "/api/v1/reports/fraud.json",
            Report::Goal => "/api/v1/reports/goal.json",
            Report::Global => "/api/v1/reports/global.json",
            Report::Interval => "/api/v1/reports/interval.json",
        }
    }

    /// Its data sources (`group[]`) and how many it takes at most.
    pub const fn sources(self) -> &'static [&'static str] {
        match self {
            Report::Fraud | Report::Goal => &["sub_id", "partner", "affiliate", "product", "goal"],
            Report::Global => &[
                "tracker_id",
                "affiliate",
                "partner",
                "product",
                "sub_id",
                "country_code",
            ],
            Report::Interval => &["tracker_id", "affiliate", "partner", "product", "sub_id"],
            Report::Conversion | Report::Scroll => &[],
        }
    }

    const fn max_sources(self) -> usize {
        match self {
            Report::Global => 4,
            _ => 3,
        }
    }

    /// The parameters its docs mark mandatory.
    const fn mandatory(self) -> &'static [&'static str] {
        match self {
            Report::Conversion => &[
                "tracker_id",
                "date_start",
                "date_end",
                "timezone",
                "count",
                "page",
            ],
            // Its pages follow next_page_id: no `page`.
            Report::Scroll => &["tracker_id", "date_start", "date_end", "timezone", "count"],
            Report::Fraud => &["tracker_id", "date_start", "date_end", "timezone"],
            Report::Goal => &["tracker_id", "date_start", "date_end", "timezone", "group"],
            Report::Global => &["date_start", "date_end", "timezone", "group"],
            Report::Interval => &[
                "date_start",
                "date_end",
                "timezone",
                "group",
                "time_interval",
            ],
        }
    }

    const fn is_list(self) -> bool {
        matches!(self, Report::Conversion | Report::Scroll)
    }

    /// The fraud, goal and global reports: rows of counts per group.
    pub const fn is_summary(self) -> bool {
        matches!(self, Report::Fraud | Report::Goal | Report::Global)
    }
}

/// A report request, checked.
#[derive(Debug, Clone)]
pub struct Request {
    pub report: Report,
    pub tz: TimeZone,
    pub date_start: Date,
    pub date_end: Date,
    /// `tracker_id`, checked against `auth.trackers`.
    pub tracker: Option<u64>,
    pub user_id: Option<String>,
    /// The data sources, as named.
    pub groups: Vec<&'static str>,
    /// What every query reads: the dates, the tracker, row filters.
    pub rows: Vec<Expr>,
    /// Bounds on the conversion groups (count, rejection rate).
    pub having: Vec<Expr>,
    /// What the goals counted are narrowed to (their name).
    pub goals: Vec<Expr>,
    /// Bounds on the goal rate: at least (`true`) or at most.
    pub goal_rate: Vec<(bool, f64)>,
    pub click: bool,
    pub goal: bool,
    pub count: u64,
    pub page: u64,
    /// `sorting[<field>]=asc|desc`: row key, descending.
    pub sorting: Vec<(String, bool)>,
    pub interval: Option<&'static Field>,
    pub cursor: Option<Cursor>,
    /// The parameters as given, but the key and the page's own
    /// (`page`, `next_page_id`): the next and previous pages' URLs.
    pub echo: Vec<(String, String)>,
}

fn bad(field: impl Into<std::borrow::Cow<'static, str>>, m: impl Into<String>) -> QueryError {
    QueryError::new(field, m)
}

/// `0`, `1`, `true` or `false` (PHP's `http_build_query` writes `0`/`1`).
fn boolean(v: &str, name: &'static str) -> Result<bool, QueryError> {
    match v.trim() {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        other => Err(bad(name, format!("{other:?}: use 0, 1, true or false"))),
    }
}

impl Request {
    fn new(report: Report) -> Request {
        Request {
            report,
            tz: TimeZone::UTC,
            date_start: Date::default(),
            date_end: Date::default(),
            tracker: None,
            user_id: None,
            groups: Vec::new(),
            rows: Vec::new(),
            having: Vec::new(),
            goals: Vec::new(),
            goal_rate: Vec::new(),
            click: false,
            goal: false,
            count: MAX_REPORT_ROWS,
            page: 1,
            sorting: Vec::new(),
            interval: None,
            cursor: None,
            echo: Vec::new(),
        }
    }

    /// Parses the decoded `pairs` of `report` (see [`super::pairs`]).
    pub fn parse(
        report: Report,
        pairs: &[(String, String)],
        trackers: &Trackers<'_>,
    ) -> Result<Request, QueryError> {
        let mut r = Request::new(report);
        let mut seen: Vec<&'static str> = Vec::new();
        let (mut dates, mut searches, mut sorts) = ((None, None), Vec::new(), Vec::new());
        for (k, v) in pairs {
            let name = php_array_name(k);
            let once = r.once(&mut seen, name)?;
            match once {
                "api_token" | "key" | "page" | "next_page_id" => {}
                _ => r.echo.push((k.clone(), v.clone())),
            }
            match once {
                // Read by the access layer.
                "api_token" | "key" => {}
                "user_id" => r.user_id = Some(v.clone()),
                "tracker_id" => {
                    let id = v
                        .trim()
                        .parse()
                        .map_err(|_| bad("tracker_id", format!("{v:?} is not a tracker id")))?;
                    r.rows.push(trackers.filter(id, "tracker_id")?);
                    r.tracker = Some(id);
                }
                "date_start" => dates.0 = Some(v.clone()),
                "date_end" => dates.1 = Some(v.clone()),
                "timezone" => r.tz = time_zone(v, "timezone")?,
                "group" => r.groups.push(source(report, v, &r.groups)?),
                "search_fields" => searches.push(v.clone()),
                "click" => r.click = boolean(v, "click")?,
                "goal" => r.goal = boolean(v, "goal")?,
                "count" => r.count = number(v, "count", 1, MAX_REPORT_ROWS)?,
                // The scroll's pages follow next_page_id; the interval
                // answers every bucket: there, `page` (and the interval's
                // `count`) are checked and have no effect.
                "page" => r.page = number(v, "page", 1, u64::MAX)?,
                "next_page_id" => r.cursor = Some(Cursor::decode(v)?),
                "time_interval" => r.interval = Some(time_interval(v)?),
                "chart_type" if v == "conversion_rate" => {}
                "chart_type" => {
                    return Err(bad("chart_type", "the one chart type is conversion_rate"));
                }
                "sorting" => sorts.push((k, v)),
                other => return Err(unknown_parameter(other)),
            }
        }
        for m in report.mandatory() {
            if !seen.contains(m) {
                return Err(bad(*m, format!("{m} is mandatory in this report")));
            }
        }
        if matches!(report, Report::Global | Report::Interval) && !r.groups.contains(&"tracker_id")
        {
            return Err(bad(
                "group",
                "group[]=tracker_id is always included in this report",
            ));
        }
        let (Some(start), Some(end)) = dates else {
            return Err(bad("date_start", "date_start and date_end are mandatory"));
        };
        r.rows
            .extend(date_range(Some(start.clone()), Some(end.clone()), &r.tz)?);
        r.date_start = start
            .parse()
            .map_err(|_| bad("date_start", "use yyyy-mm-dd"))?;
        r.date_end = end.parse().map_err(|_| bad("date_end", "use yyyy-mm-dd"))?;
        for (k, v) in sorts {
            r.sorting.push(sorting(report, k, v, &r.groups)?);
        }
        for s in searches {
            match search::parse(&s, report, &r.groups, trackers)? {
                Search::Rows(e) => r.rows.push(e),
                Search::Groups(e) => r.having.push(e),
                Search::Goals(e) => r.goals.push(e),
                Search::GoalRate(min, v) => r.goal_rate.push((min, v)),
            }
        }
        Ok(r)
    }

    /// The name `k` is taken as in this report, once if it is one value
    /// (a repeated one is a mistake to name, not a last-one-wins guess).
    fn once(&self, seen: &mut Vec<&'static str>, k: &str) -> Result<&'static str, QueryError> {
        let report = self.report;
        let name: &'static str = match k {
            "api_token" => "api_token",
            "key" => "key",
            "user_id" => "user_id",
            "tracker_id" => "tracker_id",
            "date_start" => "date_start",
            "date_end" => "date_end",
            "timezone" => "timezone",
            "group" | "group[]" if !report.is_list() => "group",
            "search_fields" | "search_fields[]" => "search_fields",
            "click" if report.is_list() => "click",
            "goal" if report.is_list() => "goal",
            "count" if report.is_list() || report == Report::Interval => "count",
            "page" if report.is_list() || report == Report::Interval => "page",
            "next_page_id" if report == Report::Scroll => "next_page_id",
            "time_interval" if report == Report::Interval => "time_interval",
            "chart_type" if report == Report::Interval => "chart_type",
            s if s.starts_with("sorting[") && report.is_summary() => "sorting",
            other => return Err(unknown_parameter(other)),
        };
        let repeats = matches!(name, "group" | "search_fields" | "sorting");
        if seen.contains(&name) && !repeats {
            return Err(bad(name, format!("{name} given more than once")));
        }
        seen.push(name);
        Ok(name)
    }

    /// The data sources and the fields they group by.
    pub fn group_fields(&self) -> Vec<(&'static str, &'static Field)> {
        self.groups
            .iter()
            .filter_map(|g| super::terms::group_field(g).map(|f| (*g, f)))
            .collect()
    }
}

/// A `group[]` value: one of the report's data sources, each once, at
/// most as many as it documents.
fn source(report: Report, v: &str, so_far: &[&str]) -> Result<&'static str, QueryError> {
    let name = v.trim();
    let sources = report.sources();
    let Some(s) = sources.iter().find(|s| **s == name) else {
        return Err(bad(
            "group",
            format!(
                "{name:?}: this report's data sources are {}",
                sources.join(", ")
            ),
        ));
    };
    if so_far.contains(s) {
        return Err(bad("group", format!("{name} given twice")));
    }
    if so_far.len() == report.max_sources() {
        return Err(bad(
            "group",
            format!("at most {} data sources", report.max_sources()),
        ));
    }
    Ok(s)
}

/// The counts and rates a summary row carries, which `sorting[]` names.
const SORTABLE: &[&str] = &[
    "tracker_id",
    "tracker",
    "conversion",
    "approved",
    "rejected",
    "click",
    "goal",
    "approval_rate",
    "rejection_rate",
    "goal_rate",
    "conversion_rate",
];

/// `sorting[<key>]=asc|desc` (the SDK's goal report sends
/// `sorting[rejected]=desc`): a key of the report's rows.
fn sorting(
    report: Report,
    k: &str,
    v: &str,
    groups: &[&str],
) -> Result<(String, bool), QueryError> {
    let key = k
        .strip_prefix("sorting[")
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or("");
    let known =
        SORTABLE.contains(&key) || (groups.contains(&key) && report.sources().contains(&key));
    if !known {
        return Err(bad(
            k.to_owned(),
            format!(
                "sort by a count, a rate or a data source of the request ({})",
                SORTABLE.join(", ")
            ),
        ));
    }
    let desc = match v.trim().to_ascii_lowercase().as_str() {
        "desc" => true,
        "asc" => false,
        _ => return Err(bad(k.to_owned(), "use asc or desc")),
    };
    Ok((key.to_owned(), desc))
}
