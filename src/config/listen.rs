//! How the listeners speak: TLS on `server.listen` (`[server.tls]`) and
//! HTTP/2 (`[server.http2]`). Plain types here (config is a leaf); the
//! certificates are read and served by `crate::tls`, connections by
//! `crate::http::conn`.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `[server.tls]`: absent, `server.listen` speaks plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: String,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// How often the two files' modification times are looked at; a change
    /// loads them again (0: only on SIGHUP).
    #[serde(default = "d_reload_interval_s")]
    pub reload_interval_s: u64,
    /// A client must finish its TLS handshake within this long.
    #[serde(default = "d_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

fn d_reload_interval_s() -> u64 {
    10
}
fn d_handshake_timeout_ms() -> u64 {
    5000
}

impl TlsConfig {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// The shape only; the files are read by `crate::tls::check`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("server.tls.cert_file", &self.cert_file),
            ("server.tls.key_file", &self.key_file),
        ] {
            if v.trim().is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    "must name a PEM file when [server.tls] is set (remove the section for plain HTTP)",
                ));
            }
        }
        if self.handshake_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "server.tls.handshake_timeout_ms",
                "must be > 0",
            ));
        }
        Ok(())
    }
}

/// `[server.http2]`: HTTP/2 is spoken when TLS's ALPN picks `h2`, and on a
/// plain listener to clients that open with the HTTP/2 preface (h2c prior
/// knowledge) when `h2c` is on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Config {
    /// Accept h2c (HTTP/2 without TLS, prior knowledge) on plain listeners.
    #[serde(default)]
    pub h2c: bool,
    /// Streams (requests) one HTTP/2 connection may have open at once.
    #[serde(default = "d_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// A PING is sent on a connection idle this long; no answer within as
    /// long again closes it (0: never).
    #[serde(default = "d_keep_alive_interval_s")]
    pub keep_alive_interval_s: u64,
    /// A connection with no request in flight for this long is closed
    /// (GOAWAY), as an idle HTTP/1 one is by `header_read_timeout_ms`
    /// (0: never).
    #[serde(default = "d_idle_timeout_s")]
    pub idle_timeout_s: u64,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            h2c: false,
            max_concurrent_streams: d_max_concurrent_streams(),
            keep_alive_interval_s: d_keep_alive_interval_s(),
            idle_timeout_s: d_idle_timeout_s(),
        }
    }
}

fn d_max_concurrent_streams() -> u32 {
    128
}
fn d_keep_alive_interval_s() -> u64 {
    30
}
/// The longest `idle_timeout_s`: a day (0 turns it off).
const MAX_IDLE_TIMEOUT_S: u64 = 86_400;

/// nginx's `keepalive_timeout`, which it applies to HTTP/2 too.
fn d_idle_timeout_s() -> u64 {
    75
}

impl Http2Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::invalid(
                "server.http2.max_concurrent_streams",
                "must be > 0",
            ));
        }
        if self.idle_timeout_s > MAX_IDLE_TIMEOUT_S {
            return Err(ConfigError::invalid(
                "server.http2.idle_timeout_s",
                format!("must be at most {MAX_IDLE_TIMEOUT_S} (a day; 0: never)"),
            ));
        }
        Ok(())
    }

    pub fn keep_alive_interval(&self) -> Option<Duration> {
        (self.keep_alive_interval_s > 0).then(|| Duration::from_secs(self.keep_alive_interval_s))
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_s > 0).then(|| Duration::from_secs(self.idle_timeout_s))
    }
}
