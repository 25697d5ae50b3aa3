//! 128-bit keyed hashing for compact map keys (cache, counters).
//!
//! Two independently keyed SipHash passes: callers control most hashed
//! input (UAs, ids), so collisions must not be craftable, and 128 bits make
//! accidental ones negligible at any capacity.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};

/// Random per-process keys for [`Hasher128::hash`].
#[derive(Debug, Default)]
pub struct Hasher128 {
    a: RandomState,
    b: RandomState,
}

/// Feeds the same bytes to both hashers.
pub struct Twin<H>(H, H);

impl<H: Hasher> Hasher for Twin<H> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl<H: Hasher> Twin<H> {
    pub fn finish128(&self) -> u128 {
        ((self.0.finish() as u128) << 64) | self.1.finish() as u128
    }
}

impl Hasher128 {
    pub fn new() -> Self {
        Self::default()
    }

    /// A hasher to feed several values into.
    pub fn start(&self) -> Twin<impl Hasher> {
        Twin(self.a.build_hasher(), self.b.build_hasher())
    }

    pub fn hash(&self, value: impl Hash) -> u128 {
        let mut h = self.start();
        value.hash(&mut h);
        h.finish128()
    }
}

/// A hash every process computes alike, for keys shared across replicas
/// (Redis): SHA-256 over length-prefixed parts, so parts cannot run into
/// each other.
pub struct StableHash(ring::digest::Context);

impl Default for StableHash {
    fn default() -> Self {
        StableHash(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl StableHash {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn part(&mut self, text: &str) {
        self.0.update(&(text.len() as u64).to_le_bytes());
        self.0.update(text.as_bytes());
    }

    /// The first `bytes` bytes of the digest, as lowercase hex.
    pub fn hex(self, bytes: usize) -> String {
        hex(&self.0.finish().as_ref()[..bytes])
    }
}

/// A keyed hash every replica computes alike (HMAC-SHA256 under
/// `redis.hash_key`): for the names of shared keys that carry an IP or a
/// UA. An IPv4 address is recovered from its plain SHA-256 in seconds by
/// trying them all; without the key it is not.
#[derive(Clone)]
pub struct KeyedHash(ring::hmac::Key);

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash([redacted])")
    }
}

impl KeyedHash {
    pub fn new(secret: &[u8]) -> Self {
        KeyedHash(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }

    /// A hash to feed parts into.
    pub fn start(&self) -> KeyedParts {
        KeyedParts(ring::hmac::Context::with_key(&self.0))
    }

    /// The first `bytes` bytes of one text's hash, as lowercase hex.
    pub fn hex_of(&self, text: &str, bytes: usize) -> String {
        let mut h = self.start();
        h.part(text);
        h.hex(bytes)
    }
}

pub struct KeyedParts(ring::hmac::Context);

impl KeyedParts {
    /// Length-prefixed, so parts cannot run into each other.
    pub fn part(&mut self, text: &str) {
        self.0.update(&(text.len() as u64).to_le_bytes());
        self.0.update(text.as_bytes());
    }

    pub fn hex(self, bytes: usize) -> String {
        hex(&self.0.sign().as_ref()[..bytes])
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod keyed_tests {
    use super::*;

    #[test]
    fn the_keyed_hash_depends_on_the_key_and_keeps_parts_apart() {
        let a = KeyedHash::new(b"one shared secret");
        let b = KeyedHash::new(b"another secret");
        assert_eq!(a.hex_of("203.0.113.9", 16), a.hex_of("203.0.113.9", 16));
        assert_ne!(a.hex_of("203.0.113.9", 16), b.hex_of("203.0.113.9", 16));
        let mut plain = StableHash::new();
        plain.part("203.0.113.9");
        assert_ne!(a.hex_of("203.0.113.9", 16), plain.hex(16));
        let two = |x: &str, y: &str| {
            let mut h = a.start();
            h.part(x);
            h.part(y);
            h.hex(16)
        };
        assert_ne!(two("ab", "c"), two("a", "bc"));
    }
}
