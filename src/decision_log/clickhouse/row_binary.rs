//! ClickHouse's `RowBinary` format, written from records as they are.

use bytes::{BufMut, BytesMut};

use crate::decision_log::IpMode;
#[cfg(test)]
use crate::decision_log::Row;
use crate::decision_log::columns::{self, AFF_SUBS, ip_text};
use crate::decision_log::ivt::IvtMap;
use crate::decision_log::record::Record;
use crate::event::Opt;

/// ClickHouse's `RowBinary`: values in column order, no names and no
/// escaping (measured: JSONEachRow was half of the writer's time).
/// `String` is its LEB128 length and bytes, `Nullable` a 1 (NULL) or a 0
/// and the value, `Int64` eight bytes little-endian.
pub(super) struct RowBinary<'a>(pub(super) &'a mut BytesMut);

impl RowBinary<'_> {
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// A length as LEB128.
    fn len(&mut self, n: usize) {
        let mut n = n as u64;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.put_u8(byte);
                break;
            }
            self.0.put_u8(byte | 0x80);
        }
    }

    fn opt(&mut self, s: Option<&str>) {
        match s {
            None => self.0.put_u8(1),
            Some(s) => {
                self.0.put_u8(0);
                self.str(s);
            }
        }
    }

    fn int(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// One decision's row, written from its record as it is: no copy of
    /// its strings, the id, IP, tags and rules formatted into `scratch`
    /// (measured: building a `Row` first was about half of the writer's
    /// time a decision).
    pub(super) fn record(
        &mut self,
        r: &Record,
        ivt: &IvtMap,
        (ip, salt): (IpMode, Option<&[u8; 32]>),
        scratch: &mut Vec<u8>,
    ) {
        let e = &r.event;
        self.bytes(&r.id.hyphenated());
        self.int(r.ts_ms());
        self.str(r.door.as_str());
        self.opt(r.client.as_deref());
        self.str(e.event_type.as_str());
        self.str(ip_text(e.ip, ip, salt).as_str());
        self.str(e.ua());
        self.str(e.affiliate_id());
        self.str(e.offer_id());
        for sub in AFF_SUBS {
            self.opt(e.get(sub));
        }
        self.opt(e.get(Opt::CountryCode));
        self.opt(columns::extra(r.event.optional()).as_deref());
        self.str(r.decision.as_str());
        self.str(r.would_be.as_str());
        self.str(r.mode.as_str());
        scratch.clear();
        for (i, t) in r.tags.iter().enumerate() {
            if i > 0 {
                scratch.push(b',');
            }
            scratch.extend_from_slice(t.as_bytes());
        }
        self.bytes(scratch);
        self.int(i64::from(r.tags.known_mask()));
        self.int(i64::from(r.blocked_by.known_mask()));
        self.str(r.source.as_str());
        self.str(r.reason);
        scratch.clear();
        if !r.rules.is_empty() && serde_json::to_writer(&mut *scratch, &r.rules).is_err() {
            scratch.clear();
        }
        if scratch.is_empty() {
            // No rule fired (most decisions): no serializer.
            scratch.extend_from_slice(b"[]");
        }
        self.bytes(scratch);
        self.int(columns::rule_mask(&r.rules));
        let class = ivt.classify(&r.rules, &r.tags);
        self.str(class.class.as_str());
        self.str(&class.category);
        self.int(r.elapsed_us as i64);
        self.int(r.event.at as i64);
    }

    /// A `String` from bytes that are UTF-8 (written from `&str`s).
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    #[cfg(test)]
    fn row(&mut self, r: &Row) {
        self.str(&r.id);
        self.int(r.ts);
        self.str(r.door);
        self.opt(r.client.as_deref());
        self.str(r.event_type);
        self.str(&r.ip);
        self.str(&r.ua);
        self.str(&r.affiliate_id);
        self.str(&r.offer_id);
        for sub in &r.aff_sub {
            self.opt(sub.as_deref());
        }
        self.opt(r.country_code.as_deref());
        self.opt(r.extra.as_deref());
        self.str(r.decision);
        self.str(r.would_be);
        self.str(r.mode);
        self.str(&r.tags);
        self.int(r.tag_mask);
        self.int(r.blocked_mask);
        self.str(r.source);
        self.str(r.reason);
        self.str(&r.rules);
        self.int(r.rule_mask);
        self.str(r.ivt);
        self.str(&r.ivt_category);
        self.int(r.elapsed_us);
        self.int(r.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_binary_values_are_encoded_as_the_format_says() {
        let mut buf = BytesMut::new();
        let mut w = RowBinary(&mut buf);
        w.str("ab");
        w.str(&"x".repeat(300));
        w.opt(None);
        w.opt(Some(""));
        w.int(-2);
        assert_eq!(&buf[..3], [2, b'a', b'b']);
        assert_eq!(&buf[3..5], [0xac, 0x02], "300 as LEB128");
        assert_eq!(buf.len(), 3 + 2 + 300 + 1 + 2 + 8);
        assert_eq!(&buf[305..308], [1, 0, 0], "NULL, then an empty string");
        assert_eq!(&buf[308..], (-2i64).to_le_bytes());
    }

    /// A record written as it is encodes exactly as its `Row` (every
    /// column, whatever the record holds).
    #[test]
    fn a_record_encodes_as_its_row() {
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let salt = [5u8; 32];
        let plain = crate::decision_log::record::tests::record(1_764_700_000_000, 7);
        let mut full = plain.clone();
        full.event = (&crate::event::EventBuilder::from_query(
            "event_type=impression&ip=2001:db8::9&ua=Mozilla%2F5.0%20%C3%A9&affiliate_id=a%22b\
             &offer_id=o&aff_sub1=s1&aff_sub5=&country_code=DE&affiliate_name=x%0Ay&browser=b",
        )
        .unwrap()
        .build()
        .unwrap())
            .into();
        full.client = Some("partner".into());
        full.tags = crate::verdict::Tags::parse("datacenter\nip\ndynamic blacklist").unwrap();
        full.rules = vec![crate::decision::RuleHit {
            kind: crate::decision::RuleKind::CrawlerUa,
            name: "bots".into(),
            tag: None,
            reason: Some("a \"crawler\"".into()),
        }];
        for r in [&plain, &full] {
            for (ip, salt) in [
                (IpMode::Full, None),
                (IpMode::Truncated, None),
                (IpMode::Hashed, Some(&salt)),
            ] {
                let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
                RowBinary(&mut a).record(r, &ivt, (ip, salt), &mut Vec::new());
                RowBinary(&mut b).row(&Row::new(r, &ivt, ip, salt));
                assert_eq!(a, b, "{ip:?} {r:?}");
            }
        }
    }
}
