//! Filter expressions in the FraudScore Data API form:
//! `["AND"|"OR"|"NOT", operand...]`, operands `["<field>", value]` for
//! equality and `<field>_ne|_gt|_ge|_lt|_le|_in|_like`, plus `date_ge`,
//! `date_le`, `datetime_ge`, `datetime_le` in the query's time zone.
//! Parsed into a tree of typed comparisons; field names are resolved by
//! the caller (row fields for `filter`, aggregates for `having`).
//!
//! A `_like` pattern means the same on every store: `%` any run of
//! characters, `_` one character, and a backslash makes the `%`, `_` or
//! `\` after it literal ([`like_pattern`]); matching is case-sensitive.

use serde_json::Value;

use super::QueryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    Like,
}

impl Op {
    /// The operand suffixes, `""` (equals) first, for `help`.
    pub fn suffixes() -> Vec<&'static str> {
        std::iter::once("")
            .chain(Self::SUFFIXES.iter().map(|(s, _)| *s))
            .collect()
    }

    const SUFFIXES: [(&'static str, Op); 7] = [
        ("_ne", Op::Ne),
        ("_gt", Op::Gt),
        ("_ge", Op::Ge),
        ("_lt", Op::Lt),
        ("_le", Op::Le),
        ("_in", Op::In),
        ("_like", Op::Like),
    ];

    pub const fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::In => "IN",
            Op::Like => "LIKE",
        }
    }
}

/// A comparison value as the caller gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    Int(i64),
    Real(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// `name` is the operand's name with the operator suffix removed.
    Cmp {
        name: String,
        op: Op,
        values: Vec<Scalar>,
    },
}

/// `name <op> value`: a comparison built in code (reports, the funnel).
pub fn cmp(name: &str, op: Op, value: Scalar) -> Expr {
    Expr::Cmp {
        name: name.to_owned(),
        op,
        values: vec![value],
    }
}

/// `name` is one of `values` (text).
pub fn one_of(name: &str, values: &[&str]) -> Expr {
    Expr::Cmp {
        name: name.to_owned(),
        op: Op::In,
        values: values
            .iter()
            .map(|v| Scalar::Text((*v).to_owned()))
            .collect(),
    }
}

/// Parses a filter (or having) parameter. `param` names it in errors.
pub fn parse(text: &str, param: &'static str) -> Result<Expr, QueryError> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json counts columns from 1 on the line; expressions are
        // usually one line, so this is the character position.
        QueryError::new(
            param,
            format!(
                "bad JSON at position {} (line {}): {e}",
                e.column(),
                e.line()
            ),
        )
    })?;
    expr(&v, param, 0)
}

const MAX_DEPTH: usize = 16;

fn expr(v: &Value, param: &'static str, depth: usize) -> Result<Expr, QueryError> {
    if depth > MAX_DEPTH {
        return Err(QueryError::new(param, "expression nested too deeply"));
    }
    let Value::Array(items) = v else {
        return Err(QueryError::new(
            param,
            format!("expected [\"AND\"|\"OR\"|\"NOT\", ...] or [\"<field>\", value], got {v}"),
        ));
    };
    let Some(Value::String(head)) = items.first() else {
        return Err(QueryError::new(
            param,
            "an expression starts with an operator or a field name (a string)",
        ));
    };
    let rest = &items[1..];
    match head.as_str() {
        "AND" | "OR" => {
            if rest.is_empty() {
                return Err(QueryError::new(param, format!("{head} needs operands")));
            }
            let ops = rest
                .iter()
                .map(|o| expr(o, param, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if head == "AND" {
                Expr::And(ops)
            } else {
                Expr::Or(ops)
            })
        }
        "NOT" => match rest {
            [one] => Ok(Expr::Not(Box::new(expr(one, param, depth + 1)?))),
            _ => Err(QueryError::new(param, "NOT takes exactly one operand")),
        },
        other if other.chars().all(|c| c.is_ascii_uppercase()) => Err(QueryError::new(
            param,
            format!(
                "unknown operator {other:?}: use AND, OR, NOT, or a [\"<field>\", value] operand"
            ),
        )),
        operand => {
            let (name, op) = Op::SUFFIXES
                .iter()
                .find_map(|(suffix, op)| operand.strip_suffix(suffix).map(|n| (n, *op)))
                .unwrap_or((operand, Op::Eq));
            let values = match (op, rest) {
                (Op::In, [Value::Array(vs)]) if !vs.is_empty() => vs
                    .iter()
                    .map(|v| scalar(v, param, operand))
                    .collect::<Result<Vec<_>, _>>()?,
                (Op::In, _) => {
                    return Err(QueryError::new(
                        param,
                        format!("{operand} takes a non-empty array of values"),
                    ));
                }
                (_, [v]) => vec![scalar(v, param, operand)?],
                _ => {
                    return Err(QueryError::new(
                        param,
                        format!("{operand} takes exactly one value"),
                    ));
                }
            };
            if op == Op::Like
                && let Scalar::Text(t) = &values[0]
            {
                like_pattern(t).map_err(|m| QueryError::new(param, format!("{operand}: {m}")))?;
            }
            Ok(Expr::Cmp {
                name: name.to_owned(),
                op,
                values,
            })
        }
    }
}

/// Checks a `_like` pattern: a backslash escapes `%`, `_` or `\` and
/// nothing else. A valid pattern is already in the one escaped form both
/// stores read alike (SQLite with `ESCAPE '\'`, ClickHouse natively),
/// so it is passed on as it is; anything else (`\N`, which ClickHouse
/// turned into a regular expression it could not compile, or `\d`,
/// which it read as any digit) is refused rather than guessed at.
pub fn like_pattern(text: &str) -> Result<(), String> {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('%' | '_' | '\\') => {}
                Some(other) => {
                    return Err(format!(
                        "a backslash escapes only %, _ or a backslash, not {other:?} \
                         (write \\\\ for a literal backslash)"
                    ));
                }
                None => {
                    return Err(
                        "the pattern ends in a lone backslash (write \\\\ for a literal one)"
                            .into(),
                    );
                }
            }
        }
    }
    Ok(())
}

