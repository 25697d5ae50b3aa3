//! What the decision log keeps of one decision. Built on the hot path from
//! what the scorer already holds (copies, no formatting); turned into
//! columns by the writer, off the hot path.

use std::net::IpAddr;
use std::sync::Arc;

use crate::decision::{Decision, DecisionId, Door, Source};
use crate::event::{Event, EventType, Opt};
use crate::policy::{Action, Mode};
use crate::rules::RuleHit;
use crate::verdict::Tags;

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
    pub fn new(event: &Event, d: &Decision, door: Door, client: Option<Arc<str>>) -> Self {
        Record {
            id: d.id,
            door,
            client,
            event: LoggedEvent::from(event),
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

/// An event as the log keeps it: its strings in one allocation, not one
/// per field. The writer thread frees what the request worker allocated,
/// and each such free is a cross-thread hand-back in the allocator:
/// measured, those frees were about half of what queueing a record cost.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub event_type: EventType,
    pub ip: IpAddr,
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
        let opt_len: usize = e.optional().map(|(_, v)| v.len()).sum();
        let mut text =
            String::with_capacity(e.ua.len() + e.affiliate_id.len() + e.offer_id.len() + opt_len);
        // Fields are cut to RT's limits (at most a few KiB), so offsets fit u32.
        let end = |text: &mut String, s: &str| {
            text.push_str(s);
            text.len() as u32
        };
        let ends = [
            end(&mut text, &e.ua),
            end(&mut text, &e.affiliate_id),
            end(&mut text, &e.offer_id),
        ];
        let optional = e.optional().map(|(o, v)| (o, end(&mut text, v))).collect();
        LoggedEvent {
            event_type: e.event_type,
            ip: e.ip,
            text: text.into_boxed_str(),
            ends,
            optional,
        }
    }
}

impl LoggedEvent {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBuilder;

    #[test]
    fn keeps_every_field_of_the_event() {
        let e = EventBuilder::from_query(
            "event_type=impression&ip=2001:db8::1&ua=Mozilla%2F5.0%20%C3%A9&affiliate_id=af&offer_id=o1\
             &aff_sub2=s%C3%BCb&country_code=DE&aff_sub1=",
        )
        .unwrap()
        .build()
        .unwrap();
        let l = LoggedEvent::from(&e);
        assert_eq!(l.event_type, e.event_type);
        assert_eq!(l.ip, e.ip);
        assert_eq!(
            (l.ua(), l.affiliate_id(), l.offer_id()),
            (e.ua.as_str(), "af", "o1")
        );
        assert_eq!(
            l.optional().collect::<Vec<_>>(),
            e.optional().collect::<Vec<_>>()
        );
        assert_eq!(l.get(Opt::AffSub2), Some("süb"));
        assert_eq!(l.get(Opt::AffSub1), e.get(Opt::AffSub1));
        assert_eq!(l.get(Opt::AffSub3), None);
    }
}
