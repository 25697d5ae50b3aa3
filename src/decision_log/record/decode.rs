//! Reading what the hot path encoded: in place ([`Encoded`]), or as a
//! whole [`Record`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::encode::REASONS;
use super::{LoggedEvent, Record};
use crate::decision::{Action, Mode};
use crate::decision::{DecisionId, Door, Source};
use crate::decision::{RuleHit, RuleKind};
use crate::event::{EventType, Opt};
use crate::verdict::{Tag, Tags};

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
    /// The event's time, Unix seconds.
    pub at: u64,
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
        let at = u64::from_le_bytes(b.take());
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
            at,
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
        let event_type = EventType::ALL
            .get(event_type as usize)
            .copied()
            .unwrap_or(EventType::Click);
        let event = LoggedEvent::new(
            event_type,
            self.ip,
            self.at,
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
    /// Reads one encoded record off the front of `input`.
    pub fn decode(input: &mut &[u8]) -> Record {
        Record::decode_sharing(input, &mut None)
    }

    /// [`Record::decode`], sharing one allocation among consecutive
    /// records of the same client (`last` is the previous one's).
    pub fn decode_sharing(input: &mut &[u8], last: &mut Option<Arc<str>>) -> Record {
        Encoded::read(input).decode(last)
    }
}
