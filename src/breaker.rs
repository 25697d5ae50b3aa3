//! Circuit breaker around the upstream.
//!
//! Closed: calls go through; it opens on `consecutive_failures` failures in
//! a row, or when at least `min_calls` calls in the current `window_s`
//! window failed at `failure_ratio` or more. Open: no calls for `open_s`
//! (immediate fallback decisions). Then half-open: `half_open_probes` trial
//! calls; all succeeding closes it, any failing re-opens it.
//!
//! The state sits behind a mutex held for a few instructions, never across
//! an await.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::metrics as m;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub failure_ratio: f64,
    pub min_calls: u32,
    pub window_s: u64,
    pub open_s: u64,
    pub half_open_probes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
    const fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::HalfOpen => 1.0,
            State::Open => 2.0,
        }
    }
}

/// Leave to make one upstream call; hand it back with the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Normal,
    Probe,
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive: u32,
    window_start: Instant,
    calls: u32,
    failures: u32,
    opened_at: Instant,
    probes_out: u32,
    probe_successes: u32,
}

#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
    state_gauge: metrics::Gauge,
    /// Transitions by new state: closed, open, half-open.
    transitions: [metrics::Counter; 3],
}

impl Breaker {
    pub fn new(cfg: &BreakerConfig) -> Self {
        let now = Instant::now();
        let state_gauge = metrics::gauge!(m::BREAKER_STATE);
        state_gauge.set(State::Closed.gauge());
        Breaker {
            state_gauge,
            transitions: [State::Closed, State::Open, State::HalfOpen]
                .map(|s| metrics::counter!(m::BREAKER_TRANSITIONS, "to" => s.as_str())),
            cfg: cfg.clone(),
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                window_start: now,
                calls: 0,
                failures: 0,
                opened_at: now,
                probes_out: 0,
                probe_successes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> State {
        let mut g = self.lock();
        // An open breaker whose time is up reads as half-open.
        if g.state == State::Open && g.opened_at.elapsed() >= Duration::from_secs(self.cfg.open_s) {
            self.transition(&mut g, State::HalfOpen);
        }
        g.state
    }

    /// May a call go upstream now?
    pub fn try_acquire(&self) -> Option<Permit> {
        if !self.cfg.enabled {
            return Some(Permit::Normal);
        }
        let mut g = self.lock();
        if g.state == State::Open && g.opened_at.elapsed() >= Duration::from_secs(self.cfg.open_s) {
            self.transition(&mut g, State::HalfOpen);
        }
        match g.state {
            State::Closed => Some(Permit::Normal),
            State::Open => None,
            State::HalfOpen if g.probes_out + g.probe_successes < self.cfg.half_open_probes => {
                g.probes_out += 1;
                Some(Permit::Probe)
            }
            State::HalfOpen => None,
        }
    }

    /// A permit that was not used (another request's call answered).
    pub fn release(&self, permit: Permit) {
        if permit == Permit::Probe {
            let mut g = self.lock();
            g.probes_out = g.probes_out.saturating_sub(1);
        }
    }

    /// The outcome of a call made with `permit`.
    pub fn record(&self, permit: Permit, ok: bool) {
        if !self.cfg.enabled {
            return;
        }
        let mut g = self.lock();
        match (g.state, permit) {
            (State::HalfOpen, Permit::Probe) => {
                g.probes_out = g.probes_out.saturating_sub(1);
                if !ok {
                    self.transition(&mut g, State::Open);
                } else {
                    g.probe_successes += 1;
                    if g.probe_successes >= self.cfg.half_open_probes {
                        self.transition(&mut g, State::Closed);
                    }
                }
            }
            (State::Closed, Permit::Normal) => {
                if g.window_start.elapsed() >= Duration::from_secs(self.cfg.window_s) {
                    g.window_start = Instant::now();
                    g.calls = 0;
                    g.failures = 0;
                }
                g.calls += 1;
                if ok {
                    g.consecutive = 0;
                    return;
                }
                g.failures += 1;
                g.consecutive += 1;
                let ratio_trips = g.calls >= self.cfg.min_calls
                    && f64::from(g.failures) / f64::from(g.calls) >= self.cfg.failure_ratio;
                if g.consecutive >= self.cfg.consecutive_failures || ratio_trips {
                    self.transition(&mut g, State::Open);
                }
            }
            // Late answers to calls started in another state.
            _ => {}
        }
    }

    fn transition(&self, g: &mut Inner, to: State) {
        if g.state == to {
            return;
        }
        tracing::warn!(
            from = g.state.as_str(),
            to = to.as_str(),
            "upstream circuit breaker"
        );
        g.state = to;
        let now = Instant::now();
        match to {
            State::Open => g.opened_at = now,
            State::HalfOpen => {
                g.probes_out = 0;
                g.probe_successes = 0;
            }
            State::Closed => {
                g.consecutive = 0;
                g.calls = 0;
                g.failures = 0;
                g.window_start = now;
            }
        }
        self.state_gauge.set(to.gauge());
        self.transitions[to as usize].increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            consecutive_failures: 3,
            failure_ratio: 0.5,
            min_calls: 10,
            window_s: 60,
            open_s: 0,
            half_open_probes: 2,
        }
    }

    #[test]
    fn opens_on_a_run_of_failures_then_probes_then_closes() {
        let b = Breaker::new(&BreakerConfig {
            open_s: 3600,
            ..cfg()
        });
        for _ in 0..3 {
            let p = b.try_acquire().unwrap();
            b.record(p, false);
        }
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.try_acquire(), None);

        let b = Breaker::new(&cfg()); // open_s = 0: half-open at once
        for _ in 0..3 {
            b.record(Permit::Normal, false);
        }
        assert_eq!(b.try_acquire(), Some(Permit::Probe));
        assert_eq!(b.try_acquire(), Some(Permit::Probe));
        assert_eq!(b.try_acquire(), None, "only half_open_probes trial calls");
        b.record(Permit::Probe, true);
        assert_eq!(b.state(), State::HalfOpen);
        b.record(Permit::Probe, true);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = Breaker::new(&cfg());
        for _ in 0..3 {
            b.record(Permit::Normal, false);
        }
        let p = b.try_acquire().unwrap();
        b.record(p, false);
        assert_eq!(b.lock().state, State::Open);
    }

    #[test]
    fn opens_on_a_failure_ratio_without_a_long_run() {
        let b = Breaker::new(&BreakerConfig {
            consecutive_failures: 100,
            open_s: 3600,
            ..cfg()
        });
        for i in 0..10 {
            b.record(Permit::Normal, i % 2 == 0);
        }
        assert_eq!(b.state(), State::Open, "5 of 10 failed");
    }

    #[test]
    fn successes_reset_the_run_and_an_unused_probe_is_returned() {
        let b = Breaker::new(&cfg());
        b.record(Permit::Normal, false);
        b.record(Permit::Normal, false);
        b.record(Permit::Normal, true);
        b.record(Permit::Normal, false);
        assert_eq!(b.state(), State::Closed);
        for _ in 0..3 {
            b.record(Permit::Normal, false);
        }
        let p1 = b.try_acquire().unwrap();
        let _p2 = b.try_acquire().unwrap();
        assert_eq!(b.try_acquire(), None);
        b.release(p1);
        assert_eq!(b.try_acquire(), Some(Permit::Probe));
    }

    #[test]
    fn disabled_lets_everything_through() {
        let b = Breaker::new(&BreakerConfig {
            enabled: false,
            ..cfg()
        });
        for _ in 0..10 {
            b.record(Permit::Normal, false);
        }
        assert_eq!(b.try_acquire(), Some(Permit::Normal));
    }
}
