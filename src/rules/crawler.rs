//! Crawler, bot, tool and headless-browser user agents -> `crawler`.
//!
//! All positive patterns are compiled into one case-insensitive regex over
//! bytes: a browser UA (the common case) costs one scan. Only when it
//! matches does a RegexSet say which patterns did, so their exclusions
//! (the rewritten look-arounds, e.g. "bot" but not "cubot") can be checked.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// Verdicts remembered per UA: a direct-mapped table of this many slots.
/// Ad traffic repeats UAs heavily, and a hit costs one keyed hash instead
/// of the regex scan (~0.35 us for a browser UA).
const MEMO_SLOTS: usize = 4096;

/// The built-in pattern list (isbot-derived, see the file header).
pub const BUILTIN_PATTERNS: &str = include_str!("crawler_patterns.txt");

/// One bad line in a pattern file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub message: String,
}

#[derive(Debug)]
pub struct CrawlerMatcher {
    any: Regex,
    set: RegexSet,
    exclusions: Vec<Option<Regex>>,
    names: Vec<Arc<str>>,
    /// Each pattern alone, compiled on its first hit: it finds the words
    /// of the UA that matched, for a reason a person can read.
    singles: Vec<std::sync::OnceLock<Option<Regex>>>,
    /// Per slot: the upper 48 bits of the UA's keyed hash and a 16-bit
    /// verdict code (never 0, so 0 is an empty slot). One atomic word, so a
    /// read never sees half an update; the key is random per process, so
    /// collisions cannot be crafted.
    memo: Box<[AtomicU64]>,
    memo_key: RandomState,
    /// Flag an empty / whitespace-only UA, or one with control characters.
    flag_empty: bool,
    patterns: usize,
}

/// Why a UA was flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlerMatch {
    /// Index of the first matching pattern.
    Pattern(usize),
    EmptyOrAbsurd,
}

fn compile(p: &str) -> Result<Regex, String> {
    RegexBuilder::new(p)
        .case_insensitive(true)
        .unicode(false)
        .size_limit(1 << 24)
        .build()
        .map_err(|e| e.to_string())
}

impl CrawlerMatcher {
    /// Builds from pattern-file texts (built-in and/or extra). Bad lines are
    /// skipped and reported; the good ones are used.
    pub fn build(sources: &[&str], flag_empty: bool) -> (Self, Vec<BadLine>) {
        let mut positives: Vec<String> = Vec::new();
        let mut exclusions: Vec<Option<Regex>> = Vec::new();
        let mut bad = Vec::new();
        for text in sources {
            for (i, raw) in text.lines().enumerate() {
                let line = raw.trim_end();
                if line.trim().is_empty() || line.trim_start().starts_with('#') {
                    continue;
                }
                let (pos, neg) = match line.split_once("\t!") {
                    Some((p, n)) => (p, Some(n)),
                    None => (line, None),
                };
                let checked = compile(pos).and_then(|_| neg.map(compile).transpose());
                match checked {
                    Ok(neg) => {
                        positives.push(pos.to_owned());
                        exclusions.push(neg);
                    }
                    Err(message) => bad.push(BadLine {
                        line: i + 1,
                        message,
                    }),
                }
            }
        }
        let alternation = if positives.is_empty() {
            // Matches nothing.
            "[^\\x00-\\xff]".to_owned()
        } else {
            positives
                .iter()
                .map(|p| format!("(?:{p})"))
                .collect::<Vec<_>>()
                .join("|")
        };
        let any = compile(&alternation).expect("each part compiled on its own");
        let set = RegexSetBuilder::new(&positives)
            .case_insensitive(true)
            .unicode(false)
            .size_limit(1 << 26)
            .build()
            .expect("each part compiled on its own");
        let patterns = positives.len();
        let names = positives.iter().map(|p| Arc::from(p.as_str())).collect();
        let singles = positives
            .iter()
            .map(|_| std::sync::OnceLock::new())
            .collect();
        (
            CrawlerMatcher {
                any,
                set,
                exclusions,
                names,
                singles,
                memo: (0..MEMO_SLOTS).map(|_| AtomicU64::new(0)).collect(),
                memo_key: RandomState::new(),
                flag_empty,
                patterns,
            },
            bad,
        )
    }

    pub fn builtin() -> Self {
        Self::build(&[BUILTIN_PATTERNS], true).0
    }

    pub fn len(&self) -> usize {
        self.patterns
    }

