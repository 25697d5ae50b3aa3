//! FraudScore RT response text <-> a compact tag set.
//!
//! RT answers HTTP 200 with plain text, one problem tag a line; an empty body
//! means clean. The ten documented tags live in a 16-bit set; anything else
//! is kept, lower-cased, never dropped.

use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// The ten tags FraudScore RT documents, in its documented order (which is
/// also the order fraudgate prints them in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tag {
    Datacenter,
    Blacklist,
    Proxy,
    Device,
    Ip,
    Os,
    Crawler,
    DynamicBlacklist,
    Cap,
    Attribution,
}

impl Tag {
    pub const ALL: [Tag; 10] = [
        Tag::Datacenter,
        Tag::Blacklist,
        Tag::Proxy,
        Tag::Device,
        Tag::Ip,
        Tag::Os,
        Tag::Crawler,
        Tag::DynamicBlacklist,
        Tag::Cap,
        Tag::Attribution,
    ];

    /// The tag as RT writes it on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tag::Datacenter => "datacenter",
            Tag::Blacklist => "blacklist",
            Tag::Proxy => "proxy",
            Tag::Device => "device",
            Tag::Ip => "ip",
            Tag::Os => "os",
            Tag::Crawler => "crawler",
            Tag::DynamicBlacklist => "dynamic blacklist",
            Tag::Cap => "cap",
            Tag::Attribution => "attribution",
        }
    }

    /// The tag as config keys and metric labels spell it (no spaces).
    pub const fn config_name(self) -> &'static str {
        match self {
            Tag::DynamicBlacklist => "dynamic_blacklist",
            t => t.as_str(),
        }
    }

    pub const fn bit(self) -> u16 {
        1 << self as u8
    }

    /// Parses an RT tag, ignoring ASCII case.
    pub fn from_wire(s: &str) -> Option<Tag> {
        Tag::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// Parses a config spelling (`dynamic_blacklist`) or the wire spelling.
    pub fn from_config_name(s: &str) -> Option<Tag> {
        Tag::ALL
            .into_iter()
            .find(|t| t.config_name() == s)
            .or_else(|| Tag::from_wire(s))
    }
}

/// Longest unknown tag accepted; a longer line means the body is not RT's.
pub const MAX_TAG_LEN: usize = 64;

/// A set of RT tags: the documented ones as bits, unknown ones kept aside.
/// Cloning is cheap (no allocation) so cached verdicts can be shared.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tags {
    known: u16,
    unknown: Option<UnknownTags>,
}

/// The unknown tags of a set, shared. A thin pointer (to the boxed slice)
/// rather than a fat one, so a set is 16 bytes and the verdict cache's slot
/// stays small: unknown tags are rare, and only they pay the extra hop.
pub(crate) type UnknownTags = Arc<Box<[Box<str>]>>;

fn shared(unknown: Vec<Box<str>>) -> Option<UnknownTags> {
    (!unknown.is_empty()).then(|| Arc::new(unknown.into_boxed_slice()))
}

/// Why a body is not a valid RT verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerdictError {
    #[error("line longer than {MAX_TAG_LEN} bytes")]
    LineTooLong,
    #[error("tag contains characters RT never sends")]
    BadCharacter,
}

impl Tags {
    pub const fn clean() -> Self {
        Tags {
            known: 0,
            unknown: None,
        }
    }

    pub fn from_known(tags: &[Tag]) -> Self {
        Tags {
            known: tags.iter().fold(0, |m, t| m | t.bit()),
            unknown: None,
        }
    }

    /// The documented tags whose bits are set in `mask`.
    pub fn from_mask(mask: u16) -> Self {
        Tags {
            known: mask & ((1 << Tag::ALL.len()) - 1),
            unknown: None,
        }
    }

    /// The documented tags of `mask` and the unknown ones (already
    /// lower-cased and distinct, as `Tags::unknown` gives them).
    pub fn from_parts(mask: u16, unknown: Vec<Box<str>>) -> Self {
        Tags {
            known: Tags::from_mask(mask).known,
            unknown: shared(unknown),
        }
    }

    /// The same set without the documented tags in `mask`.
    pub fn without(&self, mask: u16) -> Tags {
        Tags {
            known: self.known & !mask,
            unknown: self.unknown.clone(),
        }
    }

    /// The documented tags' mask and the shared unknown ones: a set taken
    /// apart for the verdict cache's compact slot ...
    pub(crate) fn into_parts(self) -> (u16, Option<UnknownTags>) {
        (self.known, self.unknown)
    }

    /// ... and put back together.
    pub(crate) fn from_shared_parts(known: u16, unknown: Option<UnknownTags>) -> Self {
        Tags { known, unknown }
    }

    /// Only the unknown tags of `tags`.
    pub fn unknown_only(tags: &Tags) -> Self {
        Tags {
            known: 0,
            unknown: tags.unknown.clone(),
        }
    }

