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
