//! A decision's columns, as both stores keep them: their names in table
//! order, and how each is worked out from a record. The SQLite store keeps
//! them in compact days (`sqlite::compact`), ClickHouse in one wide table;
//! what they store for a record is the same.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::IpMode;
use super::ivt::IvtMap;
use super::record::Record;
use crate::event::Opt;

/// The columns in table order (ClickHouse's table, SQLite's day views).
pub const NAMES: [&str; 30] = [
    "id",
    "ts",
    "door",
    "client",
    "event_type",
    "ip",
    "ua",
    "affiliate_id",
    "offer_id",
    "aff_sub1",
    "aff_sub2",
    "aff_sub3",
    "aff_sub4",
    "aff_sub5",
    "country_code",
    "extra",
    "decision",
    "would_be",
    "mode",
    "tags",
    "tag_mask",
    "blocked_mask",
    "source",
    "reason",
    "rules",
    "rule_mask",
    "ivt",
    "ivt_category",
    "elapsed_us",
    "at",
];

/// The optional fields with a column each (`aff_sub1` to `aff_sub5`).
pub const AFF_SUBS: [Opt; 5] = [
    Opt::AffSub1,
    Opt::AffSub2,
    Opt::AffSub3,
    Opt::AffSub4,
    Opt::AffSub5,
];

/// A record as the stores' columns, built plainly: the reference the
/// writers' faster paths are tested against (and benched).
pub struct Row {
    pub id: String,
    pub ts: i64,
    pub door: &'static str,
    pub client: Option<String>,
    pub event_type: &'static str,
    pub ip: String,
    pub ua: String,
    pub affiliate_id: String,
    pub offer_id: String,
    pub aff_sub: [Option<String>; 5],
    pub country_code: Option<String>,
    pub extra: Option<String>,
    pub decision: &'static str,
    pub would_be: &'static str,
    pub mode: &'static str,
    pub tags: String,
    pub tag_mask: i64,
    pub blocked_mask: i64,
    pub source: &'static str,
    pub reason: &'static str,
    pub rules: String,
    pub rule_mask: i64,
    pub ivt: &'static str,
    pub ivt_category: String,
    pub elapsed_us: i64,
    /// The event's time, Unix seconds.
    pub at: i64,
}

impl Row {
    pub fn new(r: &Record, ivt: &IvtMap, ip: IpMode, salt: Option<&[u8; 32]>) -> Self {
        let e = &r.event;
        let extra: serde_json::Map<String, serde_json::Value> = e
            .optional()
            .filter(|(o, _)| !AFF_SUBS.contains(o) && *o != Opt::CountryCode)
            .map(|(o, v)| (o.name().to_owned(), v.into()))
            .collect();
        let class = ivt.classify(&r.rules, &r.tags);
        Row {
            id: r.id.to_string(),
            ts: r.ts_ms(),
            door: r.door.as_str(),
            client: r.client.as_deref().map(str::to_owned),
            event_type: e.event_type.as_str(),
            ip: store_ip(e.ip, ip, salt),
            ua: e.ua().to_owned(),
            affiliate_id: e.affiliate_id().to_owned(),
            offer_id: e.offer_id().to_owned(),
            aff_sub: AFF_SUBS.map(|o| e.get(o).map(str::to_owned)),
            country_code: e.get(Opt::CountryCode).map(str::to_owned),
            extra: (!extra.is_empty()).then(|| serde_json::Value::Object(extra).to_string()),
            decision: r.decision.as_str(),
            would_be: r.would_be.as_str(),
            mode: r.mode.as_str(),
            tags: r.tags.iter().collect::<Vec<_>>().join(","),
            tag_mask: i64::from(r.tags.known_mask()),
            blocked_mask: i64::from(r.blocked_by.known_mask()),
            source: r.source.as_str(),
            reason: r.reason,
            rules: serde_json::to_string(&r.rules).unwrap_or_else(|_| "[]".into()),
            rule_mask: rule_mask(&r.rules),
            ivt: class.class.as_str(),
            ivt_category: class.category.into(),
            elapsed_us: r.elapsed_us as i64,
            at: e.at as i64,
        }
    }
}

