//! The policy's vocabulary: allow or block, enforce or shadow, and why.
//! Plain types (a leaf): the policy decides them, the decision log and
//! the query side store and read them.

use serde::{Deserialize, Serialize};

use super::UpstreamError;
use crate::verdict::Tags;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Block,
}

impl Action {
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Answer what the policy decides.
    Enforce,
    /// Decide and record, but always answer allow.
    Shadow,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// Why the policy decided what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No tags.
    Clean,
    /// Tags present; `blocked_by` says which of them block.
    Tags,
    /// No verdict could be had: the fallback action applied.
    Fallback(UpstreamError),
    /// An allow-list entry matched; nothing else was consulted.
    AllowList,
    /// A verified bot the policy allows (`policy.allow_verified_bots`).
    VerifiedBot,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Clean => "clean",
            Reason::Tags => "tags",
            Reason::Fallback(e) => e.reason(),
            Reason::AllowList => "allow_list",
            Reason::VerifiedBot => "verified_bot",
        }
    }
}

/// The policy's answer for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruling {
    /// What the policy decides (the would-be decision in shadow mode).
    pub action: Action,
    pub reason: Reason,
    /// The tags that made it block (empty when allowed).
    pub blocked_by: Tags,
}
