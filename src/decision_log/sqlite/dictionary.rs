//! A compact day's dictionaries: each distinct context, UA and
//! (affiliate_id, offer_id) pair of the day, by its id in the store.
//!
//! The writer keeps the day's dictionaries in memory (bounded: past
//! [`MAX_UAS`], [`MAX_WHOS`] or [`MAX_CONTEXTS`] entries they are emptied
//! and refilled from the store), so a row costs three hash lookups; a
//! context, UA or pair first seen is upserted in the same transaction as
//! the rows that use it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

// foldhash (already in the tree through hashbrown): a per-process seeded
// hash several times cheaper than SipHash on a 120-byte UA; the maps are
// bounded, so a crafted flood of colliding keys cannot grow them.
use foldhash::fast::RandomState;
use rusqlite::Transaction;

use super::compact::{Order, Slot};
use super::schema::{CONTEXT_COLUMNS, Parts};
use crate::decision_log::columns;
use crate::decision_log::ivt::IvtMap;
use crate::decision_log::record::{Encoded, Record, utf8};
use crate::event::Opt;

/// Entries a day's in-memory dictionaries hold at most (each is also in
/// the store: emptying them costs lookups, never correctness).
pub const MAX_UAS: usize = 200_000;
pub const MAX_WHOS: usize = 200_000;
pub const MAX_CONTEXTS: usize = 50_000;

/// One decision context: what a row shares with many others.
pub struct Context {
    pub door: &'static str,
    client: Option<Arc<str>>,
    pub event_type: &'static str,
    country: Option<Box<str>>,
    pub decision: &'static str,
    pub would_be: &'static str,
    pub mode: &'static str,
    pub source: &'static str,
    pub reason: &'static str,
    /// Its columns as stored (worked out once per context).
    pub text: ContextText,
}

/// A context's derived columns.
pub struct ContextText {
    pub tags: String,
    pub tag_mask: i64,
    pub blocked_mask: i64,
    pub rules: String,
    pub rule_mask: i64,
    pub ivt: &'static str,
    pub ivt_category: String,
}

impl Context {
    fn of(r: &Record, ivt: &IvtMap) -> Self {
        let class = ivt.classify(&r.rules, &r.tags);
        Context {
            door: r.door.as_str(),
            client: r.client.clone(),
            event_type: r.event.event_type.as_str(),
            country: r.event.get(Opt::CountryCode).map(Into::into),
            decision: r.decision.as_str(),
            would_be: r.would_be.as_str(),
            mode: r.mode.as_str(),
            source: r.source.as_str(),
            reason: r.reason,
            text: ContextText {
                tags: r.tags.iter().collect::<Vec<_>>().join(","),
                tag_mask: i64::from(r.tags.known_mask()),
                blocked_mask: i64::from(r.blocked_by.known_mask()),
                rules: serde_json::to_string(&r.rules).unwrap_or_else(|_| "[]".into()),
                rule_mask: columns::rule_mask(&r.rules),
                ivt: class.class.as_str(),
                ivt_category: class.category.into(),
            },
        }
    }

    /// `''` for none, as stored.
    pub fn client(&self) -> &str {
        self.client.as_deref().unwrap_or("")
    }

    /// `''` for none, as stored.
    pub fn country(&self) -> &str {
        self.country.as_deref().unwrap_or("")
    }
}

/// An (affiliate_id, offer_id) pair's id, and the pair.
type Who = (i64, Box<[u8]>, Box<[u8]>);

/// A compact day's dictionaries as the writer holds them, and the last
/// time key written.
#[derive(Default)]
pub struct Dictionaries {
    state: RandomState,
    /// A UA's bytes -> its id.
    uas: HashMap<Box<[u8]>, i64, RandomState>,
    /// Hash of (affiliate_id, offer_id) -> the pair and its id. (Two
    /// pairs with one hash: the second is looked up in the store each
    /// time, never mistaken for the first.)
    whos: HashMap<u64, Who, RandomState>,
    /// A context's encoded bytes (`record::Encoded::context`) -> its
    /// index in `contexts`. (Two encodings of one context, should there
    /// be such, are two keys for the one row the store's unique key
    /// keeps.)
    by_bytes: HashMap<Box<[u8]>, u32, RandomState>,
    /// Each context with its id in the store.
    contexts: Vec<(i64, Context)>,
    /// The largest `k` in the day's rows (None: not read yet).
    pub(super) last_key: Option<i64>,
    /// The last batch's records in batch order, the order to write them
    /// in, and their keys (kept for their allocations).
    pub(super) slots: Vec<Slot>,
    pub(super) order: Vec<Order>,
    pub(super) keys: Vec<i64>,
}

