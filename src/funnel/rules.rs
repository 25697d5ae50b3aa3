//! The funnel rules: what a conversion and its click say together. Pure
//! checks on what the lookup found; each hit gives the `attribution` tag,
//! so the policy (`policy.tags.attribution`, per offer and affiliate)
//! decides on them as on RT's own attribution verdicts.

use std::sync::Arc;

use super::FunnelConfig;
use super::click::Click;
use super::postback::Postback;
use crate::decision::{RuleHit, RuleKind};
use crate::verdict::Tag;

/// The funnel's rule kinds.
pub const FUNNEL_RULES: [RuleKind; 7] = [
    RuleKind::CtitShort,
    RuleKind::CtitLong,
    RuleKind::ClickBlocked,
    RuleKind::Orphan,
    RuleKind::Duplicate,
    RuleKind::Mismatch,
    RuleKind::ImpToClick,
];

/// What the lookup found for a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credit<'a> {
    /// No `click_id` was given.
    NoClickId,
    /// The id is not a fraudgate decision id, or no click or impression
    /// has it in the log.
    Unknown,
    /// The click, older than its window.
    Expired(&'a Click),
    Click(&'a Click),
}

/// The checks on one conversion (`at`: its time, Unix seconds).
pub struct Checks<'a> {
    pub config: &'a FunnelConfig,
    pub enabled: &'a [RuleKind],
    pub postback: &'a Postback,
    pub at: i64,
}

fn hit(kind: RuleKind, reason: String) -> RuleHit {
    RuleHit {
        kind,
        name: Arc::from(kind.as_str()),
        tag: Some(Tag::Attribution),
        reason: Some(Arc::from(reason)),
    }
}

