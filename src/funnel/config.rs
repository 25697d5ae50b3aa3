//! `[funnel]`: the attribution windows and the thresholds of the funnel
//! rules.

use serde::Deserialize;

use super::rules::FUNNEL_RULES;
use crate::config_error::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelConfig {
    /// How long after a click a conversion is still credited to it.
    pub click_window_s: u64,
    /// How long after an impression (view-through) a conversion is.
    pub impression_window_s: u64,
    /// Click to conversion faster than this: click injection.
    pub ctit_short_s: u64,
    /// Click to conversion slower than this, from a source with more than
    /// `flood_clicks_per_conversion` clicks per conversion in the click
    /// window: click flooding.
    pub ctit_long_s: u64,
    pub flood_clicks_per_conversion: u64,
    /// Conversions remembered (click id and event) to catch duplicates:
    /// the oldest go first past this many, and each after the click
    /// window.
    pub duplicates_kept: u64,
    /// Offers whose clicks follow an impression the gate judged (`/imp`,
    /// the click carrying its `imp_id`); `*`: every offer.
    pub impression_offers: Vec<String>,
    /// A click sooner than this after its impression: no person's.
    pub imp_to_click_min_ms: u64,
    /// The funnel rules that run (`ctit_short`, `ctit_long`,
    /// `click_blocked`, `orphan`, `duplicate`, `mismatch`,
    /// `imp_to_click`).
    pub rules: Vec<String>,
}

impl FunnelConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, name) in self.rules.iter().enumerate() {
            if !FUNNEL_RULES.iter().any(|k| k.as_str() == name) {
                let known: Vec<&str> = FUNNEL_RULES.iter().map(|k| k.as_str()).collect();
                return Err(ConfigError::invalid(
                    format!("funnel.rules[{i}]"),
                    format!("{name:?} is not a funnel rule ({})", known.join(", ")),
                ));
            }
        }
        for (key, v) in [
            ("funnel.click_window_s", self.click_window_s),
            ("funnel.impression_window_s", self.impression_window_s),
            (
                "funnel.flood_clicks_per_conversion",
                self.flood_clicks_per_conversion,
            ),
            ("funnel.duplicates_kept", self.duplicates_kept),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if self.ctit_long_s <= self.ctit_short_s {
            return Err(ConfigError::invalid(
                "funnel.ctit_long_s",
                "must be above funnel.ctit_short_s",
            ));
        }
        Ok(())
    }
}
