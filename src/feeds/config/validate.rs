//! Validation of a `[[feeds]]` table: the common keys, then each kind's
//! own, refusing a key that belongs to another kind.

use super::*;

impl FeedConfig {
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
