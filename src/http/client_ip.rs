//! The real client IP behind trusted proxies.
//!
//! The TCP peer is the client unless it is a trusted proxy
//! (`server.trusted_proxies`). For a trusted peer the client is read from
//! the one header that proxy sets (`server.client_ip_header`), and no
//! other: a header the proxy passes through untouched is the client's to
//! forge. `X-Forwarded-For` (the default) is walked from the right,
//! skipping trusted addresses; the first untrusted one is the client.
//! Any other header (`X-Real-IP`, `X-Envoy-External-Address`,
//! `CF-Connecting-IP`, ...) holds one address. Without a usable value the
//! peer itself is the client. Headers from an untrusted peer are ignored.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};

use crate::rules::ranges::Prefix;

#[derive(Debug, Clone)]
pub struct TrustedProxies {
    ranges: Vec<Prefix>,
    header: HeaderName,
}

impl Default for TrustedProxies {
    fn default() -> Self {
        TrustedProxies {
            ranges: Vec::new(),
            header: HeaderName::from_static("x-forwarded-for"),
        }
    }
}

impl TrustedProxies {
    /// `header` is the one a trusted proxy sets (case-insensitive).
    pub fn new(cidrs: &[String], header: &str) -> Result<Self, String> {
        Ok(TrustedProxies {
            ranges: cidrs
                .iter()
                .map(|c| Prefix::parse(c))
                .collect::<Result<_, _>>()?,
            header: HeaderName::try_from(header.trim().to_ascii_lowercase())
                .map_err(|_| format!("{header:?} is not a header name"))?,
        })
    }

    /// The header client IPs are read from.
    pub fn header(&self) -> &str {
        self.header.as_str()
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        if self.header != "x-forwarded-for" {
            return headers
                .get(&self.header)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_hop)
                .unwrap_or(peer);
        }
        let mut last_trusted = None;
        let hops = headers
            .get_all(&self.header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) if self.is_trusted(ip) => last_trusted = Some(ip),
                Some(ip) => return ip,
                // An unparsable hop: nothing left of it can be believed.
                None => break,
            }
        }
        // Every hop was trusted (an internal client): the leftmost one.
        last_trusted.unwrap_or(peer)
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let t = TrustedProxies::new(&["10.0.0.0/8".into()], "x-forwarded-for").unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(t.client_ip(ip("203.0.113.9"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn xff_is_walked_from_the_right_past_trusted_hops() {
        let t = TrustedProxies::new(
            &["10.0.0.0/8".into(), "192.168.0.0/16".into()],
            "X-Forwarded-For",
        )
        .unwrap();
        // Spoofed leftmost entry, real client, then two trusted proxies.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "192.168.1.1"),
        ]);
        assert_eq!(t.client_ip(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        let h = headers(&[("x-forwarded-for", "[2001:db8::5]:443, 10.1.1.1:80")]);
        assert_eq!(t.client_ip(ip("10.0.0.2"), &h), ip("2001:db8::5"));
        assert_eq!(
            t.client_ip(
                ip("::ffff:10.0.0.1"),
                &headers(&[("x-forwarded-for", "10.0.0.7")])
            ),
            ip("10.0.0.7"),
            "every hop trusted: the leftmost"
        );
    }

    #[test]
    fn only_the_configured_header_is_believed() {
        // nginx sets X-Real-IP and passes the client's own X-Forwarded-For on.
        let t = TrustedProxies::new(&["127.0.0.1/32".into()], "x-real-ip").unwrap();
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "198.51.100.1"),
        ]);
        assert_eq!(t.client_ip(ip("127.0.0.1"), &h), ip("198.51.100.1"));
        // With X-Forwarded-For configured, X-Real-IP is nobody's word.
        let t = TrustedProxies::new(&["127.0.0.1/32".into()], "x-forwarded-for").unwrap();
        assert_eq!(
            t.client_ip(ip("127.0.0.1"), &headers(&[("x-real-ip", "6.6.6.6")])),
            ip("127.0.0.1")
        );
        let t = TrustedProxies::new(&["127.0.0.1/32".into()], "x-envoy-external-address").unwrap();
        assert_eq!(
            t.client_ip(
                ip("127.0.0.1"),
                &headers(&[("x-envoy-external-address", "198.51.100.2")])
            ),
            ip("198.51.100.2")
        );
        assert_eq!(
            t.client_ip(
                ip("127.0.0.1"),
                &headers(&[("x-envoy-external-address", "garbage")])
            ),
            ip("127.0.0.1"),
            "unusable: the peer"
        );
        assert!(TrustedProxies::new(&[], "bad header").is_err());
    }
}
