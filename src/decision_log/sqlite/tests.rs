use std::path::PathBuf;

use rusqlite::Connection;
use rusqlite::types::Value;

use super::schema::Parts;
use super::*;
use crate::decision_log::Row;
use crate::decision_log::batch::{Batch, Buffer};
use crate::decision_log::record::tests::record;
use crate::decision_log::{IpMode, IvtMap, Record};

/// Every row a statement selects, as values.
fn select(conn: &Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A text value's text.
fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Text(s) => Some(s),
        _ => None,
    }
}

/// An empty directory for one test's store.
fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fraudgate-sqlite-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A large batch is written in one transaction, but not in one piece:
/// the writer gives the other threads of its core a chance every so many
/// SQLite steps, and every record is there when it is done.
#[test]
fn a_large_batch_gives_way_as_it_is_written() {
    let dir = fresh_dir("yield");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 30).unwrap();
    let ms = 1_764_700_000_000;
    let small: Vec<Record> = (0..10).map(|i| record(ms, i)).collect();
    let before = super::write::yields();
    w.write(&small).unwrap();
    let after_small = super::write::yields() - before;
    let large: Vec<Record> = (10..60_010).map(|i| record(ms, i)).collect();
    w.write(&large).unwrap();
    let after_large = super::write::yields() - before - after_small;
    assert!(
        after_large >= 5 && after_large > 5 * after_small.max(1),
        "60 000 records gave way {after_large} times, 10 records {after_small}"
    );
    let n: i64 = w
        .conn
        .query_row(
            &format!("SELECT count(*) FROM \"{}\"", day_table(ms)),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 60_010);
}

