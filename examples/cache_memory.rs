//! Memory per cached verdict: fills the verdict cache with N distinct
//! ip+ua keys (the way misses fill it) and prints the RSS growth per key.
//!
//!   cargo run --release --example cache_memory -- 10000000
use std::net::Ipv4Addr;

use fraudgate::cache::VerdictCache;
use fraudgate::config::Config;
use fraudgate::event::EventBuilder;
use fraudgate::verdict::Tags;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("a count"));
    let mut config = Config::default();
    config.cache.max_entries = n;
    let cache = VerdictCache::new(&config.cache);
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let template = EventBuilder::from_query(&format!(
        "event_type=click&ip=10.0.0.1&ua={}&affiliate_id=6251&offer_id=34713",
        form_urlencoded::byte_serialize(ua.as_bytes()).collect::<String>()
    ))
    .unwrap()
    .build()
    .unwrap();
    let flagged = Tags::parse("datacenter").unwrap();
    let before = rss_bytes();
    let started = std::time::Instant::now();
    for i in 0..n {
        let mut e = template.clone();
        e.ip = Ipv4Addr::from(0x0b00_0000u32 + i as u32).into();
        let outcome = if i % 10 == 0 {
            Ok(flagged.clone())
        } else {
            Ok(Tags::clean())
        };
        let v = cache.value(&e, outcome, cache.generation());
        cache.insert(cache.key(&e), v).await;
    }
    let after = rss_bytes();
    let held = cache.entry_count();
    println!(
        "{n} keys inserted in {:.1?}: {held} held in {} slots; RSS {:.1} MiB -> {:.1} MiB: {:.0} bytes per key held",
        started.elapsed(),
        cache.slots(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / held as f64
    );
}
