//! What the decision log keeps of one decision.
//!
//! The hot path does not build a [`Record`]: it encodes the decision's
//! fields as bytes ([`encode`]) onto the end of its own thread's queue
//! buffer. No allocation, no reference count touched, and the writer
//! thread reads one contiguous run of bytes per buffer and frees nothing
//! the request worker allocated (measured: a record and its text handed
//! over as objects cost the request workers about as much again as the
//! writer spends on it). The writer reads the bytes in place
//! ([`Encoded`]): the embedded store turns them into columns without
//! building a `Record` (measured: 0.97 against 1.12 us a decision on the
//! writer, and a throughput cost of 3.8 against 5.7%, five pairs each in
//! one session); the ClickHouse store decodes whole records
//! ([`Encoded::decode`]).

mod decode;
mod encode;
#[cfg(test)]
pub(crate) mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use crate::decision::RuleHit;
use crate::decision::{Action, Mode};
use crate::decision::{Decision, DecisionId, Door, Source};
use crate::event::{Event, EventType, Opt};
use crate::verdict::Tags;
pub use decode::{Encoded, utf8};
pub use encode::encode;

/// What the log keeps of one decision, decoded.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: DecisionId,
    pub door: Door,
    /// The client key's name, when the door has client access.
    pub client: Option<Arc<str>>,
    pub event: LoggedEvent,
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
    /// Builds a record (tests, benches, tools; the hot path encodes
    /// instead): the same bytes the hot path writes, decoded.
    pub fn new(event: &Event, d: &Decision, door: Door, client: Option<Arc<str>>) -> Self {
        let mut b = Vec::new();
        encode(event, d, door, client.as_deref(), &mut b);
        Record::decode(&mut &b[..])
    }

    /// Unix milliseconds of the decision (its UUIDv7 id carries them).
    pub fn ts_ms(&self) -> i64 {
        self.id.unix_ms() as i64
    }
}

/// An event as the log keeps it: its strings in one allocation, not one
/// per field.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub event_type: EventType,
    pub ip: IpAddr,
    /// The event's time (RT's `at`; the decision's when the caller gave
    /// none), Unix seconds.
    pub at: u64,
    /// ua, affiliate_id, offer_id, then each optional field's value.
    text: Box<str>,
    /// Where ua, affiliate_id and offer_id end in `text`.
    ends: [u32; 3],
    /// Each optional field given and where its value ends in `text`
    /// (empty, so no allocation, when there are none).
    optional: Vec<(Opt, u32)>,
}

impl From<&Event> for LoggedEvent {
    fn from(e: &Event) -> Self {
        LoggedEvent::new(
            e.event_type,
            e.ip,
            e.at,
            [&e.ua, &e.affiliate_id, &e.offer_id],
            e.optional(),
            e.optional().map(|(_, v)| v.len()).sum(),
        )
    }
}

impl LoggedEvent {
    fn new<'a>(
        event_type: EventType,
        ip: IpAddr,
        at: u64,
        [ua, affiliate_id, offer_id]: [&str; 3],
        optional: impl Iterator<Item = (Opt, &'a str)>,
        opt_len: usize,
    ) -> Self {
        let mut text =
            String::with_capacity(ua.len() + affiliate_id.len() + offer_id.len() + opt_len);
        // Fields are cut to RT's limits (at most a few KiB), so offsets fit u32.
        let end = |text: &mut String, s: &str| {
            text.push_str(s);
            text.len() as u32
        };
        let ends = [
            end(&mut text, ua),
            end(&mut text, affiliate_id),
            end(&mut text, offer_id),
        ];
        let optional = optional.map(|(o, v)| (o, end(&mut text, v))).collect();
        LoggedEvent {
            event_type,
            ip,
            at,
            text: text.into_boxed_str(),
            ends,
            optional,
        }
    }

    pub fn ua(&self) -> &str {
        &self.text[..self.ends[0] as usize]
    }

    pub fn affiliate_id(&self) -> &str {
        &self.text[self.ends[0] as usize..self.ends[1] as usize]
    }

    pub fn offer_id(&self) -> &str {
        &self.text[self.ends[1] as usize..self.ends[2] as usize]
    }

    /// Optional fields in the order given.
    pub fn optional(&self) -> impl Iterator<Item = (Opt, &str)> {
        let starts = std::iter::once(self.ends[2]).chain(self.optional.iter().map(|(_, e)| *e));
        self.optional
            .iter()
            .zip(starts)
            .map(|((o, end), start)| (*o, &self.text[start as usize..*end as usize]))
    }

    /// The value of an optional field, if the caller gave it.
    pub fn get(&self, opt: Opt) -> Option<&str> {
        self.optional().find(|(o, _)| *o == opt).map(|(_, v)| v)
    }
}
