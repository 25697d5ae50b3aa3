//! Invalid-traffic classes in the MRC's terms: general invalid traffic
//! (GIVT: found by lists and standard checks: data-center IPs, known
//! crawlers, block lists) and sophisticated invalid traffic (SIVT: invalid
//! proxies, hijacked or emulated devices, misrepresentation, abnormal
//! activity). Every decision gets a class and a category from the tags and
//! rules that fired, through a configurable mapping (`[ivt]`).
//!
//! GIVT wins over SIVT when both fire: the MRC has GIVT filtered first, by
//! the simpler means. Rules are looked at before tags, each in a fixed
//! order, and the first mapping of the winning class names the category.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decision::{RuleHit, RuleKind};
use crate::verdict::{Tag, Tags};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IvtClass {
    Givt,
    Sivt,
    None,
}

impl IvtClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            IvtClass::Givt => "givt",
            IvtClass::Sivt => "sivt",
            IvtClass::None => "none",
        }
    }
}

/// One mapping: class and category.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IvtEntry {
    pub class: IvtClass,
    pub category: String,
}

/// `[ivt]`: tag (config spelling) or rule kind -> class and category.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IvtConfig {
    pub tags: BTreeMap<String, IvtEntry>,
    pub rules: BTreeMap<String, IvtEntry>,
}

/// The mapping, resolved to arrays for the hot path.
#[derive(Debug, Clone)]
pub struct IvtMap {
    tags: [Option<(IvtClass, Box<str>)>; Tag::ALL.len()],
    rules: [Option<(IvtClass, Box<str>)>; RuleKind::ALL.len()],
    /// Rule kinds in shadow mode, as bits: no class from them.
    shadow: u32,
}

/// What a decision is, in MRC terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ivt {
    pub class: IvtClass,
    /// Empty when the class is none.
    pub category: Box<str>,
}

impl IvtMap {
    pub fn new(c: &IvtConfig) -> Result<Self, String> {
        let mut tags: [Option<(IvtClass, Box<str>)>; Tag::ALL.len()] = Default::default();
        for (name, e) in &c.tags {
            let t = Tag::from_config_name(name).ok_or_else(|| {
                format!("ivt.tags.{name}: not one of the ten RT tags (dynamic blacklist is dynamic_blacklist)")
            })?;
            tags[t as usize] = Some((e.class, e.category.as_str().into()));
        }
        let mut rules: [Option<(IvtClass, Box<str>)>; RuleKind::ALL.len()] = Default::default();
        for (name, e) in &c.rules {
            let k = RuleKind::ALL
                .into_iter()
                .find(|k| k.as_str() == name)
                .ok_or_else(|| {
                    let kinds: Vec<&str> = RuleKind::ALL.iter().map(|k| k.as_str()).collect();
                    format!("ivt.rules.{name}: not a rule kind ({})", kinds.join(", "))
                })?;
            rules[k as usize] = Some((e.class, e.category.as_str().into()));
        }
        Ok(IvtMap {
            tags,
            rules,
            shadow: 0,
        })
    }

    /// Leaves rule kinds in shadow mode (`policy.shadow_rules` as bits)
    /// out of the class: they decided nothing.
    pub fn with_shadow(mut self, mask: u32) -> Self {
        self.shadow = mask;
        self
    }

    /// The class of a decision with these rules fired and tags seen. An
    /// allow-list hit is never invalid traffic.
    pub fn classify(&self, rules: &[RuleHit], tags: &Tags) -> Ivt {
        if rules.iter().any(|r| r.kind == RuleKind::AllowList) {
            return Ivt::none();
        }
        let mut best: Option<(IvtClass, &str)> = None;
        let candidates = rules
            .iter()
            .filter(|r| self.shadow & (1 << (r.kind as u32)) == 0)
            .filter_map(|r| self.rules[r.kind as usize].as_ref())
            .chain(tags.known().filter_map(|t| self.tags[t as usize].as_ref()));
        for (class, category) in candidates {
            if *class != IvtClass::None && best.is_none_or(|(b, _)| *class < b) {
                best = Some((*class, category));
            }
        }
        match best {
            Some((class, category)) => Ivt {
                class,
                category: category.into(),
            },
            None => Ivt::none(),
        }
    }
}

impl Ivt {
    pub fn none() -> Self {
        Ivt {
            class: IvtClass::None,
            category: "".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn map() -> IvtMap {
        IvtMap::new(&crate::Config::default().ivt).unwrap()
    }

    fn hit(kind: RuleKind) -> RuleHit {
        RuleHit {
            kind,
            name: Arc::from("x"),
            tag: None,
            reason: None,
        }
    }

    #[test]
    fn the_default_mapping_speaks_mrc() {
        let m = map();
        let t = |s: &str| Tags::parse(s).unwrap();
        assert_eq!(m.classify(&[], &t("datacenter")).class, IvtClass::Givt);
        assert_eq!(&*m.classify(&[], &t("proxy")).category, "invalid_proxy");
        assert_eq!(m.classify(&[], &t("proxy")).class, IvtClass::Sivt);
        assert_eq!(m.classify(&[], &t("")), Ivt::none());
        // GIVT wins over SIVT.
        assert_eq!(m.classify(&[], &t("proxy\ncrawler")).class, IvtClass::Givt);
        assert_eq!(
            &*m.classify(&[hit(RuleKind::CrawlerUa)], &t("crawler"))
                .category,
            "known_crawler"
        );
        assert_eq!(
            m.classify(&[hit(RuleKind::AllowList)], &t("datacenter")),
            Ivt::none(),
            "allow-listed traffic is not IVT"
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        let mut c = crate::Config::default().ivt;
        c.tags.insert(
            "nope".into(),
            IvtEntry {
                class: IvtClass::Givt,
                category: "x".into(),
            },
        );
        assert!(IvtMap::new(&c).unwrap_err().contains("ivt.tags.nope"));
    }
}
