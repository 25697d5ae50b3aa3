//! Fraudshield's trackers as fraudgate's clients: `auth.trackers` gives
//! each client (the one whose key sent the decision) a tracker id; a
//! report's `tracker_id` selects that client's decisions, and answers
//! name the tracker of each decision's client.

use std::collections::BTreeMap;

use crate::query::report::cmp;
use crate::query::{Expr, Op, QueryError, Scalar};

/// Client name -> tracker id, as configured.
#[derive(Debug, Clone, Copy)]
pub struct Trackers<'a>(&'a BTreeMap<String, u64>);

impl<'a> Trackers<'a> {
    pub fn new(by_client: &'a BTreeMap<String, u64>) -> Self {
        Trackers(by_client)
    }

    /// The tracker id of a client, if it has one.
    pub fn id_of(&self, client: &str) -> Option<u64> {
        self.0.get(client).copied()
    }

    /// The client of a tracker id.
    pub fn client_of(&self, id: u64) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(_, t)| **t == id)
            .map(|(c, _)| c.as_str())
    }

    /// The rows of tracker `id`: an unknown id is a 400 naming `param`,
    /// not an empty answer (a typo would look like a quiet tracker).
    pub fn filter(&self, id: u64, param: &'static str) -> Result<Expr, QueryError> {
        let client = self.client_of(id).ok_or_else(|| {
            QueryError::new(
                param,
                format!(
                    "tracker_id {id} is not configured (auth.trackers: client name = tracker id)"
                ),
            )
        })?;
        Ok(cmp("client", Op::Eq, Scalar::Text(client.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracker_id_selects_its_client_and_an_unknown_one_is_named() {
        let map = BTreeMap::from([("adserver-eu".to_owned(), 81), ("anonymous".to_owned(), 7)]);
        let t = Trackers::new(&map);
        assert_eq!(t.id_of("adserver-eu"), Some(81));
        assert_eq!(t.id_of("other"), None);
        assert_eq!(
            t.filter(81, "tracker_id").unwrap(),
            cmp("client", Op::Eq, Scalar::Text("adserver-eu".into()))
        );
        assert_eq!(t.filter(82, "tracker_id").unwrap_err().field, "tracker_id");
    }
}
