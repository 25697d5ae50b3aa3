//! Redirect URL templates of `/click` offers: `https://adv.example/l?c={click_id}`.
//!
//! A template is parsed once, at startup: known macros only, an absolute
//! http(s) URL, and macros only in the path, query or fragment. A macro in
//! the scheme, userinfo, host or port would let a request choose where a
//! click is sent (`https://{aff_sub1}/` with `aff_sub1=evil.example`), so
//! such a template is refused. Values are percent-encoded RFC 3986-style:
//! everything but the unreserved characters `A-Z a-z 0-9 - . _ ~` (a space
//! is `%20`, never `+`, which `decodeURIComponent` would leave as `+`).

use std::fmt::Write;

/// A value a template can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Macro {
    ClickId,
    OfferId,
    AffiliateId,
    AffSub1,
    AffSub2,
    AffSub3,
    AffSub4,
    AffSub5,
    Ip,
}

impl Macro {
    pub const ALL: [Macro; 9] = [
        Macro::ClickId,
        Macro::OfferId,
        Macro::AffiliateId,
        Macro::AffSub1,
        Macro::AffSub2,
        Macro::AffSub3,
        Macro::AffSub4,
        Macro::AffSub5,
        Macro::Ip,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Macro::ClickId => "click_id",
            Macro::OfferId => "offer_id",
            Macro::AffiliateId => "affiliate_id",
            Macro::AffSub1 => "aff_sub1",
            Macro::AffSub2 => "aff_sub2",
            Macro::AffSub3 => "aff_sub3",
            Macro::AffSub4 => "aff_sub4",
            Macro::AffSub5 => "aff_sub5",
            Macro::Ip => "ip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Macro(Macro),
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed {{")]
    Unclosed,
    #[error(
        "unknown macro {{{0}}}; known: click_id, offer_id, affiliate_id, aff_sub1..aff_sub5, ip"
    )]
    Unknown(String),
    #[error(
        "macro {{{0}}} stands in the scheme, userinfo, host or port: a request could choose where \
         clicks go; macros may only stand in the path, query or fragment"
    )]
    InAuthority(&'static str),
    #[error("must be an absolute http(s) URL with a host ({0})")]
    NotAbsolute(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    parts: Vec<Part>,
}

impl UrlTemplate {
    pub fn parse(t: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = t;
        // First by the text: a macro before the end of `scheme://authority`.
        let authority_end = t
            .find("://")
            .map(|i| i + 3)
            .and_then(|a| t[a..].find(['/', '?', '#']).map(|p| a + p))
            .unwrap_or(t.len());
        let mut at = 0;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or(TemplateError::Unclosed)?;
            let name = &after[..close];
            let m = Macro::ALL
                .into_iter()
                .find(|m| m.name() == name)
                .ok_or_else(|| TemplateError::Unknown(name.to_owned()))?;
            if at + open < authority_end {
                return Err(TemplateError::InAuthority(m.name()));
            }
            parts.push(Part::Macro(m));
            at += open + close + 2;
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let template = UrlTemplate { parts };
        // Then by the parser: where each macro lands is decided by a URL parser (the WHATWG
        // rules browsers follow), not by scanning the text: fill every
        // macro with a marker of its own and see which markers end up in
        // the scheme, userinfo, host or port. (`https:///{aff_sub1}/x`
        // looks like a path, but `{aff_sub1}` is the host.)
        let marker = |m: Macro| format!("fgmacro{}z", m as usize);
        let sample = template.render_owned(marker);
        let url =
            reqwest::Url::parse(&sample).map_err(|e| TemplateError::NotAbsolute(e.to_string()))?;
        let authority = format!(
            "{} {} {} {} {}",
            url.scheme(),
            url.username(),
            url.password().unwrap_or(""),
            url.host_str().unwrap_or(""),
            url.port().map(|p| p.to_string()).unwrap_or_default()
        )
        .to_ascii_lowercase();
        for p in &template.parts {
            if let Part::Macro(m) = p
                && authority.contains(&marker(*m))
            {
                return Err(TemplateError::InAuthority(m.name()));
            }
        }
        // A macro that merges with the host's text also moves it: the
        // host with markers must equal the host with other markers.
        let other = template.render_owned(|m| format!("other{}q", m as usize));
        let other_host = reqwest::Url::parse(&other)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        if other_host.as_deref() != url.host_str() || url.host_str().is_none_or(str::is_empty) {
            let first = template.parts.iter().find_map(|p| match p {
                Part::Macro(m) => Some(m.name()),
                Part::Text(_) => None,
            });
            return match (first, url.host_str().is_none_or(str::is_empty)) {
                (_, true) => Err(TemplateError::NotAbsolute("no host".into())),
                (Some(m), false) => Err(TemplateError::InAuthority(m)),
                (None, false) => Err(TemplateError::NotAbsolute("no host".into())),
            };
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TemplateError::NotAbsolute(format!(
                "scheme {}",
                url.scheme()
            )));
        }
        Ok(template)
    }

    fn render_owned(&self, value: impl Fn(Macro) -> String) -> String {
        let mut out = String::with_capacity(128);
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Macro(m) => out.push_str(&value(*m)),
            }
        }
        out
    }

    /// Fills the macros with `value(m)` (absent: empty), percent-encoded.
    pub fn render<'a>(&self, value: impl Fn(Macro) -> Option<&'a str>) -> String {
        let mut out = String::with_capacity(128);
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Macro(m) => encode_into(&mut out, value(*m).unwrap_or("")),
            }
        }
        out
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        assert!(UrlTemplate::parse("https://adv.example/l?c={click_id}&s={aff_sub1}").is_ok());
        assert!(UrlTemplate::parse("https://adv.example/{offer_id}#{aff_sub2}").is_ok());
        assert!(UrlTemplate::parse("https://adv.example?s={aff_sub1}").is_ok());
        assert_eq!(
            UrlTemplate::parse("https://adv.example/?x={nope}"),
            Err(TemplateError::Unknown("nope".into()))
        );
        assert_eq!(
            UrlTemplate::parse("https://adv.example/?x={click_id"),
            Err(TemplateError::Unclosed)
        );
        assert!(UrlTemplate::parse("/relative").is_err());
        assert!(UrlTemplate::parse("javascript:alert(1)").is_err());
    }

    #[test]
    fn a_macro_in_scheme_userinfo_host_or_port_is_refused() {
        for (t, m) in [
            ("https://{aff_sub1}/landing", "aff_sub1"),
            ("https://{aff_sub1}.example/", "aff_sub1"),
            ("https://adv.{offer_id}/", "offer_id"),
            ("https://{aff_sub2}@adv.example/", "aff_sub2"),
            ("https://adv.example:{aff_sub3}/", "aff_sub3"),
            ("{aff_sub4}://adv.example/", "aff_sub4"),
            ("https://adv.example{ip}", "ip"),
            // An empty authority: the parser takes the macro as the host.
            ("https:///{aff_sub1}/x", "aff_sub1"),
            ("https:/{aff_sub1}/x", "aff_sub1"),
            ("https:\\\\{aff_sub1}/x", "aff_sub1"),
            ("https://adv.example/x", ""),
        ] {
            if m.is_empty() {
                assert!(UrlTemplate::parse(t).is_ok(), "{t}");
                continue;
            }
            assert_eq!(
                UrlTemplate::parse(t),
                Err(TemplateError::InAuthority(m)),
                "{t}"
            );
        }
    }

    #[test]
    fn values_are_percent_encoded_rfc3986_style() {
        let t = UrlTemplate::parse("https://a.example/p/{aff_sub1}?s={aff_sub2}").unwrap();
        let out = t.render(|m| match m {
            Macro::AffSub1 => Some("a b/../c"),
            Macro::AffSub2 => Some("x&y=https://evil.example/ é+~"),
            _ => None,
        });
        assert_eq!(
            out,
            "https://a.example/p/a%20b%2F..%2Fc?s=x%26y%3Dhttps%3A%2F%2Fevil.example%2F%20%C3%A9%2B~"
        );
        let url = reqwest::Url::parse(&out).unwrap();
        assert_eq!(url.host_str(), Some("a.example"));
    }
}
