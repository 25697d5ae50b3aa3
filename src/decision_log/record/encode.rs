//! The hot path's encoding of a record: the fields of a decision as
//! bytes, onto the end of its thread's queue buffer.

use std::net::IpAddr;

use super::Record;
use crate::decision::RuleHit;
use crate::decision::{Action, Mode, Reason};
use crate::decision::{BadBody, UpstreamError};
use crate::decision::{Decision, DecisionId, Door, Source};
use crate::event::{Event, EventType, Opt};
use crate::verdict::Tags;

/// Every reason a decision gives, so the encoding carries an index and
/// the decoded record the same `&'static str` (`Reason::as_str`; a payload
/// does not change it). A reason missing here is recorded as "unknown" (a
/// test checks them all).
const REASON_KINDS: [Reason; 13] = [
    Reason::Clean,
    Reason::Tags,
    Reason::AllowList,
    Reason::VerifiedBot,
    Reason::Fallback(UpstreamError::Disabled),
    Reason::Fallback(UpstreamError::Timeout),
    Reason::Fallback(UpstreamError::Http(0)),
    Reason::Fallback(UpstreamError::Connect),
    Reason::Fallback(UpstreamError::BadBody(BadBody::NotTags)),
    Reason::Fallback(UpstreamError::Deadline),
    Reason::Fallback(UpstreamError::Internal),
    Reason::Fallback(UpstreamError::BreakerOpen),
    Reason::Fallback(UpstreamError::Busy),
];
pub(super) const REASONS: [&str; REASON_KINDS.len()] = {
    let mut out = [""; REASON_KINDS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = REASON_KINDS[i].as_str();
        i += 1;
    }
    out
};
const UNKNOWN_REASON: u8 = u8::MAX;

/// The fields of a decision the log keeps, borrowed from wherever they
/// are: the one encoder behind [`encode`] (the hot path) and
/// [`Record::encode`].
struct Parts<'a, O> {
    id: DecisionId,
    door: Door,
    client: Option<&'a str>,
    event_type: EventType,
    ip: IpAddr,
    ua: &'a str,
    affiliate_id: &'a str,
    offer_id: &'a str,
    /// Also among `optional`: it is part of the context too.
    country: Option<&'a str>,
    optional: O,
    decision: Action,
    would_be: Action,
    mode: Mode,
    tags: &'a Tags,
    blocked_by: &'a Tags,
    source: Source,
    reason: &'a str,
    rules: &'a [RuleHit],
    elapsed_us: u64,
    /// The event's time (RT's `at`), Unix seconds.
    at: u64,
}

// The layout: fixed-width integers little-endian; a string is its u32
// length then its bytes; enums are their discriminants, which equal their
// index in the type's `ALL` (a test checks). Fields are cut to RT's limits
// on the way in, so a string's length always fits.
//
//   record   u32 length of the rest of the record
//            u128 id, u64 elapsed_us, u64 at, ip (4 or 6, then its octets)
//   context  u32 length, then door, event_type, decision, would_be, mode,
//            source, reason index (a byte each), tags, blocked_by,
//            client (0, or 1 and a string), country_code (likewise),
//            rules (u32 count; each: kind, tag or 0xff, name, reason
//            as 0 or 1 and a string)
//   strings  ua, affiliate_id, offer_id
//   optional each field given: its `Opt` and value; then 0xff
//
// The context is what a decision shares with many others: the writer
// looks it up by its bytes (equal bytes, equal context), and reads the
// rest in place ([`Encoded`]).
fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_tags(out: &mut Vec<u8>, t: &Tags) {
    out.extend_from_slice(&t.known_mask().to_le_bytes());
    // An RT body of short unknown tags can hold over a thousand.
    let unknown = t.unknown();
    out.extend_from_slice(&(unknown.len() as u32).to_le_bytes());
    for u in unknown {
        put_str(out, u);
    }
}

/// Writes a u32 placeholder; [`end_len`] fills in the length of what
/// follows it.
fn begin_len(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; 4]);
    out.len() - 4
}

fn end_len(out: &mut [u8], at: usize) {
    let n = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&n.to_le_bytes());
}

impl<'a, O: Iterator<Item = (Opt, &'a str)>> Parts<'a, O> {
    fn write(self, out: &mut Vec<u8>) {
        let record = begin_len(out);
        out.extend_from_slice(&self.id.0.to_le_bytes());
        out.extend_from_slice(&self.elapsed_us.to_le_bytes());
        out.extend_from_slice(&self.at.to_le_bytes());
        match self.ip {
            IpAddr::V4(v4) => {
                out.push(4);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.push(6);
                out.extend_from_slice(&v6.octets());
            }
        }
        let context = begin_len(out);
        let reason = REASONS
            .iter()
            .position(|r| *r == self.reason)
            .map_or(UNKNOWN_REASON, |i| i as u8);
        out.extend_from_slice(&[
            self.door as u8,
            self.event_type as u8,
            self.decision as u8,
            self.would_be as u8,
            self.mode as u8,
            self.source as u8,
            reason,
        ]);
        put_tags(out, self.tags);
        put_tags(out, self.blocked_by);
        put_opt_str(out, self.client);
        put_opt_str(out, self.country);
        out.extend_from_slice(&(self.rules.len() as u32).to_le_bytes());
        for h in self.rules {
            out.push(h.kind as u8);
            out.push(h.tag.map_or(u8::MAX, |t| t as u8));
            put_str(out, &h.name);
            put_opt_str(out, h.reason.as_deref());
        }
        end_len(out, context);
        put_str(out, self.ua);
        put_str(out, self.affiliate_id);
        put_str(out, self.offer_id);
        // Optional fields: each at most once (26 kinds), ended by 0xff.
        for (o, v) in self.optional {
            out.push(o as u8);
            put_str(out, v);
        }
        out.push(u8::MAX);
        end_len(out, record);
    }
}

/// Appends what the log keeps of a decision to `out` (the hot path: no
/// allocation beyond `out` growing, no reference count touched).
pub fn encode(event: &Event, d: &Decision, door: Door, client: Option<&str>, out: &mut Vec<u8>) {
    Parts {
        id: d.id,
        door,
        client,
        event_type: event.event_type,
        ip: event.ip,
        ua: &event.ua,
        affiliate_id: &event.affiliate_id,
        offer_id: &event.offer_id,
        country: event.get(Opt::CountryCode),
        optional: event.optional(),
        decision: d.action,
        would_be: d.ruling.action,
        mode: d.mode,
        tags: &d.tags,
        blocked_by: &d.ruling.blocked_by,
        source: d.source,
        reason: d.ruling.reason.as_str(),
        rules: &d.rules,
        elapsed_us: d.elapsed.as_micros() as u64,
        at: crate::event::recorded_time(event.at, d.id.unix_ms() / 1000),
    }
    .write(out)
}

impl Record {
    /// Appends this record in the hot path's encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let e = &self.event;
        Parts {
            id: self.id,
            door: self.door,
            client: self.client.as_deref(),
            event_type: e.event_type,
            ip: e.ip,
            ua: e.ua(),
            affiliate_id: e.affiliate_id(),
            offer_id: e.offer_id(),
            country: e.get(Opt::CountryCode),
            optional: e.optional(),
            decision: self.decision,
            would_be: self.would_be,
            mode: self.mode,
            tags: &self.tags,
            blocked_by: &self.blocked_by,
            source: self.source,
            reason: self.reason,
            rules: &self.rules,
            elapsed_us: self.elapsed_us,
            at: e.at,
        }
        .write(out)
    }
}
