//! Verdict or error -> allow/block. The one place where upstream failures
//! become decisions (fail open or closed) and where tags become actions.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::config_error::ConfigError;
use crate::decision::UpstreamError;
pub use crate::decision::{Action, Mode, Reason, Ruling};
use crate::event::Event;
use crate::verdict::{Tag, Tags};

/// Block mask over the ten documented tags plus the unknown-tag action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TagActions {
    block_mask: u16,
    unknown: Action,
}

impl TagActions {
    fn apply(mut self, table: &TagActionTable, key: &str) -> Result<Self, ConfigError> {
        for (name, action) in table {
            if name == "unknown" {
                self.unknown = *action;
                continue;
            }
            let tag = Tag::from_config_name(name).ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}.{name}"),
                    "not a FraudScore RT tag (datacenter, blacklist, proxy, device, ip, os, crawler, dynamic_blacklist, cap, attribution, or unknown)",
                )
            })?;
            match action {
                Action::Block => self.block_mask |= tag.bit(),
                Action::Allow => self.block_mask &= !tag.bit(),
            }
        }
        Ok(self)
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    mode: Mode,
    on_error: Action,
    default: TagActions,
    offers: HashMap<Box<str>, TagActions>,
    affiliates: HashMap<Box<str>, TagActions>,
    /// Verified bots allowed by name; `None`: every one (`*`).
    verified_bots: Option<Vec<Box<str>>>,
    /// Rule kinds in shadow mode, as bits.
    shadow: u32,
}

