//! The in-process scoring path without HTTP: cache key, cache hit,
//! policy, decision, metrics; and the verdict cache's lookup alone, on one
//! hot key and over a million. Figures: docs/performance.md.
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fraudgate::cache::VerdictCache;
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

/// `VerdictCache::get` on a hit, with a million keys held. Its future never
/// waits, so it is polled once, without a runtime.
fn cache(c: &mut Criterion) {
    use futures_util::FutureExt;
    let mut config = Config::default();
    let n: u32 = 1_000_000;
    config.cache.max_entries = n.into();
    // Longer than any run: every lookup is a hit.
    config.cache.ttl_s = 3600;
    let cache = VerdictCache::new(&config.cache);
    let template = EventBuilder::from_query(&format!(
        "event_type=click&ip=10.0.0.1&ua={UA}&affiliate_id=6251&offer_id=34713"
    ))
    .unwrap()
    .build()
    .unwrap();
    let flagged = Tags::parse("proxy").unwrap();
    let keys: Vec<_> = (0..n)
        .map(|i| {
            let mut e = template.clone();
            e.ip = Ipv4Addr::from(0x0b00_0000 + i).into();
            let outcome = if i % 10 == 0 {
                Ok(flagged.clone())
            } else {
                Ok(Tags::clean())
            };
            let key = cache.key(&e);
            let v = cache.value(&e, outcome, cache.generation());
            cache.insert(key, v).now_or_never().unwrap();
            key
        })
        .collect();
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Elements(1));
    // One key; 1 024 (in the CPU's caches too, and where in its bucket
    // a key sits, which differs from process to process, averages out);
    // all of them (mostly a trip to memory). The keys are read in a fixed
    // pseudo-random order (an LCG mod a power of two, the ones past the
    // last skipped).
    for (id, m) in [
        ("get/hit_one_key", 1),
        ("get/hit_of_1k_keys", 1 << 10),
        ("get/hit_of_1m_keys", n),
    ] {
        let span = m.next_power_of_two() - 1;
        g.bench_function(id, |b| {
            let mut i = 0u32;
            b.iter(|| {
                loop {
                    i = i.wrapping_mul(1_664_525).wrapping_add(1_013_904_223) & span;
                    if i < m {
                        break;
                    }
                }
                cache
                    .get(black_box(&keys[i as usize]))
                    .now_or_never()
                    .unwrap()
                    .expect("a hit")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, score, cache);
criterion_main!(benches);
