//! `[[feeds]]`: one table per feed. Keys common to every kind first, then
//! each source's own (a key of another kind's is refused by validation, so
//! a misplaced setting is never silently ignored).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config_error::ConfigError;
use crate::rules::lists::{Entry, EntryKind};
use crate::rules::ranges::{Prefix, is_v4, overlaps_v4};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    /// AppsFlyer Protect360 ad-network reporting API (CSV).
    Protect360,
    /// 24metrics Fraudshield reports API (JSON).
    Fraudshield,
    /// FraudScore Data API (JSON lines).
    FraudscoreData,
}

impl FeedKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            FeedKind::Protect360 => "protect360",
            FeedKind::Fraudshield => "fraudshield",
            FeedKind::FraudscoreData => "fraudscore_data",
        }
    }

    /// The real service.
    pub const fn default_base_url(self) -> &'static str {
        match self {
            FeedKind::Protect360 => "https://hq1.appsflyer.com",
            FeedKind::Fraudshield => "https://fraudshield.24metrics.com",
            FeedKind::FraudscoreData => "https://get.fraudscore.ai",
        }
    }
}

/// What a source row becomes: one list entry per kind named here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapTo {
    Ip,
    /// idfa / android_id / oaid / advertising id (matched against the
    /// event's `idfa` and `android_id`).
    Device,
    Affiliate,
    /// `affiliate_id/aff_sub1`.
    AffiliateSub,
}

/// Which Fraudshield report a feed reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudshieldReport {
    /// `conversion_scroll.json`, rejected conversions, following
    /// `next_page_id` (the default: no page-count limit).
    ConversionScroll,
    /// `conversion.json`, rejected conversions, `count`/`page` paging.
    Conversion,
    /// `fraud.json` grouped by affiliate and sub_id: the groups over
    /// `min_rejection_rate` (affiliate / affiliate_sub entries).
    Fraud,
}

impl FraudshieldReport {
    pub const fn as_str(self) -> &'static str {
        match self {
            FraudshieldReport::ConversionScroll => "conversion_scroll",
            FraudshieldReport::Conversion => "conversion",
            FraudshieldReport::Fraud => "fraud",
        }
    }
}

/// Source column names for each part of an entry; empty means the kind's
/// defaults. Names match case- and punctuation-insensitively
/// (`Advertising ID` = `advertising_id`); nested JSON as `a.b`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    pub ip: Vec<String>,
    pub device: Vec<String>,
    pub affiliate: Vec<String>,
    pub sub: Vec<String>,
    pub reason: Vec<String>,
    pub sub_reason: Vec<String>,
}

/// `max_prefix = { v4 = 24, v6 = 48 }`: prefix lengths, so a larger
/// number is a narrower range. Defaults: single addresses (32 and 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaxPrefix {
    pub v4: u8,
    pub v6: u8,
}

impl Default for MaxPrefix {
    fn default() -> Self {
        MaxPrefix { v4: 32, v6: 128 }
    }
}

/// Why a feed's value was not made an entry (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a value its list can hold (not an IP, an empty id...).
    Invalid,
    /// Longer than a list entry may be.
    TooLong,
    /// An IP range wider than `max_prefix`.
    TooWide,
}

impl Rejection {
    pub const ALL: [Rejection; 3] = [Rejection::Invalid, Rejection::TooLong, Rejection::TooWide];

    pub const fn as_str(self) -> &'static str {
        match self {
            Rejection::Invalid => "invalid",
            Rejection::TooLong => "too_long",
            Rejection::TooWide => "too_wide",
        }
    }
}

/// The longest value a feed puts in a list.
pub const MAX_VALUE: usize = 256;

/// The Protect360 report topics the adnet API serves.
pub const PROTECT360_TOPICS: [&str; 5] = [
    "blocked_clicks_report",
    "blocked_installs_report",
    "blocked_in_app_events_report",
    "detection",
    "fraud-post-inapps",
];

