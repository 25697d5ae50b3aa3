//! Several fraudgates on one real `redis-server` (Debian's, started on a
//! random port): one RT call per key for the fleet, purges and list
//! entries seen by all, entries kept across restarts, and Redis going away
//! costing no request.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fraudgate::config::{Config, Secret, SecretList};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    async fn start() -> Option<Redis> {
        tool("redis-server")?;
        let mut r = Redis {
            child: None,
            port: free_port(),
        };
        r.up().await;
        Some(r)
    }

    async fn up(&mut self) {
        let child = Command::new(tool("redis-server").unwrap())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let port = self.port;
        eventually(Duration::from_secs(10), || async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            s.write_all(b"PING\r\n").await.ok()?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).await.ok()?;
            (&buf == b"+PONG\r\n").then_some(())
        })
        .await;
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

/// The fleet's shared secret in these tests.
const HASH_KEY: &str = "fleet-hash-key-0123456789abcdef";

fn on_redis(c: &mut Config, url: &str) {
    c.redis.url = url.to_owned();
    c.redis.hash_key = Secret::new(HASH_KEY);
    c.auth.admin_keys = SecretList(vec![Secret::new(ADMIN_KEY)]);
}

async fn redis_up(app: &TestApp) {
    eventually(Duration::from_secs(10), || async {
        let v = json(app.get("/readyz").await).await;
        (v["redis"] == "up").then_some(())
    })
    .await;
}

#[tokio::test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not installed (Debian: redis-server)"
)]
async fn replicas_make_one_rt_call_per_key_and_serve_each_others_verdicts() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mock = MockRt::start().await;
    let a = spawn_app_on(mock.clone(), |c| on_redis(c, &redis.url())).await;
    let b = spawn_app_on(mock.clone(), |c| on_redis(c, &redis.url())).await;
    let c = spawn_app_on(mock.clone(), |c| on_redis(c, &redis.url())).await;
    for app in [&a, &b, &c] {
        redis_up(app).await;
    }
    // A slow RT answer, asked of three replicas at once.
    mock.on_ip("198.51.100.50", Reply::delayed(150, Reply::tags("proxy")));
    let q = query("198.51.100.50", &[]);
    let (ra, rb, rc) = tokio::join!(a.check(&q), b.check(&q), c.check(&q));
    for (s, v) in [&ra, &rb, &rc] {
        assert_eq!(*s, 200);
        assert_eq!(v["decision"], "block", "{v}");
        assert_eq!(v["tags"], json!(["proxy"]));
    }
    assert_eq!(
        mock.calls_for("198.51.100.50"),
        1,
        "one RT call for the fleet"
    );
    let sources: Vec<&str> = [&ra, &rb, &rc]
        .iter()
        .map(|(_, v)| v["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources.iter().filter(|s| **s == "upstream").count(),
        1,
        "{sources:?}"
    );

    // Asked of one replica, then another: the second has it from Redis.
    mock.on_ip("198.51.100.51", Reply::tags("datacenter"));
    let (_, v) = a.check_ip("198.51.100.51").await;
    assert_eq!(v["source"], "upstream");
    let (_, v) = eventually(Duration::from_secs(5), || async {
        let (s, v) = b.check_ip("198.51.100.51").await;
        (v["source"] == "cache").then_some((s, v))
    })
    .await;
    assert_eq!(v["tags"], json!(["datacenter"]));
    assert_eq!(mock.calls_for("198.51.100.51"), 1);
    let m = b.metrics().await;
    assert!(sample(&m, "fraudgate_redis_verdicts_total", &[("result", "hit")]) >= 1.0);
    assert_eq!(sample(&m, "fraudgate_redis_up", &[]), 1.0);
}

