//! Tags -> allow/block. Figures: docs/performance.md.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fraudgate::config::Config;
use fraudgate::event::EventBuilder;
use fraudgate::policy::Policy;
use fraudgate::upstream::UpstreamError;
use fraudgate::verdict::Tags;
use std::hint::black_box;

fn decide(c: &mut Criterion) {
    let env = [
        ("FRAUDGATE_POLICY__OFFERS__777__PROXY", "allow"),
        ("FRAUDGATE_POLICY__AFFILIATES__9__IP", "block"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let policy = Policy::from_config(&Config::load_from(None, env).unwrap().policy).unwrap();
    let ev = |offer: &str| {
        EventBuilder::from_query(&format!(
            "event_type=click&ip=1.2.3.4&ua=x&affiliate_id=9&offer_id={offer}"
        ))
        .unwrap()
        .build()
        .unwrap()
    };
    let plain = ev("1");
    let overridden = ev("777");
    let clean = Tags::clean();
    let flagged = Tags::parse("proxy\nip").unwrap();
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decide/clean", |b| {
        b.iter(|| policy.decide(Ok(black_box(&clean)), &plain))
    });
    g.bench_function("decide/flagged_affiliate_override", |b| {
        b.iter(|| policy.decide(Ok(black_box(&flagged)), &plain))
    });
    g.bench_function("decide/flagged_offer_override", |b| {
        b.iter(|| policy.decide(Ok(black_box(&flagged)), &overridden))
    });
    g.bench_function("decide/upstream_error", |b| {
        b.iter(|| policy.decide(Err(black_box(UpstreamError::Timeout)), &plain))
    });
    g.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