impl Dictionaries {
    /// Empties the dictionaries once they outgrow their bound (between
    /// batches only: a batch's indexes stay valid while it is written).
    pub(super) fn bound(&mut self) {
        if self.uas.len() > MAX_UAS {
            self.uas = HashMap::default();
        }
        if self.whos.len() > MAX_WHOS {
            self.whos = HashMap::default();
        }
        if self.contexts.len() > MAX_CONTEXTS {
            self.by_bytes = HashMap::default();
            self.contexts = Vec::new();
        }
    }

    pub fn context(&self, i: u32) -> &Context {
        &self.contexts[i as usize].1
    }

    /// The id in the store of the context at `i`.
    pub fn context_id(&self, i: u32) -> i64 {
        self.contexts[i as usize].0
    }

    /// The records of the batch [`insert`] last wrote, in batch order
    /// (after an error: of the batch that failed).
    pub fn written(&self) -> &[Slot] {
        &self.slots
    }
}

/// The id of a UA in the day's dictionary, upserted when first seen.
pub(super) fn ua_id(
    tx: &Transaction<'_>,
    p: &Parts,
    dicts: &mut Dictionaries,
    ua: &[u8],
) -> rusqlite::Result<i64> {
    if let Some(id) = dicts.uas.get(ua) {
        return Ok(*id);
    }
    let id: i64 = tx
        .prepare_cached(&format!(
            "INSERT INTO \"{}\" (ua) VALUES (?) \
             ON CONFLICT (ua) DO UPDATE SET ua = excluded.ua RETURNING id",
            p.uas
        ))?
        // (Checked once, as it is first stored.)
        .query_row([utf8(ua)], |row| row.get(0))?;
    dicts.uas.insert(ua.into(), id);
    Ok(id)
}

/// The id of an (affiliate_id, offer_id) pair, upserted when first seen.
pub(super) fn who_id(
    tx: &Transaction<'_>,
    p: &Parts,
    dicts: &mut Dictionaries,
    affiliate_id: &[u8],
    offer_id: &[u8],
) -> rusqlite::Result<i64> {
    let mut h = dicts.state.build_hasher();
    affiliate_id.hash(&mut h);
    offer_id.hash(&mut h);
    let hash = h.finish();
    let known = dicts.whos.get(&hash);
    if let Some((id, a, o)) = known
        && **a == *affiliate_id
        && **o == *offer_id
    {
        return Ok(*id);
    }
    let taken = known.is_some();
    let id: i64 = tx
        .prepare_cached(&format!(
            "INSERT INTO \"{}\" (affiliate_id, offer_id) VALUES (?, ?) \
             ON CONFLICT (affiliate_id, offer_id) DO UPDATE SET affiliate_id = \
             excluded.affiliate_id RETURNING id",
            p.whos
        ))?
        .query_row([utf8(affiliate_id), utf8(offer_id)], |row| row.get(0))?;
    if !taken {
        dicts
            .whos
            .insert(hash, (id, affiliate_id.into(), offer_id.into()));
    }
    Ok(id)
}

/// The index in `dicts` of a record's context, upserted when first seen.
pub(super) fn context_index(
    tx: &Transaction<'_>,
    p: &Parts,
    dicts: &mut Dictionaries,
    e: &Encoded<'_>,
    ivt: &IvtMap,
) -> rusqlite::Result<u32> {
    if let Some(i) = dicts.by_bytes.get(e.context) {
        return Ok(*i);
    }
    // A context first seen: the record built whole, once.
    let c = Context::of(&e.decode(&mut None), ivt);
    let id = upsert_context(tx, p, &c)?;
    let i = dicts.contexts.len() as u32;
    dicts.contexts.push((id, c));
    dicts.by_bytes.insert(e.context.into(), i);
    Ok(i)
}

/// A context's id in the day's contexts table.
fn upsert_context(tx: &Transaction<'_>, p: &Parts, c: &Context) -> rusqlite::Result<i64> {
    let t = &c.text;
    tx.prepare_cached(&format!(
        "INSERT INTO \"{}\" ({CONTEXT_COLUMNS}) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT ({CONTEXT_COLUMNS}) DO UPDATE SET door = excluded.door \
         RETURNING id",
        p.contexts
    ))?
    .query_row(
        rusqlite::params![
            c.door,
            c.client(),
            c.event_type,
            c.country(),
            c.decision,
            c.would_be,
            c.mode,
            t.tags,
            t.tag_mask,
            t.blocked_mask,
            c.source,
            c.reason,
            t.rules,
            t.rule_mask,
            t.ivt,
            t.ivt_category,
        ],
        |row| row.get(0),
    )
}
