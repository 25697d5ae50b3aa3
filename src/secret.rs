//! Secrets in config: printed as `[redacted]`, compared in constant time.

use std::fmt;

use serde::Deserialize;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

/// The shortest key [`Secret::weakness`] accepts.
pub const MIN_KEY_CHARS: usize = 16;

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it must go on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What makes this unfit as a key fraudgate checks (client, admin and
    /// report keys, the Redis hash key): the one strength rule for all of
    /// them. The answer never contains the key.
    pub fn weakness(&self) -> Option<&'static str> {
        let k = &self.0;
        if k.chars().count() < MIN_KEY_CHARS {
            const _: () = assert!(MIN_KEY_CHARS == 16, "the message names 16");
            Some("use at least 16 characters (e.g. openssl rand -hex 16)")
        } else if k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("no spaces or control characters: keys travel in headers")
        } else if k.chars().all(|c| k.starts_with(c)) {
            Some("one character repeated is not a key (e.g. openssl rand -hex 16)")
        } else {
            None
        }
    }

    /// Compares in time independent of where the strings differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let a = self.0.as_bytes();
        let mut diff = (a.len() ^ candidate.len()) as u8 | u8::from(a.len() != candidate.len());
        for (i, b) in candidate.iter().enumerate() {
            diff |= a.get(i).copied().unwrap_or(0) ^ b;
        }
        diff == 0 && !a.is_empty()
    }

    /// Every spelling in which the secret can go on the wire and come back
    /// in an error text or an echoed URL: as is, percent-encoded (query
    /// string form with `+` for a space, and strict, in either hex case)
    /// and JSON-escaped. Text shown to anyone is redacted of all of them.
    pub fn spellings(&self) -> Vec<String> {
        spellings_of(&self.0)
    }
}

/// [`Secret::spellings`] of a plain string (longest first, no repeats).
pub fn spellings_of(secret: &str) -> Vec<String> {
    if secret.is_empty() {
        return Vec::new();
    }
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let mut strict = String::new();
    for b in secret.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            strict.push(b as char);
        } else {
            strict.push_str(&format!("%{b:02X}"));
        }
    }
    let lower = lower_hex_escapes(&strict);
    let form_lower = lower_hex_escapes(&form);
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(secret)
        .to_owned();
    // PHP's json_encode escapes '/'; HTML pages escape & < > " '.
    let php_json = json.replace('/', "\\/");
    let html = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    let mut all = vec![
        secret.to_owned(),
        form,
        form_lower,
        strict,
        lower,
        json,
        php_json,
        html,
    ];
    all.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    all.dedup();
    all
}

/// `%2f` for `%2F`: servers echo either.
fn lower_hex_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&esc.to_ascii_lowercase());
        rest = &rest[i + esc.len()..];
    }
    out.push_str(rest);
    out
}

/// Replaces every spelling of every secret in `text` with `[redacted]`.
pub fn redact(text: &str, spellings: &[String]) -> String {
    let mut t = std::borrow::Cow::Borrowed(text);
    for s in spellings {
        if !s.is_empty() && t.contains(s.as_str()) {
            t = std::borrow::Cow::Owned(t.replace(s.as_str(), "[redacted]"));
        }
    }
    t.into_owned()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Secrets given as a TOML array or a comma-separated string (env form).
#[derive(Debug, Clone, Default)]
pub struct SecretList(pub Vec<Secret>);

impl<'de> Deserialize<'de> for SecretList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<Secret>),
            One(Secret),
        }
        Ok(SecretList(match Form::deserialize(d)? {
            Form::List(v) => v.into_iter().filter(|s| !s.expose().is_empty()).collect(),
            Form::One(s) => s
                .expose()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Secret::new)
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_strength_rule_for_every_key() {
        use super::Secret;
        assert!(Secret::new("0123456789abcdef").weakness().is_none());
        assert!(Secret::new("short").weakness().unwrap().contains("16"));
        assert!(Secret::new("0123456789abcde").weakness().is_some());
        assert!(Secret::new("0123456789 abcdef").weakness().is_some());
        assert!(Secret::new("xxxxxxxxxxxxxxxxxxxx").weakness().is_some());
        // Characters, not bytes: 16 two-byte characters pass, 8 do not.
        assert!(Secret::new("ééééééééüüüüüüüü").weakness().is_none());
        assert!(Secret::new("éééééééé").weakness().is_some());
    }

    use super::*;

    #[test]
    fn every_spelling_of_a_secret_is_redacted() {
        let key = Secret::new("k3y/with+odd chars&=");
        let sp = key.spellings();
        for text in [
            "GET /?key=k3y/with+odd chars&=",
            "GET /?key=k3y%2Fwith%2Bodd+chars%26%3D",
            "GET /?key=k3y%2fwith%2bodd+chars%26%3d",
            "GET /?key=k3y%2Fwith%2Bodd%20chars%26%3D",
            "GET /?key=k3y%2fwith%2bodd%20chars%26%3d",
        ] {
            let r = redact(text, &sp);
            assert_eq!(r, "GET /?key=[redacted]", "{text}");
        }
        for text in [
            "{\"key\":\"k3y\\/with+odd chars&=\"}",
            "<td>k3y/with+odd chars&amp;=</td>",
        ] {
            assert!(!redact(text, &sp).contains("k3y"), "{text}");
        }
        assert!(Secret::new("").spellings().is_empty());
    }
}