#[tokio::test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not installed (Debian: redis-server)"
)]
async fn a_purge_and_a_list_entry_made_on_one_replica_reach_all_and_outlive_restarts() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mock = MockRt::start().await;
    let a = spawn_app_on(mock.clone(), |c| on_redis(c, &redis.url())).await;
    let b = spawn_app_on(mock.clone(), |c| on_redis(c, &redis.url())).await;
    redis_up(&a).await;
    redis_up(&b).await;

    // Both replicas hold the verdict locally.
    mock.on_ip("198.51.100.60", Reply::tags("proxy"));
    a.check_ip("198.51.100.60").await;
    b.check_ip("198.51.100.60").await;
    b.check_ip("198.51.100.60").await;
    assert_eq!(mock.calls_for("198.51.100.60"), 1);
    // RT changes its mind; a purge on A reaches B's local cache.
    mock.on_ip("198.51.100.60", Reply::tags(""));
    let (s, v) = a
        .admin(
            Method::POST,
            "/v1/admin/cache/purge",
            Some(json!({"ip": "198.51.100.60"})),
        )
        .await;
    assert_eq!((s, &v["purged"]), (200, &json!("ip")), "{v}");
    assert!(v.get("fleet").is_none(), "shared: {v}");
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(3), || async {
        let (_, v) = b.check_ip("198.51.100.60").await;
        (v["decision"] == "allow").then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within a second or so"
    );

    // A block list entry added on A blocks on B.
    let (s, v) = a
        .admin(
            Method::POST,
            "/v1/admin/lists/blocklist/entries",
            Some(json!({"kind": "ip", "value": "203.0.113.0/24", "reason": "botnet"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    eventually(Duration::from_secs(3), || async {
        let (_, v) = b.check_ip("203.0.113.77").await;
        (v["decision"] == "block").then_some(())
    })
    .await;
    // A replica started later has it from Redis.
    let c = spawn_app_on(mock.clone(), |c| on_redis(c, &redis.url())).await;
    eventually(Duration::from_secs(5), || async {
        let (_, v) = c.check_ip("203.0.113.9").await;
        (v["decision"] == "block" && v["rules"][0]["reason"] == "botnet").then_some(())
    })
    .await;
    // Removed on C: gone on A.
    let (s, _) = c
        .admin(
            Method::DELETE,
            "/v1/admin/lists/blocklist/entries?kind=ip&value=203.0.113.0/24",
            None,
        )
        .await;
    assert_eq!(s, 200);
    eventually(Duration::from_secs(3), || async {
        let (_, v) = a.check_ip("203.0.113.9").await;
        (v["decision"] == "allow").then_some(())
    })
    .await;
}

#[tokio::test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not installed (Debian: redis-server)"
)]
async fn redis_going_away_costs_no_request_and_is_used_again_when_back() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let mock = MockRt::start().await;
    let a = spawn_app_on(mock.clone(), |c| on_redis(c, &redis.url())).await;
    redis_up(&a).await;
    mock.set_default(Reply::tags(""));
    redis.down();
    for i in 0..60 {
        let (s, v) = a.check_ip(&format!("192.0.2.{i}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["source"], "upstream", "RT still asked: {v}");
    }
    let v = json(a.get("/readyz").await).await;
    assert_eq!(
        v["status"], "ready",
        "Redis down does not make the instance unready: {v}"
    );
    assert_ne!(v["redis"], "up", "{v}");
    let m = a.metrics().await;
    assert!(sample(&m, "fraudgate_redis_errors_total", &[]) >= 1.0);
    assert_eq!(sample(&m, "fraudgate_redis_up", &[]), 0.0);
    // A purge while Redis is away still purges here, and says so.
    let (s, v) = a
        .admin(
            Method::POST,
            "/v1/admin/cache/purge",
            Some(json!({"all": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        v["fleet"].as_str().unwrap().contains("this replica only"),
        "{v}"
    );

    redis.up().await;
    redis_up(&a).await;
    let b = spawn_app_on(mock.clone(), |c| on_redis(c, &redis.url())).await;
    redis_up(&b).await;
    mock.on_ip("198.51.100.70", Reply::tags("proxy"));
    a.check_ip("198.51.100.70").await;
    eventually(Duration::from_secs(5), || async {
        let (_, v) = b.check_ip("198.51.100.70").await;
        (v["source"] == "cache").then_some(())
    })
    .await;
    assert_eq!(mock.calls_for("198.51.100.70"), 1, "shared again");
}

#[tokio::test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not installed (Debian: redis-server)"
)]
async fn redis_key_names_never_give_an_ip_back() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mock = MockRt::start().await;
    mock.set_default(Reply::tags("proxy"));
    let app = spawn_app_on(mock.clone(), |c| {
        on_redis(c, &redis.url());
        c.redis.share_velocity = true;
    })
    .await;
    redis_up(&app).await;
    let ip = "203.0.113.77";
    app.check_ip(ip).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = eventually(Duration::from_secs(5), || {
        let mut conn = conn.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("*")
                .query_async(&mut conn)
                .await
                .ok()?;
            keys.iter().any(|k| k.contains(":ip:")).then_some(keys)
        }
    })
    .await;
    // What an attacker who lists the keys could try: the address, and
    // its unkeyed SHA-256 (in the length-prefixed form the keys used).
    let mut sha = fraudgate::hash::StableHash::new();
    sha.part(ip);
    let unkeyed = sha.hex(16);
    for k in &keys {
        assert!(!k.contains(ip) && !k.contains(&unkeyed), "{k}");
    }
    assert!(
        keys.iter().any(|k| k.starts_with("fraudgate:vel:ip:")),
        "{keys:?}"
    );
    let _: () = redis::cmd("PING").query_async(&mut conn).await.unwrap();
}

#[test]
fn a_redis_url_without_a_hash_key_is_refused() {
    let mut c = Config::default();
    c.redis.url = "redis://127.0.0.1:6379/0".into();
    let e = c.redis.validate().unwrap_err();
    assert_eq!(e.0, "redis.hash_key");
    c.redis.hash_key = Secret::new(HASH_KEY);
    assert!(c.redis.validate().is_ok());
}

#[test]
fn a_bad_redis_url_stops_startup_naming_the_key_without_echoing_it() {
    let mut c = Config::default();
    c.redis.url = "http://user:s3cret@host".into();
    let e = c.redis.validate().unwrap_err();
    assert_eq!(e.0, "redis.url");
    assert!(!e.1.contains("s3cret"));
}

#[tokio::test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not installed (Debian: redis-server)"
)]
async fn a_cap_of_n_holds_fleet_wide_not_per_replica() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let cap = |c: &mut Config| {
        on_redis(c, &redis.url());
        c.rules.caps = vec![fraudgate::config::CapConfig {
            name: "aff".into(),
            by: vec![fraudgate::rules::limits::CapField::AffiliateId],
            limit: 5,
            window_s: 3600,
            events: fraudgate::rules::limits::CapEvents::Click,
        }];
    };
    let mock = MockRt::start().await;
    mock.set_default(Reply::tags(""));
    let a = spawn_app_on(mock.clone(), cap).await;
    let b = spawn_app_on(mock.clone(), cap).await;
    redis_up(&a).await;
    redis_up(&b).await;
    let mut allowed = 0;
    for i in 0..12 {
        let app = if i % 2 == 0 { &a } else { &b };
        let (_, v) = app.check_ip(&format!("192.0.2.{}", 100 + i)).await;
        if v["decision"] == "allow" {
            allowed += 1;
        } else {
            assert_eq!(v["tags"], json!(["cap"]), "{v}");
        }
    }
    assert_eq!(allowed, 5, "5 in total across both replicas, not 5 each");
}