pub const FRAUDSCORE_EVENTS: [&str; 4] = ["install", "click", "impression", "custom"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Also the name of the block list its entries land in.
    pub name: String,
    pub kind: FeedKind,
    /// Empty: the real service.
    #[serde(default)]
    pub base_url: String,
    /// How often `serve` pulls it.
    #[serde(default = "d_every", deserialize_with = "duration")]
    pub every: Duration,
    /// Each wait is `every` ± this fraction, so replicas and feeds spread out.
    #[serde(default = "d_jitter")]
    pub jitter: f64,
    /// How far back the first pull reaches (later pulls start at the cursor).
    #[serde(default = "d_window", deserialize_with = "duration")]
    pub window: Duration,
    /// An entry expires this long after the source last reported it.
    #[serde(default = "d_expire", deserialize_with = "duration")]
    pub expire_after: Duration,
    /// Connect and read (idle) timeout of each call.
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
    /// A whole run's deadline (every call and page): past it the run
    /// fails with a clear error and the old entries stay.
    #[serde(default = "d_run_timeout", deserialize_with = "duration")]
    pub run_timeout: Duration,
    /// The largest answer one call may send (a report, a page).
    #[serde(default = "d_max_response_mb")]
    pub max_response_mb: usize,
    /// The longest row (a CSV record, a JSON line) read.
    #[serde(default = "d_max_row_bytes")]
    pub max_row_bytes: usize,
    /// Entry kinds made from each row.
    #[serde(default = "d_map")]
    pub map: Vec<MapTo>,
    /// Entries and cursor; empty: `data/feeds/<name>.json`.
    #[serde(default)]
    pub state_file: String,
    #[serde(default)]
    pub columns: Columns,
    /// The widest IP range one entry may cover. Sources publish
    /// addresses, so by default an entry is one address; a wider or
    /// unparsable value is skipped and counted, never stored.
    #[serde(default)]
    pub max_prefix: MaxPrefix,

    // Protect360.
    /// AppsFlyer V2.0 API token.
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub app_ids: Vec<String>,
    /// Report topics; empty: `blocked_clicks_report`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Rows at which Protect360 cuts a report (a window answering this
    /// many is split and fetched again).
    #[serde(default)]
    pub row_limit: Option<usize>,

    // Fraudshield.
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub api_token: Option<Secret>,
    #[serde(default)]
    pub tracker_id: Option<u64>,
    #[serde(default)]
    pub report: Option<FraudshieldReport>,
    /// The report's time zone (IANA name); default UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Fraud report: groups at or over this rejection rate (%).
    #[serde(default)]
    pub min_rejection_rate: Option<f64>,
    /// Fraud report: groups with at least this many conversions.
    #[serde(default)]
    pub min_conversions: Option<u64>,

    // Fraudshield and FraudScore: rows per page.
    #[serde(default)]
    pub page_size: Option<u64>,

    // FraudScore Data API.
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub key: Option<Secret>,
    /// install, click, impression or custom.
    #[serde(default)]
    pub event: Option<String>,
    /// A Data API filter expression (JSON); the time window is ANDed to it.
    #[serde(default)]
    pub filter: Option<String>,
    /// Fields asked for; empty: the columns the mapping reads.
    #[serde(default)]
    pub fields: Vec<String>,
}

fn d_every() -> Duration {
    Duration::from_secs(3600)
}
fn d_jitter() -> f64 {
    0.1
}
fn d_window() -> Duration {
    Duration::from_secs(7 * 86400)
}
fn d_expire() -> Duration {
    Duration::from_secs(30 * 86400)
}
fn d_timeout() -> u64 {
    30_000
}
fn d_run_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}
fn d_max_response_mb() -> usize {
    256
}
fn d_max_row_bytes() -> usize {
    64 << 10
}
fn d_map() -> Vec<MapTo> {
    vec![MapTo::Ip, MapTo::Device]
}

/// `"15m"`, `"1h"`, `"30d"`, `"1h 30m"` (humantime), or whole seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Secs(u64),
        Text(String),
    }
    match Form::deserialize(d)? {
        Form::Secs(s) => Ok(Duration::from_secs(s)),
        Form::Text(t) => humantime::parse_duration(&t).map_err(|e| {
            serde::de::Error::custom(format!(
                "{t:?} is not a duration ({e}): write it like \"90s\", \"15m\", \"1h\" or \"30d\""
            ))
        }),
    }
}

