//! What the decision log keeps of one decision. Built on the hot path from
//! what the scorer already holds (clones, no formatting); turned into
//! columns by the writer, off the hot path.

use std::sync::Arc;

use crate::decision::{Decision, DecisionId, Door, Source};
use crate::event::Event;
use crate::policy::{Action, Mode};
use crate::rules::RuleHit;
use crate::verdict::Tags;

#[derive(Debug, Clone)]
pub struct Record {
    pub id: DecisionId,
    pub door: Door,
    /// The client key's name, when the door has client access.
    pub client: Option<Arc<str>>,
    pub event: Event,
    /// What the caller was told (allow in shadow mode).
    pub decision: Action,
    /// What the policy decided (differs from `decision` in shadow mode).
    pub would_be: Action,
    pub mode: Mode,
    pub tags: Tags,
    pub blocked_by: Tags,
    pub source: Source,
    pub reason: &'static str,
    pub rules: Vec<RuleHit>,
    pub elapsed_us: u64,
}

impl Record {
    pub fn new(event: &Event, d: &Decision, door: Door, client: Option<Arc<str>>) -> Self {
        Record {
            id: d.id,
            door,
            client,
            event: event.clone(),
            decision: d.action,
            would_be: d.ruling.action,
            mode: d.mode,
            tags: d.tags.clone(),
            blocked_by: d.ruling.blocked_by.clone(),
            source: d.source,
            reason: d.ruling.reason.as_str(),
            rules: d.rules.clone(),
            elapsed_us: d.elapsed.as_micros() as u64,
        }
    }

    /// Unix milliseconds of the decision (its UUIDv7 id carries them).
    pub fn ts_ms(&self) -> i64 {
        self.id.unix_ms() as i64
    }
}
