//! `[[feeds]]`: one table per feed. Keys common to every kind first, then
//! each source's own (a key of another kind's is refused by validation, so
//! a misplaced setting is never silently ignored).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config_error::ConfigError;
use crate::rules::lists::{Entry, EntryKind};
use crate::rules::ranges::{Prefix, is_v4, overlaps_v4};
use crate::secret::Secret;

mod validate;

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
/// The topics Protect360's docs name; the in-app report is spelt both
/// ways there (`blocked_in_app_events_report` in its example request,
/// `blocked_in-app_events_report` as its topic): either is sent as written.
pub const PROTECT360_TOPICS: [&str; 6] = [
    "blocked_clicks_report",
    "blocked_installs_report",
    "blocked_in_app_events_report",
    "blocked_in-app_events_report",
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
    /// Calls to the source a minute, after a burst of 10 (0: no budget).
    #[serde(default = "d_calls_per_minute")]
    pub calls_per_minute: u32,
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
fn d_calls_per_minute() -> u32 {
    60
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
}