/// A decision's tags as the `tags` column has them (comma-joined), read
/// back.
pub fn read_tags(text: &str) -> crate::verdict::Tags {
    crate::verdict::Tags::parse(&text.replace(',', "\n")).unwrap_or_default()
}

/// The kinds of the rules that fired, as bits (`rule_*` aggregates).
pub fn rule_mask(rules: &[crate::decision::RuleHit]) -> i64 {
    rules.iter().fold(0, |m, h| m | (1i64 << (h.kind as u32)))
}

/// An IP as `decision_log.ip` has it stored.
pub fn store_ip(ip: IpAddr, mode: IpMode, salt: Option<&[u8; 32]>) -> String {
    match (mode, salt) {
        (IpMode::Full, _) | (IpMode::Hashed, None) => ip.to_string(),
        (IpMode::Truncated, _) => match ip {
            IpAddr::V4(v4) => std::net::Ipv4Addr::from(u32::from(v4) & 0xffff_ff00).to_string(),
            IpAddr::V6(v6) => {
                std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 80) - 1)).to_string()
            }
        },
        (IpMode::Hashed, Some(salt)) => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, salt);
            let tag = ring::hmac::sign(&key, ip.to_string().as_bytes());
            crate::hash::hex(&tag.as_ref()[..16])
        }
    }
}

/// The optional fields with no column of their own, as a JSON object.
pub fn extra<'a>(optional: impl Iterator<Item = (Opt, &'a str)>) -> Option<String> {
    let mut rest = optional
        .filter(|(o, _)| *o != Opt::CountryCode && !AFF_SUBS.contains(o))
        .peekable();
    rest.peek()?;
    let map: serde_json::Map<String, serde_json::Value> =
        rest.map(|(o, v)| (o.name().to_owned(), v.into())).collect();
    Some(serde_json::Value::Object(map).to_string())
}

/// Text buffers on the stack for a row's formatted columns.
pub struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever written in.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> std::fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// An IPv4 address in dotted decimal, without the formatting machinery
/// (measured: a tenth of a row's cost through `Display`).
fn ipv4_text(ip: std::net::Ipv4Addr, out: &mut StackStr<48>) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.buf[out.len] = b'.';
            out.len += 1;
        }
        if octet >= 100 {
            out.buf[out.len] = b'0' + octet / 100;
            out.len += 1;
        }
        if octet >= 10 {
            out.buf[out.len] = b'0' + octet / 10 % 10;
            out.len += 1;
        }
        out.buf[out.len] = b'0' + octet % 10;
        out.len += 1;
    }
}

/// A row's IP as stored: `store_ip`'s text (IPv4 formatted by hand).
pub fn ip_text(ip: IpAddr, mode: IpMode, salt: Option<&[u8; 32]>) -> StackStr<48> {
    let mut t = StackStr::new();
    let _ = match (mode, ip) {
        (IpMode::Full, IpAddr::V4(v4)) => {
            ipv4_text(v4, &mut t);
            Ok(())
        }
        (IpMode::Truncated, IpAddr::V4(v4)) => {
            ipv4_text((u32::from(v4) & 0xffff_ff00).into(), &mut t);
            Ok(())
        }
        (IpMode::Full, v6) => write!(t, "{v6}"),
        _ => t.write_str(&store_ip(ip, mode, salt)),
    };
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_are_stored_as_configured() {
        let v4: IpAddr = "198.51.100.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:aa:bb::1".parse().unwrap();
        assert_eq!(store_ip(v4, IpMode::Full, None), "198.51.100.77");
        assert_eq!(store_ip(v4, IpMode::Truncated, None), "198.51.100.0");
        assert_eq!(store_ip(v6, IpMode::Truncated, None), "2001:db8:aa::");
        let salt = [7u8; 32];
        let h = store_ip(v4, IpMode::Hashed, Some(&salt));
        assert_eq!(h.len(), 32);
        assert!(!h.contains("198"));
        assert_eq!(h, store_ip(v4, IpMode::Hashed, Some(&salt)), "stable");
        assert_ne!(h, store_ip(v4, IpMode::Hashed, Some(&[8u8; 32])), "keyed");
    }
}
