//! The scorer on paused time with an in-process origin: which answers the
//! rules give alone, when the upstream is asked and what its answer, its
//! failure or its lateness makes of the decision.

use tokio::time::Instant;

use super::*;
use crate::event::EventBuilder;
use crate::lookup::fake_origin::{FakeOrigin, click, tags};
use crate::policy::Reason;
use crate::rules::RuleKind;
use crate::rules::lists::Entry;
use crate::verdict::Tags;

const BUDGET: Duration = Duration::from_secs(1);
const CALL: Duration = Duration::from_millis(50);
const IP: &str = "203.0.113.7";

fn config() -> Config {
    let mut c = Config::default();
    c.decision_log.enabled = false;
    c
}

fn scorer(config: &Config, origin: Option<&Arc<FakeOrigin>>) -> Scorer {
    let origin = origin.map(|o| o.clone() as Arc<dyn crate::lookup::Origin>);
    Scorer::with_origin(config, origin).unwrap()
}

fn opts(budget: Duration) -> ScoreOpts {
    ScoreOpts {
        door: Door::Check,
        budget,
        on_error: None,
        client: None,
    }
}

/// What the caller is told, and where the tags came from.
fn answer(d: &Decision) -> (Action, Source) {
    (d.action, d.source)
}

/// A click from an HTTP library: the crawler rule tags it, the default
/// policy blocks it.
fn crawler_click() -> Event {
    EventBuilder::from_query(&format!(
        "event_type=click&ip={IP}&ua=curl%2F8.5.0&offer_id=1&affiliate_id=2"
    ))
    .unwrap()
    .build()
    .unwrap()
}

/// Velocity tags every event `ip`, a tag the default policy allows.
fn velocity_tags_every_event(c: &mut Config) {
    c.rules.velocity.per_ip = 0;
}

#[tokio::test(start_paused = true)]
async fn rts_verdict_decides_and_a_repeat_is_answered_by_the_cache() {
    let origin = FakeOrigin::new(CALL, vec![Ok(tags("proxy"))]);
    let s = scorer(&config(), Some(&origin));

    let first = s.score(&click(IP), &opts(BUDGET)).await;
    let repeat = s.score(&click(IP), &opts(BUDGET)).await;

    assert_eq!(answer(&first), (Action::Block, Source::Upstream));
    assert_eq!(first.tags, tags("proxy"));
    assert_eq!(answer(&repeat), (Action::Block, Source::Cache));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_allow_listed_event_is_allowed_without_a_call() {
    let origin = FakeOrigin::new(CALL, vec![Ok(tags("proxy"))]);
    let s = scorer(&config(), Some(&origin));
    let entry = Entry::parse_line(&format!("ip {IP}")).unwrap().unwrap();
    s.rules().add_entries("allowlist", vec![entry]).unwrap();

    let d = s.score(&click(IP), &opts(BUDGET)).await;

    assert_eq!(answer(&d), (Action::Allow, Source::Local));
    assert_eq!(d.ruling.reason, Reason::AllowList);
    assert_eq!(d.rules[0].kind, RuleKind::AllowList);
    assert_eq!(origin.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_local_block_is_answered_without_a_call() {
    let origin = FakeOrigin::new(CALL, vec![Ok(Tags::clean())]);
    let s = scorer(&config(), Some(&origin));

    let started = Instant::now();
    let d = s.score(&crawler_click(), &opts(BUDGET)).await;

    assert_eq!(answer(&d), (Action::Block, Source::Local));
    assert_eq!(d.tags, tags("crawler"));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(origin.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_local_block_stands_when_rt_gives_no_verdict() {
    let origin = FakeOrigin::new(CALL, vec![Err(UpstreamError::Timeout)]);
    let mut c = config();
    c.rules.ask_upstream_on_block = true;
    let s = scorer(&c, Some(&origin));

    let d = s.score(&crawler_click(), &opts(BUDGET)).await;

    assert_eq!(answer(&d), (Action::Block, Source::Local));
    assert_eq!(d.ruling.reason, Reason::Tags);
    assert_eq!(origin.calls(), 1, "asked, as configured");
}

#[tokio::test(start_paused = true)]
async fn local_tags_the_policy_lets_through_join_rts() {
    let origin = FakeOrigin::new(CALL, vec![Ok(tags("proxy"))]);
    let mut c = config();
    velocity_tags_every_event(&mut c);
    let s = scorer(&c, Some(&origin));

    let d = s.score(&click(IP), &opts(BUDGET)).await;

    assert_eq!(answer(&d), (Action::Block, Source::Upstream));
    assert_eq!(d.tags, tags("proxy\nip"));
    assert_eq!(d.rules[0].kind, RuleKind::Velocity);
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn past_the_budget_the_fail_mode_decides_at_the_budget() {
    let origin = FakeOrigin::new(Duration::from_secs(2), vec![Ok(tags("proxy"))]);
    let s = scorer(&config(), Some(&origin));
    let budget = Duration::from_millis(100);

    let started = Instant::now();
    let open = s.score(&click(IP), &opts(budget)).await;
    let elapsed = started.elapsed();
    let closed = ScoreOpts {
        on_error: Some(Action::Block),
        ..opts(budget)
    };
    let closed = s.score(&click("198.51.100.1"), &closed).await;

    assert_eq!(elapsed, budget);
    assert_eq!(answer(&open), (Action::Allow, Source::Fallback));
    assert_eq!(
        open.ruling.reason,
        Reason::Fallback(UpstreamError::Deadline)
    );
    assert_eq!(closed.action, Action::Block, "the door's fail mode");
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn without_an_upstream_the_rules_answer_alone() {
    let mut c = config();
    velocity_tags_every_event(&mut c);
    let s = scorer(&c, None);
    let plain = scorer(&config(), None);

    let tagged = s.score(&click(IP), &opts(BUDGET)).await;
    let clean = plain.score(&click(IP), &opts(BUDGET)).await;

    assert_eq!(answer(&tagged), (Action::Allow, Source::Local));
    assert_eq!(tagged.tags, tags("ip"));
    assert_eq!(answer(&clean), (Action::Allow, Source::Fallback));
    assert_eq!(
        clean.ruling.reason,
        Reason::Fallback(UpstreamError::Disabled)
    );
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_allows_what_it_would_block() {
    let mut c = config();
    c.policy.mode = Mode::Shadow;
    let s = scorer(&c, None);

    let d = s.score(&crawler_click(), &opts(BUDGET)).await;

    assert_eq!((d.action, d.ruling.action), (Action::Allow, Action::Block));
    assert_eq!(d.mode, Mode::Shadow);
}
