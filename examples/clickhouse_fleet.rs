//! A fleet's decision logs writing one ClickHouse table (issue #37):
//! WRITERS writer instances (each a replica's `clickhouse::Writer`, with
//! its own HTTP client, on a thread of its own), each writing every
//! 500 ms (`decision_log.flush_ms`) what RATE decisions a second queued
//! since its last batch, for SECONDS, with `decision_log.clickhouse.insert
//! = MODE` (direct, buffer, async or auto).
//!
//! CLICKHOUSE_URL=http://127.0.0.1:8123 \
//!   cargo run --release --example clickhouse_fleet -- MODE [WRITERS=20] [RATE=500] [SECONDS=300]
//!
//! Every 2 s it samples the most active parts in one partition of the
//! table and of its id index (`system.parts WHERE active`), printed every
//! 30 s; at the end the insert latency (median, p99, max), the rows
//! written a second, the highest parts counts, the parts the table was
//! given (its last block number: one per insert into it, before merges),
//! failed inserts, and the rows the table holds.
//! The database is `fraudgate_fleet_<MODE>`, dropped first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fraudgate::decision::{DecisionId, Door, Source};
use fraudgate::decision_log::clickhouse::{self, ClickHouseConfig, InsertMode};
use fraudgate::decision_log::{IpMode, IvtMap, Record};
use fraudgate::event::EventBuilder;
use fraudgate::policy::{Action, Mode};
use fraudgate::verdict::Tags;

const FLUSH: Duration = Duration::from_millis(500);
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// One writer's account.
#[derive(Default)]
struct Written {
    latencies: Vec<Duration>,
    rows: u64,
    failed: u64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "buffer".into());
    let arg = |a: Option<String>, default: u64| a.map_or(default, |a| a.parse().expect("a number"));
    let writers = arg(args.next(), 20);
    let rate = arg(args.next(), 500);
    let seconds = arg(args.next(), 300);
    let url = std::env::var("CLICKHOUSE_URL").expect("CLICKHOUSE_URL");
    let insert: InsertMode = serde_json::from_value(serde_json::json!(mode)).expect("MODE");
    let mut config = fraudgate::Config::default().decision_log.clickhouse;
    config.url = url;
    config.database = format!("fraudgate_fleet_{mode}");
    config.insert = insert;
    let server = Server::new(&config);
    server.sql(&format!("DROP DATABASE IF EXISTS {}", config.database));
    println!(
        "{writers} writers x {rate} decisions/s, a batch every {} ms, insert = {mode}, {seconds} s, ClickHouse {}",
        FLUSH.as_millis(),
        server.sql("SELECT version()").trim()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|n| {
            let (config, stop) = (config.clone(), stop.clone());
            std::thread::spawn(move || writer(n, config, rate, &stop))
        })
        .collect();
    let parts = sample_parts(&server, &config, started, seconds);
    stop.store(true, Ordering::Release);
    let mut all = Written::default();
    for h in handles {
        let w = h.join().expect("writer");
        all.latencies.extend(w.latencies);
        all.rows += w.rows;
        all.failed += w.failed;
    }
    let took = started.elapsed().as_secs_f64();
    all.latencies.sort();
    let at = |q: f64| {
        let l = &all.latencies;
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let max = |i: usize| parts.iter().map(|p| p[i]).max().unwrap_or(0);
    if config.insert != InsertMode::Direct {
        // (What a Buffer still holds; nothing on other paths.)
        let _ = server.try_sql(&format!(
            "OPTIMIZE TABLE {}",
            clickhouse::insert_path::buffer_table(&config)
        ));
    }
    let stored = server.sql(&format!(
        "SELECT count() FROM {}.{}",
        config.database, config.table
    ));
    let blocks = server.sql(&format!(
        "SELECT max(max_block_number) FROM system.parts WHERE database = '{}' AND table = '{}'",
        config.database, config.table
    ));
    println!(
        "inserts: {}, failed {}; latency median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        all.latencies.len(),
        all.failed,
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!(
        "rows written: {} ({:.0}/s), in the table: {}",
        all.rows,
        all.rows as f64 / took,
        stored.trim()
    );
    println!(
        "most active parts in a partition: table {}, id index {}; parts the table was given: {}",
        max(0),
        max(1),
        blocks.trim()
    );
}

/// One replica's writer: every 500 ms, a batch of what `rate` decisions
/// a second queued since the last one (more after a slow insert, as the
/// real queue holds them).
fn writer(n: u64, config: ClickHouseConfig, rate: u64, stop: &AtomicBool) -> Written {
    let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
    let mut w = clickhouse::Writer::new(config, ivt, IpMode::Full, 30);
    let template = records(n, 4096);
    let mut out = Written::default();
    let mut last = Instant::now();
    let mut seq = 0u64;
    let mut next = Instant::now() + FLUSH;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += FLUSH;
        let now = Instant::now();
        let due = (rate as f64 * (now - last).as_secs_f64()).round() as u64;
        last = now;
        let ms = jiff::Timestamp::now().as_millisecond();
        let batch: Vec<Record> = (0..due)
            .map(|k| {
                let mut r = template[((seq + k) % template.len() as u64) as usize].clone();
                r.id =
                    DecisionId(((ms as u128) << 80) | (u128::from(n) << 60) | u128::from(seq + k));
                r
            })
            .collect();
        seq += due;
        let t = Instant::now();
        match w.write(&batch) {
            Ok(()) => {
                out.latencies.push(t.elapsed());
                out.rows += due;
            }
            Err(e) => {
                out.failed += 1;
                eprintln!("writer {n}: {e}");
            }
        }
        next = next.max(Instant::now());
    }
    w.close();
    out
}

