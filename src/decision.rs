//! The one answer every front door renders: allow/block, tags, where the
//! verdict came from, why, and how long it took.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::policy::{Action, Mode, Ruling};
use crate::rules::RuleHit;
use crate::verdict::Tags;

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
}

impl Door {
    pub const ALL: [Door; 8] = [
        Door::Check,
        Door::Batch,
        Door::Rt,
        Door::Auth,
        Door::Click,
        Door::Imp,
        Door::OpenRtb,
        Door::Layer,
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
        }
    }
}

/// A decision id: 64 random bits per process, then a counter. Unique across
/// replicas with overwhelming probability, sortable within one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecisionId(pub u128);

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for DecisionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Hands out [`DecisionId`]s.
#[derive(Debug)]
pub struct IdGen {
    prefix: u64,
    next: AtomicU64,
}

impl Default for IdGen {
    fn default() -> Self {
        use std::hash::BuildHasher;
        let seed =
            std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
        IdGen {
            prefix: seed,
            next: AtomicU64::new(1),
        }
    }
}

impl IdGen {
    pub fn next(&self) -> DecisionId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        DecisionId(((self.prefix as u128) << 64) | n as u128)
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
