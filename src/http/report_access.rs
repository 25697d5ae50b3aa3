//! Who may read the decision log (`/v1/data`, `/v1/reports`): a report
//! key as `key=` (the FraudScore Data API convention), `X-Api-Key` or
//! `Authorization: Bearer`; an admin key in a header only (a key in a URL
//! ends up in access logs and browser history).
//!
//! With no report or admin keys configured, the reports answer a *local*
//! request only, decided per request, never by the listen address: behind
//! a proxy on the same host every internet request arrives from 127.0.0.1,
//! and a web page can reach a loopback port through DNS rebinding. Local
//! means a loopback peer, no proxy header and a loopback `Host`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::config::{AuthConfig, Secret};

pub struct ReportAccess {
    report: Vec<Secret>,
    admin: Vec<Secret>,
    /// `auth.report_users`: report keys that carry a user id.
    users: Vec<(Secret, Arc<str>)>,
    /// `auth.local_reports`.
    local: bool,
}

/// The user id of the report key a request presented
/// (`auth.report_users`; request extension): Fraudshield's `user_id`
/// must name it.
#[derive(Debug, Clone)]
pub struct ReportUser(pub Arc<str>);

impl ReportAccess {
    pub fn new(auth: &AuthConfig) -> Self {
        ReportAccess {
            report: auth.report_keys.0.clone(),
            admin: auth.admin_keys.0.clone(),
            users: auth
                .report_users
                .iter()
                .map(|(user, key)| (key.clone(), Arc::from(user.as_str())))
                .collect(),
            local: auth.local_reports,
        }
    }

    fn keyless(&self) -> bool {
        self.report.is_empty() && self.admin.is_empty() && self.users.is_empty()
    }

    /// The user whose report key this is, every key compared in constant
    /// time; `Some(None)` for a report key without a user.
    fn report_key(&self, presented: &[u8]) -> Option<Option<Arc<str>>> {
        let user = self.users.iter().fold(None, |found, (k, user)| {
            if k.matches(presented) {
                Some(user.clone())
            } else {
                found
            }
        });
        let plain = any_matches(&self.report, presented);
        match (user, plain) {
            (Some(u), _) => Some(Some(u)),
            (None, true) => Some(None),
            (None, false) => None,
        }
    }
}

/// Headers proxies and CDNs add: a request carrying one came through a
/// proxy, whatever its peer address says.
const PROXY_HEADERS: [&str; 12] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-prefix",
    "via",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
];

/// A request made on this host to this host: loopback peer, no proxy
/// header, `Host` a loopback name or address.
pub fn is_local(peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    if !peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
        return false;
    }
    if PROXY_HEADERS.iter().any(|h| headers.contains_key(*h)) {
        return false;
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(loopback_host)
}

/// `localhost`, `127.0.0.1`, `[::1]`, each with an optional port.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, "")) => addr,
            Some((addr, port)) if port.strip_prefix(':').is_some_and(valid_port) => addr,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

pub async fn require_report_key(
    State(access): State<Arc<ReportAccess>>,
    mut req: Request,
    next: Next,
) -> Response {
    if access.keyless() {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        if access.local && is_local(peer, req.headers()) {
            return next.run(req).await;
        }
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            if access.local {
                "a report key is needed: set auth.report_keys (or auth.admin_keys); without one the decision log answers only local requests (a loopback peer and Host, no proxy header)"
            } else {
                "a report key is needed: set auth.report_keys (or auth.admin_keys); keyless local requests are off (auth.local_reports = false)"
            },
        )
        .with_field("key")
        .into_response();
    }
    let found = match super::access::presented_key(&req, &[]) {
        // A header may carry either kind of key.
        Some(p) => {
            let admin = any_matches(&access.admin, &p);
            access.report_key(&p).or(admin.then_some(None))
        }
        // key= in the URL: report keys only.
        None => super::access::presented_key(&req, &["key", "api_token"])
            .and_then(|p| access.report_key(&p)),
    };
    if let Some(user) = found {
        if let Some(user) = user {
            req.extensions_mut().insert(ReportUser(user));
        }
        return next.run(req).await;
    }
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a report key is required: key= (api_token= on Fraudshield's paths), X-Api-Key or Authorization: Bearer (admin keys in a header only)",
    )
    .with_field("key")
    .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Every key compared, in constant time.
fn any_matches(keys: &[Secret], presented: &[u8]) -> bool {
    keys.iter()
        .fold(false, |found, k| k.matches(presented) | found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn local_is_a_loopback_peer_and_host_without_proxy_headers() {
        let lo: Option<SocketAddr> = Some("127.0.0.1:5000".parse().unwrap());
        let lo6: Option<SocketAddr> = Some("[::1]:5000".parse().unwrap());
        let far: Option<SocketAddr> = Some("192.0.2.1:5000".parse().unwrap());
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::1]",
            "LOCALHOST",
        ] {
            assert!(is_local(lo, &headers(&[("host", host)])), "{host}");
            assert!(is_local(lo6, &headers(&[("host", host)])), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "[::1]x",
            "[::1]8080",
            "localhost:+80",
            "localhost:99999",
        ] {
            assert!(!is_local(lo, &headers(&[("host", host)])), "{host}");
        }
        assert!(!is_local(lo, &headers(&[])), "no Host");
        assert!(!is_local(far, &headers(&[("host", "localhost")])));
        assert!(!is_local(None, &headers(&[("host", "localhost")])));
        for h in PROXY_HEADERS {
            let mut m = headers(&[("host", "localhost")]);
            m.insert(h, HeaderValue::from_static("203.0.113.9"));
            assert!(!is_local(lo, &m), "{h}");
        }
    }
}
