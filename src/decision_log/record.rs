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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::decision::{Decision, DecisionId, Door, Source};
use crate::event::{Event, EventType, Opt};
use crate::policy::{Action, Mode, Reason};
use crate::rules::{RuleHit, RuleKind};
use crate::upstream::UpstreamError;
use crate::verdict::{Tag, Tags};

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
    Reason::Fallback(UpstreamError::BadBody("")),
    Reason::Fallback(UpstreamError::Deadline),
    Reason::Fallback(UpstreamError::Internal),
    Reason::Fallback(UpstreamError::BreakerOpen),
    Reason::Fallback(UpstreamError::Busy),
];
const REASONS: [&str; REASON_KINDS.len()] = {
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
}

// The layout: fixed-width integers little-endian; a string is its u32
// length then its bytes; enums are their discriminants, which equal their
// index in the type's `ALL` (a test checks). Fields are cut to RT's limits
// on the way in, so a string's length always fits.
//
//   record   u32 length of the rest of the record
//            u128 id, u64 elapsed_us, ip (4 or 6, then its octets)
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
    }
    .write(out)
}

/// Text the encoding holds, as `&str` (written from a `&str`: always
/// UTF-8; checked all the same).
pub fn utf8(b: &[u8]) -> &str {
    let s = std::str::from_utf8(b);
    debug_assert!(s.is_ok(), "encoder and decoder disagree");
    s.unwrap_or_default()
}

/// Reads what [`encode`] wrote, front to back.
#[derive(Clone)]
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        let mut a = [0; N];
        a.copy_from_slice(head);
        a
    }

    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        s
    }

    /// A string's bytes.
    fn raw(&mut self) -> &'a [u8] {
        let n = self.u32() as usize;
        self.bytes(n)
    }

    fn str(&mut self) -> &'a str {
        utf8(self.raw())
    }

    fn opt_str(&mut self) -> Option<&'a str> {
        (self.u8() == 1).then(|| self.str())
    }

    fn tags(&mut self) -> Tags {
        let mask = u16::from_le_bytes(self.take());
        let n = self.u32();
        if n == 0 {
            return Tags::from_mask(mask);
        }
        let unknown = (0..n).map(|_| Box::from(self.str())).collect();
        Tags::from_parts(mask, unknown)
    }
}

/// The optional fields of an encoded record, read in place.
#[derive(Clone)]
struct Optional<'a>(Bytes<'a>);

impl<'a> Iterator for Optional<'a> {
    type Item = (Opt, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self.0.u8() {
            u8::MAX => None,
            o => Some((Opt::ALL[o as usize], self.0.raw())),
        }
    }
}

fn action(b: u8) -> Action {
    if b == Action::Block as u8 {
        Action::Block
    } else {
        Action::Allow
    }
}

/// One record as [`encode`] wrote it, read in place: its fixed fields
/// parsed, its strings left as bytes and its context as one run of bytes
/// (the compact store keys its dictionaries by these, and builds a
/// [`Record`] only for a context it has not seen).
#[derive(Clone, Copy)]
pub struct Encoded<'a> {
    pub id: DecisionId,
    pub elapsed_us: u64,
    pub ip: IpAddr,
    /// Door, event type, actions, mode, source, reason, tags, client,
    /// country and rules, as encoded: equal bytes, equal context.
    pub context: &'a [u8],
    pub ua: &'a [u8],
    pub affiliate_id: &'a [u8],
    pub offer_id: &'a [u8],
    /// The optional fields, up to and including the 0xff that ends them.
    optional: &'a [u8],
}

impl<'a> Encoded<'a> {
    /// Reads the record at the front of `input` and moves past it.
    pub fn read(input: &mut &'a [u8]) -> Self {
        let mut whole = Bytes(input);
        let mut b = Bytes(whole.raw());
        *input = whole.0;
        let id = DecisionId(u128::from_le_bytes(b.take()));
        let elapsed_us = u64::from_le_bytes(b.take());
        let ip = if b.u8() == 4 {
            IpAddr::V4(Ipv4Addr::from(b.take::<4>()))
        } else {
            IpAddr::V6(Ipv6Addr::from(b.take::<16>()))
        };
        let context = b.raw();
        let (ua, affiliate_id, offer_id) = (b.raw(), b.raw(), b.raw());
        Encoded {
            id,
            elapsed_us,
            ip,
            context,
            ua,
            affiliate_id,
            offer_id,
            optional: b.0,
        }
    }

    /// Unix milliseconds of the decision.
    pub fn ts_ms(&self) -> i64 {
        self.id.unix_ms() as i64
    }

    /// The optional fields given, in their order (their values UTF-8).
    pub fn optional(&self) -> impl Iterator<Item = (Opt, &'a [u8])> + use<'a> {
        Optional(Bytes(self.optional))
    }

    /// The value of an optional field, if the caller gave it.
    pub fn get(&self, opt: Opt) -> Option<&'a [u8]> {
        self.optional().find(|(o, _)| *o == opt).map(|(_, v)| v)
    }

