//! The embedded store reads back what its writer wrote, through the
//! query model: ids, IPs and times as recorded, lists paged across days,
//! rollups answering exactly as the rows do, a restart continuing the
//! day's keys, retention dropping whole days, and a failed write retried
//! from what the store holds.

use std::path::Path;
use std::time::Duration;

use fraudgate::decision_log::sqlite::{
    FILE, ROLLUP_SCHEMA, Writer, day_table, list_days, rollup_table,
};
use fraudgate::decision_log::{IpMode, IvtMap, Record};
use fraudgate::query::Query;
use fraudgate::query::exec::sqlite::{run, run_with};
use fraudgate::query::sqlite::build;
use rusqlite::Connection;

use crate::helpers::temp_dir;

/// A plain click at `ms` (its id ends in `i`), from one of three
/// affiliates.
fn record(ms: i64, i: u128) -> Record {
    let click = format!(
        "event_type=click&ip=10.0.0.{}&ua=x&affiliate_id=a{}&offer_id=o",
        i % 200,
        i % 3
    );
    let event = fraudgate::event::EventBuilder::from_query(&click).unwrap();
    Record {
        event: (&event.build().unwrap()).into(),
        ..crate::clickhouse::record(ms, i)
    }
}

/// Tables and views in the store.
fn schema_objects(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view')",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// The first column of what the list query `raw` answers.
fn first_column(dir: &Path, raw: &str) -> Vec<serde_json::Value> {
    let q = Query::from_params(fraudgate::query::Events::All, raw, false).unwrap();
    let mut got = Vec::new();
    run(dir, &q, Duration::from_secs(5), &mut |_, mut v| {
        got.push(v.swap_remove(0));
        true
    })
    .unwrap();
    got
}

/// [`first_column`] as text.
fn texts(dir: &Path, raw: &str) -> Vec<String> {
    first_column(dir, raw)
        .into_iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn count(dir: &Path, raw: &str) -> usize {
    let q = Query::from_params(fraudgate::query::Events::All, raw, false).unwrap();
    let mut n = 0;
    run(dir, &q, Duration::from_secs(5), &mut |_, _| {
        n += 1;
        true
    })
    .unwrap();
    n
}

#[test]
fn batches_span_days_and_retention_drops_whole_days() {
    let dir = temp_dir("sqlite-test");
    let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 2).unwrap();
    let day = 86_400_000i64;
    let today = 20_000 * day;
    // One batch over three days: 40 rows 10 days ago (a 32-row insert
    // and 8 single ones), 30 yesterday, 30 today.
    let batch: Vec<Record> = (0..100u128)
        .map(|i| {
            let ms = match i {
                0..40 => today - 10 * day,
                40..70 => today - day,
                _ => today + 1000,
            };
            record(ms, i)
        })
        .collect();
    w.write(&batch).unwrap();
    assert_eq!(count(&dir, "field=id&page_size=1000"), 100);
    let dropped = w.retention(today + 5000).unwrap();
    assert_eq!(
        dropped,
        [day_table(today - 10 * day)],
        "only the day past 2 days"
    );
    assert_eq!(count(&dir, "field=id&page_size=1000"), 60);
    assert!(w.retention(today + 6000).unwrap().is_empty(), "once a day");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rows of every kind over three days and many hours, for the
/// rollup comparison.
fn varied(i: u128, ms: i64) -> Record {
    let cc = ["DE", "US", ""][i as usize % 3];
    let mut q = format!(
        "event_type={}&ip=10.0.{}.{}&ua=x&affiliate_id=a{}&offer_id=o{}",
        if i.is_multiple_of(5) {
            "impression"
        } else {
            "click"
        },
        i % 7,
        i % 200,
        i % 4,
        i % 3
    );
    if !cc.is_empty() {
        q.push_str(&format!("&country_code={cc}"));
    }
    // Real-time: the event's second is the decision's.
    q.push_str(&format!("&at={}", ms / 1000));
    let event = fraudgate::event::EventBuilder::from_query(&q)
        .unwrap()
        .build()
        .unwrap();
    let flagged = i.is_multiple_of(4);
    let tags = if flagged {
        fraudgate::verdict::Tags::parse("datacenter\nip").unwrap()
    } else {
        fraudgate::verdict::Tags::clean()
    };
    let block = if flagged {
        fraudgate::policy::Action::Block
    } else {
        fraudgate::policy::Action::Allow
    };
    Record {
        client: i.is_multiple_of(6).then(|| "partner".into()),
        decision: block,
        would_be: block,
        blocked_by: if flagged {
            fraudgate::verdict::Tags::parse("datacenter").unwrap()
        } else {
            fraudgate::verdict::Tags::clean()
        },
        tags,
        reason: if flagged { "tags" } else { "clean" },
        elapsed_us: (i * 37 % 1000) as u64,
        event: (&event).into(),
        ..record(ms, i)
    }
}

/// Every grouped query the rollups take answers exactly what the rows
/// answer; those they cannot answer (per-IP, bounds on the event's time,
/// a zone off by half an hour) read the rows.
#[test]
fn rollups_answer_exactly_what_the_rows_answer() {
    let dir = temp_dir("sqlite-rollup");
    let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 30).unwrap();
    let start = 1_790_000_000_000i64; // 2026-09-21
    // Two batches, so rollup rows are added to, not only inserted.
    let batch = |from: u128, to: u128| -> Vec<Record> {
        (from..to)
            // 150 instants 20 minutes apart (over two days); rows 300
            // apart share their instant and every dimension, so the
            // rollup rows count several events each.
            .map(|i| varied(i, start + (i % 150) as i64 * 1_200_000 + (i % 7) as i64))
            .collect()
    };
    w.write(&batch(0, 700)).unwrap();
    w.write(&batch(700, 1500)).unwrap();
    let f = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let rolled = [
        "group=affiliate_id&field=count,blocked,allowed,block_rate,avg_elapsed_us,uniq_offer_id,any_door,tag_datacenter,blocked_by_datacenter,ivt_givt,ivt_none&sort=affiliate_id_asc".to_owned(),
        "group=date,hour&field=count,blocked&sort=date_asc&sort=hour_asc&tz=Europe/Berlin&page_size=1000".to_owned(),
        "group=country_code,client&field=count&sort=country_code_asc&sort=client_asc".to_owned(),
        "group=ivt,ivt_category,tags&field=count,avg_elapsed_us&sort=ivt_asc&sort=tags_asc".to_owned(),
        format!("group=offer_id&field=count,block_rate&sort=offer_id_desc&filter={}", f(r#"["AND",["affiliate_id_in",["a1","a2"]],["date_ge","2026-09-22"],["NOT",["tag","ip"]]]"#)),
        format!("group=week,month&field=count&sort=week_asc&having={}", f(r#"["count_gt",10]"#)),
        format!("group=door&field=count&filter={}", f(r#"["date_le","2026-09-22"]"#)),
        "group=event_type&field=count,blocked&page_size=1&page=2&sort=count_desc".to_owned(),
    ];
    let raw_only = [
        "group=ip&field=count&sort=ip_asc&page_size=5".to_owned(),
        "group=affiliate_id&field=uniq_ip&sort=affiliate_id_asc".to_owned(),
        format!(
            "group=door&field=count&filter={}",
            f(r#"["datetime_ge","2026-09-22 10:30:00"]"#)
        ),
        // The event's time: the rollups keep the decision's.
        format!(
            "group=door&field=count&filter={}",
            f(r#"["datetime_lt","2026-09-23 05:00:00"]"#)
        ),
        "group=date&field=count&sort=date_asc&tz=Asia/Kolkata".to_owned(),
        "field=id&page_size=3".to_owned(),
    ];
    let answer = |raw: &str, rollups: bool| {
        let groups = !raw.starts_with("field=id");
        let q = Query::from_params(fraudgate::query::Events::All, raw, groups).unwrap();
        let mut out = Vec::new();
        run_with(&dir, &q, Duration::from_secs(5), rollups, &mut |_, v| {
            out.push(v);
            true
        })
        .unwrap();
        (q, out)
    };
    let conn = Connection::open(dir.join(FILE)).unwrap();
    let tables = list_days(&conn).unwrap();
    assert!(tables.len() >= 3, "{tables:?}");
    for (raw, uses) in rolled
        .iter()
        .map(|r| (r, true))
        .chain(raw_only.iter().map(|r| (r, false)))
    {
        let (q, fast) = answer(raw, true);
        let (_, slow) = answer(raw, false);
        assert!(!slow.is_empty(), "{raw}: no rows to compare");
        assert_eq!(fast, slow, "{raw}");
        let sql = build(&q, &tables, true).unwrap().text;
        assert_eq!(sql.contains("\"r_"), uses, "{raw}: {sql}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ids the view writes out of a compact day's integer key are
/// the ids recorded, whatever their bits, and each finds its row.
#[test]
fn ids_read_back_as_recorded() {
    let dir = temp_dir("sqlite-ids");
    let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64 + 1234;
    let low_bits = [
        0u128,
        1,
        (1 << 80) - 1,
        0x7abc_8def_0123_4567_89ab,
        0xffff << 64,
    ];
    let batch: Vec<Record> = low_bits
        .iter()
        .map(|&b| {
            let mut r = record(ms, 0);
            r.id = fraudgate::decision::DecisionId(((ms as u128) << 80) | b);
            r
        })
        .collect();
    w.write(&batch).unwrap();
    let mut got = texts(&dir, "field=id&page_size=10");
    let mut want: Vec<String> = batch.iter().map(|r| r.id.to_string()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for id in &want {
        let f = format!("field=id&filter=%5B%22id%22%2C%22{id}%22%5D");
        assert_eq!(count(&dir, &f), 1, "{id}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reopened within a day (a restart), the writer keeps the day's view
/// and numbers a millisecond's new decisions after those stored;
/// retention drops the whole day: view, rows, dictionaries and rollup.
#[test]
fn a_restart_within_the_day_continues_its_keys_and_retention_drops_it_all() {
    let dir = temp_dir("sqlite-restart");
    let day = 86_400_000i64;
    let today = 20_000 * day;
    let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt.clone(), IpMode::Full, 1).unwrap();
    let batch: Vec<Record> = (0..70u128).map(|i| varied(i, today + 5)).collect();
    w.write(&batch).unwrap();
    drop(w);
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    // A new decision of the same millisecond: its key follows the 70
    // there (read from the store after the restart).
    w.write(&[varied(70, today + 5)]).unwrap();
    assert_eq!(count(&dir, "field=id&page_size=1000"), 71);
    assert_eq!(w.retention(today + 2 * day).unwrap(), [day_table(today)]);
    let conn = Connection::open(dir.join(FILE)).unwrap();
    assert_eq!(
        schema_objects(&conn),
        0,
        "every rows' table, dictionaries, view and rollup dropped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Records that reach the writer after later ones were written (a
/// batch's first milliseconds can be the last ones of the batch
/// before) get keys after those already in their millisecond: all are
/// kept, each at its own time.
#[test]
fn late_records_are_kept_at_their_own_time() {
    let dir = temp_dir("sqlite-late");
    let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64 + 1000;
    let first: Vec<Record> = (0..5).map(|i| record(ms + i as i64 % 2 * 10, i)).collect();
    w.write(&first).unwrap();
    // Before, between and at the milliseconds written: ms, ms + 5, ms + 10.
    let late: Vec<Record> = (5..14)
        .map(|i| record(ms + [0, 5, 10][i as usize % 3], i))
        .collect();
    w.write(&late).unwrap();
    let times = |raw: &str| -> Vec<i64> {
        first_column(&dir, raw)
            .iter()
            .map(|v| v.as_i64().unwrap() - ms)
            .collect()
    };
    let mut want: Vec<i64> = first.iter().chain(&late).map(|r| r.ts_ms() - ms).collect();
    want.sort();
    assert_eq!(times("field=ts&page_size=100&sort=ts_asc"), want);
    want.reverse();
    assert_eq!(
        times("field=ts&page_size=100"),
        want,
        "newest first by default"
    );
    assert_eq!(
        times(&format!(
            "field=ts&page_size=100&filter=%5B%22ts%22%2C{}%5D",
            ms + 5
        )),
        [5, 5, 5]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A list in time order is read one day at a time; its pages run
/// across days as one list.
#[test]
fn pages_in_time_order_run_across_days() {
    let dir = temp_dir("sqlite-pages");
    let day = 86_400_000i64;
    let today = 20_000 * day;
    let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 30).unwrap();
    // Three records on each of three days, each millisecond its own.
    let batch: Vec<Record> = (0..9u128)
        .map(|i| record(today - (i as i64 % 3) * day + i as i64, i))
        .collect();
    w.write(&batch).unwrap();
    let mut all: Vec<i64> = batch.iter().map(Record::ts_ms).collect();
    all.sort();
    let page = |raw: &str| -> Vec<i64> {
        first_column(&dir, raw)
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    let mut asc = Vec::new();
    let mut desc = Vec::new();
    for p in 1..=3 {
        asc.extend(page(&format!("field=ts&sort=ts_asc&page_size=4&page={p}")));
        desc.extend(page(&format!("field=ts&page_size=4&page={p}")));
    }
    assert_eq!(asc, all);
    all.reverse();
    assert_eq!(desc, all);
    assert_eq!(page("field=ts&page_size=4&page=4"), Vec::<i64>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sort key after `ts` orders the rows of one millisecond (the time
/// key, finer than `ts`, is used for `ts` only as the last key).
#[test]
fn a_key_after_ts_orders_rows_of_one_millisecond() {
    let dir = temp_dir("sqlite-ts-then");
    let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64 + 5;
    // Written (and so keyed) in the reverse of their IPs' order.
    let batch: Vec<Record> = (0..3u128)
        .map(|i| {
            let mut r = record(ms, i);
            r.event.ip = format!("10.0.0.{}", 3 - i).parse().unwrap();
            r
        })
        .collect();
    w.write(&batch).unwrap();
    for (sort, want) in [
        ("ts_asc,ip_asc", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
        ("ts_desc,ip_desc", ["10.0.0.3", "10.0.0.2", "10.0.0.1"]),
    ] {
        let got = texts(&dir, &format!("field=ip,ts&sort={sort}"));
        assert_eq!(got, want, "{sort}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// IPs read back as `store_ip` writes them out (IPv4 is formatted by
/// hand on the write path).
#[test]
fn ips_read_back_as_stored() {
    let ips = [
        "0.0.0.0",
        "255.255.255.255",
        "10.9.100.1",
        "192.168.0.99",
        "2001:db8::7",
    ];
    for mode in [IpMode::Full, IpMode::Truncated, IpMode::Hashed] {
        let dir = temp_dir(&format!("sqlite-ips-{mode:?}"));
        let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt, mode, 1).unwrap();
        let salt = [3u8; 32];
        w.set_salt(Some(salt));
        let ms = 20_000 * 86_400_000i64 + 77;
        let batch: Vec<Record> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let mut r = record(ms + i as i64, i as u128);
                r.event.ip = ip.parse().unwrap();
                r
            })
            .collect();
        w.write(&batch).unwrap();
        let got = texts(&dir, "field=ip&page_size=10&sort=ts_asc&field=ts");
        let want: Vec<String> = ips
            .iter()
            .map(|ip| {
                fraudgate::decision_log::columns::store_ip(ip.parse().unwrap(), mode, Some(&salt))
            })
            .collect();
        assert_eq!(got, want, "{mode:?}");
        // An equality filter on the text finds the row.
        let f = format!(
            "field=id&filter=%5B%22ip%22%2C%22{}%22%5D",
            want[2].replace(':', "%3A")
        );
        assert_eq!(count(&dir, &f), 1, "{mode:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A write that fails after creating a day's tables rolls them back;
/// the retry creates them again instead of failing until a restart.
#[test]
fn a_failed_write_is_retried_from_what_the_store_holds() {
    let dir = temp_dir("sqlite-retry");
    let ivt = IvtMap::new(&fraudgate::Config::default().ivt).unwrap();
    let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
    let ms = 20_000 * 86_400_000i64;
    let r = rollup_table(&day_table(ms));
    // The day's rollup rows fail once, inside the writer's transaction.
    let conn = Connection::open(dir.join(FILE)).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE fail_once (n INTEGER); INSERT INTO fail_once VALUES (1); \
             CREATE TABLE \"{r}\" {ROLLUP_SCHEMA}; \
             CREATE TRIGGER boom BEFORE INSERT ON \"{r}\" \
             WHEN (SELECT count(*) FROM fail_once) > 0 \
             BEGIN SELECT RAISE(ABORT, 'injected'); END;"
    ))
    .unwrap();
    let batch: Vec<Record> = (0..5u128).map(|i| record(ms, i)).collect();
    assert!(w.write(&batch).is_err());
    conn.execute_batch("DELETE FROM fail_once").unwrap();
    w.write(&batch).unwrap();
    assert_eq!(count(&dir, "field=id&page_size=100"), 5);
    let _ = std::fs::remove_dir_all(&dir);
}
