//! Fills a decision log store with N decisions over DAYS days (1) and
//! times the writer, a groups query by affiliate_id, and what a
//! conversion (`/v1/postback`) costs on it: its click read by id, and a
//! source's clicks and conversions over the window (`ctit_long`).
//!
//! cargo run --release --example decision_log_load -- [N=10000000] [DIR]
//! DAYS=7 cargo run --release --example decision_log_load -- 10000000
//! CLICKHOUSE_URL=http://127.0.0.1:8123 cargo run --release --example decision_log_load -- [N]
//!
//! With CLICKHOUSE_URL set the store is that server (database
//! `fraudgate_load`, table `decisions`, emptied first). N = 0 only runs
//! the queries on what an earlier run wrote.
//!
//! Records are what the scorer hands the writer (10 000 per batch, 500
//! affiliates, 20 offers, a tenth blocked with a tag).

use std::time::{Duration, Instant};

use fraudgate::decision::{DecisionId, Door, Source};
use fraudgate::decision_log::{Batch, IpMode, IvtMap, Record, Store, clickhouse, sqlite};
use fraudgate::event::EventBuilder;
use fraudgate::policy::{Action, Mode};
use fraudgate::query::exec::Reader;
use fraudgate::query::{Events, Query};
use fraudgate::verdict::Tags;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(10_000_000, |a| a.parse().expect("N"));
    let dir = args.next().map_or_else(
        || std::env::temp_dir().join(format!("fraudgate-load-{}", std::process::id())),
        Into::into,
    );
    let mut config = fraudgate::Config::default();
    let ivt = IvtMap::new(&config.ivt).unwrap();
    config.decision_log.path = dir.display().to_string();
    config.decision_log.query_timeout_ms = 60_000;
    let ch_url = std::env::var("CLICKHOUSE_URL").ok();
    // A batch as the writer thread is handed it: encoded (outside the
    // timing; ClickHouse's writer takes it decoded, as the thread does).
    type Write = Box<dyn FnMut(&Batch)>;
    let mut write: Write = match &ch_url {
        Some(url) => {
            let c = &mut config.decision_log;
            c.store = Store::Clickhouse;
            c.clickhouse.url = url.clone();
            c.clickhouse.database = "fraudgate_load".into();
            // A clean table for the figures (curl: the example's only
            // use of the server outside fraudgate's own client).
            let _ = (n > 0).then(|| {
                std::process::Command::new("curl")
                    .args([
                        "-s",
                        url,
                        "--data-binary",
                        "DROP TABLE IF EXISTS fraudgate_load.decisions",
                    ])
                    .status()
            });
            let mut w = clickhouse::Writer::new(c.clickhouse.clone(), ivt, IpMode::Full, 30);
            Box::new(move |b| w.write(&b.records().decode()).unwrap())
        }
        None => {
            let mut w = sqlite::Writer::open(&dir, ivt, IpMode::Full, 30).unwrap();
            Box::new(move |b| w.write_records(b.records()).unwrap())
        }
    };
    let reader = Reader::new(&config.decision_log);
    let days: i64 = std::env::var("DAYS").map_or(1, |d| d.parse().expect("DAYS"));
    let day_ms =
        fraudgate::event::now_unix() as i64 / 86_400 * 86_400_000 - (days - 1) * 86_400_000;
    let id_of = |i: u64| {
        let ms = day_ms + (i as i64 * (days * 86_400_000 - 1_000) / n.max(1) as i64);
        DecisionId(((ms as u128) << 80) | (0x7 << 76) | i as u128)
    };
    let proxy = Tags::parse("proxy").unwrap();
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    let started = Instant::now();
    let mut writing = Duration::ZERO;
    let mut batch = Vec::with_capacity(10_000);
    // N = 0: no writing, only the queries on an existing store.
    for i in 0..n {
        let event = EventBuilder::from_query(&format!(
            "event_type=click&ip=10.{}.{}.{}&ua=x&affiliate_id={}&offer_id={}&aff_sub1=s{}",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            i % 500,
            i % 20,
            i % 7
        ))
        .unwrap();
        let mut event = event.build().unwrap();
        event.ua = ua.into();
        let blocked = i % 10 == 0;
        batch.push(Record {
            id: id_of(i),
            door: Door::Check,
            client: None,
            event: (&event).into(),
            decision: if blocked {
                Action::Block
            } else {
                Action::Allow
            },
            would_be: if blocked {
                Action::Block
            } else {
                Action::Allow
            },
            mode: Mode::Enforce,
            tags: if blocked {
                proxy.clone()
            } else {
                Tags::clean()
            },
            blocked_by: if blocked {
                proxy.clone()
            } else {
                Tags::clean()
            },
            source: Source::Cache,
            reason: if blocked { "tags" } else { "clean" },
            rules: Vec::new(),
            elapsed_us: 40,
        });
        if batch.len() == 10_000 {
            let encoded = Batch::of(&batch);
            let t = Instant::now();
            write(&encoded);
            writing += t.elapsed();
            batch.clear();
        }
    }
    let encoded = Batch::of(&batch);
    let t = Instant::now();
    write(&encoded);
    writing += t.elapsed();
    let took = started.elapsed();
    println!(
        "writer: {n} decisions in {:.1} s of writing: {:.0} decisions/s ({:.1} s with building the records)",
        writing.as_secs_f64(),
        n as f64 / writing.as_secs_f64(),
        took.as_secs_f64()
    );
    let q = Query::from_params(
        Events::Click,
        "group=affiliate_id&field=count,blocked,block_rate,uniq_ip&sort=blocked_desc&page_size=10",
        true,
    )
    .unwrap();
    for run in 1..=3 {
        let started = Instant::now();
        let mut rows = 0;
        let (stop, _asker) = reader.stop();
        reader
            .run(&q, &stop, &mut |_, _| {
                rows += 1;
                true
            })
            .unwrap();
        println!(
            "groups by affiliate_id (count, blocked, block_rate, uniq_ip), run {run}: {} ms, {rows} rows",
            started.elapsed().as_millis()
        );
    }
    let q2 = Query::from_params(
        Events::Click,
        "group=affiliate_id&field=count,blocked,block_rate&sort=blocked_desc&page_size=10",
        true,
    )
    .unwrap();
    let started = Instant::now();
    let (stop, _asker) = reader.stop();
    reader.run(&q2, &stop, &mut |_, _| true).unwrap();
    println!(
        "groups by affiliate_id (count, blocked, block_rate): {} ms",
        started.elapsed().as_millis()
    );
    conversion_cost(&reader, n, &id_of);
    match ch_url {
        Some(url) => println!("store: {url} fraudgate_load.decisions"),
        None => println!("store: {}", dir.display()),
    }
}