fn scalar(v: &Value, param: &'static str, operand: &str) -> Result<Scalar, QueryError> {
    match v {
        Value::String(s) => Ok(Scalar::Text(s.clone())),
        Value::Number(n) => Ok(match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Scalar::Int(i),
            (None, Some(f)) => Scalar::Real(f),
            _ => {
                return Err(QueryError::new(
                    param,
                    format!("{operand}: number out of range"),
                ));
            }
        }),
        Value::Bool(b) => Ok(Scalar::Text(b.to_string())),
        _ => Err(QueryError::new(
            param,
            format!("{operand}: a value is a string or a number, got {v}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let e = parse(
            r#"["AND", ["date_ge", "2024-01-01"], ["date_le", "2024-06-01"],
                ["OR", ["offer_id", "id1"], ["offer_id", "id2"]]]"#,
            "filter",
        )
        .unwrap();
        let Expr::And(ops) = e else { panic!() };
        assert_eq!(ops.len(), 3);
        assert_eq!(
            ops[0],
            Expr::Cmp {
                name: "date".into(),
                op: Op::Ge,
                values: vec![Scalar::Text("2024-01-01".into())]
            }
        );
    }

    #[test]
    fn suffixes_values_and_errors() {
        let e = parse(r#"["affiliate_id_in", ["1", 2]]"#, "filter").unwrap();
        assert_eq!(
            e,
            Expr::Cmp {
                name: "affiliate_id".into(),
                op: Op::In,
                values: vec![Scalar::Text("1".into()), Scalar::Int(2)]
            }
        );
        assert!(parse(r#"["count_ge", 10]"#, "having").is_ok());
        let err = parse(r#"["AND", ["ip", "1.1.1.1"]"#, "filter").unwrap_err();
        assert!(
            err.message.contains("bad JSON at position"),
            "{}",
            err.message
        );
        assert!(parse(r#"["NOT", ["a", 1], ["b", 2]]"#, "filter").is_err());
        assert!(parse(r#"["ip_in", []]"#, "filter").is_err());
        assert!(parse(r#"["ip", {"x": 1}]"#, "filter").is_err());
        assert!(parse(r#"{"ip": 1}"#, "filter").is_err());
        // _like: a backslash escapes %, _ and itself, nothing else.
        for ok in [
            r#"["ua_like", "50\\%%"]"#,
            r#"["ua_like", "a\\_b\\\\"]"#,
            r#"["ua_like", 5]"#,
        ] {
            assert!(parse(ok, "filter").is_ok(), "{ok}");
        }
        for bad in [
            r#"["ua_like", "\\N"]"#,
            r#"["ua_like", "a\\d"]"#,
            r#"["ua_like", "x\\"]"#,
        ] {
            let e = parse(bad, "filter").unwrap_err();
            assert_eq!(e.field, "filter", "{bad}");
            assert!(e.message.starts_with("ua_like: "), "{}", e.message);
        }
        let deep = format!("{}[\"a\",1]{}", "[\"NOT\",".repeat(20), "]".repeat(20));
        assert!(parse(&deep, "filter").is_err());
    }
}