impl Checks<'_> {
    fn on(&self, kind: RuleKind) -> bool {
        self.enabled.contains(&kind)
    }

    /// The window a click of this kind credits conversions for.
    pub fn window_s(&self, click: &Click) -> i64 {
        let s = if click.event_type == "impression" {
            self.config.impression_window_s
        } else {
            self.config.click_window_s
        };
        i64::try_from(s).unwrap_or(i64::MAX)
    }

    /// Seconds from the click to the conversion.
    pub fn ctit(&self, click: &Click) -> i64 {
        self.at.saturating_sub(click.at)
    }

    /// `orphan`: no click credits the conversion.
    pub fn orphan(&self, credit: Credit<'_>) -> Option<RuleHit> {
        let reason = match credit {
            Credit::NoClickId => "no click_id".to_owned(),
            Credit::Unknown => "no click or impression with this id in the log".to_owned(),
            Credit::Expired(c) => format!(
                "its {} was {} s before, past the {} s window",
                c.event_type,
                self.ctit(c),
                self.window_s(c)
            ),
            Credit::Click(_) => return None,
        };
        self.on(RuleKind::Orphan)
            .then(|| hit(RuleKind::Orphan, reason))
    }

    /// `click_blocked`: the click was blocked (or would have been).
    pub fn click_blocked(&self, click: &Click) -> Option<RuleHit> {
        (self.on(RuleKind::ClickBlocked) && click.blocked).then(|| {
            hit(
                RuleKind::ClickBlocked,
                format!("its {} was blocked ({})", click.event_type, click.reason),
            )
        })
    }

    /// `ctit_short`: click injection. Only a click counts (a view-through
    /// conversion follows its impression at any pace).
    pub fn ctit_short(&self, click: &Click) -> Option<RuleHit> {
        let ctit = self.ctit(click);
        let limit = i64::try_from(self.config.ctit_short_s).unwrap_or(i64::MAX);
        (self.on(RuleKind::CtitShort) && click.event_type == "click" && ctit < limit).then(|| {
            hit(
                RuleKind::CtitShort,
                format!(
                    "{ctit} s from click to {}, under {limit} s",
                    self.postback.event_name()
                ),
            )
        })
    }

    /// Whether the conversion is slow enough for `ctit_long` to ask how
    /// many clicks its source sends per conversion.
    pub fn slow(&self, click: &Click) -> bool {
        self.on(RuleKind::CtitLong)
            && click.event_type == "click"
            && self.ctit(click) > i64::try_from(self.config.ctit_long_s).unwrap_or(i64::MAX)
    }

    /// `ctit_long`: click flooding: a slow conversion from a source with
    /// more clicks per conversion than the threshold (`clicks` and
    /// `conversions` in the click window, this one counted).
    pub fn ctit_long(&self, click: &Click, clicks: u64, conversions: u64) -> Option<RuleHit> {
        let conversions = conversions.max(1);
        let per = clicks / conversions;
        (self.slow(click) && per > self.config.flood_clicks_per_conversion).then(|| {
            hit(
                RuleKind::CtitLong,
                format!(
                    "{} s from click to {}; its source sent {clicks} clicks for {conversions} conversions ({per} a conversion, over {})",
                    self.ctit(click),
                    self.postback.event_name(),
                    self.config.flood_clicks_per_conversion
                ),
            )
        })
    }

    /// `duplicate`: the click already converted for this event.
    pub fn duplicate(&self, first: Option<&str>) -> Option<RuleHit> {
        let first = first?;
        self.on(RuleKind::Duplicate).then(|| {
            hit(
                RuleKind::Duplicate,
                format!(
                    "the click already converted for {} ({first})",
                    self.postback.event_name()
                ),
            )
        })
    }

    /// `mismatch`: click and conversion disagree on country, a device id
    /// or the platform, where both are known.
    pub fn mismatch(&self, click: &Click) -> Option<RuleHit> {
        if !self.on(RuleKind::Mismatch) {
            return None;
        }
        let given = |o: crate::event::Opt| {
            self.postback
                .fields
                .iter()
                .find(|(x, _)| *x == o)
                .map(|(_, v)| v.as_str())
        };
        use crate::event::Opt;
        let pairs = [
            (
                "country",
                click.country_code.as_deref(),
                given(Opt::CountryCode),
            ),
            ("idfa", click.idfa.as_deref(), given(Opt::Idfa)),
            (
                "android_id",
                click.android_id.as_deref(),
                given(Opt::AndroidId),
            ),
        ];
        for (what, at_click, at_conversion) in pairs {
            if let (Some(a), Some(b)) = (at_click, at_conversion)
                && !a.eq_ignore_ascii_case(b)
            {
                return Some(hit(
                    RuleKind::Mismatch,
                    format!("{what} {a} at the click, {b} at the conversion"),
                ));
            }
        }
        let platform = (
            click.device_os.as_deref().and_then(platform),
            given(Opt::DeviceOs).and_then(platform),
        );
        if let (Some(a), Some(b)) = platform
            && a != b
        {
            return Some(hit(
                RuleKind::Mismatch,
                format!("platform {a} at the click, {b} at the conversion"),
            ));
        }
        None
    }
}

/// What the log holds of the impression a click names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impression<'a> {
    /// The click names none.
    None,
    /// Named, and no impression has the id.
    Unknown(&'a str),
    /// Judged at this Unix millisecond.
    At(i64),
}

impl Checks<'_> {
    /// Whether the click's offer records impressions.
    pub fn wants_impression(&self, click: &Click) -> bool {
        self.on(RuleKind::ImpToClick)
            && click.event_type == "click"
            && self
                .config
                .impression_offers
                .iter()
                .any(|o| o == "*" || *o == click.offer_id)
    }

    /// `imp_to_click`: on an offer that records impressions, a click with
    /// none before it, or sooner after it than a person clicks (`click_ms`:
    /// when the click was judged).
    pub fn imp_to_click(
        &self,
        click: &Click,
        click_ms: i64,
        imp: Impression<'_>,
    ) -> Option<RuleHit> {
        if !self.wants_impression(click) {
            return None;
        }
        let min = i64::try_from(self.config.imp_to_click_min_ms).unwrap_or(i64::MAX);
        let reason = match imp {
            Impression::None => {
                format!("no impression before the click on offer {}", click.offer_id)
            }
            Impression::Unknown(id) => format!("its impression {id} is not in the log"),
            Impression::At(ms) if click_ms - ms < min => {
                format!(
                    "the click came {} ms after its impression, under {min} ms",
                    click_ms - ms
                )
            }
            Impression::At(_) => return None,
        };
        Some(hit(RuleKind::ImpToClick, reason))
    }
}

