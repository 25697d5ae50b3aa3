//! A stand-alone mock FraudScore RT for load tests (the same mock the
//! integration tests use). Every 7th IP octet answers `proxy`, every 11th
//! `datacenter`, the rest clean, after `--delay-ms` (default 5).
//!
//! cargo run --release --example mock_rt -- --listen 127.0.0.1:18081 --delay-ms 5
//! With `--cycle-s N` (fault soak) every IP gets the same reply, which
//! changes every N seconds: ok, slow (1 s), 500, hang, reset, garbage.
//! On SIGINT/SIGTERM it prints `calls=<n> distinct_ips=<m>` and exits.

#[path = "../tests/api/mock_rt.rs"]
mod mock_rt;

use mock_rt::{MockRt, Reply};

#[tokio::main]
async fn main() {
    let mut listen = "127.0.0.1:18081".to_string();
    let mut delay_ms = 5u64;
    let mut cycle_s = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            "--cycle-s" => {
                cycle_s = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--cycle-s N")
            }
            "--delay-ms" => {
                delay_ms = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--delay-ms N")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let mock = MockRt::start_on(&listen).await;
    mock.set_default(Reply::delayed(delay_ms, Reply::tags("")));
    if cycle_s > 0 {
        let m = mock.clone();
        tokio::spawn(async move {
            let phases = [
                ("ok", Reply::delayed(delay_ms, Reply::tags("proxy"))),
                ("slow", Reply::delayed(1000, Reply::tags(""))),
                ("500", Reply::Status(500)),
                ("hang", Reply::Hang),
                ("reset", Reply::Reset),
                ("garbage", Reply::Garbage),
            ];
            for (name, reply) in phases.iter().cycle() {
                println!("mock RT phase: {name}");
                m.set_default(reply.clone());
                tokio::time::sleep(std::time::Duration::from_secs(cycle_s)).await;
            }
        });
    }
    for a in (0..=255u32).filter(|_| cycle_s == 0) {
        for b in 0..=255u32 {
            let body = if b % 7 == 0 {
                "proxy"
            } else if b % 11 == 0 {
                "datacenter"
            } else {
                continue;
            };
            mock.on_ip(
                &format!("10.{}.{a}.{b}", 0),
                Reply::delayed(delay_ms, Reply::tags(body)),
            );
        }
    }
    println!("mock RT listening on {}", mock.addr);
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    println!(
        "calls={} distinct_ips={}",
        mock.calls(),
        mock.distinct_ips()
    );
}