    /// The whole record, sharing one client allocation with the record
    /// decoded before it when the client repeats (`last` is its).
    pub fn decode(&self, last: &mut Option<Arc<str>>) -> Record {
        let mut b = Bytes(self.context);
        let [door, event_type, decision, would_be, mode, source, reason] = b.take();
        let tags = b.tags();
        let blocked_by = b.tags();
        let client = b.opt_str().map(|c| match last {
            Some(l) if **l == *c => l.clone(),
            _ => last.insert(Arc::from(c)).clone(),
        });
        // (Among the optional fields too.)
        let _country = b.opt_str();
        let rules = (0..b.u32())
            .map(|_| {
                let kind = RuleKind::ALL[b.u8() as usize];
                let tag = Tag::ALL.get(b.u8() as usize).copied();
                let name = Arc::from(b.str());
                let reason = b.opt_str().map(Arc::from);
                RuleHit {
                    kind,
                    name,
                    tag,
                    reason,
                }
            })
            .collect();
        debug_assert!(b.0.is_empty(), "encoder and decoder disagree");
        let event_type = if event_type == EventType::Impression as u8 {
            EventType::Impression
        } else {
            EventType::Click
        };
        let event = LoggedEvent::new(
            event_type,
            self.ip,
            [utf8(self.ua), utf8(self.affiliate_id), utf8(self.offer_id)],
            self.optional().map(|(o, v)| (o, utf8(v))),
            self.optional().map(|(_, v)| v.len()).sum(),
        );
        Record {
            id: self.id,
            door: Door::ALL[door as usize],
            client,
            event,
            decision: action(decision),
            would_be: action(would_be),
            mode: if mode == Mode::Shadow as u8 {
                Mode::Shadow
            } else {
                Mode::Enforce
            },
            tags,
            blocked_by,
            source: Source::ALL[source as usize],
            reason: REASONS.get(reason as usize).copied().unwrap_or("unknown"),
            rules,
            elapsed_us: self.elapsed_us,
        }
    }
}