/// A replica's decisions: 500 affiliates, 20 offers, a tenth blocked.
fn records(n: u64, count: u64) -> Vec<Record> {
    let proxy = Tags::parse("proxy").unwrap();
    (0..count)
        .map(|i| {
            let mut event = EventBuilder::from_query(&format!(
                "event_type=click&ip=10.{n}.{}.{}&ua=x&affiliate_id={}&offer_id={}&aff_sub1=s{}",
                (i >> 8) & 255,
                i & 255,
                i % 500,
                i % 20,
                i % 7
            ))
            .unwrap()
            .build()
            .unwrap();
            event.ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36".into();
            let blocked = i % 10 == 0;
            let (action, tags) = if blocked {
                (Action::Block, proxy.clone())
            } else {
                (Action::Allow, Tags::clean())
            };
            Record {
                id: DecisionId(0),
                door: Door::Check,
                client: None,
                event: (&event).into(),
                decision: action,
                would_be: action,
                mode: Mode::Enforce,
                tags: tags.clone(),
                blocked_by: tags,
                source: Source::Cache,
                reason: if blocked { "tags" } else { "clean" },
                rules: Vec::new(),
                elapsed_us: 40,
            }
        })
        .collect()
}

/// Every 10 s until `seconds` have passed: the most active parts in one
/// partition of the table and of its id index, printed and kept.
fn sample_parts(
    server: &Server,
    config: &ClickHouseConfig,
    started: Instant,
    seconds: u64,
) -> Vec<[u64; 2]> {
    let sql = format!(
        "SELECT table, max(n) FROM (SELECT table, partition, count() AS n FROM system.parts \
         WHERE active AND database = '{}' GROUP BY table, partition) GROUP BY table \
         FORMAT TabSeparated",
        config.database
    );
    let end = started + Duration::from_secs(seconds);
    let mut samples = Vec::new();
    let mut next = started + SAMPLE_EVERY;
    while Instant::now() < end {
        std::thread::sleep(next.min(end).saturating_duration_since(Instant::now()));
        next += SAMPLE_EVERY;
        let answer = server.try_sql(&sql).unwrap_or_default();
        let of = |t: String| {
            answer
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{t}\t")))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        };
        let p = [
            of(config.table.clone()),
            of(format!("{}_ids", config.table)),
        ];
        samples.push(p);
        if samples.len() % 15 == 0 {
            let recent = &samples[samples.len() - 15..];
            let most = |i: usize| recent.iter().map(|p| p[i]).max().unwrap_or(0);
            println!(
                "t={:>4}s most active parts in a partition over the last 30 s: table {:>4}, id index {:>4}",
                started.elapsed().as_secs(),
                most(0),
                most(1)
            );
        }
    }
    samples
}

/// Statements for the harness itself (setup, samples), over fraudgate's
/// own ClickHouse client.
struct Server {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    url: String,
}

impl Server {
    fn new(c: &ClickHouseConfig) -> Self {
        Server {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: clickhouse::client(),
            url: c.url.clone(),
        }
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        self.rt.block_on(async {
            let r = self
                .http
                .post(&self.url)
                .body(sql.to_owned())
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let ok = r.status().is_success();
            let text = r.text().await.map_err(|e| e.to_string())?;
            if ok { Ok(text) } else { Err(text) }
        })
    }

    fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}
