//! The served certificate: read from `server.tls.cert_file` and `key_file`,
//! held in an `ArcSwap` that every new handshake reads, and swapped when
//! the files change. A handshake under way, and every connection already
//! made, keep the certificate they started with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate or key that cannot be served, with the config key of the
/// file at fault. Never holds the key's bytes.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct CertError {
    pub key: &'static str,
    pub message: String,
}

const CERT_KEY: &str = "server.tls.cert_file";
const KEY_KEY: &str = "server.tls.key_file";

/// Reads and checks a certificate chain and its key (blocking file I/O:
/// call at startup or on the blocking pool).
pub fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, CertError> {
    let err = |key, message: String| CertError { key, message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect())
        .map_err(|e| {
            err(
                CERT_KEY,
                format!("cannot read {}: {}", cert_file.display(), pem_error(&e)),
            )
        })?;
    if certs.is_empty() {
        return Err(err(
            CERT_KEY,
            format!("{} holds no CERTIFICATE block", cert_file.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        err(
            KEY_KEY,
            format!("cannot read {}: {}", key_file.display(), pem_error(&e)),
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        err(
            KEY_KEY,
            format!("{}: unsupported private key ({e})", key_file.display()),
        )
    })?;
    let certified = CertifiedKey::new(certs, signer);
    certified.keys_match().map_err(|_| {
        err(
            KEY_KEY,
            format!(
                "the key in {} does not match the certificate in {}",
                key_file.display(),
                cert_file.display()
            ),
        )
    })?;
    Ok(certified)
}

/// The PEM parser's error in words; its Base64 variant says where, never what.
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM block of the expected kind".into(),
        Error::MissingSectionEnd { .. } => "a PEM block has no END line".into(),
        Error::IllegalSectionStart { .. } => "a malformed BEGIN line".into(),
        Error::Base64Decode(_) => "a PEM block is not valid base64".into(),
        _ => "not valid PEM".into(),
    }
}

/// What a file looked like when last read: a change of either reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Stamp {
    cert: Option<(SystemTime, u64)>,
    key: Option<(SystemTime, u64)>,
}

fn stamp_of(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The files had not changed (a polled reload only).
    Unchanged,
    /// New handshakes now get the files' certificate.
    Swapped,
}

/// The certificate every new handshake gets, and its files.
pub struct Certs {
    current: ArcSwap<CertifiedKey>,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// Only touched on the blocking pool, by one reload at a time.
    seen: Mutex<Stamp>,
}

impl fmt::Debug for Certs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certs")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl Certs {
    /// Reads the files (blocking), refusing what cannot be served.
    pub fn open(cert_file: &Path, key_file: &Path) -> Result<Self, CertError> {
        let seen = Stamp {
            cert: stamp_of(cert_file),
            key: stamp_of(key_file),
        };
        let first = load(cert_file, key_file)?;
        Ok(Certs {
            current: ArcSwap::from_pointee(first),
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            seen: Mutex::new(seen),
        })
    }

    /// Reads the files again when they changed since last read (or always,
    /// with `force`), and serves them if they are sound. Blocking: run on
    /// the blocking pool.
    pub fn reload(&self, force: bool) -> Result<Reloaded, CertError> {
        let now = Stamp {
            cert: stamp_of(&self.cert_file),
            key: stamp_of(&self.key_file),
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !force && *seen == now {
            return Ok(Reloaded::Unchanged);
        }
        // Remembered even when the files are bad: a broken pair is
        // reported once, and read again when either changes.
        *seen = now;
        drop(seen);
        let fresh = load(&self.cert_file, &self.key_file)?;
        self.current.store(Arc::new(fresh));
        Ok(Reloaded::Swapped)
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// The served chain's first certificate (what a client is shown).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
