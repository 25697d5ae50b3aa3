//! `[rules]`: local detection's section.

use serde::Deserialize;

use super::limits::{CapConfig, VelocityConfig};
use crate::config_error::ConfigError;
use crate::policy::Action;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    pub enabled: bool,
    pub ask_upstream_on_block: bool,
    pub reload_interval_s: u64,
    pub caps: Vec<CapConfig>,
    pub crawler: CrawlerConfig,
    /// Hosting / cloud / CDN ranges: tag datacenter.
    pub datacenter: RangesConfig,
    /// Tor exits and public VPN exits: tag proxy.
    pub proxy: RangesConfig,
    /// Declared crawlers' published ranges: rule verified_bot, tag crawler.
    pub verified_bots: RangesConfig,
    pub velocity: VelocityConfig,
    pub lists: Vec<ListConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlerConfig {
    pub enabled: bool,
    pub builtin: bool,
    /// Empty: none.
    pub extra_patterns_file: String,
    pub flag_empty_ua: bool,
    /// Speculative loads on the browser-facing doors (`Sec-Purpose:
    /// prefetch`, `Purpose: prefetch`, `X-Moz: prefetch`, `X-Purpose:
    /// preview`): the `prefetch` rule, tag crawler.
    pub flag_prefetch: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangesConfig {
    pub enabled: bool,
    /// The ranges shipped in the binary (src/rules/ranges/).
    pub builtin: bool,
    /// Files of `CIDR|first-last [label]` lines, re-read when they change.
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    pub name: String,
    pub action: Action,
    /// Empty: runtime-only list.
    #[serde(default)]
    pub file: String,
}

impl RulesConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.lists.iter().enumerate() {
            if l.name.is_empty()
                || !l
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::invalid(
                    format!("rules.lists[{i}].name"),
                    "use letters, digits, - and _",
                ));
            }
            if !names.insert(l.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("rules.lists[{i}].name"),
                    format!("duplicate list name {:?}", l.name),
                ));
            }
        }
        for (i, c) in self.caps.iter().enumerate() {
            if c.by.is_empty() || c.window_s == 0 {
                return Err(ConfigError::invalid(
                    format!("rules.caps[{i}]"),
                    "needs a non-empty `by` and window_s > 0",
                ));
            }
        }
        if self.velocity.window_s == 0 {
            return Err(ConfigError::invalid(
                "rules.velocity.window_s",
                "must be > 0",
            ));
        }
        Ok(())
    }
}