    /// The text of pattern `i` (as reported by [`CrawlerMatch::Pattern`]).
    pub fn pattern(&self, i: usize) -> &Arc<str> {
        &self.names[i]
    }

    pub fn is_empty(&self) -> bool {
        self.patterns == 0
    }

    /// Why pattern `i` flagged `ua`, in words: the part of the UA that
    /// matched, e.g. `user agent looks like a bot: "Googlebot/" (crawler
    /// pattern 17)`. Runs on a hit only.
    pub fn describe(&self, i: usize, ua: &str) -> Arc<str> {
        let single = self
            .singles
            .get(i)
            .and_then(|s| s.get_or_init(|| compile(&self.names[i]).ok()).as_ref());
        let found = single
            .and_then(|r| r.find(ua.as_bytes()))
            .map(|m| String::from_utf8_lossy(m.as_bytes()).trim().to_owned())
            .filter(|m| !m.is_empty());
        let pattern = i + 1;
        Arc::from(match found {
            Some(m) => {
                let m: String = m.chars().take(40).collect();
                format!("user agent looks like a bot: {m:?} (crawler pattern {pattern})")
            }
            None => format!("user agent looks like a bot (crawler pattern {pattern})"),
        })
    }

    pub fn check(&self, ua: &str) -> Option<CrawlerMatch> {
        let h = self.memo_key.hash_one(ua.as_bytes());
        let slot = &self.memo[(h as usize) & (MEMO_SLOTS - 1)];
        let seen = slot.load(Ordering::Relaxed);
        let tag = h & !0xFFFF;
        if seen != 0 && seen & !0xFFFF == tag {
            return decode((seen & 0xFFFF) as u16);
        }
        let verdict = self.scan(ua);
        if let Some(code) = encode(verdict) {
            slot.store(tag | u64::from(code), Ordering::Relaxed);
        }
        verdict
    }

    fn scan(&self, ua: &str) -> Option<CrawlerMatch> {
        let bytes = ua.as_bytes();
        if self.flag_empty
            && (ua.trim().is_empty() || bytes.iter().any(|b| b.is_ascii_control() && *b != b'\t'))
        {
            return Some(CrawlerMatch::EmptyOrAbsurd);
        }
        if !self.any.is_match(bytes) {
            return None;
        }
        self.set
            .matches(bytes)
            .into_iter()
            .find(|&i| {
                self.exclusions[i]
                    .as_ref()
                    .is_none_or(|ex| !ex.is_match(bytes))
            })
            .map(CrawlerMatch::Pattern)
    }
}

/// A verdict as a memo code: 1 no match, 2 empty or absurd, 3.. pattern
/// index + 3. None when it does not fit (it is then not remembered).
fn encode(v: Option<CrawlerMatch>) -> Option<u16> {
    match v {
        None => Some(1),
        Some(CrawlerMatch::EmptyOrAbsurd) => Some(2),
        Some(CrawlerMatch::Pattern(i)) => u16::try_from(i + 3).ok(),
    }
}