impl Record {
    /// Builds a record (tests, benches, tools; the hot path encodes
    /// instead): the same bytes the hot path writes, decoded.
    pub fn new(event: &Event, d: &Decision, door: Door, client: Option<Arc<str>>) -> Self {
        let mut b = Vec::new();
        encode(event, d, door, client.as_deref(), &mut b);
        Record::decode(&mut &b[..])
    }

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
        }
        .write(out)
    }

    /// Reads one encoded record off the front of `input`.
    pub fn decode(input: &mut &[u8]) -> Record {
        Record::decode_sharing(input, &mut None)
    }

    /// [`Record::decode`], sharing one allocation among consecutive
    /// records of the same client (`last` is the previous one's).
    pub fn decode_sharing(input: &mut &[u8], last: &mut Option<Arc<str>>) -> Record {
        Encoded::read(input).decode(last)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBuilder;
    use crate::policy::Ruling;

    fn event(query: &str) -> Event {
        EventBuilder::from_query(query).unwrap().build().unwrap()
    }

    /// A decision with every part a record keeps set to something that
    /// is not a default.
    fn decision() -> Decision {
        let hit = |kind, name: &str, tag, reason: Option<&str>| RuleHit {
            kind,
            name: name.into(),
            tag,
            reason: reason.map(Into::into),
        };
        Decision {
            id: DecisionId(0x0192_3456_789a_7bcd_8123_4567_89ab_cdef),
            action: Action::Allow,
            ruling: Ruling {
                action: Action::Block,
                reason: Reason::Fallback(UpstreamError::Http(502)),
                blocked_by: Tags::parse("proxy\nweird tag").unwrap(),
            },
            mode: Mode::Shadow,
            tags: Tags::parse("datacenter\nproxy\nweird tag\nother-tag").unwrap(),
            source: Source::Local,
            rules: vec![
                hit(RuleKind::Datacenter, "aws", Some(Tag::Datacenter), None),
                hit(
                    RuleKind::BlockList,
                    "partner list",
                    Some(Tag::Blacklist),
                    Some("fraud ring \u{e9}"),
                ),
                hit(RuleKind::VerifiedBot, "googlebot", None, Some("")),
            ],
            coalesced: false,
            stale: false,
            cache_ttl: std::time::Duration::ZERO,
            elapsed: std::time::Duration::from_micros(4321),
        }
    }

    #[test]
    fn a_decision_is_decoded_as_it_was_encoded() {
        let e = event(
            "event_type=impression&ip=2001:db8::7&ua=Mozilla%2F5.0%20%C3%A9&affiliate_id=af\
             &offer_id=o1&aff_sub3=s%C3%BCb&country_code=DE&aff_sub1=&source=feed&idfa=x-1",
        );
        let d = decision();
        let r = Record::new(&e, &d, Door::OpenRtb, Some("partner".into()));
        assert_eq!(r.id, d.id);
        assert_eq!(r.door, Door::OpenRtb);
        assert_eq!(r.client.as_deref(), Some("partner"));
        assert_eq!(
            format!("{:?}", r.event),
            format!("{:?}", LoggedEvent::from(&e))
        );
        assert_eq!(
            (r.decision, r.would_be, r.mode),
            (Action::Allow, Action::Block, Mode::Shadow)
        );
        assert!(r.tags == d.tags && r.blocked_by == d.ruling.blocked_by);
        assert_eq!(r.tags.unknown().len(), 2);
        assert_eq!((r.source, r.reason), (Source::Local, "upstream_http_error"));
        assert_eq!(r.rules, d.rules);
        assert_eq!(r.elapsed_us, 4321);

        // Back to back in one buffer, each read back whole, then nothing left.
        let v4 = event("event_type=click&ip=198.51.100.9&ua=&affiliate_id=7&offer_id=8");
        let mut plain = Record::new(&v4, &d, Door::Check, None);
        plain.tags = Tags::clean();
        plain.mode = Mode::Enforce;
        plain.source = Source::Upstream;
        plain.decision = Action::Block;
        plain.would_be = Action::Allow;
        plain.event.event_type = EventType::Click;
        plain.blocked_by = Tags::from_known(&[Tag::Cap]);
        plain.rules.clear();
        plain.reason = "clean";
        let mut other = r.clone();
        other.client = Some("another".into());
        // More unknown tags than a byte counts (an RT body of short tags).
        let many: String = (0..300).map(|i| format!("t{i}\n")).collect();
        other.tags = Tags::parse(&many).unwrap();
        assert_eq!(other.tags.unknown().len(), 300);
        let mut buf = Vec::new();
        for rec in [&r, &plain, &r, &other] {
            rec.encode(&mut buf);
        }
        // As the writer reads them: one client allocation shared while it repeats.
        let (mut bytes, mut last) = (&buf[..], None);
        let mut got = Vec::new();
        for want in [&r, &plain, &r, &other] {
            got.push(Record::decode_sharing(&mut bytes, &mut last));
            assert_eq!(format!("{:?}", got.last().unwrap()), format!("{want:?}"));
        }
        let client = |i: usize| got[i].client.clone().unwrap();
        assert!(
            Arc::ptr_eq(&client(0), &client(2)),
            "one allocation while it repeats"
        );
        assert!(bytes.is_empty());
        assert_eq!(last.as_deref(), Some("another"));
    }

    #[test]
    fn every_reason_is_recorded_as_itself() {
        use UpstreamError as U;
        // Exhaustive: a new variant fails to compile here until it is listed
        // below (and in REASONS).
        let _listed = |r: Reason| match r {
            Reason::Clean | Reason::Tags | Reason::AllowList | Reason::VerifiedBot => (),
            Reason::Fallback(
                U::Disabled
                | U::Timeout
                | U::Http(_)
                | U::Connect
                | U::BadBody(_)
                | U::Deadline
                | U::Internal
                | U::BreakerOpen
                | U::Busy,
            ) => (),
        };
        let upstream = [
            U::Disabled,
            U::Timeout,
            U::Http(500),
            U::Connect,
            U::BadBody("x"),
            U::Deadline,
            U::Internal,
            U::BreakerOpen,
            U::Busy,
        ];
        let reasons = [
            Reason::Clean,
            Reason::Tags,
            Reason::AllowList,
            Reason::VerifiedBot,
        ]
        .into_iter()
        .chain(upstream.map(Reason::Fallback));
        let e = event("event_type=click&ip=198.51.100.9&ua=u&affiliate_id=7&offer_id=8");
        let mut d = decision();
        for reason in reasons {
            d.ruling.reason = reason;
            let r = Record::new(&e, &d, Door::Check, None);
            assert_eq!(r.reason, reason.as_str());
        }
    }

    /// The encoding writes discriminants and reads them back as indexes.
    #[test]
    fn enum_discriminants_are_their_index_in_all() {
        fn check<T: Copy + std::fmt::Debug>(all: &[T], disc: impl Fn(T) -> u8) {
            for (i, v) in all.iter().enumerate() {
                assert_eq!(disc(*v) as usize, i, "{v:?}");
            }
        }
        check(&Door::ALL, |v| v as u8);
        check(&Source::ALL, |v| v as u8);
        check(&Opt::ALL, |v| v as u8);
        check(&RuleKind::ALL, |v| v as u8);
        check(&Tag::ALL, |v| v as u8);
        check(&[Action::Allow, Action::Block], |v| v as u8);
        check(&[Mode::Enforce, Mode::Shadow], |v| v as u8);
        check(&[EventType::Click, EventType::Impression], |v| v as u8);
    }

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