/// What a conversion costs the store: its click read by id (1 000 ids
/// spread over the store), and one source's clicks and conversions over
/// the whole window.
fn conversion_cost(reader: &Reader, n: u64, id_of: &dyn Fn(u64) -> DecisionId) {
    if n == 0 {
        return;
    }
    let mut took: Vec<Duration> = (0..1_000u64)
        .map(|k| {
            let id = id_of(k * 7_919 % n).to_string();
            let q = fraudgate::funnel::click::query(&id).unwrap();
            let (stop, _asker) = reader.stop();
            let t = Instant::now();
            let rows = reader.collect(&q, &stop).unwrap();
            let d = t.elapsed();
            assert_eq!(rows.len(), 1, "the click {id} is found");
            d
        })
        .collect();
    took.sort();
    println!(
        "a conversion's click by id, 1000 lookups: median {:.0} us, p99 {:.0} us",
        took[500].as_secs_f64() * 1e6,
        took[990].as_secs_f64() * 1e6
    );
    let q = fraudgate::funnel::click::source_query("7", Some("s0"), 0);
    for run in 1..=3 {
        let (stop, _asker) = reader.stop();
        let t = Instant::now();
        let rows = reader.collect(&q, &stop).unwrap();
        println!(
            "a source's clicks and conversions over the window (ctit_long), run {run}: {} ms ({:?})",
            t.elapsed().as_millis(),
            fraudgate::funnel::click::source_counts(&rows)
        );
    }
}
