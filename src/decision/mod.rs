//! The one answer every front door renders: allow/block, tags, where the
//! verdict came from, why, and how long it took.

use std::fmt;
use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::verdict::Tags;

mod rule;
mod ruling;
mod upstream_error;

pub use rule::{RuleHit, RuleKind};
pub use ruling::{Action, Mode, Reason, Ruling};
pub use upstream_error::{BadBody, UpstreamError};

/// Where the tags came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Upstream,
    Cache,
    Fallback,
    Local,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Upstream,
        Source::Cache,
        Source::Fallback,
        Source::Local,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Cache => "cache",
            Source::Fallback => "fallback",
            Source::Local => "local",
        }
    }
}

/// The front door a request came in by (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Check,
    Batch,
    Rt,
    Auth,
    Click,
    Imp,
    OpenRtb,
    Layer,
    Postback,
    /// Envoy/Istio `ext_authz` over gRPC (`doors.grpc`).
    Grpc,
}

impl Door {
    /// In discriminant order: the decision log's records store the index,
    /// so a new door is appended, never inserted.
    pub const ALL: [Door; 10] = [
        Door::Check,
        Door::Batch,
        Door::Rt,
        Door::Auth,
        Door::Click,
        Door::Imp,
        Door::OpenRtb,
        Door::Layer,
        Door::Postback,
        Door::Grpc,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Door::Check => "check",
            Door::Batch => "batch",
            Door::Rt => "rt",
            Door::Auth => "auth",
            Door::Click => "click",
            Door::Imp => "imp",
            Door::OpenRtb => "openrtb",
            Door::Layer => "layer",
            Door::Postback => "postback",
            Door::Grpc => "grpc",
        }
    }
}

/// A decision id: a UUIDv7 (RFC 9562). 48 bits of Unix milliseconds, so ids
/// sort by time across replicas, then 74 bits from a CSPRNG (ChaCha,
/// seeded from the OS), so nobody can guess the next click id from the
/// last one. Shown hyphenated, as every UUID parser expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DecisionId(pub u128);

impl DecisionId {
    /// Parses the hyphenated form (36 characters) back.
    pub fn parse(s: &str) -> Option<Self> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if s.len() != 36 || hex.len() != 32 {
            return None;
        }
        u128::from_str_radix(&hex, 16).ok().map(DecisionId)
    }

    /// Unix milliseconds when the id was made.
    pub fn unix_ms(self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl DecisionId {
    /// The hyphenated lowercase hex form (8-4-4-4-12), without the
    /// formatting machinery (measured: a tenth of the ClickHouse writer's
    /// time a decision through `write!`).
    pub fn hyphenated(&self) -> [u8; 36] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 36];
        let mut nibble = 0;
        for (i, o) in out.iter_mut().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                continue;
            }
            *o = HEX[(self.0 >> (124 - 4 * nibble)) as usize & 15];
            nibble += 1;
        }
        out
    }
}

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.hyphenated();
        // Only ASCII hex digits and hyphens.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for DecisionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.hyphenated();
        // Only ASCII hex digits and hyphens.
        s.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
    }
}

/// Hands out [`DecisionId`]s.
#[derive(Debug, Default)]
pub struct IdGen;

impl IdGen {
    pub fn next(&self) -> DecisionId {
        use rand::Rng;
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            & 0xffff_ffff_ffff;
        let random: u128 = rand::rng().random();
        // ms(48) | ver(4)=7 | rand_a(12) | var(2)=0b10 | rand_b(62)
        let rand_a = (random >> 64) as u128 & 0xfff;
        let rand_b = random & ((1u128 << 62) - 1);
        DecisionId(
            (u128::from(ms) << 80) | (0x7u128 << 76) | (rand_a << 64) | (0b10u128 << 62) | rand_b,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v7_time_ordered_and_unpredictable() {
        let g = IdGen;
        let a = g.next();
        let s = a.to_string();
        assert_eq!(s.len(), 36);
        let parts: Vec<_> = s.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(&s[14..15], "7", "version 7");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "RFC variant");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now.abs_diff(a.unix_ms()) < 5_000);
        // Consecutive ids share no counter: their random parts differ in
        // many bits (a counter would differ in one or two).
        let b = g.next();
        let random = |id: DecisionId| id.0 & ((1u128 << 74) - 1);
        assert!((random(a) ^ random(b)).count_ones() > 10);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(g.next() > a, "a later millisecond sorts after");
        assert_eq!(DecisionId::parse(&s), Some(a));
        assert_eq!(DecisionId::parse("nope"), None);
    }

    #[test]
    fn the_hyphenated_form_is_the_8_4_4_4_12_hex_of_the_bits() {
        for v in [
            0u128,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            1 << 127,
            15,
        ] {
            let want = format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                (v >> 96) as u32,
                (v >> 80) as u16,
                (v >> 64) as u16,
                (v >> 48) as u16,
                v as u64 & 0xffff_ffff_ffff
            );
            assert_eq!(DecisionId(v).to_string(), want);
            assert_eq!(DecisionId::parse(&want), Some(DecisionId(v)));
        }
    }
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub id: DecisionId,
    /// What the caller is told: the ruling in enforce mode, allow in shadow.
    pub action: Action,
    pub ruling: Ruling,
    pub mode: Mode,
    pub tags: Tags,
    pub source: Source,
    /// The local rules that fired (allow list, crawler, lists, ...).
    pub rules: Vec<RuleHit>,
    /// This request waited on another request's upstream call.
    pub coalesced: bool,
    /// A cached verdict served past its TTL while a refresh runs.
    pub stale: bool,
    /// How long the verdict stays cached (zero when not cached).
    pub cache_ttl: Duration,
    pub elapsed: Duration,
}

impl Decision {
    pub fn is_block(&self) -> bool {
        self.action == Action::Block
    }
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("decision", self.action.as_str())?;
        m.serialize_entry("tags", &self.tags)?;
        m.serialize_entry("source", self.source.as_str())?;
        m.serialize_entry("reason", self.ruling.reason.as_str())?;
        m.serialize_entry("blocked_by", &self.ruling.blocked_by)?;
        m.serialize_entry("mode", self.mode.as_str())?;
        if self.mode == Mode::Shadow {
            m.serialize_entry("would_be", self.ruling.action.as_str())?;
        }
        if !self.rules.is_empty() {
            m.serialize_entry("rules", &self.rules)?;
        }
        if self.coalesced {
            m.serialize_entry("coalesced", &true)?;
        }
        if self.stale {
            m.serialize_entry("stale", &true)?;
        }
        m.serialize_entry("elapsed_us", &(self.elapsed.as_micros() as u64))?;
        m.end()
    }
}
