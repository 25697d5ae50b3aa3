//! `fraud.json`, `goal.json` and `global.json`: per data source, the
//! conversions (approved, rejected, the reasons), the clicks and the goals
//! of the same rows, merged by group and shaped as the docs print them.
//! Each count is its own grouped query; the rows are joined here by their
//! group values. The data source `goal` (a goal's name) splits the goals
//! only: a group's row comes once per goal name, its conversions on each.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::terms::{self, CLICK_EVENT_TYPE, GOAL_EVENT_TYPE, conversion_filter, event_type_is};
use super::{Report, Request, Row, Trackers, count, order, query, rate, reasons};
use crate::query::report::{MAX_REPORT_ROWS, cmp};
use crate::query::{Agg, Expr, Field, Op, Query, QueryError, Scalar, Shape, field};

/// Reason rows may be this many times the groups (one per reason).
const REASONS_PER_GROUP: u64 = 16;

/// The data source of a goal's name, and its key in a row (`goal` is
/// the goals' count there).
const GOAL: &str = "goal";
const GOAL_NAME: &str = "goal_name";

/// The name of a data source in a row.
pub fn row_key(source: &str) -> &str {
    if source == GOAL { GOAL_NAME } else { source }
}

/// The data sources but the goal's name, and its field if it is one.
fn sources(r: &Request) -> (Vec<(&'static str, &'static Field)>, Option<&'static Field>) {
    let (goal, others): (Vec<_>, Vec<_>) =
        r.group_fields().into_iter().partition(|(n, _)| *n == GOAL);
    (others, goal.first().map(|(_, f)| *f))
}

pub fn queries(r: &Request) -> Vec<Query> {
    let (sources, goal_name) = sources(r);
    let groups: Vec<&'static Field> = sources.into_iter().map(|(_, f)| f).collect();
    let mut by_goal = groups.clone();
    by_goal.extend(goal_name);
    let goals = Expr::And(
        std::iter::once(event_type_is(GOAL_EVENT_TYPE))
            .chain(r.goals.iter().cloned())
            .collect(),
    );
    let shape = |groups: Vec<&'static Field>, aggs, having| Shape::Groups {
        groups,
        aggs,
        having,
    };
    let having = (!r.having.is_empty()).then(|| Expr::And(r.having.clone()));
    let mut conversions = vec![Agg::Count, Agg::Allowed, Agg::Blocked, Agg::BlockRate];
    if r.report != Report::Global {
        conversions.extend(reasons::aggs());
    }
    let cap = MAX_REPORT_ROWS + 1;
    let mut qs = vec![
        query(
            r,
            conversion_filter(),
            shape(groups.clone(), conversions, having),
            cap,
        ),
        query(
            r,
            Some(event_type_is(CLICK_EVENT_TYPE)),
            shape(groups.clone(), vec![Agg::Count], None),
            cap,
        ),
        query(r, Some(goals), shape(by_goal, vec![Agg::Count], None), cap),
    ];
    if r.report != Report::Global {
        // The rejections no rule judged, by fraudgate's reason.
        let mut by_reason = groups;
        by_reason.extend(field("reason"));
        let blocked = Some(cmp("blocked", Op::Ge, Scalar::Int(1)));
        let unruled = Expr::And(
            conversion_filter()
                .into_iter()
                .chain([reasons::unruled()])
                .collect(),
        );
        qs.push(query(
            r,
            Some(unruled),
            shape(by_reason, vec![Agg::Blocked], blocked),
            MAX_REPORT_ROWS * REASONS_PER_GROUP + 1,
        ));
    }
    qs
}

/// One group's counts, merged from the queries' rows.
#[derive(Default, Clone)]
struct Counts {
    /// A row of the group (its group values).
    group: Row,
    conversion: i64,
    approved: i64,
    rejected: i64,
    click: i64,
    goal: i64,
    reasons: Map<String, Value>,
    /// With the data source `goal`: the goals per name, and once split
    /// ([`per_goal_name`]) the row's.
    goals: Vec<(Value, i64)>,
    goal_name: Value,
}

fn too_many() -> QueryError {
    QueryError::new(
        "group",
        format!(
            "more than {MAX_REPORT_ROWS} rows: narrow date_start..date_end, filter, or use fewer data sources"
        ),
    )
}

