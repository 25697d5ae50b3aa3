//! The in-process scoring path without HTTP: cache key, cache hit,
//! policy, decision, metrics. Figures: docs/performance.md.
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fraudgate::config::{Config, Secret};
use fraudgate::decision::Door;
use fraudgate::event::EventBuilder;
use fraudgate::score::{ScoreOpts, Scorer};
use fraudgate::verdict::Tags;
use std::hint::black_box;

const UA: &str = "Mozilla%2F5.0%20(Linux%3B%20Android%2013%3B%20SM-S918B)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F120.0.6099.144%20Mobile%20Safari%2F537.36";

fn score(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    // Real counters, as in the server: handles from an app registry.
    let registry = fraudgate::metrics::Registry::new();
    let mut config = Config::default();
    // Never called: every lookup below is a hit.
    config.upstream.url = "http://127.0.0.1:9/".into();
    config.upstream.key = Secret::new("bench");
    config.decision_log.enabled = false;
    let scorer = registry.scope(|| Scorer::new(&config)).unwrap();
    let event = EventBuilder::from_query(&format!(
        "event_type=click&ip=203.0.113.7&ua={UA}&affiliate_id=6251&offer_id=34713"
    ))
    .unwrap()
    .build()
    .unwrap();
    let key = scorer.cache().key(&event);
    let value = scorer
        .cache()
        .value(&event, Ok(Tags::parse("proxy").unwrap()), 0);
    rt.block_on(scorer.cache().get_or_fetch(key, async { value }));

    let opts = ScoreOpts {
        door: Door::Check,
        budget: Duration::from_millis(250),
        on_error: None,
        client: None,
    };

    let mut g = c.benchmark_group("score");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cache_key/ip_ua", |b| {
        b.iter(|| scorer.cache().key(black_box(&event)))
    });
    g.bench_function("event/parse_query", |b| {
        let q = format!(
            "event_type=click&ip=203.0.113.7&ua={UA}&affiliate_id=6251&offer_id=34713&aff_sub1=abc"
        );
        b.iter(|| {
            EventBuilder::from_query(black_box(&q))
                .unwrap()
                .build()
                .unwrap()
        })
    });
    g.bench_function("score/cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| scorer.score(black_box(&event), &opts))
    });
    g.bench_function("decision/serialize_json", |b| {
        let d = rt.block_on(scorer.score(&event, &opts));
        b.iter(|| serde_json::to_vec(black_box(&d)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, score);
criterion_main!(benches);