pub const DEFAULT_ROW_LIMIT: usize = 200_000;
/// Protect360: a window is at most 31 days...
pub const P360_MAX_DAYS: i64 = 31;
/// ...inside the last 90.
pub const P360_LOOKBACK_DAYS: i64 = 90;

impl FeedConfig {
    pub fn base_url(&self) -> &str {
        if self.base_url.is_empty() {
            self.kind.default_base_url()
        } else {
            self.base_url.trim_end_matches('/')
        }
    }

    pub fn state_path(&self) -> std::path::PathBuf {
        if self.state_file.is_empty() {
            std::path::Path::new("data/feeds").join(format!("{}.json", self.name))
        } else {
            self.state_file.clone().into()
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn max_response_bytes(&self) -> usize {
        self.max_response_mb.saturating_mul(1 << 20)
    }

    pub fn topics(&self) -> Vec<&str> {
        if self.topics.is_empty() {
            vec!["blocked_clicks_report"]
        } else {
            self.topics.iter().map(String::as_str).collect()
        }
    }

    pub fn row_limit(&self) -> usize {
        self.row_limit.unwrap_or(DEFAULT_ROW_LIMIT)
    }

    pub fn fraudshield_report(&self) -> FraudshieldReport {
        self.report.unwrap_or(FraudshieldReport::ConversionScroll)
    }

    pub fn timezone(&self) -> &str {
        self.timezone.as_deref().unwrap_or("UTC")
    }

    /// Every spelling of the secrets this feed sends (raw,
    /// percent-encoded, JSON-escaped), for redacting them from any text.
    pub fn secrets(&self) -> Vec<String> {
        [&self.token, &self.api_token, &self.key]
            .into_iter()
            .flatten()
            .flat_map(Secret::spellings)
            .collect()
    }

    /// The one check of a value a feed would put in its list, for rows
    /// pulled and for entries read back from the state file or Redis:
    /// the canonical value, or why it is refused.
    pub fn admit(&self, kind: EntryKind, value: &str) -> Result<String, Rejection> {
        if value.len() > MAX_VALUE {
            return Err(Rejection::TooLong);
        }
        if kind != EntryKind::Ip {
            let entry = Entry::new(kind, value, None, None).map_err(|_| Rejection::Invalid)?;
            return Ok(entry.value);
        }
        // An IP entry is its value as written once it parses (what
        // Entry::new checks), parsed here once for its width too.
        let value = value.trim();
        let p = Prefix::parse(value).map_err(|_| Rejection::Invalid)?;
        // IPv4 addresses live at ::ffff:0:0/96: an IPv6 range that
        // reaches into it (::/80, a dash range across it) would cover
        // IPv4 clients without the v4 limit.
        if !is_v4(&p) && overlaps_v4(&p) {
            return Err(Rejection::TooWide);
        }
        let host_bits = if is_v4(&p) {
            32 - u32::from(self.max_prefix.v4)
        } else {
            128 - u32::from(self.max_prefix.v6)
        };
        // Addresses in the range, less one: within 2^host_bits.
        let span = p.end - p.start;
        if host_bits < 128 && span >> host_bits != 0 {
            return Err(Rejection::TooWide);
        }
        Ok(value.to_owned())
    }

    /// Checks the feed at `feeds[i]`.
    pub fn validate(&self, i: usize) -> Result<(), ConfigError> {
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            return bad(
                i,
                "name",
                "1 to 64 characters of a-z, 0-9, _ and - (it names the block list)".into(),
            );
        }
        if !self.base_url.is_empty() {
            // A feed sends its token or key with every call: in clear
            // only to a loopback host (a local mock, a sidecar).
            crate::upstream::validate_url(&self.base_url, false).or_else(|m| {
                let m = if m.starts_with("plain http") {
                    format!(
                        "feed {:?}: plain http would send its credentials in clear; use https (http is allowed for a loopback host only)",
                        self.name
                    )
                } else {
                    m
                };
                bad(i, "base_url", m)
            })?;
        }
        if !(8..=32).contains(&self.max_prefix.v4) {
            return bad(
                i,
                "max_prefix.v4",
                "a prefix length from 8 to 32 (32: single addresses)".into(),
            );
        }
        if !(16..=128).contains(&self.max_prefix.v6) {
            return bad(
                i,
                "max_prefix.v6",
                "a prefix length from 16 to 128 (128: single addresses)".into(),
            );
        }
        if self.every < Duration::from_secs(1) {
            return bad(i, "every", "must be at least 1s".into());
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return bad(i, "jitter", "a fraction between 0 and 0.5".into());
        }
        if self.window < Duration::from_secs(60) {
            return bad(i, "window", "must be at least 1m".into());
        }
        if self.expire_after < Duration::from_secs(1) {
            return bad(i, "expire_after", "must be at least 1s".into());
        }
        if self.timeout_ms == 0 {
            return bad(i, "timeout_ms", "must be > 0".into());
        }
        if self.run_timeout < Duration::from_secs(1) {
            return bad(i, "run_timeout", "must be at least 1s".into());
        }
        if self.max_response_mb == 0 {
            return bad(i, "max_response_mb", "must be at least 1".into());
        }
        if self.max_row_bytes < 1024 {
            return bad(i, "max_row_bytes", "must be at least 1024".into());
        }
        if self.map.is_empty() {
            return bad(
                i,
                "map",
                "name at least one of ip, device, affiliate, affiliate_sub".into(),
            );
        }
        if self.page_size == Some(0) {
            return bad(i, "page_size", "must be > 0".into());
        }
        self.no_foreign_settings(i)?;
        match self.kind {
            FeedKind::Protect360 => self.validate_protect360(i),
            FeedKind::Fraudshield => self.validate_fraudshield(i),
            FeedKind::FraudscoreData => self.validate_fraudscore_data(i),
        }
    }

    /// A setting of another kind of feed is refused, never ignored.
    fn no_foreign_settings(&self, i: usize) -> Result<(), ConfigError> {
        let kind = self.kind.as_str();
        // Settings that belong to another kind of feed.
        let foreign: &[(&str, bool, &str)] = &[
            ("token", self.token.is_some(), "protect360"),
            ("app_ids", !self.app_ids.is_empty(), "protect360"),
            ("topics", !self.topics.is_empty(), "protect360"),
            ("row_limit", self.row_limit.is_some(), "protect360"),
            ("user_id", self.user_id.is_some(), "fraudshield"),
            ("api_token", self.api_token.is_some(), "fraudshield"),
            ("tracker_id", self.tracker_id.is_some(), "fraudshield"),
            ("report", self.report.is_some(), "fraudshield"),
            ("timezone", self.timezone.is_some(), "fraudshield"),
            (
                "min_rejection_rate",
                self.min_rejection_rate.is_some(),
                "fraudshield",
            ),
            (
                "min_conversions",
                self.min_conversions.is_some(),
                "fraudshield",
            ),
            (
                "page_size",
                self.page_size.is_some(),
                "fraudshield/fraudscore_data",
            ),
            ("channel", self.channel.is_some(), "fraudscore_data"),
            ("key", self.key.is_some(), "fraudscore_data"),
            ("event", self.event.is_some(), "fraudscore_data"),
            ("filter", self.filter.is_some(), "fraudscore_data"),
            ("fields", !self.fields.is_empty(), "fraudscore_data"),
        ];
        for (k, set, owner) in foreign {
            if *set && !owner.split('/').any(|o| o == kind) {
                return bad(
                    i,
                    k,
                    format!("is a {owner} setting; this feed is kind = \"{kind}\""),
                );
            }
        }
        Ok(())
    }

    /// A secret the kind needs: set and not empty.
    fn need_secret(&self, i: usize, k: &str, s: &Option<Secret>) -> Result<(), ConfigError> {
        match s {
            Some(s) if !s.expose().is_empty() => Ok(()),
            _ => bad(
                i,
                k,
                format!(
                    "required for a {} feed (a secret: never logged)",
                    self.kind.as_str()
                ),
            ),
        }
    }

    fn validate_protect360(&self, i: usize) -> Result<(), ConfigError> {
        self.need_secret(i, "token", &self.token)?;
        if self.app_ids.is_empty() || self.app_ids.iter().any(|a| a.trim().is_empty()) {
            return bad(
                i,
                "app_ids",
                "name the apps, as the AppsFlyer dashboard shows them (iOS ids start with \"id\")"
                    .into(),
            );
        }
        if let Some(t) = self
            .topics
            .iter()
            .find(|t| !PROTECT360_TOPICS.contains(&t.as_str()))
        {
            return bad(
                i,
                "topics",
                format!(
                    "unknown report topic {t:?}; one of {}",
                    PROTECT360_TOPICS.join(", ")
                ),
            );
        }
        if self.window > Duration::from_secs(P360_LOOKBACK_DAYS as u64 * 86400) {
            return bad(
                i,
                "window",
                "Protect360 serves at most the last 90 days".into(),
            );
        }
        if self.row_limit == Some(0) {
            return bad(i, "row_limit", "must be > 0".into());
        }
        Ok(())
    }

    fn validate_fraudshield(&self, i: usize) -> Result<(), ConfigError> {
        if self.user_id.as_deref().is_none_or(|u| u.trim().is_empty()) {
            return bad(i, "user_id", "required for a fraudshield feed".into());
        }
        self.need_secret(i, "api_token", &self.api_token)?;
        if self.tracker_id.is_none() {
            return bad(i, "tracker_id", "required for a fraudshield feed".into());
        }
        if jiff::tz::TimeZone::get(self.timezone()).is_err() {
            return bad(
                i,
                "timezone",
                format!(
                    "unknown time zone {:?} (an IANA name like Europe/Berlin)",
                    self.timezone()
                ),
            );
        }
        let fraud = self.fraudshield_report() == FraudshieldReport::Fraud;
        if fraud
            && self
                .map
                .iter()
                .any(|m| !matches!(m, MapTo::Affiliate | MapTo::AffiliateSub))
        {
            return bad(
                i,
                "map",
                "the fraud report has groups, not events: map = [\"affiliate_sub\"] or [\"affiliate\"]"
                    .into(),
            );
        }
        if fraud && self.min_rejection_rate.is_none() {
            return bad(
                i,
                "min_rejection_rate",
                "required for report = \"fraud\": without it every affiliate/sub group would be blocked"
                    .into(),
            );
        }
        if !fraud && (self.min_rejection_rate.is_some() || self.min_conversions.is_some()) {
            return bad(
                i,
                "min_rejection_rate",
                "applies to report = \"fraud\" only".into(),
            );
        }
        if self
            .min_rejection_rate
            .is_some_and(|r| !(0.0..=100.0).contains(&r))
        {
            return bad(i, "min_rejection_rate", "a percentage, 0 to 100".into());
        }
        Ok(())
    }

    fn validate_fraudscore_data(&self, i: usize) -> Result<(), ConfigError> {
        if self.channel.as_deref().is_none_or(|c| c.trim().is_empty()) {
            return bad(
                i,
                "channel",
                "required for a fraudscore_data feed (CHANNEL_ID)".into(),
            );
        }
        self.need_secret(i, "key", &self.key)?;
        let event = self.event.as_deref().unwrap_or("click");
        if !FRAUDSCORE_EVENTS.contains(&event) {
            return bad(
                i,
                "event",
                format!("one of {}", FRAUDSCORE_EVENTS.join(", ")),
            );
        }
        let Some(f) = &self.filter else {
            return bad(
                i,
                "filter",
                "required: an expression selecting the fraud (e.g. '[\"OR\",[\"tag\",\"proxy\"],[\"tag\",\"blacklist\"]]'); without one every event's IP would be blocked"
                    .into(),
            );
        };
        {
            match serde_json::from_str::<serde_json::Value>(f) {
                Ok(serde_json::Value::Array(a)) if !a.is_empty() => {}
                Ok(_) => {
                    return bad(
                        i,
                        "filter",
                        "an expression is a JSON array: [\"operator\", operand, ...]".into(),
                    );
                }
                Err(e) => return bad(i, "filter", format!("not JSON: {e}")),
            }
        }
        if self.page_size.is_some_and(|p| p > 1_000_000) {
            return bad(
                i,
                "page_size",
                "at most 1000000 (the Data API's maximum)".into(),
            );
        }
        Ok(())
    }
}

/// An invalid setting of the feed at `feeds[i]`.
fn bad(i: usize, k: &str, m: String) -> Result<(), ConfigError> {
    Err(ConfigError::invalid(format!("feeds[{i}].{k}"), m))
}
