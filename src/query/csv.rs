//! Query answers as CSV: the one writer behind every `format=csv` (the
//! Data API's stream, the reports, an entry, the CLI). RFC 4180 records
//! ending in CRLF; text that a spreadsheet would run as a formula is
//! defused; JSON values (`rules`, `extra`, a report's reasons) are one
//! cell of JSON text.

use serde_json::{Map, Value};

/// One cell. RFC 4180: quoted when it holds a comma, quote or line break.
/// A cell that starts with any of OWASP's six formula triggers (`=`, `+`,
/// `-`, `@`, TAB, CR) is prefixed with `'` so a spreadsheet never runs a
/// UA or sub id as a formula; a plain number (`-1.5`, `+3e2`) is left as
/// it is.
pub fn field(buf: &mut Vec<u8>, s: &str) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !plain_number(s);
    let quote = formula || s.contains([',', '"', '\n', '\r']);
    if quote {
        buf.push(b'"');
    }
    if formula {
        buf.push(b'\'');
    }
    for b in s.bytes() {
        if b == b'"' {
            buf.push(b'"');
        }
        buf.push(b);
    }
    if quote {
        buf.push(b'"');
    }
}

/// Digits with an optional sign, point and exponent: what a spreadsheet
/// reads as a number, not a formula (`-inf` or `+NaN` parse as floats but
/// are formulas to a spreadsheet).
fn plain_number(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        && s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// One value as a cell: null empty, text as it is, a number as it is,
/// anything else (an object, a list, a boolean) as its JSON text.
pub fn value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => {}
        Value::String(t) => field(buf, t),
        Value::Number(n) => buf.extend_from_slice(n.to_string().as_bytes()),
        other => field(buf, &other.to_string()),
    }
}

/// One record: `cells` written by `write`, comma-separated, then CRLF.
fn record<T>(
    buf: &mut Vec<u8>,
    cells: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    for (i, c) in cells.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write(buf, c);
    }
    buf.extend_from_slice(b"\r\n");
}

/// The header record: the column names.
pub fn header(buf: &mut Vec<u8>, names: &[String]) {
    record(buf, names, |b, n| field(b, n));
}

/// A row's record: its values in column order.
pub fn row<'a>(buf: &mut Vec<u8>, values: impl IntoIterator<Item = &'a Value>) {
    record(buf, values, value);
}

/// A whole table: the header, then each row's values in `columns` order
/// (a column a row lacks is an empty cell).
pub fn table(columns: &[String], rows: &[Map<String, Value>]) -> String {
    let mut buf = Vec::new();
    header(&mut buf, columns);
    for r in rows {
        row(
            &mut buf,
            columns.iter().map(|c| r.get(c).unwrap_or(&Value::Null)),
        );
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        let mut b = Vec::new();
        field(&mut b, "plain");
        b.push(b'|');
        field(&mut b, "a,\"b\"");
        b.push(b'|');
        field(&mut b, "=HYPERLINK(\"x\")");
        b.push(b'|');
        field(&mut b, "-1.5");
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "plain|\"a,\"\"b\"\"\"|\"'=HYPERLINK(\"\"x\"\")\"|-1.5"
        );
    }

    /// OWASP's six formula triggers, TAB and CR included, are defused;
    /// plain numbers are not, but a float spelling a spreadsheet reads as
    /// a formula (`-inf`) is.
    #[test]
    fn every_formula_trigger_is_defused() {
        let cell = |s: &str| {
            let mut b = Vec::new();
            field(&mut b, s);
            String::from_utf8(b).unwrap()
        };
        for s in [
            "=1+1", "+1+1", "-1+1", "@SUM(A1)", "\t=1+1", "\r=1+1", "-inf", "+NaN",
        ] {
            let out = cell(s);
            assert!(out.starts_with("\"'"), "{s:?} -> {out:?}");
        }
        assert_eq!(cell("\tx"), "\"'\tx\"");
        for n in ["-1.5", "+3e2", "-0", "42"] {
            assert_eq!(cell(n), n);
        }
    }

    #[test]
    fn a_table_has_its_header_then_one_record_a_row() {
        let cols = ["ip", "count", "reasons", "ua"].map(String::from);
        let rows = [json!({"ip": "=1", "count": -3, "reasons": {"proxy": 2}, "ua": null})]
            .map(|r| r.as_object().unwrap().clone());
        assert_eq!(
            table(&cols, &rows),
            "ip,count,reasons,ua\r\n\"'=1\",-3,\"{\"\"proxy\"\":2}\",\r\n"
        );
        assert_eq!(table(&cols[..1], &[]), "ip\r\n");
    }
}