/// The WAL is kept small, and a file that is not a database is told
/// apart from a volume that refuses it.
#[test]
fn the_wal_is_bounded_and_a_damaged_file_is_called_corrupt() {
    let dir = fresh_dir("wal");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let w = Writer::open(&dir, ivt.clone(), IpMode::Full, 1).unwrap();
    let limit: i64 = w
        .conn
        .query_row("PRAGMA journal_size_limit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(limit, WAL_LIMIT_BYTES);
    drop(w);
    std::fs::write(dir.join(FILE), vec![0x5a; 8192]).unwrap();
    let _ = std::fs::remove_file(dir.join(format!("{FILE}-wal")));
    let _ = std::fs::remove_file(dir.join(format!("{FILE}-shm")));
    let opened = Writer::open(&dir, ivt, IpMode::Full, 1);
    assert!(
        matches!(opened, Err(LogError::Corrupt(_))),
        "not a database"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// 392 records at `ms` whose optional fields make every kind of chunk of
/// 64 rows. Chunks of 64: 0 narrow; 1..=4 one wide row each, alone and
/// for one reason (first, last or inside its chunk); 5 all wide; then
/// the remainder, one row at a time, mixed.
fn chunk_cases(ms: i64) -> Vec<Record> {
    let optional = |i: u128| match i {
        64 => "&aff_sub1=first".to_owned(),
        191 => "&aff_sub4=last".to_owned(),
        200 => "&aff_sub5=inside".to_owned(),
        300 => "&browser=only-extra".to_owned(),
        320..384 => format!("&aff_sub1=s{i}&aff_sub5=t{i}&device_os=o{i}"),
        391 => "&refer=r391".to_owned(),
        384.. if i.is_multiple_of(2) => format!("&aff_sub2=s{i}"),
        _ => String::new(),
    };
    (0..392u128)
        .map(|i| {
            let event = crate::event::EventBuilder::from_query(&format!(
                "event_type=click&ip=10.0.{}.{}&ua=x&affiliate_id=a&offer_id=o{}",
                i / 256,
                i % 256,
                optional(i)
            ))
            .unwrap()
            .build()
            .unwrap();
            let block = i % 3 == 0;
            Record {
                event: (&event).into(),
                decision: if block {
                    crate::decision::Action::Block
                } else {
                    crate::decision::Action::Allow
                },
                elapsed_us: i as u64 * 7,
                ..record(ms, i)
            }
        })
        .collect()
}

/// Rows with no aff_sub or extra go in through a narrower statement, a
/// chunk with any through the wide one, the remainder one row at a
/// time: every row reads back with exactly its own values.
#[test]
fn rows_read_back_with_their_own_values_whatever_their_chunk() {
    let dir = fresh_dir("subs");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64 + 1234;
    let batch = chunk_cases(ms);
    w.write(&batch).unwrap();
    let conn = Connection::open(dir.join(FILE)).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT ip, elapsed_us, decision, aff_sub1, aff_sub2, aff_sub3, aff_sub4, \
             aff_sub5, extra FROM \"{}\" ORDER BY id",
            day_table(ms)
        ))
        .unwrap();
    type Row = (String, i64, String, [Option<String>; 6]);
    let got: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                [3, 4, 5, 6, 7, 8].map(|c| r.get::<_, Option<String>>(c).unwrap()),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<Row> = batch
        .iter()
        .map(|r| {
            let [a, b, c, d, e] =
                crate::decision_log::columns::AFF_SUBS.map(|o| r.event.get(o).map(str::to_owned));
            (
                r.event.ip.to_string(),
                r.elapsed_us as i64,
                r.decision.as_str().to_owned(),
                [
                    a,
                    b,
                    c,
                    d,
                    e,
                    crate::decision_log::columns::extra(r.event.optional()),
                ],
            )
        })
        .collect();
    assert_eq!(got.len(), batch.len());
    assert_eq!(got, want);
    // (The cases above are what the expected rows hold.)
    assert_eq!(got[64].3[0].as_deref(), Some("first"));
    assert_eq!(got[191].3[3].as_deref(), Some("last"));
    assert_eq!(got[200].3[4].as_deref(), Some("inside"));
    assert_eq!(
        got[300].3[5].as_deref(),
        Some(r#"{"browser":"only-extra"}"#)
    );
    assert_eq!(got[391].3[5].as_deref(), Some(r#"{"refer":"r391"}"#));
    assert!(got[0].3.iter().all(Option::is_none));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The base record, then records that each differ from it in one part
/// of their context.
fn context_variants(base: &Record) -> Vec<Record> {
    use crate::decision::{Action, Mode};
    use crate::decision::{Door, Source};
    use crate::decision::{RuleHit, RuleKind};
    use crate::verdict::{Tag, Tags};
    fn hit(name: &str, reason: Option<&str>) -> RuleHit {
        RuleHit {
            kind: RuleKind::Datacenter,
            name: name.into(),
            tag: Some(Tag::Datacenter),
            reason: reason.map(Into::into),
        }
    }
    fn event(q: &str) -> crate::decision_log::record::LoggedEvent {
        let q = format!("ip=10.0.0.1&ua=x&affiliate_id=a0&offer_id=o&{q}");
        (&crate::event::EventBuilder::from_query(&q)
            .unwrap()
            .build()
            .unwrap())
            .into()
    }
    let changes: [fn(&mut Record); 23] = [
        |_| (),
        |r| r.door = Door::Auth,
        |r| r.client = Some("a".into()),
        |r| r.client = Some("b".into()),
        |r| r.event = event("event_type=impression"),
        |r| r.event = event("event_type=click&country_code=DE"),
        |r| r.event = event("event_type=click&country_code=US"),
        |r| r.decision = Action::Block,
        |r| r.would_be = Action::Block,
        |r| r.mode = Mode::Shadow,
        |r| r.tags = Tags::from_known(&[Tag::Proxy]),
        |r| r.tags = Tags::parse("weird").unwrap(),
        |r| r.tags = Tags::parse("weirder").unwrap(),
        |r| r.blocked_by = Tags::from_known(&[Tag::Proxy]),
        |r| r.source = Source::Upstream,
        |r| r.reason = "tags",
        |r| r.rules = vec![hit("aws", None)],
        |r| r.rules = vec![hit("gcp", None)],
        |r| r.rules = vec![hit("aws", Some("r1"))],
        |r| r.rules = vec![hit("aws", Some("r2"))],
        |r| r.rules = vec![hit("aws", None), hit("gcp", None)],
        |r| {
            r.rules = vec![RuleHit {
                kind: RuleKind::BlockList,
                ..hit("aws", None)
            }]
        },
        |r| {
            r.rules = vec![RuleHit {
                tag: None,
                ..hit("aws", None)
            }]
        },
    ];
    changes
        .iter()
        .map(|change| {
            let mut r = base.clone();
            change(&mut r);
            r
        })
        .collect()
}

/// The writer looks contexts up by their encoded bytes: records that
/// differ from one another in any one part of their context each get
/// their own context row, records that share one share its row, and
/// every row reads back its own context.
#[test]
fn each_context_is_stored_once_and_read_back_as_its_own() {
    let dir = fresh_dir("contexts");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt.clone(), IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64 + 99;
    let base = record(ms, 0);
    let variants = context_variants(&base);
    // Each twice, in two batches (the second finds them all known),
    // under ids in variant order.
    let batch = |from: u128| -> Vec<Record> {
        variants
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                id: record(ms, from + i as u128).id,
                ..v.clone()
            })
            .collect()
    };
    w.write(&batch(0)).unwrap();
    w.write(&batch(100)).unwrap();
    let conn = Connection::open(dir.join(FILE)).unwrap();
    let table = day_table(ms);
    let contexts: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM \"{}\"", Parts::of(&table).contexts),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(contexts, variants.len() as i64);
    let cols = "door, client, event_type, country_code, decision, would_be, mode, tags, \
        tag_mask, blocked_mask, source, reason, rules, rule_mask, ivt, ivt_category";
    let got = select(
        &conn,
        &format!("SELECT {cols} FROM \"{table}\" ORDER BY id"),
    );
    let want: Vec<Vec<Value>> = batch(0)
        .iter()
        .chain(&batch(100))
        .map(|r| context_columns(r, &ivt))
        .collect();
    assert_eq!(got.len(), 2 * variants.len());
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A record's context columns as the day's view should read them.
fn context_columns(r: &Record, ivt: &IvtMap) -> Vec<Value> {
    let t = |s: &str| Value::from(s.to_owned());
    let w = Row::new(r, ivt, IpMode::Full, None);
    vec![
        t(w.door),
        w.client.into(),
        t(w.event_type),
        w.country_code.into(),
        t(w.decision),
        t(w.would_be),
        t(w.mode),
        w.tags.into(),
        w.tag_mask.into(),
        w.blocked_mask.into(),
        t(w.source),
        t(w.reason),
        w.rules.into(),
        w.rule_mask.into(),
        t(w.ivt),
        w.ivt_category.into(),
    ]
}

/// Record `i` of 40 either side of `midnight`, two a millisecond, with
/// empty and non-ASCII text.
fn buffered_record(midnight: i64, i: u128) -> Record {
    let texts = ["", "Mözilla/5.0 ✓", "x", "af-ü", "日本"];
    let t = |k: usize| texts[(i as usize + k) % texts.len()];
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("event_type", "click")
        .append_pair("ip", &format!("2001:db8::{i:x}"))
        .append_pair("ua", t(0))
        // (Required: never empty.)
        .append_pair("affiliate_id", &format!("{}{i}", t(1)))
        .append_pair("offer_id", &format!("{}-", t(2)));
    if i.is_multiple_of(3) {
        q.append_pair("aff_sub1", t(3)).append_pair("browser", t(4));
    }
    let e = crate::event::EventBuilder::from_query(&q.finish())
        .unwrap()
        .build()
        .unwrap();
    // Two records a millisecond, either side of midnight.
    let ms = midnight - 10 + (i as i64 / 2);
    Record {
        event: (&e).into(),
        client: i.is_multiple_of(4).then(|| "ç-client".into()),
        ..record(ms, i)
    }
}

/// The writer thread's batches: several buffers (one a queue shard's)
/// whose records interleave in time and cross a UTC midnight, with
/// empty and non-ASCII text. Every row reads back as its own record,
/// on its own day.
#[test]
fn records_from_several_buffers_read_back_as_their_own_across_midnight() {
    let dir = fresh_dir("buffers");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt.clone(), IpMode::Full, 30).unwrap();
    let midnight = 20_001 * 86_400_000i64;
    let all: Vec<Record> = (0..40).map(|i| buffered_record(midnight, i)).collect();
    // Three buffers, each in reverse time order: interleaved.
    let mut batch = Batch::default();
    for part in 0..3 {
        batch.push(Buffer::of(all.iter().rev().filter(|r| r.id.0 % 3 == part)));
    }
    w.write_records(batch.records()).unwrap();
    let conn = Connection::open(dir.join(FILE)).unwrap();
    let (before, after) = (day_table(midnight - 1), day_table(midnight));
    assert_ne!(before, after);
    let cols = "id, ts, ip, ua, affiliate_id, offer_id, client, aff_sub1, extra";
    let read = |table: &str| {
        select(
            &conn,
            &format!("SELECT {cols} FROM \"{table}\" ORDER BY id"),
        )
    };
    let want = |on_day: &dyn Fn(i64) -> bool| -> Vec<Vec<Value>> {
        let mut rows: Vec<Row> = all
            .iter()
            .filter(|r| on_day(r.ts_ms()))
            .map(|r| Row::new(r, &ivt, IpMode::Full, None))
            .collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows.into_iter()
            .map(|w| {
                vec![
                    w.id.into(),
                    w.ts.into(),
                    w.ip.into(),
                    w.ua.into(),
                    w.affiliate_id.into(),
                    w.offer_id.into(),
                    w.client.into(),
                    w.aff_sub[0].clone().into(),
                    w.extra.into(),
                ]
            })
            .collect()
    };
    let (got_before, got_after) = (read(&before), read(&after));
    assert_eq!((got_before.len(), got_after.len()), (20, 20));
    assert_eq!(got_before, want(&|ms| ms < midnight));
    assert_eq!(got_after, want(&|ms| ms >= midnight));
    let mut all_got = got_before.iter().chain(&got_after);
    let non_ascii = |v: &Value| text(v).is_some_and(|s| !s.is_ascii());
    assert!(
        all_got.clone().any(|g| text(&g[3]) == Some("")),
        "an empty UA"
    );
    assert!(
        all_got
            .clone()
            .any(|g| text(&g[3]) == Some("日本") && text(&g[5]) == Some("Mözilla/5.0 ✓-"))
    );
    assert!(
        all_got.any(|g| non_ascii(&g[7]) && non_ascii(&g[8])),
        "a non-ASCII aff_sub1 and extra"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A day's view has a decision's columns in table order, then the
/// time key.
#[test]
fn a_day_view_has_the_columns_in_order() {
    let dir = fresh_dir("columns");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64;
    w.write(&[record(ms, 0)]).unwrap();
    let conn = Connection::open(dir.join(FILE)).unwrap();
    let sql = format!("SELECT name FROM pragma_table_info('{}')", day_table(ms));
    let names: Vec<Value> = select(&conn, &sql).into_iter().flatten().collect();
    let want: Vec<Value> = crate::decision_log::columns::NAMES
        .iter()
        .chain(&["_k"])
        .map(|n| Value::from(n.to_string()))
        .collect();
    assert_eq!(names, want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn day_tables_are_named_by_utc_day() {
    assert_eq!(day_table(0), "d_19700101");
    assert_eq!(day_table(1_774_747_800_000), "d_20260329");
    assert!(day_table(1_774_747_800_000) > day_table(1_774_647_800_000));
}

/// Records whose event time is `ago[i]` seconds before their decision's
/// (negative: after it, a caller's clock ahead of ours).
fn records_with_event_times(ms: i64, ago: &[i64]) -> Vec<Record> {
    ago.iter()
        .enumerate()
        .map(|(i, ago)| {
            let at = ms.div_euclid(1000) - ago;
            let event = crate::event::EventBuilder::from_query(&format!(
                "event_type=click&ip=10.0.0.{i}&ua=x&affiliate_id=a&offer_id=o&at={at}"
            ))
            .unwrap()
            .build()
            .unwrap();
            Record {
                event: (&event).into(),
                ..record(ms + i as i64, i as u128)
            }
        })
        .collect()
}

/// The event time each row of a day reads back, in id order.
fn event_times(dir: &std::path::Path, ms: i64) -> Vec<(i64, i64)> {
    let conn = Connection::open(dir.join(FILE)).unwrap();
    select(
        &conn,
        &format!("SELECT ts, at FROM \"{}\" ORDER BY id", day_table(ms)),
    )
    .into_iter()
    .map(|r| match (&r[0], &r[1]) {
        (Value::Integer(ts), Value::Integer(at)) => (*ts, *at),
        other => panic!("{other:?}"),
    })
    .collect()
}

#[test]
fn each_row_reads_back_its_event_time() {
    let dir = fresh_dir("event-time");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64 + 5_000;
    let ago = [0, 1, 3_600, 86_400 * 6, -30];
    w.write(&records_with_event_times(ms, &ago)).unwrap();
    let got = event_times(&dir, ms);
    let want: Vec<(i64, i64)> = ago
        .iter()
        .enumerate()
        .map(|(i, ago)| (ms + i as i64, ms / 1000 - ago))
        .collect();
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A day written before the event time was recorded (no `age` in its
/// rows, no `at` in its view) is upgraded when the store opens: its rows
/// read their decision's second, and new rows their own event time.
#[test]
fn a_day_from_before_the_event_time_is_upgraded_on_open() {
    let dir = fresh_dir("upgrade");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let ms = 20_000 * 86_400_000i64 + 7_000;
    {
        let mut w = Writer::open(&dir, ivt.clone(), IpMode::Full, 1).unwrap();
        w.write(&records_with_event_times(ms, &[50, 60])).unwrap();
    }
    // Make it the earlier layout: the view without `at`, the rows
    // without `age`.
    {
        let conn = Connection::open(dir.join(FILE)).unwrap();
        let day = day_table(ms);
        let p = Parts::of(&day);
        conn.execute_batch(&format!(
            "DROP VIEW \"{day}\"; ALTER TABLE \"{g}\" DROP COLUMN age; \
             CREATE VIEW \"{day}\" AS SELECT k FROM \"{g}\";",
            g = p.rows
        ))
        .unwrap();
    }
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    w.write(&records_with_event_times(ms + 10, &[0, 120]))
        .unwrap();
    let got = event_times(&dir, ms);
    let second = ms / 1000;
    assert_eq!(
        got,
        vec![
            (ms, second),
            (ms + 1, second),
            (ms + 10, second),
            (ms + 11, second - 120),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
