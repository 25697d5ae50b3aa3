//! The funnel: a conversion posted back (`/v1/postback`) joined to the
//! click it is credited to, from the decision log, and the rules only the
//! funnel shows: click injection (`ctit_short`), click flooding
//! (`ctit_long`), conversions of blocked clicks (`click_blocked`) or of
//! none (`orphan`), `duplicate`s and `mismatch`es. The conversion is then
//! judged like every event (policy, decision, log) by the scorer.

pub mod click;
mod config;
mod postback;
mod rules;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use moka::sync::Cache;
use serde_json::{Map, Value};

pub use click::Click;
pub use config::FunnelConfig;
pub use postback::{PARAMETERS, Postback};
pub use rules::FUNNEL_RULES;
use rules::{Checks, Credit, Impression};

use crate::decision::{DecisionId, RuleHit, RuleKind};
use crate::event::{Event, Opt};
use crate::query::Query;

/// How the funnel reads the decision log (the HTTP layer's query slots
/// and limits).
pub trait LogRead {
    type Error;
    fn rows(
        &self,
        q: Query,
    ) -> impl Future<Output = Result<Vec<Map<String, Value>>, Self::Error>> + Send;
}

/// A conversion as the scorer is to judge it: the event to record and
/// the funnel rules that fired.
#[derive(Debug)]
pub struct Judged {
    pub event: Event,
    pub hits: Vec<RuleHit>,
}

/// How long a source's click and conversion counts are reused.
const SOURCE_TTL: Duration = Duration::from_secs(300);
/// Sources whose counts are kept.
const SOURCES_KEPT: u64 = 100_000;
/// A click this recent may still be in the log writer's queue
/// (`decision_log.flush_ms` is at most 1 s): a conversion that misses it
/// looks again until it is this old.
const IN_FLIGHT: Duration = Duration::from_millis(2_500);

pub struct Funnel {
    config: FunnelConfig,
    enabled: Vec<RuleKind>,
    /// (click id, event) -> the first conversion's time (Unix seconds).
    converted: Cache<(Box<str>, Box<str>), i64>,
    /// (affiliate_id, aff_sub1) -> (clicks, conversions) in the window.
    sources: Cache<Source, (u64, u64)>,
    /// Redis, when the replicas share it: first conversions fleet-wide.
    fleet: Option<std::sync::Arc<crate::fleet::Fleet>>,
}

/// A source of clicks: affiliate and first sub.
type Source = (Box<str>, Option<Box<str>>);

impl Funnel {
    /// `config` must have passed validation; `fleet`: the replicas' Redis.
    pub fn new(config: &FunnelConfig, fleet: Option<std::sync::Arc<crate::fleet::Fleet>>) -> Self {
        let enabled = FUNNEL_RULES
            .into_iter()
            .filter(|k| config.rules.iter().any(|r| r == k.as_str()))
            .collect();
        Funnel {
            fleet,
            enabled,
            converted: Cache::builder()
                .max_capacity(config.duplicates_kept)
                .time_to_live(Duration::from_secs(config.click_window_s))
                .build(),
            sources: Cache::builder()
                .max_capacity(SOURCES_KEPT)
                .time_to_live(SOURCE_TTL)
                .build(),
            config: config.clone(),
        }
    }

    /// Joins the conversion to its click and runs the funnel rules (`now`:
    /// Unix ms). A log that cannot answer is an error: the tracker is to
    /// post again, not have the conversion judged without its click.
    pub async fn judge<R: LogRead>(
        &self,
        p: &Postback,
        log: &R,
        now_ms: i64,
    ) -> Result<Judged, R::Error> {
        let at = p.event_time.map_or(now_ms.div_euclid(1000), |t| {
            i64::try_from(t).unwrap_or(i64::MAX)
        });
        let checks = Checks {
            config: &self.config,
            enabled: &self.enabled,
            postback: p,
            at,
        };
        let found = match &p.click_id {
            Some(id) => self.find(id, log, now_ms).await?,
            None => None,
        };
        let credit = match (&p.click_id, &found) {
            (None, _) => Credit::NoClickId,
            (Some(_), None) => Credit::Unknown,
            (Some(_), Some(c)) if checks.ctit(c) > checks.window_s(c) => Credit::Expired(c),
            (Some(_), Some(c)) => Credit::Click(c),
        };
        let mut hits: Vec<RuleHit> = checks.orphan(credit).into_iter().collect();
        let click = match credit {
            Credit::Click(c) => Some(c),
            _ => None,
        };
        if let Some(c) = click {
            hits.extend(checks.click_blocked(c));
            hits.extend(checks.ctit_short(c));
            if checks.slow(c) {
                let (clicks, conversions) = self.source(c, log, now_ms).await?;
                // (This conversion is not in the log yet.)
                hits.extend(checks.ctit_long(c, clicks, conversions + 1));
            }
            hits.extend(checks.mismatch(c));
            if checks.wants_impression(c) {
                let found = match &c.imp_id {
                    Some(id) => self.impression(id, log).await?,
                    None => None,
                };
                let imp = match (&c.imp_id, found) {
                    (None, _) => Impression::None,
                    (Some(id), None) => Impression::Unknown(id),
                    (Some(_), Some(ms)) => Impression::At(ms),
                };
                let click_ms = DecisionId::parse(&c.id).map_or(0, |d| d.unix_ms() as i64);
                hits.extend(checks.imp_to_click(c, click_ms, imp));
            }
            let event = p.event_name().to_ascii_lowercase();
            if !self.enabled.contains(&RuleKind::Duplicate) {
                // (Nothing to claim for a rule that does not run.)
            } else if let Some(first) = self.first_conversion(c, &event, at).await {
                let first = jiff::Timestamp::from_second(first)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                hits.extend(checks.duplicate(Some(&format!("first at {first}"))));
            }
        }
        Ok(Judged {
            event: event(p, click, at),
            hits,
        })
    }

