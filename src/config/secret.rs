//! Secrets in config: printed as `[redacted]`, compared in constant time.

use std::fmt;

use serde::Deserialize;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it must go on the wire.
    pub fn expose(&self) -> &str {
        &self.0
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

/// Why the configuration could not be loaded. Always names the key or file.
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