/// A feed on two replicas: one pulls (the lease), both block on its
/// entries; N replicas do not mean N times the calls to the source.
#[tokio::test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not installed (Debian: redis-server)"
)]
async fn one_replica_pulls_a_feed_and_every_replica_blocks_on_it() {
    use crate::mock_feeds::*;
    let Some(redis) = Redis::start().await else {
        return;
    };
    let source = MockFeeds::start().await;
    source.with(|s| {
        s.p360 = vec![P360Row {
            date: jiff::Zoned::now()
                .with_time_zone(jiff::tz::TimeZone::UTC)
                .date()
                .to_string(),
            ip: "203.0.113.99".into(),
            idfa: String::new(),
            site: "s".into(),
            reason: "Click Flood".into(),
        }]
    });
    let feed = |c: &mut Config| {
        on_redis(c, &redis.url());
        let state = temp_dir("fleet-feed").join("p360.json");
        c.feeds = vec![
            toml::from_str(&format!(
                "name = \"p360\"\nkind = \"protect360\"\nbase_url = {:?}\ntoken = {P360_TOKEN:?}\napp_ids = [\"id1234567\"]\nstate_file = {:?}",
                source.url(),
                state.display().to_string()
            ))
            .unwrap(),
        ];
    };
    let mock = MockRt::start().await;
    mock.set_default(Reply::tags(""));
    let a = spawn_app_on(mock.clone(), feed).await;
    let b = spawn_app_on(mock.clone(), feed).await;
    for app in [&a, &b] {
        eventually(Duration::from_secs(15), || async {
            let (_, v) = app.check_ip("203.0.113.99").await;
            (v["decision"] == "block").then_some(())
        })
        .await;
    }
    assert_eq!(
        source.requests().len(),
        1,
        "one pull for the fleet: {:?}",
        source.requests()
    );
}

