//! The scroll's `next_page_id`: where the last page ended, the last row's
//! time and decision id, so the next page is a seek on the time key
//! rather than an offset (a deep page costs what the first does, and rows
//! written meanwhile neither repeat nor go missing). Opaque to clients:
//! base64url of `v1:<ts>:<id>`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::query::report::cmp;
use crate::query::{Expr, Op, QueryError, Scalar};

/// The last row a scroll page handed out (rows go newest first: time,
/// then decision id, both descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", self.ts, self.id))
    }

    pub fn decode(text: &str) -> Result<Cursor, QueryError> {
        let bad = || {
            QueryError::new(
                "next_page_id",
                "not a next_page_id this gate gave out (take it from next_page_url)",
            )
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(3, ':');
        let (Some("v1"), Some(ts), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let ts = ts.parse().map_err(|_| bad())?;
        if crate::decision::DecisionId::parse(id).is_none() {
            return Err(bad());
        }
        Ok(Cursor {
            ts,
            id: id.to_owned(),
        })
    }

    /// The rows after this one in scroll order: older, or as old with a
    /// lower id. The bound on `ts` alone comes first so the store seeks.
    pub fn after(&self) -> Expr {
        Expr::And(vec![
            cmp("ts", Op::Le, Scalar::Int(self.ts)),
            Expr::Or(vec![
                cmp("ts", Op::Lt, Scalar::Int(self.ts)),
                cmp("id", Op::Lt, Scalar::Text(self.id.clone())),
            ]),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_round_trip_and_a_forged_one_is_named() {
        let c = Cursor {
            ts: 1_767_225_600_123,
            id: "019b7a3c-8e7b-7c2a-9f00-0123456789ab".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "!!", "djE6MTox", &URL_SAFE_NO_PAD.encode("v1:x:y")] {
            assert_eq!(
                Cursor::decode(bad).unwrap_err().field,
                "next_page_id",
                "{bad}"
            );
        }
    }
}
