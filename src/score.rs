//! The one scoring path every front door calls: cache, coalesced upstream
//! call under a time budget, policy, decision, metrics.
//!
//! The scorer owns time. A miss runs the upstream call in its own task, so
//! when the caller's budget runs out first the caller gets the fallback at
//! once while the call finishes (bounded by the upstream timeout) and fills
//! the cache for the next event with that key ("late fill").

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Counter;

use crate::cache::VerdictCache;
use crate::config::Config;
use crate::decision::{Decision, Door, IdGen, Source};
use crate::event::Event;
use crate::metrics as m;
use crate::policy::{Action, Mode, Policy};
use crate::rules::{LocalRules, ReloadError};
use crate::upstream::{Upstream, UpstreamError};
use crate::verdict::{Tag, Tags};

/// The default budget is the upstream timeout plus this margin, so an
/// upstream that times out is reported as `upstream_timeout` (its cause)
/// rather than racing the caller's deadline.
pub const BUDGET_MARGIN: Duration = Duration::from_millis(20);

/// How one door wants an event scored.
#[derive(Debug, Clone, Copy)]
pub struct ScoreOpts {
    pub door: Door,
    pub budget: Duration,
    /// The door's override of `policy.on_upstream_error`.
    pub on_error: Option<Action>,
}

/// Cheap to clone; all state is shared.
#[derive(Clone)]
pub struct Scorer {
    inner: Arc<Inner>,
}

struct Inner {
    rules: Arc<LocalRules>,
    upstream: Option<Upstream>,
    cache: VerdictCache,
    policy: Policy,
    ids: IdGen,
    default_budget: Duration,
    counters: Counters,
}

/// Hot-path counters registered once, so scoring does no label lookups.
struct Counters {
    tags: [Counter; Tag::ALL.len()],
    unknown_tags: Counter,
    hits: Counter,
    misses: Counter,
    coalesced: Counter,
    deadline: Counter,
    late_fills: Counter,
}

impl Counters {
    fn new() -> Self {
        Counters {
            tags: Tag::ALL.map(|t| metrics::counter!(m::TAGS, "tag" => t.config_name())),
            unknown_tags: metrics::counter!(m::TAGS, "tag" => "unknown"),
            hits: metrics::counter!(m::CACHE_REQUESTS, "result" => "hit"),
            misses: metrics::counter!(m::CACHE_REQUESTS, "result" => "miss"),
            coalesced: metrics::counter!(m::COALESCED),
            deadline: metrics::counter!(m::DEADLINE_MISSES),
            late_fills: metrics::counter!(m::LATE_FILLS),
        }
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
}

impl Scorer {
    pub fn new(config: &Config) -> Result<Self, ScorerError> {
        let upstream = if config.upstream.enabled() {
            Some(
                Upstream::new(&config.upstream).map_err(|message| ScorerError::Config {
                    key: "upstream",
                    message,
                })?,
            )
        } else {
            None
        };
        metrics::gauge!(m::UPSTREAM_ENABLED).set(if upstream.is_some() { 1.0 } else { 0.0 });
        Ok(Scorer {
            inner: Arc::new(Inner {
                rules: Arc::new(LocalRules::new(&config.rules)?),
                upstream,
                cache: VerdictCache::new(&config.cache),
                policy: Policy::from_config(&config.policy)?,
                ids: IdGen::default(),
                default_budget: config.upstream.timeout() + BUDGET_MARGIN,
                counters: Counters::new(),
            }),
        })
    }

    pub fn upstream_enabled(&self) -> bool {
        self.inner.upstream.is_some()
    }

