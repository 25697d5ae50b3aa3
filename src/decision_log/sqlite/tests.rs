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
/// A connection to the store that reads its days (`fg_rows` registered).
fn open_conn(dir: &std::path::Path) -> Connection {
    let conn = Connection::open(dir.join(FILE)).unwrap();
    register(&conn).unwrap();
    conn
}

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
/// SQLite steps and blocks, and every record is there when it is done.
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

/// 392 records at `ms` with and without optional fields: runs with none,
/// rows with one alone (an aff_sub or only fields kept in `extra`), a run
/// with several each, then rows mixed.
fn optional_cases(ms: i64) -> Vec<Record> {
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

/// Every row reads back with exactly its own values, with or without
/// optional fields, whatever its neighbours hold.
#[test]
fn rows_read_back_with_their_own_values_whatever_their_neighbours() {
    let dir = fresh_dir("subs");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64 + 1234;
    let batch = optional_cases(ms);
    w.write(&batch).unwrap();
    let conn = open_conn(&dir);
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
    let conn = open_conn(&dir);
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
    let conn = open_conn(&dir);
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
    let conn = open_conn(&dir);
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
    let conn = open_conn(dir);
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

/// Turns the day of `ms` back into the layout of releases before blocks:
/// a row a decision in `g_YYYYMMDD` and their view (with `age` and `at`
/// or, older still, without).
fn make_old_layout(dir: &std::path::Path, ms: i64, with_age: bool) {
    let conn = open_conn(dir);
    let day = day_table(ms);
    let p = Parts::of(&day);
    let age = if with_age {
        ", age INTEGER NOT NULL DEFAULT 0"
    } else {
        ""
    };
    let old = super::schema::OLD_ROWS.trim_end_matches(')');
    conn.execute_batch(&format!(
        "CREATE TABLE \"{g}\" {old}{age}); \
         INSERT INTO \"{g}\" SELECT k, id_mid, id_low, ip, ua, who, aff_sub1, aff_sub2, \
         aff_sub3, aff_sub4, aff_sub5, extra, ctx, elapsed_us{age_col} FROM fg_rows('{b}'); \
         DROP TABLE \"{b}\"; DROP VIEW \"{day}\"; {view}",
        g = p.old_rows,
        b = p.blocks,
        age_col = if with_age { ", age" } else { "" },
        // Before `age`, the view had no `at` either.
        view = if with_age {
            super::schema::old_view(&day, &p)
        } else {
            format!("CREATE VIEW \"{day}\" AS SELECT k FROM \"{}\";", p.old_rows)
        },
    ))
    .unwrap();
}

/// Whether a table of that name is in the store.
fn has_table(dir: &std::path::Path, name: &str) -> bool {
    let conn = open_conn(dir);
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get(0),
    )
    .unwrap()
}

/// A day a release before blocks wrote is read as it is (a day from
/// before the event time reads its decision's second) and converted to
/// blocks when the writer adds to it; its rows and the new ones read back.
#[test]
fn a_day_from_before_blocks_is_read_as_it_is_and_converted_when_written() {
    for with_age in [false, true] {
        let dir = fresh_dir("upgrade");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let ms = 20_000 * 86_400_000i64 + 7_000;
        {
            let mut w = Writer::open(&dir, ivt.clone(), IpMode::Full, 1).unwrap();
            w.write(&records_with_event_times(ms, &[50, 60])).unwrap();
        }
        make_old_layout(&dir, ms, with_age);
        let p = Parts::of(&day_table(ms));
        let second = ms / 1000;
        let old_at = |ago: i64| if with_age { second - ago } else { second };
        let old_rows = vec![(ms, old_at(50)), (ms + 1, old_at(60))];
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
        assert!(!has_table(&dir, &p.blocks) && has_table(&dir, &p.old_rows));
        assert_eq!(event_times(&dir, ms), old_rows, "with age: {with_age}");
        w.write(&records_with_event_times(ms + 10, &[0, 120]))
            .unwrap();
        assert!(has_table(&dir, &p.blocks) && !has_table(&dir, &p.old_rows));
        let mut all = old_rows;
        all.extend([(ms + 10, second), (ms + 11, second - 120)]);
        assert_eq!(event_times(&dir, ms), all, "with age: {with_age}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Retention drops a day written before blocks like any other: its rows'
/// table, dictionaries, view and rollup.
#[test]
fn retention_drops_a_day_from_before_blocks() {
    let dir = fresh_dir("old-retention");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let ms = 20_000 * 86_400_000i64;
    {
        let mut w = Writer::open(&dir, ivt.clone(), IpMode::Full, 1).unwrap();
        w.write(&records_with_event_times(ms, &[0])).unwrap();
    }
    make_old_layout(&dir, ms, true);
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    assert_eq!(w.retention(ms + 2 * 86_400_000).unwrap(), [day_table(ms)]);
    let left: Vec<Vec<Value>> = select(
        &open_conn(&dir),
        "SELECT name FROM sqlite_master WHERE name GLOB '*_20241004*'",
    );
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A day with rows in both layouts (a release before blocks wrote it
/// after this one had: a rollback and a roll forward) keeps its blocks
/// and sets the other rows aside, in the file but not read: the two
/// numbered their keys apart. The store is not treated as damaged.
#[test]
fn a_day_in_both_layouts_keeps_its_blocks_and_sets_the_rest_aside() {
    let dir = fresh_dir("both-layouts");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let ms = 20_000 * 86_400_000i64 + 9_000;
    {
        let mut w = Writer::open(&dir, ivt.clone(), IpMode::Full, 1).unwrap();
        w.write(&records_with_event_times(ms, &[0, 0])).unwrap();
    }
    // The earlier release's rows beside the blocks, keys colliding.
    let p = Parts::of(&day_table(ms));
    let old = super::schema::OLD_ROWS.trim_end_matches(')');
    open_conn(&dir)
        .execute_batch(&format!(
            "CREATE TABLE \"{g}\" {old}, age INTEGER NOT NULL DEFAULT 0); \
             INSERT INTO \"{g}\" SELECT k, id_mid, id_low, ip, ua, who, aff_sub1, aff_sub2, \
             aff_sub3, aff_sub4, aff_sub5, extra, ctx, elapsed_us, age FROM fg_rows('{b}');",
            g = p.old_rows,
            b = p.blocks,
        ))
        .unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    w.write(&records_with_event_times(ms + 5, &[0])).unwrap();
    assert!(!has_table(&dir, &p.old_rows) && has_table(&dir, &p.set_aside));
    let second = ms / 1000;
    assert_eq!(
        event_times(&dir, ms),
        [(ms, second), (ms + 1, second), (ms + 5, second)]
    );
    let set_aside = select(
        &open_conn(&dir),
        &format!("SELECT count(*) FROM \"{}\"", p.set_aside),
    );
    assert_eq!(set_aside, [[Value::Integer(2)]]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The blocks of the day of `ms`, decoded: each block's key and its rows'
/// keys.
fn blocks_of(dir: &std::path::Path, ms: i64) -> Vec<(i64, Vec<i64>)> {
    let conn = open_conn(dir);
    let p = Parts::of(&day_table(ms));
    let mut stmt = conn
        .prepare(&format!("SELECT k, data FROM \"{}\" ORDER BY k", p.blocks))
        .unwrap();
    let mut rows: Vec<super::block::Row<super::block::Span>> = Vec::new();
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap()
        .map(|b| {
            let (first, data) = b.unwrap();
            super::block::decode(first, &data, &mut rows).unwrap();
            (first, rows.iter().map(|r| r.k).collect())
        })
        .collect()
}

/// Rows that reach the writer after later ones were written go into the
/// block of their keys: blocks never overlap, a full block a batch comes
/// after is left as it is, and every row reads back once, in key order.
#[test]
fn late_rows_go_into_the_block_of_their_keys() {
    let dir = fresh_dir("late");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64;
    // One a millisecond: two full blocks and one of 452 rows.
    let n = 2 * super::block::BLOCK_ROWS as u128 + 452;
    let first: Vec<Record> = (0..n).map(|i| record(ms + i as i64, i)).collect();
    w.write(&first).unwrap();
    let before = blocks_of(&dir, ms);
    assert_eq!(
        before.iter().map(|b| b.1.len()).collect::<Vec<_>>(),
        [1024, 1024, 452]
    );
    // A batch with rows in the first block's time, the last one's, and after.
    let late_ms = [5, 2100, n as i64 - 1, n as i64 + 100];
    let late: Vec<Record> = late_ms
        .iter()
        .zip(10_000u128..)
        .map(|(t, i)| record(ms + t, i))
        .collect();
    w.write(&late).unwrap();
    let after = blocks_of(&dir, ms);
    // The first block, with one row more, split evenly; the last one took
    // the rest.
    assert_eq!(
        after.iter().map(|b| b.1.len()).collect::<Vec<_>>(),
        [513, 512, 1024, 455]
    );
    let mut keys: Vec<i64> = Vec::new();
    for (i, (first, rows)) in after.iter().enumerate() {
        assert_eq!(
            rows.first(),
            Some(first),
            "block {i} is keyed by its first row"
        );
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]),
            "block {i} in key order"
        );
        keys.extend(rows);
    }
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "blocks overlap");
    assert_eq!(keys.len(), n as usize + late.len());
    // The full block no late row fell in is as it was written.
    assert!(after.contains(&before[1]), "the second block was rewritten");
    // Each row once, in time order, late ones in their millisecond.
    let conn = open_conn(&dir);
    let ts: Vec<i64> = select(
        &conn,
        &format!("SELECT ts FROM \"{}\" ORDER BY _k", day_table(ms)),
    )
    .into_iter()
    .map(|r| match r[0] {
        Value::Integer(t) => t - ms,
        ref v => panic!("{v:?}"),
    })
    .collect();
    let mut want: Vec<i64> = (0..n as i64).chain(late_ms).collect();
    want.sort_unstable();
    assert_eq!(ts, want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A day's view passes bounds on `_k` and its order to the blocks: the
/// newest rows of a range are read without sorting the day.
#[test]
fn a_range_in_key_order_is_read_without_a_sort() {
    let dir = fresh_dir("plan");
    let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64;
    w.write(
        &(0..10)
            .map(|i| record(ms + i as i64, i))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let conn = open_conn(&dir);
    let day = day_table(ms);
    for order in ["ASC", "DESC"] {
        let sql = format!(
            "SELECT id FROM \"{day}\" WHERE _k >= {} AND _k <= {} ORDER BY _k {order} LIMIT 3",
            key_floor(ms + 2),
            key_ceil(ms + 6)
        );
        let plan: Vec<String> = select(&conn, &format!("EXPLAIN QUERY PLAN {sql}"))
            .into_iter()
            .map(|r| format!("{:?}", r[3]))
            .collect();
        assert!(
            !plan.iter().any(|p| p.contains("TEMP B-TREE")),
            "{order}: {plan:?}"
        );
        let ts: Vec<Value> = select(&conn, &sql.replace("SELECT id", "SELECT ts"))
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect();
        let want: Vec<i64> = if order == "ASC" {
            vec![2, 3, 4]
        } else {
            vec![6, 5, 4]
        };
        assert_eq!(
            ts,
            want.iter()
                .map(|t| Value::Integer(ms + t))
                .collect::<Vec<_>>()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
