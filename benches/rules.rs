//! Local rules: crawler UA matching on a realistic mix, longest-prefix
//! lookup over 1M prefixes, and the whole local-rules pass per event.
//! Figures: docs/performance.md.
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fraudgate::config::Config;
use fraudgate::event::EventBuilder;
use fraudgate::rules::LocalRules;
use fraudgate::rules::crawler::CrawlerMatcher;
use fraudgate::rules::ranges::{IpRanges, Prefix};

fn corpus(name: &str) -> Vec<String> {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// xorshift: deterministic input without a rand dependency.
fn rng(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn million_prefixes() -> Vec<(Prefix, u32)> {
    let mut r = rng(0x2545F4914F6CDD1D);
    (0..1_000_000u32)
        .map(|i| {
            let p = if i % 4 == 0 {
                let a = Ipv6Addr::from(
                    ((0x2000u128 | (r() as u128 & 0x0fff)) << 112) | ((r() as u128) << 48),
                );
                Prefix::parse(&format!("{a}/{}", 32 + r() % 33)).unwrap()
            } else {
                let a = Ipv4Addr::from(r() as u32);
                Prefix::parse(&format!("{a}/{}", 12 + r() % 21)).unwrap()
            };
            (p, i)
        })
        .collect()
}

fn rules(c: &mut Criterion) {
    // UA mix: 90% browsers, 10% crawlers, the way real traffic skews.
    let browsers = corpus("browser_uas.txt");
    let crawlers = corpus("crawler_uas.txt");
    let mix: Vec<&str> = (0..1000)
        .map(|i| {
            if i % 10 == 0 {
                crawlers[i * 7 % crawlers.len()].as_str()
            } else {
                browsers[i * 13 % browsers.len()].as_str()
            }
        })
        .collect();
    let m = CrawlerMatcher::builtin();
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(mix.len() as u64));
    g.bench_function("crawler_ua/mix_90_10_x1000", |b| {
        b.iter(|| {
            mix.iter()
                .filter(|u| m.check(black_box(u)).is_some())
                .count()
        })
    });
    g.throughput(Throughput::Elements(1));
    let browser = browsers[0].as_str();
    g.bench_function("crawler_ua/one_browser", |b| {
        b.iter(|| m.check(black_box(browser)))
    });

    let items = million_prefixes();
    let t = Instant::now();
    let table = IpRanges::build(items.clone());
    eprintln!("rules: built 1M prefixes in {:?}", t.elapsed());
    g.bench_function("ranges/build_1m", |b| {
        b.iter_batched(
            || items.clone(),
            IpRanges::build,
            criterion::BatchSize::LargeInput,
        )
    });
    let mut r = rng(99);
    let probes: Vec<IpAddr> = (0..4096)
        .map(|i| {
            if i % 4 == 0 {
                IpAddr::from(Ipv6Addr::from(
                    ((0x2000u128 | (r() as u128 & 0x0fff)) << 112) | r() as u128,
                ))
            } else {
                IpAddr::from(Ipv4Addr::from(r() as u32))
            }
        })
        .collect();
    let mut i = 0;
    g.bench_function("ranges/lookup_1m", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            table.lookup(black_box(probes[i]))
        })
    });

    // The shipped datacenter ranges (the default config's), probed with
    // the same random addresses: most miss, as most traffic does.
    let shipped: Vec<(Prefix, u32)> = include_str!("../src/rules/ranges/datacenter.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| Prefix::parse(l.split(' ').next()?).ok())
        .zip(0u32..)
        .collect();
    let shipped = IpRanges::build(shipped);
    eprintln!("rules: shipped datacenter ranges: {}", shipped.len());
    g.bench_function("ranges/lookup_shipped_datacenter", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            shipped.lookup(black_box(probes[i]))
        })
    });

    // Default config: crawler, datacenter, proxy and verified-bot ranges,
    // velocity.
    let local = LocalRules::new(&Config::default().rules).unwrap();
    let ev = EventBuilder::from_query(&format!(
        "event_type=click&ip=203.0.113.7&ua={}&affiliate_id=6251&offer_id=34713",
        form_urlencoded::byte_serialize(browser.as_bytes()).collect::<String>()
    ))
    .unwrap()
    .build()
    .unwrap();
    g.bench_function("local/full_pass_browser", |b| {
        b.iter(|| local.evaluate(black_box(&ev), None))
    });
    g.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