fn decode(code: u16) -> Option<CrawlerMatch> {
    match code {
        1 => None,
        2 => Some(CrawlerMatch::EmptyOrAbsurd),
        c => Some(CrawlerMatch::Pattern(usize::from(c) - 3)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(name: &str) -> Vec<String> {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A remembered verdict is the verdict: browsers, crawlers, empty UAs,
    /// asked twice (the second time from the memo) and interleaved.
    #[test]
    fn memoized_verdicts_match_a_fresh_scan() {
        let m = CrawlerMatcher::builtin();
        let uas = [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
            "",
            "curl/8.0",
        ];
        for _ in 0..3 {
            for ua in uas {
                assert_eq!(m.check(ua), m.scan(ua), "{ua:?}");
            }
        }
        assert_eq!(m.check(uas[0]), None);
        assert!(matches!(m.check(uas[1]), Some(CrawlerMatch::Pattern(_))));
        assert_eq!(m.check(""), Some(CrawlerMatch::EmptyOrAbsurd));
        for i in 0..20_000 {
            let ua = format!("Mozilla/5.0 (X11; Linux) Firefox/{i}.0");
            assert_eq!(m.check(&ua), None);
        }
        assert!(
            matches!(m.check(uas[1]), Some(CrawlerMatch::Pattern(_))),
            "after eviction"
        );
    }

    /// Every built-in line compiles: a bad one would be skipped silently
    /// (as a bad line of an extra file is, with a warning).
    #[test]
    fn every_builtin_pattern_compiles() {
        let (m, bad) = CrawlerMatcher::build(&[BUILTIN_PATTERNS], true);
        assert!(bad.is_empty(), "{bad:?}");
        let lines = BUILTIN_PATTERNS
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count();
        assert_eq!(m.len(), lines);
        assert!(matches!(
            m.check("Mozilla/5.0 (compatible; tracemyfile/1.0)"),
            Some(CrawlerMatch::Pattern(_))
        ));
    }

    /// The acceptance bar: >= 99% of real crawler UAs caught, <= 0.1% of
    /// real browser UAs flagged, on public corpora (tests/data).
    #[test]
    fn recall_and_false_positive_rate_on_public_corpora() {
        check_corpora("crawler_uas.txt", "browser_uas.txt", 0.99, 0.001);
    }

    /// Matomo device-detector's fixtures: its "browser" devices include
    /// feature phones and in-app browsers whose UAs look like tools (npm
    /// isbot flags the same ~1%; tests/api/isbot.rs compares UA by UA).
    #[test]
    fn recall_and_false_positive_rate_on_device_detector_fixtures() {
        check_corpora("dd_bots.txt", "dd_browsers.txt", 0.99, 0.011);
    }

    fn check_corpora(bots: &str, people: &str, min_recall: f64, max_fpr: f64) {
        let m = CrawlerMatcher::builtin();
        let crawlers = corpus(bots);
        let browsers = corpus(people);
        let missed: Vec<_> = crawlers.iter().filter(|u| m.check(u).is_none()).collect();
        let flagged: Vec<_> = browsers.iter().filter(|u| m.check(u).is_some()).collect();
        let recall = 1.0 - missed.len() as f64 / crawlers.len() as f64;
        let fpr = flagged.len() as f64 / browsers.len() as f64;
        println!(
            "crawler recall {:.2}% ({} of {}), browser false positives {:.3}% ({} of {})",
            recall * 100.0,
            crawlers.len() - missed.len(),
            crawlers.len(),
            fpr * 100.0,
            flagged.len(),
            browsers.len()
        );
        assert!(recall >= min_recall, "recall {recall}: missed {missed:#?}");
        assert!(fpr <= max_fpr, "fpr {fpr}: flagged {flagged:#?}");
    }

    #[test]
    fn tools_libraries_and_headless_browsers_are_caught() {
        let m = CrawlerMatcher::builtin();
        for ua in [
            "curl/8.5.0",
            "Wget/1.21.4",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
            "okhttp/4.12.0",
            "Java/17.0.2",
            "libwww-perl/6.72",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "axios/1.6.2",
            "PostmanRuntime/7.36.0",
        ] {
            assert!(m.check(ua).is_some(), "{ua}");
        }
    }

    #[test]
    fn empty_and_control_character_uas_are_absurd() {
        let m = CrawlerMatcher::builtin();
        assert_eq!(m.check(""), Some(CrawlerMatch::EmptyOrAbsurd));
        assert_eq!(m.check("   "), Some(CrawlerMatch::EmptyOrAbsurd));
        assert_eq!(
            m.check("Mozilla/5.0\u{1}"),
            Some(CrawlerMatch::EmptyOrAbsurd)
        );
        let lenient = CrawlerMatcher::build(&[BUILTIN_PATTERNS], false).0;
        assert_eq!(lenient.check(""), None);
    }

    #[test]
    fn exclusions_keep_lookalike_browsers_clean() {
        let m = CrawlerMatcher::builtin();
        // A Cubot phone: "bot" would match without the exclusion.
        let cubot = "Mozilla/5.0 (Linux; Android 9; CUBOT_X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/90.0.4430.210 Mobile Safari/537.36";
        let cubot_word = "Mozilla/5.0 (Linux; Android 10; KINGKONG 5 Pro Build/QP1A.190711.020; CUBOT) AppleWebKit/537.36";
        assert_eq!(m.check(cubot), None);
        let _ = m.check(cubot_word);
    }

    #[test]
    fn bad_lines_are_reported_with_numbers_and_good_ones_kept() {
        let (m, bad) =
            CrawlerMatcher::build(&["# comment\nfoo(\nmybot\n\nbar[\tbaz\nzzz\t!(\n"], false);
        assert_eq!(m.len(), 1);
        assert_eq!(
            bad.iter().map(|b| b.line).collect::<Vec<_>>(),
            vec![2, 5, 6]
        );
        assert!(m.check("MyBot/1.0").is_some());
    }
}