#[tokio::test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not installed (Debian: redis-server)"
)]
async fn shared_velocity_and_rate_limits_count_across_replicas() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let shared = |c: &mut Config| {
        on_redis(c, &redis.url());
        c.redis.share_velocity = true;
        c.redis.share_rate_limits = true;
        c.rules.velocity.per_ip = 4;
        c.rules.velocity.window_s = 3600;
        c.auth
            .client_keys
            .insert("adserver".into(), Secret::new(CLIENT_KEY));
        c.auth.rate_limit_rps = 5;
        c.auth.rate_limit_burst = 5;
    };
    let mock = MockRt::start().await;
    mock.set_default(Reply::tags(""));
    let a = spawn_app_on(mock.clone(), shared).await;
    let b = spawn_app_on(mock.clone(), shared).await;
    redis_up(&a).await;
    redis_up(&b).await;
    let check = |app: &TestApp, ip: &str| {
        app.http
            .get(app.url(&format!("/v1/check?{}", query(ip, &[]))))
            .header("x-api-key", CLIENT_KEY)
            .send()
    };
    // Rate limit: 8 requests at the start of one second, alternating
    // replicas: 5 pass fleet-wide (each replica alone would pass 4 of 4).
    // Across a second's edge: a burst just before it and another just
    // after. Counted per fixed second the fleet would let 10 through; the
    // GCRA lets the burst of 5 and what 5/s refills in between (one or
    // two). A try whose bursts lasted too long for that (a loaded
    // machine) is not judged; the key is reset for the next.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    };
    let at_ms = |lo: u32| async move {
        while now().subsec_millis() < lo || now().subsec_millis() >= lo + 40 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let burst = async |base: usize| {
        let mut passed = 0;
        for i in 0..8 {
            let app = if i % 2 == 0 { &a } else { &b };
            let r = check(app, &format!("192.0.2.{}", base + i)).await.unwrap();
            if r.status() == 200 {
                passed += 1;
            } else {
                assert_eq!(r.status(), 429);
            }
        }
        passed
    };
    let mut judged = None;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        at_ms(880).await;
        let start = now();
        let before = burst(10).await;
        let edge = start.as_secs() + 1;
        while now().as_secs() < edge {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let after = burst(30).await;
        if (now() - start) < Duration::from_millis(400) {
            judged = Some(before + after);
            break;
        }
    }
    let passed = judged.expect("a try within 400 ms");
    assert!(
        (5..=7).contains(&passed),
        "{passed} passed: 5 a second for the fleet, also across a second's edge"
    );
    // Velocity: 10 events from one IP over two replicas, 4 allowed per
    // window: the 5th and later are tagged ip (each alone would see 5).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut flagged = 0;
    for i in 0..10 {
        if i == 5 {
            // Stay under the rate limit.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let app = if i % 2 == 0 { &a } else { &b };
        let r = check(app, "198.51.100.80").await.unwrap();
        assert_eq!(r.status(), 200);
        let v = json(r).await;
        if v["tags"].as_array().unwrap().iter().any(|t| t == "ip") {
            flagged += 1;
        }
    }
    assert_eq!(flagged, 6, "events 5..10 of the fleet are over 4");
}

async fn add(app: &TestApp, value: &str) -> (u16, serde_json::Value) {
    app.admin(
        Method::POST,
        "/v1/admin/lists/blocklist/entries",
        Some(json!({"kind": "ip", "value": value})),
    )
    .await
}

async fn blocks(app: &TestApp, ip: &str) -> Option<()> {
    let (_, v) = app.check_ip(ip).await;
    (v["decision"] == "block").then_some(())
}

/// Redis restarted empty, and edits made while it was away: no replica
/// loses its entries; what was done alone is shared when Redis is back.
#[tokio::test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not installed (Debian: redis-server)"
)]
async fn entries_survive_redis_restarting_empty_and_edits_made_meanwhile_are_shared() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let mock = MockRt::start().await;
    mock.set_default(Reply::tags(""));
    let a = spawn_app_on(mock.clone(), |c| on_redis(c, &redis.url())).await;
    let b = spawn_app_on(mock.clone(), |c| on_redis(c, &redis.url())).await;
    redis_up(&a).await;
    redis_up(&b).await;
    add(&a, "203.0.113.0/24").await;
    eventually(Duration::from_secs(5), || blocks(&b, "203.0.113.7")).await;

    redis.down();
    // Down is reported steadily (no flapping back to up).
    eventually(Duration::from_secs(15), || async {
        let v = json(a.get("/readyz").await).await;
        (v["redis"] == "down").then_some(())
    })
    .await;
    let (s, v) = add(&a, "192.0.2.5").await;
    assert_eq!(s, 201);
    assert!(
        v["fleet"]
            .as_str()
            .unwrap_or("")
            .contains("when Redis is back"),
        "{v}"
    );
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let v = json(a.get("/readyz").await).await;
        assert_eq!(v["redis"], "down", "{v}");
    }

    redis.up().await; // empty: no persistence
    redis_up(&a).await;
    redis_up(&b).await;
    add(&a, "198.51.100.77").await;
    // Nothing lost anywhere; the edit made alone reached B. (A wide
    // margin: the reseed waits for each replica's retry and its next sync
    // poll, slow on a CI box running every test at once.)
    for app in [&a, &b] {
        eventually(Duration::from_secs(30), || async {
            let ok = blocks(app, "203.0.113.7").await.is_some()
                && blocks(app, "198.51.100.77").await.is_some()
                && blocks(app, "192.0.2.5").await.is_some();
            ok.then_some(())
        })
        .await;
    }
}

