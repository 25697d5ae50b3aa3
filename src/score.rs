//! The one scoring path every front door calls: local rules, then the
//! verdict lookup ([`crate::lookup`]: cache, breaker, coalesced upstream
//! call under the time budget), then policy, decision, metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Counter;

use crate::breaker::{Breaker, State as BreakerState};
use crate::cache::VerdictCache;
use crate::config::Config;
use crate::decision::{Decision, Door, IdGen, Source};
use crate::decision_log::DecisionLog;
use crate::event::Event;
use crate::lookup::{Fetcher, Lookup};
use crate::metrics as m;
use crate::policy::{Action, Mode, Policy, Ruling};
use crate::rules::{LocalRules, LocalVerdict, ReloadError};
use crate::upstream::{Upstream, UpstreamError};
use crate::verdict::Tag;

/// The default budget is the upstream timeout plus this margin, so an
/// upstream that times out is reported as `upstream_timeout` (its cause)
/// rather than racing the caller's deadline.
pub const BUDGET_MARGIN: Duration = Duration::from_millis(20);

/// How one door wants an event scored.
#[derive(Debug, Clone)]
pub struct ScoreOpts {
    pub door: Door,
    pub budget: Duration,
    /// The door's override of `policy.on_upstream_error`.
    pub on_error: Option<Action>,
    /// The client key's name, recorded in the decision log.
    pub client: Option<Arc<str>>,
}

impl ScoreOpts {
    pub fn with_client(mut self, client: Option<Arc<str>>) -> Self {
        self.client = client;
        self
    }
}

/// Cheap to clone; all state is shared.
#[derive(Clone)]
pub struct Scorer {
    inner: Arc<Inner>,
}

struct Inner {
    rules: Arc<LocalRules>,
    /// None when no upstream key is configured.
    fetcher: Option<Fetcher>,
    /// Whether RT calls are failing, and why (None without an upstream).
    upstream_status: Option<Arc<crate::upstream::UpstreamStatus>>,
    fleet: Option<Arc<crate::fleet::Fleet>>,
    cache: VerdictCache,
    policy: Policy,
    ids: IdGen,
    /// The decision log (None when `decision_log.enabled = false`).
    log: Option<DecisionLog>,
    default_budget: Duration,
    counters: Counters,
}

/// Hot-path counters registered once, so scoring does no label lookups.
struct Counters {
    tags: [Counter; Tag::ALL.len()],
    unknown_tags: Counter,
    /// Decisions by door, action and source (the mode is the scorer's).
    decisions: Box<[Counter]>,
}

const ACTIONS: [Action; 2] = [Action::Allow, Action::Block];

impl Counters {
    fn new(mode: Mode) -> Self {
        let mut decisions = Vec::with_capacity(Door::ALL.len() * 2 * Source::ALL.len());
        for door in Door::ALL {
            for action in ACTIONS {
                for source in Source::ALL {
                    decisions.push(metrics::counter!(
                        m::DECISIONS,
                        "door" => door.as_str(),
                        "decision" => action.as_str(),
                        "source" => source.as_str(),
                        "mode" => mode.as_str(),
                    ));
                }
            }
        }
        Counters {
            tags: Tag::ALL.map(|t| metrics::counter!(m::TAGS, "tag" => t.config_name())),
            unknown_tags: metrics::counter!(m::TAGS, "tag" => "unknown"),
            decisions: decisions.into(),
        }
    }

    fn decision(&self, door: Door, action: Action, source: Source) -> &Counter {
        let a = ACTIONS.iter().position(|x| *x == action).unwrap_or(0);
        let s = Source::ALL.iter().position(|x| *x == source).unwrap_or(0);
        &self.decisions[(door as usize * ACTIONS.len() + a) * Source::ALL.len() + s]
    }
}

