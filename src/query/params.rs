//! The Data API's query string (`field`, `group`, `filter`, `having`,
//! `sort`, `page`, `page_size`, `tz`) as a [`Query`], and the parameter
//! values every query string shares (whole numbers, time zones).

use jiff::tz::TimeZone;

use super::{
    Agg, DEFAULT_FIELDS, Events, Expr, MAX_PAGE_SIZE, Query, QueryError, Shape, field_or_err,
    filter,
};

impl Query {
    /// Parses a Data API query string. `groups` selects `/groups`.
    pub fn from_params(events: Events, raw: &str, groups: bool) -> Result<Self, QueryError> {
        let p = Given::parse(raw, groups)?;
        let shape = if groups {
            groups_shape(&p.group, &p.fields, p.having)?
        } else {
            list_shape(&p.fields)?
        };
        let mut q = Query {
            events,
            shape,
            filter: p.filter,
            sort: Vec::new(),
            page: p.page,
            page_size: p.page_size,
            tz: p.tz,
        };
        q.sort = sort_order(&p.sort, &q.columns())?;
        Ok(q)
    }
}

/// A Data API query string's parameters, each value checked on its own.
struct Given {
    /// Fields of a list, aggregates of groups.
    fields: Vec<String>,
    group: Vec<String>,
    filter: Option<Expr>,
    having: Option<Expr>,
    sort: Vec<String>,
    page: u64,
    page_size: u64,
    tz: TimeZone,
}

impl Given {
    fn parse(raw: &str, groups: bool) -> Result<Self, QueryError> {
        let mut p = Given {
            fields: Vec::new(),
            group: Vec::new(),
            filter: None,
            having: None,
            sort: Vec::new(),
            page: 1,
            page_size: 100,
            tz: TimeZone::UTC,
        };
        let mut seen: Vec<String> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            once(&mut seen, &k)?;
            let list = || {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            match &*k {
                "field" | "field[]" => p.fields.extend(list()),
                "group" | "group[]" if groups => p.group.extend(list()),
                "filter" => p.filter = Some(filter::parse(&v, "filter")?),
                "having" if groups => p.having = Some(filter::parse(&v, "having")?),
                "sort" | "sort[]" => p.sort.extend(list()),
                "page" => p.page = number(&v, "page", 1, u64::MAX)?,
                "page_size" => p.page_size = number(&v, "page_size", 1, MAX_PAGE_SIZE)?,
                "tz" => p.tz = time_zone(&v, "tz")?,
                // Access keys and the output format are read by the door.
                "key" | "format" => {}
                other => return Err(unknown_parameter(other)),
            }
        }
        Ok(p)
    }
}

/// A parameter that takes one value, given twice, is a mistake to name,
/// not a last-one-wins guess.
fn once(seen: &mut Vec<String>, k: &str) -> Result<(), QueryError> {
    if !matches!(
        k,
        "filter" | "having" | "page" | "page_size" | "tz" | "format"
    ) {
        return Ok(());
    }
    if seen.iter().any(|s| s == k) {
        return Err(QueryError::new(
            k.to_string(),
            format!("{k} given more than once"),
        ));
    }
    seen.push(k.to_string());
    Ok(())
}

/// A list's fields: the ones named, else [`DEFAULT_FIELDS`].
fn list_shape(fields: &[String]) -> Result<Shape, QueryError> {
    let names: Vec<&str> = if fields.is_empty() {
        DEFAULT_FIELDS.to_vec()
    } else {
        fields.iter().map(String::as_str).collect()
    };
    Ok(Shape::List(
        names
            .into_iter()
            .map(|n| field_or_err(n, "field"))
            .collect::<Result<_, _>>()?,
    ))
}

/// Groups: at least one group field, the aggregates named (else the
/// count), and the `having`.
fn groups_shape(
    group: &[String],
    aggs: &[String],
    having: Option<Expr>,
) -> Result<Shape, QueryError> {
    if group.is_empty() {
        return Err(QueryError::new("group", "give at least one group field"));
    }
    let groups = group
        .iter()
        .map(|g| field_or_err(g, "group"))
        .collect::<Result<Vec<_>, _>>()?;
    let aggs = if aggs.is_empty() {
        vec![Agg::Count]
    } else {
        aggs.iter()
            .map(|a| Agg::parse(a))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(Shape::Groups {
        groups,
        aggs,
        having,
    })
}

/// The `sort` values (`<column>_asc`, `<column>_desc`), each naming one
/// of the returned `columns`.
fn sort_order(sort: &[String], columns: &[String]) -> Result<Vec<(String, bool)>, QueryError> {
    sort.iter()
        .map(|s| {
            let (name, desc) = if let Some(n) = s.strip_suffix("_desc") {
                (n, true)
            } else if let Some(n) = s.strip_suffix("_asc") {
                (n, false)
            } else {
                return Err(QueryError::new(
                    "sort",
                    format!("{s:?}: use <field>_asc or <field>_desc"),
                ));
            };
            if !columns.iter().any(|c| c == name) {
                return Err(QueryError::new(
                    "sort",
                    format!(
                        "{name:?} is not among the returned fields ({})",
                        columns.join(", ")
                    ),
                ));
            }
            Ok((name.to_owned(), desc))
        })
        .collect()
}

/// A parameter the query does not take, named as its own field.
pub fn unknown_parameter(name: &str) -> QueryError {
    QueryError::new(name.to_owned(), format!("unknown parameter {name:?}"))
}

pub fn number(v: &str, param: &'static str, min: u64, max: u64) -> Result<u64, QueryError> {
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| QueryError::new(param, format!("{v:?} is not a whole number")))?;
    if n < min || n > max {
        return Err(QueryError::new(
            param,
            format!("{n} is out of range {min}..={max}"),
        ));
    }
    Ok(n)
}

pub fn time_zone(v: &str, param: &'static str) -> Result<TimeZone, QueryError> {
    TimeZone::get(v.trim()).map_err(|_| {
        QueryError::new(
            param,
            format!("unknown time zone {v:?} (an IANA name such as Europe/Berlin)"),
        )
    })
}

/// A parameter's name with PHP's array index dropped: Fraudshield's PHP
/// SDK (`http_build_query`) writes `group[0]=..&group[1]=..` and
/// `search_fields[0]=..` where a browser writes `group[]`.
pub fn php_array_name(name: &str) -> &str {
    match name.split_once('[') {
        Some((base @ ("group" | "search_fields"), rest))
            if rest
                .strip_suffix(']')
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            match base {
                "group" => "group[]",
                _ => "search_fields[]",
            }
        }
        _ => name,
    }
}
