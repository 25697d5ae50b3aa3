//! Which local rule fired, and how. Plain types (a leaf): the rules
//! produce them, the decision log and the query side store and read them.

use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::verdict::Tag;

/// Which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    AllowList,
    BlockList,
    CrawlerUa,
    Datacenter,
    Cap,
    Velocity,
    /// A speculative load (prefetch, prerender, link preview) on a
    /// browser-facing door.
    Prefetch,
    /// A Tor exit or public VPN exit (`rules.proxy` ranges).
    Proxy,
    /// From a declared crawler's published ranges (`rules.verified_bots`):
    /// it is who it says, still no person.
    VerifiedBot,
    /// The funnel's (`/v1/postback`): click to conversion too fast (click
    /// injection).
    CtitShort,
    /// Click to conversion very slow from a source that floods clicks.
    CtitLong,
    /// A conversion of a click the policy blocked.
    ClickBlocked,
    /// A conversion with no known click in the window.
    Orphan,
    /// The same click converting twice for the same event.
    Duplicate,
    /// Click and conversion disagree on country, device id or platform.
    Mismatch,
    /// A converting click with no impression before it on an offer that
    /// records impressions, or one faster than a person clicks.
    ImpToClick,
}

impl RuleKind {
    pub const ALL: [RuleKind; 16] = [
        RuleKind::AllowList,
        RuleKind::BlockList,
        RuleKind::CrawlerUa,
        RuleKind::Datacenter,
        RuleKind::Cap,
        RuleKind::Velocity,
        RuleKind::Prefetch,
        RuleKind::Proxy,
        RuleKind::VerifiedBot,
        RuleKind::CtitShort,
        RuleKind::CtitLong,
        RuleKind::ClickBlocked,
        RuleKind::Orphan,
        RuleKind::Duplicate,
        RuleKind::Mismatch,
        RuleKind::ImpToClick,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RuleKind::AllowList => "allow_list",
            RuleKind::BlockList => "block_list",
            RuleKind::CrawlerUa => "crawler_ua",
            RuleKind::Datacenter => "datacenter",
            RuleKind::Cap => "cap",
            RuleKind::Velocity => "velocity",
            RuleKind::Prefetch => "prefetch",
            RuleKind::Proxy => "proxy",
            RuleKind::VerifiedBot => "verified_bot",
            RuleKind::CtitShort => "ctit_short",
            RuleKind::CtitLong => "ctit_long",
            RuleKind::ClickBlocked => "click_blocked",
            RuleKind::Orphan => "orphan",
            RuleKind::Duplicate => "duplicate",
            RuleKind::Mismatch => "mismatch",
            RuleKind::ImpToClick => "imp_to_click",
        }
    }
}

/// One rule that fired: kind, list/range/cap name, the tag it gives, and
/// the entry's reason or the pattern that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleHit {
    pub kind: RuleKind,
    pub name: Arc<str>,
    #[serde(serialize_with = "tag_name", skip_serializing_if = "Option::is_none")]
    pub tag: Option<Tag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Arc<str>>,
}

impl RuleHit {
    /// A rule that gives `tag`.
    pub(crate) fn tagged(
        kind: RuleKind,
        name: &Arc<str>,
        tag: Tag,
        reason: Option<Arc<str>>,
    ) -> Self {
        RuleHit {
            kind,
            name: name.clone(),
            tag: Some(tag),
            reason,
        }
    }
}

fn tag_name<S: Serializer>(t: &Option<Tag>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(t.as_str()),
        None => s.serialize_none(),
    }
}