impl Policy {
    pub fn from_config(c: &PolicyConfig) -> Result<Self, ConfigError> {
        let default = TagActions {
            block_mask: 0,
            unknown: c.unknown_tag,
        }
        .apply(&c.tags, "policy.tags")?;
        let overrides = |m: &std::collections::BTreeMap<String, TagActionTable>, section: &str| {
            m.iter()
                .map(|(id, t)| {
                    Ok((
                        id.as_str().into(),
                        default.apply(t, &format!("policy.{section}.{id}"))?,
                    ))
                })
                .collect::<Result<HashMap<_, _>, ConfigError>>()
        };
        Ok(Policy {
            shadow: c.shadow_mask()?,
            mode: c.mode,
            on_error: c.on_upstream_error,
            offers: overrides(&c.offers, "offers")?,
            affiliates: overrides(&c.affiliates, "affiliates")?,
            default,
            verified_bots: (!c.allow_verified_bots.iter().any(|b| b == "*")).then(|| {
                c.allow_verified_bots
                    .iter()
                    .map(|b| b.as_str().into())
                    .collect()
            }),
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether rules of this kind are in shadow mode: recorded, their tags
    /// not deciding.
    pub fn is_shadow(&self, kind: crate::decision::RuleKind) -> bool {
        self.shadow & (1 << (kind as u32)) != 0
    }

    /// The shadow rule kinds as bits.
    pub fn shadow_mask(&self) -> u32 {
        self.shadow
    }

    pub fn on_upstream_error(&self) -> Action {
        self.on_error
    }

    /// An allow-list hit: allow, whatever any rule or RT says.
    pub fn allow_listed(&self) -> Ruling {
        Ruling {
            action: Action::Allow,
            reason: Reason::AllowList,
            blocked_by: Tags::clean(),
        }
    }

    /// Whether the verified bot labelled `name` is allowed.
    pub fn allows_verified_bot(&self, name: &str) -> bool {
        self.verified_bots
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
    }

    /// An allowed verified bot: allow, tags kept (it is still a crawler,
    /// recorded as GIVT), no upstream call.
    pub fn verified_bot(&self) -> Ruling {
        Ruling {
            action: Action::Allow,
            reason: Reason::VerifiedBot,
            blocked_by: Tags::clean(),
        }
    }

    /// [`Policy::decide_with`] with the policy's own fallback action.
    pub fn decide(&self, outcome: Result<&Tags, UpstreamError>, event: &Event) -> Ruling {
        self.decide_with(outcome, event, None)
    }

    /// The only function that turns verdicts and failures into actions.
    /// Offer overrides win over affiliate overrides, which win over
    /// defaults. `on_error` is a front door's override of
    /// `policy.on_upstream_error`.
    pub fn decide_with(
        &self,
        outcome: Result<&Tags, UpstreamError>,
        event: &Event,
        on_error: Option<Action>,
    ) -> Ruling {
        let tags = match outcome {
            Ok(tags) => tags,
            Err(e) => {
                return Ruling {
                    action: on_error.unwrap_or(self.on_error),
                    reason: Reason::Fallback(e),
                    blocked_by: Tags::clean(),
                };
            }
        };
        if tags.is_clean() {
            return Ruling {
                action: Action::Allow,
                reason: Reason::Clean,
                blocked_by: Tags::clean(),
            };
        }
        let actions = self.actions_for(event);
        let known = tags.known_mask() & actions.block_mask;
        let unknown_blocks = actions.unknown == Action::Block && !tags.unknown().is_empty();
        let blocked_by = match (known, unknown_blocks) {
            (0, false) => Tags::clean(),
            (_, false) => Tags::from_mask(known),
            (_, true) => Tags::from_mask(known).merge(&Tags::unknown_only(tags)),
        };
        Ruling {
            action: if blocked_by.is_clean() {
                Action::Allow
            } else {
                Action::Block
            },
            reason: Reason::Tags,
            blocked_by,
        }
    }

    fn actions_for(&self, event: &Event) -> TagActions {
        self.actions_of(&event.offer_id, &event.affiliate_id)
    }

    fn actions_of(&self, offer_id: &str, affiliate_id: &str) -> TagActions {
        if !self.offers.is_empty()
            && let Some(a) = self.offers.get(offer_id)
        {
            return *a;
        }
        if !self.affiliates.is_empty()
            && let Some(a) = self.affiliates.get(affiliate_id)
        {
            return *a;
        }
        self.default
    }

    /// Whether the policy blocks these tags for this offer and affiliate
    /// (a recorded decision judged again: what a shadow rule would have
    /// done).
    pub fn blocks(&self, tags: &Tags, offer_id: &str, affiliate_id: &str) -> bool {
        let actions = self.actions_of(offer_id, affiliate_id);
        tags.known_mask() & actions.block_mask != 0
            || (actions.unknown == Action::Block && !tags.unknown().is_empty())
    }
}

/// Tag name (config spelling) -> action. Validated when the policy is built.
pub type TagActionTable = BTreeMap<String, Action>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub mode: Mode,
    pub on_upstream_error: Action,
    pub unknown_tag: Action,
    pub tags: TagActionTable,
    pub offers: BTreeMap<String, TagActionTable>,
    pub affiliates: BTreeMap<String, TagActionTable>,
    /// Verified bots (by their `rules.verified_bots` label, `*` for all)
    /// that are allowed, still tagged crawler and recorded as GIVT.
    pub allow_verified_bots: Vec<String>,
    /// Rule kinds in shadow mode: recorded, not deciding.
    #[serde(default)]
    pub shadow_rules: Vec<String>,
}

impl PolicyConfig {
    /// The shadow rule kinds as bits (`1 << kind`), checked.
    pub fn shadow_mask(&self) -> Result<u32, ConfigError> {
        let mut mask = 0u32;
        for (i, name) in self.shadow_rules.iter().enumerate() {
            let kind = crate::decision::RuleKind::ALL
                .into_iter()
                .find(|k| k.as_str() == name)
                .filter(|k| {
                    !matches!(
                        k,
                        crate::decision::RuleKind::AllowList | crate::decision::RuleKind::VerifiedBot
                    )
                })
                .ok_or_else(|| {
                    ConfigError::invalid(
                        format!("policy.shadow_rules[{i}]"),
                        format!("{name:?} is not a rule kind that blocks (allow_list and verified_bot allow)"),
                    )
                })?;
            mask |= 1 << (kind as u32);
        }
        Ok(mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::EventBuilder;

    fn event(offer: &str, aff: &str) -> Event {
        EventBuilder::from_query(&format!(
            "event_type=click&ip=1.2.3.4&ua=x&offer_id={offer}&affiliate_id={aff}"
        ))
        .unwrap()
        .build()
        .unwrap()
    }

    fn policy(extra: &[(&str, &str)]) -> Policy {
        let env = extra.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Policy::from_config(&Config::load_from(None, env).unwrap().policy).unwrap()
    }

    #[test]
    fn documented_defaults_block_the_strong_signals_only() {
        let p = policy(&[]);
        let e = event("1", "2");
        for (body, action) in [
            ("", Action::Allow),
            ("datacenter", Action::Block),
            ("blacklist", Action::Block),
            ("proxy", Action::Block),
            ("device", Action::Block),
            ("crawler", Action::Block),
            ("attribution", Action::Block),
            ("cap", Action::Block),
            ("ip", Action::Allow),
            ("os", Action::Allow),
            ("dynamic blacklist", Action::Allow),
            ("something-new", Action::Allow),
        ] {
            let tags = Tags::parse(body).unwrap();
            assert_eq!(p.decide(Ok(&tags), &e).action, action, "{body}");
        }
    }

    #[test]
    fn shadow_rules_are_kinds_that_block() {
        let p = policy(&[("FRAUDGATE_POLICY__SHADOW_RULES", "velocity,ctit_long")]);
        assert!(p.is_shadow(crate::decision::RuleKind::Velocity));
        assert!(p.is_shadow(crate::decision::RuleKind::CtitLong));
        assert!(!p.is_shadow(crate::decision::RuleKind::BlockList));
        for bad in ["allow_list", "velocty"] {
            let env = [(
                "FRAUDGATE_POLICY__SHADOW_RULES".to_string(),
                bad.to_string(),
            )];
            let c = Config::load_from(None, env);
            let e = c.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("policy.shadow_rules[0]"), "{bad}: {e}");
        }
        // What a shadow rule's tag would have done, per offer.
        let tags = Tags::parse("ip").unwrap();
        assert!(!p.blocks(&tags, "1", "2"), "ip is allowed by default");
        assert!(p.blocks(&Tags::parse("attribution").unwrap(), "1", "2"));
    }

    #[test]
    fn blocked_by_lists_only_blocking_tags() {
        let p = policy(&[]);
        let tags = Tags::parse("ip\nproxy\nos").unwrap();
        let r = p.decide(Ok(&tags), &event("1", "2"));
        assert_eq!(r.blocked_by.iter().collect::<Vec<_>>(), ["proxy"]);
        assert_eq!(r.reason, Reason::Tags);
    }

    #[test]
    fn offer_override_beats_affiliate_override_beats_default() {
        let p = policy(&[
            ("FRAUDGATE_POLICY__OFFERS__O1__PROXY", "allow"),
            ("FRAUDGATE_POLICY__AFFILIATES__A1__PROXY", "block"),
            ("FRAUDGATE_POLICY__AFFILIATES__A2__IP", "block"),
            ("FRAUDGATE_POLICY__AFFILIATES__A2__UNKNOWN", "block"),
        ]);
        let proxy = Tags::parse("proxy").unwrap();
        assert_eq!(
            p.decide(Ok(&proxy), &event("o1", "a1")).action,
            Action::Allow
        );
        assert_eq!(
            p.decide(Ok(&proxy), &event("o2", "a1")).action,
            Action::Block
        );
        let ip = Tags::parse("ip").unwrap();
        assert_eq!(p.decide(Ok(&ip), &event("o2", "a2")).action, Action::Block);
        assert_eq!(p.decide(Ok(&ip), &event("o2", "a3")).action, Action::Allow);
        let new = Tags::parse("weird").unwrap();
        let r = p.decide(Ok(&new), &event("o2", "a2"));
        assert_eq!(
            (r.action, r.blocked_by.iter().collect::<Vec<_>>()),
            (Action::Block, vec!["weird"])
        );
    }

    #[test]
    fn errors_follow_on_upstream_error() {
        let e = event("1", "2");
        let open = policy(&[]);
        let r = open.decide(Err(UpstreamError::Timeout), &e);
        assert_eq!(
            (r.action, r.reason.as_str()),
            (Action::Allow, "upstream_timeout")
        );
        let closed = policy(&[("FRAUDGATE_POLICY__ON_UPSTREAM_ERROR", "block")]);
        assert_eq!(
            closed.decide(Err(UpstreamError::Http(500)), &e).action,
            Action::Block
        );
    }
}