pub fn render(
    r: &Request,
    sets: Vec<Vec<Row>>,
    trackers: &Trackers<'_>,
) -> Result<Value, QueryError> {
    let (fields, goal_name) = sources(r);
    let key = |row: &Row| -> String {
        let values: Vec<&Value> = fields
            .iter()
            .map(|(_, f)| row.get(f.name).unwrap_or(&Value::Null))
            .collect();
        serde_json::to_string(&values).unwrap_or_default()
    };
    let mut sets = sets.into_iter();
    let mut merged: Vec<Counts> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, set) in sets.by_ref().take(3).enumerate() {
        if set.len() as u64 > MAX_REPORT_ROWS {
            return Err(too_many());
        }
        for row in set {
            let k = key(&row);
            let at = match index.get(&k) {
                Some(at) => *at,
                // Groups with clicks or goals but no conversion: global
                // lists them, fraud and goal list conversions' groups.
                None if i == 0 || r.report == Report::Global => {
                    index.insert(k, merged.len());
                    merged.push(Counts::default());
                    merged.len() - 1
                }
                None => continue,
            };
            let c = &mut merged[at];
            match i {
                0 => {
                    c.conversion = count(&row, "count");
                    c.approved = count(&row, "allowed");
                    c.rejected = count(&row, "blocked");
                    c.reasons = reasons::histogram(&row);
                }
                1 => c.click = count(&row, "count"),
                _ => {
                    c.goal += count(&row, "count");
                    if goal_name.is_some() {
                        let name = terms::read(&row, GOAL, trackers);
                        c.goals.push((name, count(&row, "count")));
                    }
                }
            }
            if c.group.is_empty() {
                c.group = row;
            }
        }
    }
    let unruled = sets.next().unwrap_or_default();
    if unruled.len() as u64 > MAX_REPORT_ROWS * REASONS_PER_GROUP {
        return Err(too_many());
    }
    for row in unruled {
        if let Some(at) = index.get(&key(&row)) {
            let reason = row.get("reason").and_then(Value::as_str).unwrap_or("");
            merged[*at]
                .reasons
                .insert(reason.to_owned(), count(&row, "blocked").into());
        }
    }
    if goal_name.is_some() {
        merged = per_goal_name(merged);
    }
    merged.retain(|c| goal_rate_within(r, c));
    let mut results: Vec<Map<String, Value>> = merged
        .iter()
        .map(|c| match r.report {
            Report::Global => global_row(r, c, trackers),
            _ => fraud_row(r, c, trackers),
        })
        .collect();
    order::sort(r, &mut results);
    let results: Vec<Value> = results.into_iter().map(Value::Object).collect();
    Ok(match r.report {
        Report::Global => json!({ "results": results }),
        _ => json!({ "fraud": { "results": results } }),
    })
}

/// Each group once per goal name among its goals, that name's count
/// its goals (the conversions, clicks and reasons on each); a group
/// without goals once, its goal name null.
fn per_goal_name(merged: Vec<Counts>) -> Vec<Counts> {
    let mut out = Vec::with_capacity(merged.len());
    for mut c in merged {
        let goals = std::mem::take(&mut c.goals);
        if goals.is_empty() {
            out.push(c);
            continue;
        }
        for (name, n) in goals {
            out.push(Counts {
                goal: n,
                goal_name: name,
                ..c.clone()
            });
        }
    }
    out
}

/// `min_goals_reached` / `max_goals_reached`: goals per 100 conversions.
fn goal_rate_within(r: &Request, c: &Counts) -> bool {
    r.goal_rate.iter().all(|(min, bound)| {
        let Some(rate) = rate(c.goal, c.conversion).as_f64() else {
            return false;
        };
        if *min { rate >= *bound } else { rate <= *bound }
    })
}

/// A row of the fraud and goal reports, as reference 001 prints it, the
/// data sources after `tracker_id`.
fn fraud_row(r: &Request, c: &Counts, trackers: &Trackers<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        "tracker_id".into(),
        r.tracker.map_or(Value::Null, Value::from),
    );
    groups_into(r, c, trackers, &mut out);
    let id = row_id(&out);
    out.insert("conversion".into(), c.conversion.into());
    out.insert("approved".into(), c.approved.into());
    out.insert("rejected".into(), c.rejected.into());
    out.insert("goal".into(), c.goal.into());
    out.insert("reasons".into(), Value::Object(c.reasons.clone()));
    out.insert("approval_rate".into(), rate(c.approved, c.conversion));
    out.insert("rejection_rate".into(), rate(c.rejected, c.conversion));
    out.insert("id".into(), id.into());
    out.insert("goal_rate".into(), rate(c.goal, c.conversion));
    out
}

/// A row of the global report, as reference 001 prints it (its unnamed
/// `""` count included: always 0 here).
fn global_row(r: &Request, c: &Counts, trackers: &Trackers<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    groups_into(r, c, trackers, &mut out);
    out.insert("click".into(), c.click.into());
    out.insert("goal".into(), c.goal.into());
    out.insert("conversion".into(), c.conversion.into());
    out.insert("approved".into(), c.approved.into());
    out.insert("rejected".into(), c.rejected.into());
    out.insert(String::new(), 0.into());
    out.insert(
        "tracker".into(),
        c.group.get("client").cloned().unwrap_or(Value::Null),
    );
    out.insert("conversion_rate".into(), rate(c.conversion, c.click));
    out
}

/// The row's data sources by their Fraudshield names ([`row_key`]).
fn groups_into(r: &Request, c: &Counts, trackers: &Trackers<'_>, out: &mut Map<String, Value>) {
    for (name, _) in r.group_fields() {
        let v = match name {
            GOAL => c.goal_name.clone(),
            _ => terms::read(&c.group, name, trackers),
        };
        out.insert(row_key(name).to_owned(), v);
    }
}

/// A stable id of a row from its tracker and data sources (hashed), 13
/// hex digits as Fraudshield's are.
fn row_id(row: &Map<String, Value>) -> String {
    let mut h = crate::hash::StableHash::new();
    for (k, v) in row {
        h.part(k);
        h.part(&v.to_string());
    }
    let mut id = h.hex(7);
    id.truncate(13);
    id
}