    /// When the click's first conversion for `event` came, if this one is
    /// not it: fleet-wide on Redis when the gate has it (every replica
    /// sees the first), else remembered here.
    async fn first_conversion(&self, c: &Click, event: &str, at: i64) -> Option<i64> {
        if let Some(fleet) = &self.fleet {
            let ttl_ms = self.config.click_window_s.saturating_mul(1000);
            if let Some(first) = fleet.first_conversion(&c.id, event, at, ttl_ms).await {
                return first;
            }
        }
        let entry = self
            .converted
            .entry((Box::from(c.id.as_str()), Box::from(event)))
            .or_insert(at);
        (!entry.is_fresh()).then(|| *entry.value())
    }

    /// The click or impression `id`, looking again while it may still be
    /// on its way to the log.
    async fn find<R: LogRead>(
        &self,
        id: &str,
        log: &R,
        now_ms: i64,
    ) -> Result<Option<Click>, R::Error> {
        let Some(q) = click::query(id) else {
            return Ok(None);
        };
        let born = DecisionId::parse(id).map_or(0, |d| d.unix_ms() as i64);
        let in_flight_until = born.saturating_add(IN_FLIGHT.as_millis() as i64);
        // Only an id of the last moments may still be on its way; one from
        // the future (forged, or another clock) is looked up once.
        let may_wait = born <= now_ms + 1_000;
        let mut waited = 0;
        loop {
            let rows = log.rows(q.clone()).await?;
            if let Some(row) = rows.first() {
                return Ok(click::from_row(row));
            }
            if !may_wait || now_ms + waited >= in_flight_until {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 100;
        }
    }

    /// When the impression `id` was judged (Unix ms), if the log has it.
    async fn impression<R: LogRead>(&self, id: &str, log: &R) -> Result<Option<i64>, R::Error> {
        let Some(q) = click::by_id(id, &["event_type", "ts"]) else {
            return Ok(None);
        };
        let rows = log.rows(q).await?;
        Ok(rows
            .first()
            .filter(|r| r.get("event_type").and_then(Value::as_str) == Some("impression"))
            .and_then(|r| r.get("ts").and_then(Value::as_i64)))
    }

    /// Clicks and conversions of the click's source in the click window.
    async fn source<R: LogRead>(
        &self,
        c: &Click,
        log: &R,
        now_ms: i64,
    ) -> Result<(u64, u64), R::Error> {
        let sub = c.aff_sub[0].as_deref();
        let key = (Box::from(c.affiliate_id.as_str()), sub.map(Box::from));
        if let Some(counts) = self.sources.get(&key) {
            return Ok(counts);
        }
        let window_ms = i64::try_from(self.config.click_window_s)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        let q = click::source_query(&c.affiliate_id, sub, now_ms.saturating_sub(window_ms));
        let counts = click::source_counts(&log.rows(q).await?);
        self.sources.insert(key, counts);
        Ok(counts)
    }
}

/// The conversion's event: the click's affiliate, offer and subs (it is
/// credited to them), the device's IP and UA as posted (else the
/// click's), the conversion's own fields.
fn event(p: &Postback, click: Option<&Click>, at: i64) -> Event {
    let ip =
        p.ip.or_else(|| click.and_then(|c| c.ip.parse::<IpAddr>().ok()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let ua =
        p.ua.as_deref()
            .or(click.map(|c| c.ua.as_str()))
            .unwrap_or("");
    let (affiliate_id, offer_id) = click.map_or(("unknown", "unknown"), |c| {
        (c.affiliate_id.as_str(), c.offer_id.as_str())
    });
    let subs = crate::decision_log::columns::AFF_SUBS;
    let ctit = click.map(|c| at.saturating_sub(c.at).to_string());
    let country = click.and_then(|c| c.country_code.as_deref());
    let mut fields: Vec<(Opt, &str)> = Vec::new();
    if let Some(c) = click {
        for (o, v) in subs.iter().zip(&c.aff_sub) {
            if let Some(v) = v {
                fields.push((*o, v));
            }
        }
        fields.extend(c.owners.iter().map(|(o, v)| (*o, v.as_str())));
    }
    for (o, v) in &p.fields {
        fields.push((*o, v));
    }
    if let Some(country) = country
        && !fields.iter().any(|(o, _)| *o == Opt::CountryCode)
    {
        fields.push((Opt::CountryCode, country));
    }
    let conversion = [
        (Opt::ClickId, p.click_id.as_deref()),
        (Opt::Goal, p.goal.as_deref()),
        (Opt::Payout, p.payout.as_deref()),
        (Opt::Currency, p.currency.as_deref()),
        (Opt::Ctit, ctit.as_deref()),
    ];
    fields.extend(conversion.into_iter().filter_map(|(o, v)| Some((o, v?))));
    Event::conversion(
        p.event_type(),
        ip,
        ua,
        u64::try_from(at).unwrap_or(0),
        [affiliate_id, offer_id],
        fields,
    )
}
