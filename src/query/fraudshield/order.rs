//! The order of the fraud, goal and global reports' rows: `sorting[]`
//! (the SDK's `sorting[rejected]=desc`) or the default, ties broken by
//! the data sources so pages are stable.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::Request;
use super::summary::row_key;

/// `sorting[]` in the order given, else most rejected first, then most
/// conversions; ties by the data sources, so pages are stable.
pub fn sort(r: &Request, rows: &mut [Map<String, Value>]) {
    let default = [
        ("rejected".to_owned(), true),
        ("conversion".to_owned(), true),
    ];
    let keys: &[(String, bool)] = if r.sorting.is_empty() {
        &default
    } else {
        &r.sorting
    };
    let groups = r.group_fields();
    rows.sort_by(|a, b| {
        let by = |(k, desc): &(String, bool)| {
            let o = order(a.get(k.as_str()), b.get(k.as_str()));
            if *desc { o.reverse() } else { o }
        };
        keys.iter()
            .map(by)
            .chain(groups.iter().map(|(g, _)| {
                let g = row_key(g);
                order(a.get(g), b.get(g))
            }))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
}

/// Numbers by value, text by its bytes; `"N/A"` and null below both.
fn order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> (u8, f64, &str) {
        match v {
            Some(Value::Number(n)) => (2, n.as_f64().unwrap_or(0.0), ""),
            Some(Value::String(s)) if s != "N/A" => (1, 0.0, s),
            _ => (0, 0.0, ""),
        }
    }
    let (ra, rb) = (rank(a), rank(b));
    ra.0.cmp(&rb.0)
        .then(ra.1.total_cmp(&rb.1))
        .then(ra.2.cmp(rb.2))
}
