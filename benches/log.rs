//! The decision log: what the hot path pays per decision (encoding the
//! record it hands the queue) and what the writer sustains (SQLite, one
//! transaction per batch). Figures: docs/performance.md.
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fraudgate::decision::{Decision, DecisionId, Door, IdGen, Source};
use fraudgate::decision_log::{Batch, IpMode, IvtMap, Record, sqlite};
use fraudgate::event::EventBuilder;
use fraudgate::policy::{Action, Mode, Reason, Ruling};
use fraudgate::verdict::Tags;

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

fn log(c: &mut Criterion) {
    let event = EventBuilder::from_query(&format!(
        "event_type=click&ip=203.0.113.7&ua={}&affiliate_id=6251&offer_id=34713&aff_sub1=banner-7&country_code=DE",
        form_urlencoded::byte_serialize(UA.as_bytes()).collect::<String>()
    ))
    .unwrap()
    .build()
    .unwrap();
    let tags = Tags::parse("proxy").unwrap();
    let decision = Decision {
        id: IdGen.next(),
        action: Action::Block,
        ruling: Ruling {
            action: Action::Block,
            reason: Reason::Tags,
            blocked_by: tags.clone(),
        },
        mode: Mode::Enforce,
        tags,
        source: Source::Cache,
        rules: Vec::new(),
        coalesced: false,
        stale: false,
        cache_ttl: Duration::from_secs(300),
        elapsed: Duration::from_micros(12),
    };
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Elements(1));
    // The hot path's share: encoding onto the end of its queue buffer.
    let mut buf = Vec::with_capacity(1 << 16);
    g.bench_function("record/encode", |b| {
        b.iter(|| {
            if buf.len() > (1 << 16) - 1024 {
                buf.clear();
            }
            fraudgate::decision_log::record::encode(
                black_box(&event),
                black_box(&decision),
                Door::Check,
                Some("anonymous"),
                &mut buf,
            )
        })
    });
    // The writer's: reading a record back.
    let mut one = Vec::new();
    fraudgate::decision_log::record::encode(
        &event,
        &decision,
        Door::Check,
        Some("anonymous"),
        &mut one,
    );
    g.bench_function("record/decode", |b| {
        b.iter(|| Record::decode(&mut black_box(&one[..])))
    });

    let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
    let record = Record::new(&event, &decision, Door::Check, None);
    g.bench_function("row/new", |b| {
        b.iter(|| fraudgate::decision_log::Row::new(black_box(&record), &ivt, IpMode::Full, None))
    });

    let dir = std::env::temp_dir().join(format!("fraudgate-bench-log-{}", std::process::id()));
    let config = fraudgate::Config::default();
    let mut w =
        sqlite::Writer::open(&dir, IvtMap::new(&config.ivt).unwrap(), IpMode::Full, 30).unwrap();
    let now_ms = fraudgate::event::now_unix() as u128 * 1000;
    let batch: Vec<Record> = (0..1000u128)
        .map(|i| {
            let mut r = Record::new(&event, &decision, Door::Check, None);
            r.id = DecisionId((now_ms << 80) | (0x7 << 76) | i);
            r
        })
        .collect();
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.sample_size(20);
    // Each batch new decisions, a millisecond later than the one before
    // (the same ids again would be new rows of the same millisecond).
    let mut ms = now_ms;
    g.bench_function("sqlite/write_batch_1000", |b| {
        b.iter_batched(
            || {
                ms += 1;
                let mut next = batch.clone();
                for (i, r) in next.iter_mut().enumerate() {
                    r.id = DecisionId((ms << 80) | (0x7 << 76) | i as u128);
                }
                // As the writer thread is handed them: encoded.
                Batch::of(&next)
            },
            |next| {
                w.write_records(black_box(next.records())).unwrap();
                // Dropped outside the timing, as the writer's batch is
                // kept for reuse after its transaction.
                next
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, log);
criterion_main!(benches);