    /// Parses an RT body: tags one a line (LF or CRLF), whitespace trimmed,
    /// case-insensitive, blank lines ignored, duplicates collapsed.
    pub fn parse(body: &str) -> Result<Self, VerdictError> {
        let mut known = 0u16;
        let mut unknown: Vec<Box<str>> = Vec::new();
        for line in body.split('\n') {
            let tag = line.trim();
            if tag.is_empty() {
                continue;
            }
            if tag.len() > MAX_TAG_LEN {
                return Err(VerdictError::LineTooLong);
            }
            if let Some(t) = Tag::from_wire(tag) {
                known |= t.bit();
                continue;
            }
            if !tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'_' | b'-' | b'.' | b':'))
            {
                return Err(VerdictError::BadCharacter);
            }
            let lower = tag.to_ascii_lowercase();
            if !unknown.iter().any(|u| **u == *lower) {
                unknown.push(lower.into_boxed_str());
            }
        }
        Ok(Tags {
            known,
            unknown: shared(unknown),
        })
    }

    pub fn is_clean(&self) -> bool {
        self.known == 0 && self.unknown.is_none()
    }

    pub fn contains(&self, tag: Tag) -> bool {
        self.known & tag.bit() != 0
    }

    /// Bit mask of the documented tags present.
    pub fn known_mask(&self) -> u16 {
        self.known
    }

    /// Unknown tags, lower-cased, in order of first appearance.
    pub fn unknown(&self) -> &[Box<str>] {
        self.unknown.as_deref().map_or(&[], |u| &**u)
    }

    pub fn known(&self) -> impl Iterator<Item = Tag> + '_ {
        Tag::ALL.into_iter().filter(|t| self.contains(*t))
    }

    /// All tags in stable order: documented ones first, then unknown ones.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.known()
            .map(|t| -> &str { t.as_str() })
            .chain(self.unknown().iter().map(|s| &**s))
    }

    pub fn len(&self) -> usize {
        self.known.count_ones() as usize + self.unknown().len()
    }

    pub fn is_empty(&self) -> bool {
        self.is_clean()
    }

    /// Union of two sets.
    pub fn merge(&self, other: &Tags) -> Tags {
        let mut unknown: Vec<Box<str>> = self.unknown().to_vec();
        for u in other.unknown() {
            if !unknown.contains(u) {
                unknown.push(u.clone());
            }
        }
        Tags {
            known: self.known | other.known,
            unknown: shared(unknown),
        }
    }

    /// Writes the set the way RT does: one tag a line, LF separated.
    pub fn write_rt(&self, out: &mut String) {
        for (i, t) in self.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(t);
        }
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for t in self.iter() {
            seq.serialize_element(t)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_two_words() {
        assert_eq!(std::mem::size_of::<Tags>(), 16);
    }

    #[test]
    fn empty_body_is_clean() {
        assert!(Tags::parse("").unwrap().is_clean());
        assert!(Tags::parse("\n\r\n  \n").unwrap().is_clean());
    }

    #[test]
    fn crlf_case_and_whitespace_are_tolerated() {
        let t = Tags::parse("  Proxy\r\nDATACENTER\r\n\r\ndynamic Blacklist \n").unwrap();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            ["datacenter", "proxy", "dynamic blacklist"]
        );
    }

    #[test]
    fn order_is_documented_order_whatever_the_input_order() {
        let t = Tags::parse("attribution\nip\ndatacenter").unwrap();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            ["datacenter", "ip", "attribution"]
        );
    }

    #[test]
    fn all_ten_documented_tags_round_trip() {
        let body = Tag::ALL.map(Tag::as_str).join("\n");
        let t = Tags::parse(&body).unwrap();
        assert_eq!(t.len(), 10);
        let mut out = String::new();
        t.write_rt(&mut out);
        assert_eq!(out, body);
    }

    #[test]
    fn unknown_tags_are_kept_lowercased_and_deduplicated() {
        let t = Tags::parse("proxy\nNew-Signal\nnew-signal\nother").unwrap();
        assert!(t.contains(Tag::Proxy));
        assert_eq!(t.unknown().len(), 2);
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            ["proxy", "new-signal", "other"]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_tag() {
        assert_eq!(Tags::parse("<html><body>"), Err(VerdictError::BadCharacter));
        assert_eq!(Tags::parse(&"x".repeat(65)), Err(VerdictError::LineTooLong));
        assert_eq!(Tags::parse("a\u{0}b"), Err(VerdictError::BadCharacter));
    }

    #[test]
    fn merge_is_a_union() {
        let a = Tags::parse("proxy\nfoo").unwrap();
        let b = Tags::parse("crawler\nfoo\nbar").unwrap();
        assert_eq!(
            a.merge(&b).iter().collect::<Vec<_>>(),
            ["proxy", "crawler", "foo", "bar"]
        );
    }

    #[test]
    fn config_names_have_no_spaces() {
        assert_eq!(
            Tag::from_config_name("dynamic_blacklist"),
            Some(Tag::DynamicBlacklist)
        );
        assert_eq!(
            Tag::from_config_name("dynamic blacklist"),
            Some(Tag::DynamicBlacklist)
        );
        assert_eq!(Tag::from_config_name("nope"), None);
    }
}
