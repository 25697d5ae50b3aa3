//! The query model in ClickHouse's dialect. ClickHouse 18.16 (Debian's
//! package) has no server-side query parameters, so every caller's value
//! is written as a literal escaped here ([`quote`]), the way the official
//! client's `bind` does; names still come only from the field catalogue.
//! The SQL keeps to what 18.16 and current releases share.

use super::sql::{self, Dialect, Value};
use super::{Query, QueryError, TimeUnit};

pub use crate::decision_log::clickhouse::quote;

struct ClickHouse {
    /// The zone as a quoted literal.
    tz: String,
}

impl Dialect for ClickHouse {
    fn value(&mut self, v: Value) -> String {
        match v {
            Value::Int(i) => i.to_string(),
            // `{:?}` keeps a decimal point: 1.0 stays a float literal.
            // Subnormals (1e-310) are 0 here: 18.16 cannot parse them.
            Value::Real(r) if r != 0.0 && r.abs() < f64::MIN_POSITIVE => "0.".into(),
            Value::Real(r) => format!("{r:?}"),
            Value::Text(t) => quote(&t),
        }
    }

    fn time(&self, column: &str, unit: TimeUnit) -> String {
        let t = if column == "at" {
            "toDateTime(at)".to_owned()
        } else {
            format!("toDateTime(intDiv({column}, 1000))")
        };
        let tz = &self.tz;
        match unit {
            TimeUnit::Datetime => format!("toString({t}, {tz})"),
            TimeUnit::Date => format!("toString(toDate({t}, {tz}))"),
            TimeUnit::Hour => format!("formatDateTime({t}, '%Y-%m-%d %H:00', {tz})"),
            TimeUnit::Week => format!("toString(toMonday({t}, {tz}))"),
            TimeUnit::Month => format!("formatDateTime({t}, '%Y-%m', {tz})"),
            TimeUnit::Year => format!("formatDateTime({t}, '%Y', {tz})"),
        }
    }

    fn count_if(&self, cond: &str) -> String {
        format!("countIf({cond})")
    }

    fn block_rate(&self) -> String {
        "if(count() = 0, 0., round(100. * countIf(would_be = 'block') / count(), 2))".into()
    }

    fn uniq(&self, col: &str) -> String {
        // Exact, like SQLite's COUNT(DISTINCT): both stores answer alike.
        format!("ifNull(uniqExact({col}), 0)")
    }

    fn has_bit(&self, col: &str, bit: u64) -> String {
        format!("(bitAnd({col}, {bit}) != 0)")
    }

    fn extra_text(&self, key: &str) -> String {
        // visitParam*: the servers this runs on (Debian's) predate the
        // JSONExtract* functions; `extra` is flat compact JSON.
        format!("visitParamExtractString(ifNull(extra, ''), '{key}')")
    }

    fn order(&self, name: &str, desc: bool) -> String {
        // NULLs sort last either way: ClickHouse's default.
        format!("\"{name}\" {}", if desc { "DESC" } else { "ASC" })
    }
}

/// The whole statement for `q` over `table` (`database.table`, names
/// checked by the config).
pub fn build(q: &Query, table: &str) -> Result<String, QueryError> {
    let mut d = ClickHouse {
        tz: quote(q.tz.iana_name().unwrap_or("UTC")),
    };
    sql::build(q, &mut d, table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Events;

    #[test]
    fn literals_cannot_be_closed() {
        assert_eq!(quote("a'b"), r"'a\'b'");
        assert_eq!(quote(r"a\'); DROP"), r"'a\\\'); DROP'");
        assert_eq!(quote("x\0\n"), r"'x\0\n'");
    }

    #[test]
    fn values_are_literals_and_names_come_from_the_catalogue() {
        let filter =
            r#"["AND",["affiliate_id","x' OR 1=1 --"],["elapsed_us_gt","5"],["tag","proxy"]]"#;
        let raw = format!(
            "group=affiliate_id,date&field=count,uniq_ip&filter={}&tz=Europe%2FBerlin&sort=count_desc",
            form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
        );
        let q = Query::from_params(Events::Click, &raw, true).unwrap();
        let s = build(&q, "fraudgate.decisions").unwrap();
        assert!(s.contains(r"(affiliate_id = 'x\' OR 1=1 --')"), "{s}");
        assert!(s.contains("(elapsed_us > 5)"), "{s}");
        assert!(
            s.contains("toDate(toDateTime(intDiv(ts, 1000)), 'Europe/Berlin')"),
            "{s}"
        );
        assert!(
            s.ends_with("ORDER BY \"count\" DESC LIMIT 100 OFFSET 0"),
            "{s}"
        );
        // A _like pattern goes as it is (ClickHouse reads its escapes);
        // a number is no text to match.
        let like = |filter: &str| {
            let raw = format!(
                "filter={}",
                form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
            );
            build(&Query::from_params(Events::All, &raw, false).unwrap(), "t")
        };
        let s = like(r#"["ua_like", "50\\%\\\\%"]"#).unwrap();
        assert!(s.contains(r"(ua LIKE '50\\%\\\\%')"), "{s}");
        assert_eq!(like(r#"["ts_like", "1%"]"#).unwrap_err().field, "filter");
        let bad = Query::from_params(
            Events::All,
            "filter=%5B%22elapsed_us%22%2C%22x%22%5D",
            false,
        )
        .unwrap();
        assert_eq!(build(&bad, "t").unwrap_err().field, "filter");
    }
}