/// A conversion's first time is claimed on Redis: the same click
/// converting again is a duplicate on any replica, and after a restart
/// (each process's own memory would have forgotten it).
#[tokio::test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not installed (Debian: redis-server)"
)]
async fn a_duplicate_conversion_is_caught_fleet_wide_and_across_restarts() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let log = temp_dir("fleet-funnel");
    let mock = MockRt::start().await;
    mock.set_default(Reply::tags(""));
    let config = |c: &mut Config| {
        on_redis(c, &redis.url());
        c.decision_log.path = log.display().to_string();
    };
    let mut a = spawn_app_on(mock.clone(), config).await;
    redis_up(&a).await;
    let (_, click) = a.check_ip("192.0.2.210").await;
    let id = click["id"].as_str().unwrap().to_owned();
    // Ten minutes after the click.
    let t = jiff::Timestamp::now().as_second() + 600;
    let path = format!("/v1/postback?click_id={id}&event=install&event_time={t}");
    let first = json(a.get(&path).await).await;
    assert_eq!(
        (&first["decision"], &first["rules"]),
        (&json!("allow"), &serde_json::Value::Null),
        "{first}"
    );
    a.shutdown();
    // A new process on the same log and Redis.
    let b = spawn_app_on(mock.clone(), config).await;
    redis_up(&b).await;
    let again = json(b.get(&path).await).await;
    let kinds: Vec<&str> = again["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["duplicate"], "{again}");
    let _ = std::fs::remove_dir_all(&log);
}