    pub fn cache(&self) -> &VerdictCache {
        &self.inner.cache
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    pub fn rules(&self) -> &Arc<LocalRules> {
        &self.inner.rules
    }

    /// The time budget a door gets unless the caller lowers it.
    pub fn default_budget(&self) -> Duration {
        self.inner.default_budget
    }

    /// A door's budget: its configured one, else the default.
    pub fn budget_or_default(&self, configured: Option<Duration>) -> Duration {
        configured.unwrap_or(self.inner.default_budget)
    }

    /// Scores one event within `budget` with the policy's fallback.
    pub async fn score(&self, event: &Event, door: Door, budget: Duration) -> Decision {
        self.score_with(
            event,
            &ScoreOpts {
                door,
                budget,
                on_error: None,
            },
        )
        .await
    }

    /// Scores one event: local rules, then cache and upstream within the
    /// budget, then policy.
    pub async fn score_with(&self, event: &Event, opts: &ScoreOpts) -> Decision {
        let ScoreOpts {
            door,
            budget,
            on_error,
        } = *opts;
        let started = Instant::now();
        let inner = &*self.inner;
        let policy = &inner.policy;
        let local = inner.rules.evaluate(event);
        let local_blocks = || {
            !local.tags.is_clean()
                && !inner.rules.ask_upstream_on_block()
                && policy.decide(Ok(&local.tags), event).action == Action::Block
        };
        let (outcome, source, coalesced, cache_ttl) = if local.allowed.is_some() || local_blocks() {
            // Answered locally, without an upstream call.
            (Ok(local.tags.clone()), Source::Local, false, Duration::ZERO)
        } else {
            match &inner.upstream {
                None if !local.tags.is_clean() => {
                    (Ok(local.tags.clone()), Source::Local, false, Duration::ZERO)
                }
                None => (
                    Err(UpstreamError::Disabled),
                    Source::Fallback,
                    false,
                    Duration::ZERO,
                ),
                Some(upstream) => {
                    let (outcome, source, coalesced, ttl) =
                        self.lookup(upstream, event, budget).await;
                    let merged = match outcome {
                        Ok(t) if !local.tags.is_clean() => Ok(t.merge(&local.tags)),
                        other => other,
                    };
                    (merged, source, coalesced, ttl)
                }
            }
        };
        let ruling = match &local.allowed {
            Some(_) => policy.allow_listed(),
            None => policy.decide_with(outcome.as_ref().map_err(|e| *e), event, on_error),
        };
        let tags = outcome.unwrap_or_else(|_| local.tags.clone());
        let mut rules = local.hits;
        if let Some(hit) = local.allowed {
            rules.insert(0, hit);
        }
        let mode = policy.mode();
        let decision = Decision {
            id: inner.ids.next(),
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
            cache_ttl,
            elapsed: started.elapsed(),
        };
        self.record(&decision, door);
        decision
    }

    async fn lookup(
        &self,
        upstream: &Upstream,
        event: &Event,
        budget: Duration,
    ) -> (Result<Tags, UpstreamError>, Source, bool, Duration) {
        let inner = &*self.inner;
        let cache = &inner.cache;
        let key = cache.key(event);
        if let Some(hit) = cache.get(&key).await {
            inner.counters.hits.increment(1);
            let ttl = cache.ttl_of(&hit).saturating_sub(hit.fetched_at.elapsed());
            let source = if hit.outcome.is_ok() {
                Source::Cache
            } else {
                Source::Fallback
            };
            return (hit.outcome, source, false, ttl);
        }
        inner.counters.misses.increment(1);

        // The upstream call runs in its own task: it outlives this request
        // if the budget runs out first, and fills the cache (late fill).
        let task = {
            let cache = cache.clone();
            let upstream = upstream.clone();
            let event = event.clone();
            let late_fills = inner.counters.late_fills.clone();
            let deadline = Instant::now() + budget;
            tokio::spawn(async move {
                let fetch = async {
                    let c = cache.value(&event, upstream.check(&event).await);
                    if Instant::now() > deadline {
                        late_fills.increment(1);
                    }
                    c
                };
                cache.get_or_fetch(key, fetch).await
            })
        };
        match tokio::time::timeout(budget, task).await {
            Ok(Ok((cached, fresh))) => {
                if !fresh {
                    inner.counters.coalesced.increment(1);
                }
                let ttl = cache.ttl_of(&cached);
                let source = if cached.outcome.is_ok() {
                    Source::Upstream
                } else {
                    Source::Fallback
                };
                (cached.outcome, source, !fresh, ttl)
            }
            Ok(Err(join)) => {
                tracing::error!(panic = join.is_panic(), "upstream task failed");
                (
                    Err(UpstreamError::Internal),
                    Source::Fallback,
                    false,
                    Duration::ZERO,
                )
            }
            Err(_) => {
                inner.counters.deadline.increment(1);
                (
                    Err(UpstreamError::Deadline),
                    Source::Fallback,
                    false,
                    Duration::ZERO,
                )
            }
        }
    }

    fn record(&self, d: &Decision, door: Door) {
        metrics::counter!(
            m::DECISIONS,
            "door" => door.as_str(),
            "decision" => d.ruling.action.as_str(),
            "source" => d.source.as_str(),
            "mode" => d.mode.as_str(),
        )
        .increment(1);
        let c = &self.inner.counters;
        for t in d.tags.known() {
            c.tags[t as usize].increment(1);
        }
        if !d.tags.unknown().is_empty() {
            c.unknown_tags.increment(d.tags.unknown().len() as u64);
        }
    }
}
