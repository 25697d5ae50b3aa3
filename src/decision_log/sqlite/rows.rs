//! A compact day's rows (`g_YYYYMMDD`), bound and inserted 64 to a
//! statement in time order.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Statement, ToSql, Transaction};

use super::compact::{Order, Slot};
use super::dictionary::Dictionaries;
use super::schema::Parts;
use crate::decision_log::IpMode;
use crate::decision_log::batch::Records;
use crate::decision_log::columns::{self, AFF_SUBS, StackStr, ip_text};
use crate::decision_log::record::utf8;
use crate::event::Opt;

/// Rows per multi-row INSERT (15 parameters each, 9 without aff_subs or
/// extra).
const ROWS_PER_INSERT: usize = 64;
/// The columns [`Fact::bind`] binds, in its order: all of them, and those
/// of a row with no aff_sub or extra.
const WIDE_COLUMNS: &str = "k, id_mid, id_low, ip, ua, who, aff_sub1, aff_sub2, aff_sub3, \
    aff_sub4, aff_sub5, extra, ctx, elapsed_us, age";
const NARROW_COLUMNS: &str = "k, id_mid, id_low, ip, ua, who, ctx, elapsed_us, age";

/// One row of `g_YYYYMMDD`, borrowing what it can from its record.
struct Fact<'a> {
    id_mid: i64,
    id_low: i64,
    ip: StackStr<48>,
    ua: i64,
    who: i64,
    aff_sub: [Option<Text<'a>>; 5],
    extra: Option<String>,
    ctx: i64,
    elapsed_us: i64,
    age: i64,
}

impl<'a> Fact<'a> {
    /// The row of a record (its place in time order and its slot); the
    /// record is read again only when it has optional fields to store
    /// (most have none: the slot holds the rest).
    fn of(
        o: &Order,
        s: &Slot,
        rows: Records<'a>,
        dicts: &Dictionaries,
        (ip_mode, salt): (IpMode, Option<&[u8; 32]>),
    ) -> Self {
        let (aff_sub, extra) = if s.wide {
            let e = rows.get(s.record as usize);
            (
                AFF_SUBS.map(|o| e.get(o).map(Text)),
                columns::extra(e.optional().map(|(o, v)| (o, utf8(v)))),
            )
        } else {
            ([None; 5], None)
        };
        let f = Fact {
            id_mid: (o.high & 0xffff) as i64,
            id_low: o.low as i64,
            ip: ip_text(s.ip, ip_mode, salt),
            ua: s.ua,
            who: s.who,
            aff_sub,
            extra,
            ctx: dicts.context_id(s.context),
            elapsed_us: s.elapsed_us,
            age: s.age,
        };
        // (Optional values are never empty: the event drops those.)
        debug_assert_eq!(f.is_wide(), s.wide, "a row's optional fields");
        f
    }

    /// Whether the row has a value for a column of the wide statement
    /// only (an aff_sub or extra).
    fn is_wide(&self) -> bool {
        self.extra.is_some() || self.aff_sub.iter().any(Option::is_some)
    }

    /// Binds the row's values from parameter `at + 1` on: those of
    /// `WIDE_COLUMNS`, or of `NARROW_COLUMNS` (no aff_sub or extra) when
    /// `!wide`.
    /// Each value through its own type's binding, inlined (through
    /// `&dyn ToSql` each value was an indirect call whose result went
    /// through memory: measured, the largest single cost of binding).
    fn bind(
        &self,
        stmt: &mut Statement<'_>,
        at: &mut usize,
        k: i64,
        wide: bool,
    ) -> rusqlite::Result<()> {
        fn put<T: ToSql>(stmt: &mut Statement<'_>, at: &mut usize, v: T) -> rusqlite::Result<()> {
            *at += 1;
            stmt.raw_bind_parameter(*at, v)
        }
        put(stmt, at, k)?;
        put(stmt, at, self.id_mid)?;
        put(stmt, at, self.id_low)?;
        put(stmt, at, &self.ip)?;
        put(stmt, at, self.ua)?;
        put(stmt, at, self.who)?;
        if wide {
            for sub in self.aff_sub {
                put(stmt, at, sub)?;
            }
            put(stmt, at, self.extra.as_deref())?;
        }
        put(stmt, at, self.ctx)?;
        put(stmt, at, self.elapsed_us)?;
        put(stmt, at, self.age)
    }
}

impl<const N: usize> ToSql for StackStr<N> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(
            self.as_str().as_bytes(),
        )))
    }
}

/// Text the encoding holds (UTF-8), bound as TEXT as it is.
#[derive(Clone, Copy)]
struct Text<'a>(&'a [u8]);

impl ToSql for Text<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        debug_assert!(std::str::from_utf8(self.0).is_ok(), "not text");
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0)))
    }
}

/// Whether an optional field is stored in the row (an aff_sub column or
/// `extra`): all but country_code, which is its context's.
pub(super) fn in_row(o: Opt) -> bool {
    o != Opt::CountryCode
}

/// The rows of `slots` in `order` (keyed by `keys`), 64 to a statement.
/// A chunk none of whose rows has an aff_sub or extra goes through a
/// statement without those columns (six fewer values bound and stored a
/// row, the columns NULL all the same); a chunk with any goes through the
/// wide one.
pub(super) fn write_rows(
    tx: &Transaction<'_>,
    p: &Parts,
    dicts: &Dictionaries,
    rows: Records<'_>,
    (slots, order, keys): (&[Slot], &[Order], &[i64]),
    ip: (IpMode, Option<&[u8; 32]>),
) -> rusqlite::Result<()> {
    let insert = |n: usize, wide: bool| {
        let columns = if wide { WIDE_COLUMNS } else { NARROW_COLUMNS };
        let width = columns.split(',').count();
        let one = format!("({})", vec!["?"; width].join(", "));
        format!(
            "INSERT INTO \"{}\" ({columns}) VALUES {}",
            p.rows,
            vec![one; n].join(", ")
        )
    };
    let fact = |o: &Order| Fact::of(o, &slots[o.slot as usize], rows, dicts, ip);
    // [rows in the statement == 1][wide], each prepared when first needed.
    let mut stmts: [[Option<rusqlite::CachedStatement<'_>>; 2]; 2] = Default::default();
    let mut facts = Vec::with_capacity(ROWS_PER_INSERT);
    for (chunk, ks) in order
        .chunks(ROWS_PER_INSERT)
        .zip(keys.chunks(ROWS_PER_INSERT))
    {
        facts.clear();
        facts.extend(chunk.iter().map(fact));
        // A full chunk in one statement; the last, shorter one a row at a
        // time (one statement per row count would be prepared and cached
        // for each of 63 counts).
        let n = if chunk.len() == ROWS_PER_INSERT {
            ROWS_PER_INSERT
        } else {
            1
        };
        for (rows, ks) in facts.chunks(n).zip(ks.chunks(n)) {
            let wide = rows.iter().any(Fact::is_wide);
            let stmt = match &mut stmts[usize::from(n == 1)][usize::from(wide)] {
                Some(s) => s,
                none => none.insert(tx.prepare_cached(&insert(n, wide))?),
            };
            let mut at = 0;
            for (f, k) in rows.iter().zip(ks) {
                f.bind(stmt, &mut at, *k, wide)?;
            }
            // Every parameter is bound afresh for each execution: raw
            // binding has no count check of its own, and one left out
            // would keep the previous execution's value.
            if at != stmt.parameter_count() {
                return Err(rusqlite::Error::InvalidParameterCount(
                    at,
                    stmt.parameter_count(),
                ));
            }
            stmt.raw_execute()?;
        }
    }
    Ok(())
}