/// What the scorer could not build from config.
#[derive(Debug, thiserror::Error)]
pub enum ScorerError {
    #[error("config key {key}: {message}")]
    Config { key: &'static str, message: String },
    #[error(transparent)]
    Policy(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Rules(#[from] ReloadError),
    #[error(transparent)]
    Log(#[from] crate::decision_log::LogError),
}

/// The RT client `config` asks for (None without a key). These `*_of`
/// builders are the scorer's parts a configuration can make fail; they
/// have no side effects beyond metric handles, so `startup::preflight`
/// checks a configuration with them too.
pub(crate) fn upstream_of(config: &Config) -> Result<Option<Upstream>, ScorerError> {
    if !config.upstream.enabled() {
        return Ok(None);
    }
    Upstream::new(&config.upstream)
        .map(Some)
        .map_err(|message| ScorerError::Config {
            key: "upstream",
            message,
        })
}

/// The local rules, their files read, with the feeds' lists.
pub(crate) fn rules_of(config: &Config) -> Result<LocalRules, ScorerError> {
    let feeds: Vec<String> = config.feeds.iter().map(|f| f.name.clone()).collect();
    Ok(LocalRules::with_feeds(&config.rules, &feeds)?.with_shadow(config.policy.shadow_mask()?))
}

/// The tag and rule -> IVT class map of the decision log.
pub(crate) fn ivt_of(config: &Config) -> Result<crate::decision_log::IvtMap, ScorerError> {
    Ok(crate::decision_log::IvtMap::new(&config.ivt)
        .map_err(|message| ScorerError::Config {
            key: "ivt",
            message,
        })?
        .with_shadow(config.policy.shadow_mask()?))
}

impl Scorer {
    pub fn new(config: &Config) -> Result<Self, ScorerError> {
        let upstream = upstream_of(config)?.map(|u| Arc::new(u) as Arc<dyn crate::lookup::Origin>);
        Self::with_origin(config, upstream)
    }

    /// A scorer whose misses ask `origin` (none: no upstream key).
    fn with_origin(
        config: &Config,
        origin: Option<Arc<dyn crate::lookup::Origin>>,
    ) -> Result<Self, ScorerError> {
        // Each part's closed label sets at 0 in the current registry.
        crate::rules::register_metrics();
        crate::upstream::register_metrics();
        crate::fleet::Fleet::register_metrics();
        metrics::gauge!(m::UPSTREAM_ENABLED).set(if origin.is_some() { 1.0 } else { 0.0 });
        let cache = VerdictCache::new(&config.cache);
        let fleet = crate::fleet::Fleet::new(&config.redis, &config.cache.key);
        let upstream_status = origin.as_ref().and_then(|o| o.status());
        let fetcher = origin.map(|origin| {
            Fetcher::new(
                origin,
                cache.clone(),
                Breaker::new(&config.upstream.breaker),
                fleet.clone(),
            )
        });
        let log = if config.decision_log.enabled {
            Some(DecisionLog::start(&config.decision_log, ivt_of(config)?)?)
        } else {
            None
        };
        Ok(Scorer {
            inner: Arc::new(Inner {
                log,
                rules: Arc::new(rules_of(config)?),
                fetcher,
                upstream_status,
                fleet,
                cache,
                policy: Policy::from_config(&config.policy)?,
                ids: IdGen,
                default_budget: config.upstream.timeout() + BUDGET_MARGIN,
                counters: Counters::new(config.policy.mode),
            }),
        })
    }

    pub fn upstream_enabled(&self) -> bool {
        self.inner.fetcher.is_some()
    }

    /// Whether RT calls are failing, why and since when (None without an
    /// upstream).
    pub fn upstream_status(&self) -> Option<&crate::upstream::UpstreamStatus> {
        self.inner.upstream_status.as_deref()
    }

    /// The upstream circuit breaker's state (None without an upstream).
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.inner.fetcher.as_ref().map(|f| f.breaker().state())
    }

    /// The shared state on Redis, when configured.
    pub fn fleet(&self) -> Option<&Arc<crate::fleet::Fleet>> {
        self.inner.fleet.as_ref()
    }

    pub fn cache(&self) -> &VerdictCache {
        &self.inner.cache
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The decision log, when enabled.
    pub fn log(&self) -> Option<&DecisionLog> {
        self.inner.log.as_ref()
    }

    pub fn rules(&self) -> &Arc<LocalRules> {
        &self.inner.rules
    }

    /// The time budget a door gets unless the caller lowers it.
    pub fn default_budget(&self) -> Duration {
        self.inner.default_budget
    }

    /// Scores one event as `opts` asks: local rules, then cache and
    /// upstream within the budget, then policy.
    pub async fn score(&self, event: &Event, opts: &ScoreOpts) -> Decision {
        let started = Instant::now();
        let shared_caps = self.shared_caps(event).await;
        let local = self.inner.rules.evaluate(event, shared_caps.as_deref());
        let (found, ruling) = match self.local_ruling(event, &local) {
            Some(ruling) => (Lookup::local(local.tags.clone()), ruling),
            None => self.ask(event, &local, opts).await,
        };
        let decision = self.decision(found, ruling, local, started);
        self.record(&decision, opts.door);
        if let Some(log) = &self.inner.log {
            log.record(event, &decision, opts.door, opts.client.as_deref())
                .await;
        }
        decision
    }

    /// Judges a conversion (`/v1/postback`) on the funnel rules that fired
    /// for it: their `attribution` tag goes through the policy like any
    /// tag; RT and the local rules judged its click. Recorded like every
    /// decision.
    pub async fn judge_conversion(
        &self,
        event: &Event,
        hits: Vec<crate::decision::RuleHit>,
        opts: &ScoreOpts,
    ) -> Decision {
        let started = Instant::now();
        for h in &hits {
            // (Not the hot path: a conversion per many clicks.)
            metrics::counter!(m::RULE_HITS, "kind" => h.kind.as_str()).increment(1);
        }
        let policy = &self.inner.policy;
        let tags = if hits.iter().all(|h| policy.is_shadow(h.kind)) {
            crate::verdict::Tags::clean()
        } else {
            crate::verdict::Tags::from_mask(Tag::Attribution.bit())
        };
        let ruling = self.inner.policy.decide(Ok(&tags), event);
        let local = LocalVerdict {
            allowed: None,
            verified_bot: None,
            tags: tags.clone(),
            hits,
        };
        let decision = self.decision(Lookup::local(tags), ruling, local, started);
        self.record(&decision, opts.door);
        if let Some(log) = &self.inner.log {
            log.record(event, &decision, opts.door, opts.client.as_deref())
                .await;
        }
        decision
    }

    /// Counts of the caps `event` counts against, fleet-wide on Redis (one
    /// round trip for them all). `None`: counted locally (no Redis, Redis
    /// away, or nothing counts the event).
    async fn shared_caps(&self, event: &Event) -> Option<Vec<(usize, u64)>> {
        let fleet = self.inner.fleet.as_ref()?;
        let keys =
            self.inner
                .rules
                .shared_counter_keys(event, fleet.share_velocity(), fleet.hasher());
        if keys.is_empty() {
            return None;
        }
        fleet.count(&keys).await
    }

    /// A ruling without an upstream call: an allow-list hit, an allowed
    /// verified bot, or local tags the policy blocks (unless RT is to be
    /// asked as well).
    fn local_ruling(&self, event: &Event, local: &LocalVerdict) -> Option<Ruling> {
        let policy = &self.inner.policy;
        if local.allowed.is_some() {
            Some(policy.allow_listed())
        } else if local
            .verified_bot
            .as_deref()
            .is_some_and(|b| policy.allows_verified_bot(b))
        {
            Some(policy.verified_bot())
        } else if !local.tags.is_clean() && !self.inner.rules.ask_upstream_on_block() {
            self.local_block(event, local)
        } else {
            None
        }
    }

    /// The policy's ruling on the local tags, if it blocks.
    fn local_block(&self, event: &Event, local: &LocalVerdict) -> Option<Ruling> {
        Some(self.inner.policy.decide(Ok(&local.tags), event)).filter(|r| r.action == Action::Block)
    }

    /// Asks the cache and upstream, then rules on their answer. Without a
    /// verdict from RT (error, deadline, open breaker) a local block
    /// stands whatever the upstream did; only otherwise does the fail mode
    /// decide.
    async fn ask(&self, event: &Event, local: &LocalVerdict, opts: &ScoreOpts) -> (Lookup, Ruling) {
        let found = self.lookup(event, local, opts.budget).await;
        if found.outcome.is_err()
            && !local.tags.is_clean()
            && let Some(ruling) = self.local_block(event, local)
        {
            return (Lookup::local(local.tags.clone()), ruling);
        }
        let outcome = found.outcome.as_ref().map_err(|e| *e);
        let ruling = self.inner.policy.decide_with(outcome, event, opts.on_error);
        (found, ruling)
    }

    /// RT's verdict (cached or asked now) with the non-blocking local tags
    /// joined to it; the local tags alone when there is no upstream.
    async fn lookup(&self, event: &Event, local: &LocalVerdict, budget: Duration) -> Lookup {
        let Some(fetcher) = &self.inner.fetcher else {
            return if local.tags.is_clean() {
                Lookup::fallback(UpstreamError::Disabled)
            } else {
                Lookup::local(local.tags.clone())
            };
        };
        let mut found = fetcher.lookup(event, budget).await;
        if let Ok(t) = &found.outcome
            && !local.tags.is_clean()
        {
            found.outcome = Ok(t.merge(&local.tags));
        }
        found
    }

    /// The decision: in shadow mode the caller is always allowed, the
    /// ruling kept as the would-be decision.
    fn decision(
        &self,
        found: Lookup,
        ruling: Ruling,
        local: LocalVerdict,
        started: Instant,
    ) -> Decision {
        let Lookup {
            outcome,
            source,
            coalesced,
            cache_ttl,
            stale,
        } = found;
        let tags = outcome.unwrap_or(local.tags);
        let mut rules = local.hits;
        if let Some(hit) = local.allowed {
            rules.insert(0, hit);
        }
        let mode = self.inner.policy.mode();
        Decision {
            id: self.inner.ids.next(),
            action: match mode {
                Mode::Enforce => ruling.action,
                Mode::Shadow => Action::Allow,
            },
            ruling,
            mode,
            tags,
            source,
            rules,
            coalesced,
            stale,
            cache_ttl,
            elapsed: started.elapsed(),
        }
    }

    fn record(&self, d: &Decision, door: Door) {
        let c = &self.inner.counters;
        c.decision(door, d.ruling.action, d.source).increment(1);
        for t in d.tags.known() {
            c.tags[t as usize].increment(1);
        }
        if !d.tags.unknown().is_empty() {
            c.unknown_tags.increment(d.tags.unknown().len() as u64);
        }
    }
}

#[cfg(test)]
mod tests;