/// The platform a `device_os` names (None: not one it knows).
fn platform(os: &str) -> Option<&'static str> {
    let os = os.to_ascii_lowercase();
    if os.contains("android") {
        Some("android")
    } else if ["ios", "iphone", "ipad", "ipados"]
        .iter()
        .any(|p| os.contains(p))
    {
        Some("ios")
    } else if os.contains("windows") {
        Some("windows")
    } else if os.contains("mac") {
        Some("macos")
    } else if os.contains("linux") {
        Some("linux")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::Opt;

    fn click(at: i64) -> Click {
        Click {
            id: "c".into(),
            event_type: "click".into(),
            at,
            blocked: false,
            reason: "clean".into(),
            affiliate_id: "a".into(),
            offer_id: "o".into(),
            aff_sub: Default::default(),
            country_code: Some("DE".into()),
            ip: "10.0.0.1".into(),
            ua: "x".into(),
            idfa: None,
            android_id: None,
            device_os: Some("Android".into()),
            owners: Vec::new(),
            imp_id: None,
        }
    }

    fn kinds(hits: impl IntoIterator<Item = Option<RuleHit>>) -> Vec<RuleKind> {
        hits.into_iter().flatten().map(|h| h.kind).collect()
    }

    #[test]
    fn each_rule_fires_on_its_own_case_only() {
        let config = Config::default().funnel;
        let mut postback = Postback {
            fields: vec![
                (Opt::CountryCode, "DE".into()),
                (Opt::DeviceOs, "android 14".into()),
            ],
            ..Default::default()
        };
        let at = 1_000_000;
        let checks = |p: &Postback| -> Vec<RuleKind> {
            let c = Checks {
                config: &config,
                enabled: &FUNNEL_RULES,
                postback: p,
                at,
            };
            let fast = click(at - 3);
            let fine = click(at - 600);
            let slow = click(at - 2 * 86_400);
            let mut blocked = click(at - 600);
            blocked.blocked = true;
            kinds([
                c.ctit_short(&fast),
                c.ctit_short(&fine),
                c.click_blocked(&blocked),
                c.click_blocked(&fine),
                c.ctit_long(&slow, 5_000, 2),
                c.ctit_long(&slow, 500, 2),
                c.ctit_long(&fine, 5_000, 2),
                c.mismatch(&fine),
                c.duplicate(None),
                c.orphan(Credit::Click(&fine)),
                c.orphan(Credit::NoClickId),
            ])
        };
        use RuleKind::*;
        assert_eq!(
            checks(&postback),
            [CtitShort, ClickBlocked, CtitLong, Orphan]
        );
        postback.fields = vec![(Opt::CountryCode, "US".into())];
        assert_eq!(
            checks(&postback),
            [CtitShort, ClickBlocked, CtitLong, Mismatch, Orphan]
        );
        postback.fields = vec![(Opt::DeviceOs, "iOS".into())];
        assert_eq!(
            checks(&postback),
            [CtitShort, ClickBlocked, CtitLong, Mismatch, Orphan]
        );
    }

    #[test]
    fn a_rule_left_out_of_the_config_does_not_fire() {
        let config = Config::default().funnel;
        let postback = Postback::default();
        let c = Checks {
            config: &config,
            enabled: &[RuleKind::Orphan],
            postback: &postback,
            at: 100,
        };
        assert_eq!(c.ctit_short(&click(99)), None);
        assert_eq!(c.duplicate(Some("x")), None);
        assert!(c.orphan(Credit::Unknown).is_some());
        // An impression's conversion is not click injection, and its
        // window is its own.
        let mut imp = click(100 - 90_000);
        imp.event_type = "impression".into();
        assert_eq!(c.window_s(&imp), 86_400);
    }
}
