//! Checks that need more than types: ranges, cross-field rules, files and
//! templates that must parse. Every error names its key.

use super::{Config, ConfigError};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.log.validate()?;
        self.upstream.validate()?;
        self.cache.validate()?;
        self.server.validate()?;
        crate::policy::Policy::from_config(&self.policy)?;
        self.rules.validate()?;
        self.auth.validate(&self.server)?;
        self.doors.validate()?;
        self.validate_listeners()?;
        validate_offers(&self.offers)?;
        crate::decision_log::IvtMap::new(&self.ivt).map_err(|m| {
            let key = m.split(':').next().unwrap_or("ivt").to_owned();
            ConfigError::invalid(key, m)
        })?;
        self.decision_log.validate()?;
        self.funnel.validate()?;
        self.redis
            .validate()
            .map_err(|(key, m)| ConfigError::invalid(key, m))?;
        self.validate_feeds()
    }

    /// The gRPC door's address is neither of the HTTP listeners'. (That
    /// `admin_listen` is not `listen` is the server section's check.)
    fn validate_listeners(&self) -> Result<(), ConfigError> {
        let Some(grpc) = self.doors.grpc.listen else {
            return Ok(());
        };
        let taken = [
            ("server.listen", Some(self.server.listen)),
            ("server.admin_listen", self.server.admin_listen),
        ];
        for (key, other) in taken {
            if other.is_some_and(|o| same_port(grpc, o)) {
                return Err(ConfigError::invalid(
                    "doors.grpc.listen",
                    format!("{grpc} is {key}'s address: the gRPC door needs a port of its own"),
                ));
            }
        }
        Ok(())
    }

    fn validate_feeds(&self) -> Result<(), ConfigError> {
        let mut names: Vec<&str> = self.rules.lists.iter().map(|l| l.name.as_str()).collect();
        for (i, f) in self.feeds.iter().enumerate() {
            f.validate(i)?;
            if names.contains(&f.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("feeds[{i}].name"),
                    format!(
                        "{:?} is already a list or feed name: a feed fills a block list of its own name",
                        f.name
                    ),
                ));
            }
            names.push(&f.name);
            let path = f.state_path();
            if self.feeds[..i].iter().any(|o| o.state_path() == path) {
                return Err(ConfigError::invalid(
                    format!("feeds[{i}].state_file"),
                    "two feeds cannot share a state file",
                ));
            }
        }
        if !self.feeds.is_empty() && !self.rules.enabled {
            return Err(ConfigError::invalid(
                "rules.enabled",
                "feeds fill block lists of the local rules: rules.enabled must be true when [[feeds]] are configured",
            ));
        }
        Ok(())
    }
}

impl super::LogConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        log_level(&self.level).map_err(|m| ConfigError::invalid("log.level", m))?;
        for (key, bad, says) in [
            (
                "log.max_file_mb",
                self.max_file_mb == 0,
                "must be at least 1",
            ),
            ("log.keep_files", self.keep_files == 0, "must be at least 1"),
            (
                "log.max_line_bytes",
                self.max_line_bytes < 512,
                "must be at least 512",
            ),
        ] {
            if bad {
                return Err(ConfigError::invalid(key, says));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map_err(|e| ConfigError::invalid("log.level", e.to_string()))?;
        Ok(())
    }
}

impl super::ServerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_batch == 0 {
            return Err(ConfigError::invalid("server.max_batch", "must be > 0"));
        }
        if self.max_header_bytes < 8192 {
            return Err(ConfigError::invalid(
                "server.max_header_bytes",
                "must be at least 8192",
            ));
        }
        for (key, zero) in [
            ("server.max_concurrency", self.max_concurrency == 0),
            (
                "server.header_read_timeout_ms",
                self.header_read_timeout_ms == 0,
            ),
            ("server.write_timeout_ms", self.write_timeout_ms == 0),
            ("server.max_json_depth", self.max_json_depth == 0),
        ] {
            if zero {
                return Err(ConfigError::invalid(key, "must be > 0"));
            }
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "server.request_timeout_ms",
                "must be > 0",
            ));
        }
        if self.worker_threads > 1024 {
            return Err(ConfigError::invalid(
                "server.worker_threads",
                "must be at most 1024 (0 = one per core)",
            ));
        }
        if self.idle_spin_us > 200 {
            return Err(ConfigError::invalid(
                "server.idle_spin_us",
                "must be at most 200 (0 = sleep at once)",
            ));
        }
        for (i, p) in self.trusted_proxies.iter().enumerate() {
            crate::rules::ranges::Prefix::parse(p)
                .map_err(|m| ConfigError::invalid(format!("server.trusted_proxies[{i}]"), m))?;
        }
        axum::http::HeaderName::try_from(self.client_ip_header.trim().to_ascii_lowercase())
            .map_err(|_| {
                ConfigError::invalid(
                    "server.client_ip_header",
                    format!("{:?} is not a header name", self.client_ip_header),
                )
            })?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        self.http2.validate()?;
        if let Some(admin) = self.admin_listen
            && same_port(admin, self.listen)
        {
            return Err(ConfigError::invalid(
                "server.admin_listen",
                format!(
                    "{admin} is server.listen's address: the operator's endpoints need a port of their own"
                ),
            ));
        }
        Ok(())
    }
}

impl super::AuthConfig {
    /// Needs the server's listen address: off loopback, keys are required.
    pub fn validate(&self, server: &super::ServerConfig) -> Result<(), ConfigError> {
        let a = self;
        if !server.listen.ip().is_loopback() && a.client_keys.is_empty() && !a.allow_anonymous {
            return Err(ConfigError::invalid(
                "auth.allow_anonymous",
                format!(
                    "server.listen = {} is reachable from other hosts but no auth.client_keys are set; \
                 set client keys (FRAUDGATE_AUTH__CLIENT_KEYS__<NAME>=<key>) or auth.allow_anonymous = true",
                    server.listen
                ),
            ));
        }
        let keys = a
            .client_keys
            .iter()
            .map(|(name, k)| (format!("auth.client_keys.{name}"), k))
            .chain(enumerated("auth.admin_keys", &a.admin_keys))
            .chain(enumerated("auth.report_keys", &a.report_keys))
            .chain(
                a.report_users
                    .iter()
                    .map(|(user, k)| (format!("auth.report_users.{user}"), k)),
            );
        for (field, key) in keys {
            if let Some(why) = key.weakness() {
                return Err(ConfigError::invalid(field, why));
            }
        }
        for name in a.rate_limits.keys() {
            if !a.client_keys.contains_key(name) {
                return Err(ConfigError::invalid(
                    format!("auth.rate_limits.{name}"),
                    "no client key with this name",
                ));
            }
        }
        self.validate_trackers()
    }

    /// Each tracker names a client that can send decisions, and no two
    /// share an id (a `tracker_id` selects one client).
    fn validate_trackers(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeMap::new();
        for (name, id) in &self.trackers {
            let field = format!("auth.trackers.{name}");
            let anonymous = name == "anonymous" && self.client_keys.is_empty();
            if !anonymous && !self.client_keys.contains_key(name) {
                return Err(ConfigError::invalid(
                    field,
                    "no client key with this name (\"anonymous\" when no client keys are set)",
                ));
            }
            if let Some(other) = seen.insert(*id, name) {
                return Err(ConfigError::invalid(
                    field,
                    format!("tracker id {id} is auth.trackers.{other}'s too"),
                ));
            }
        }
        Ok(())
    }
}

/// `field[i]` and each key of a list.
fn enumerated<'a>(
    field: &'a str,
    keys: &'a crate::secret::SecretList,
) -> impl Iterator<Item = (String, &'a crate::secret::Secret)> + 'a {
    keys.0
        .iter()
        .enumerate()
        .map(move |(i, k)| (format!("{field}[{i}]"), k))
}

impl super::DoorsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = self;
        if ![401, 403].contains(&d.auth.blocked_status) {
            return Err(ConfigError::invalid(
                "doors.auth.blocked_status",
                "must be 401 or 403",
            ));
        }
        for (table, key) in [
            (&d.auth.params, "doors.auth.params"),
            (&d.auth.defaults, "doors.auth.defaults"),
        ] {
            for k in table.keys() {
                if !crate::event::is_rt_field(k) {
                    return Err(ConfigError::invalid(
                        format!("{key}.{k}"),
                        "not a FraudScore RT event field",
                    ));
                }
            }
        }
        if ![403, 204].contains(&d.click.blocked_status) {
            return Err(ConfigError::invalid(
                "doors.click.blocked_status",
                "must be 403 or 204",
            ));
        }
        if ![200, 204].contains(&d.openrtb.allow_status) {
            return Err(ConfigError::invalid(
                "doors.openrtb.allow_status",
                "must be 200 or 204",
            ));
        }
        for k in d.openrtb.fields.keys() {
            if k != "ifa" && !crate::event::is_rt_field(k) {
                return Err(ConfigError::invalid(
                    format!("doors.openrtb.fields.{k}"),
                    "not a FraudScore RT event field (or ifa)",
                ));
            }
        }
        d.grpc.validate()
    }
}

impl super::GrpcDoor {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::invalid(
                "doors.grpc.max_concurrent_streams",
                "must be at least 1",
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::invalid(
                "doors.grpc.max_message_bytes",
                "must be at least 1024",
            ));
        }
        Ok(())
    }
}

/// Whether two listeners would bind one port: the same port (not 0, which
/// picks a free one) on the same address (an IPv4-mapped IPv6 address is
/// its IPv4 one), or with either on every address of the other's family
/// (`[::]` also takes IPv4's, as Linux binds it dual-stack).
fn same_port(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    use std::net::IpAddr;
    /// Whether binding `wide` takes the port on `other` too.
    fn covers(wide: IpAddr, other: IpAddr) -> bool {
        match wide {
            IpAddr::V6(v) => v.is_unspecified(),
            IpAddr::V4(v) => v.is_unspecified() && other.is_ipv4(),
        }
    }
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    a.port() != 0 && a.port() == b.port() && (x == y || covers(x, y) || covers(y, x))
}

fn validate_offers(offers: &[super::OfferConfig]) -> Result<(), ConfigError> {
    let mut ids = std::collections::HashSet::new();
    for (i, o) in offers.iter().enumerate() {
        if !ids.insert(o.id.as_str()) {
            return Err(ConfigError::invalid(
                format!("offers[{i}].id"),
                format!("duplicate offer id {:?}", o.id),
            ));
        }
        let bad = |key: &str, e: crate::template::TemplateError| {
            ConfigError::invalid(
                format!("offers[{i}].{key}"),
                format!("offer {:?}: {e}", o.id),
            )
        };
        crate::template::UrlTemplate::parse(&o.url).map_err(|e| bad("url", e))?;
        if let Some(f) = &o.fallback_url {
            crate::template::UrlTemplate::parse(f).map_err(|e| bad("fallback_url", e))?;
        }
    }
    Ok(())
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A level (`info`), or directives such as `info,fraudgate=debug`. A
/// misspelt level (`inof`) would otherwise read as a target name and
/// silence every log line, startup errors included.
fn log_level(v: &str) -> Result<(), String> {
    let level = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
    for part in v.split(',').map(str::trim) {
        let ok = match part.split_once('=') {
            Some((target, l)) => !target.trim().is_empty() && level(l),
            None => level(part),
        };
        if !ok {
            return Err(format!(
                "{part:?} is not a level: use one of {} (or directives such as \"info,fraudgate=debug\")",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn log_levels_are_levels() {
        for ok in [
            "info",
            "WARN",
            "info,fraudgate=debug",
            "off",
            "debug, hyper=warn",
        ] {
            assert!(super::log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["inof", "verbose", "", "info,fraudgate=loud", "=debug"] {
            assert!(super::log_level(bad).is_err(), "{bad}");
        }
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let env = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Config::load_from(None, env).map_err(|e| e.to_string())
    }

    #[test]
    fn trackers_name_a_client_each_with_an_id_of_its_own() {
        let c = load(&[
            ("FRAUDGATE_AUTH__CLIENT_KEYS__ACME", "0123456789abcdef0123"),
            ("FRAUDGATE_AUTH__TRACKERS__ACME", "81"),
            ("FRAUDGATE_AUTH__REPORT_USERS__XYZ", "report-key-0123456789"),
        ])
        .unwrap();
        assert_eq!(c.auth.trackers["acme"], 81);
        assert_eq!(c.auth.report_users["xyz"].expose(), "report-key-0123456789");
        // Without client keys every decision is the anonymous client's.
        load(&[("FRAUDGATE_AUTH__TRACKERS__ANONYMOUS", "1")]).unwrap();
        let e = load(&[("FRAUDGATE_AUTH__TRACKERS__NOBODY", "81")]).unwrap_err();
        assert!(e.contains("auth.trackers.nobody"), "{e}");
        let e = load(&[
            ("FRAUDGATE_AUTH__CLIENT_KEYS__ACME", "0123456789abcdef0123"),
            ("FRAUDGATE_AUTH__CLIENT_KEYS__BETA", "0123456789abcdef0124"),
            ("FRAUDGATE_AUTH__TRACKERS__ACME", "81"),
            ("FRAUDGATE_AUTH__TRACKERS__BETA", "81"),
        ])
        .unwrap_err();
        assert!(e.contains("tracker id 81"), "{e}");
        let e = load(&[("FRAUDGATE_AUTH__REPORT_USERS__XYZ", "short")]).unwrap_err();
        assert!(
            e.contains("auth.report_users.xyz") && !e.contains("short"),
            "{e}"
        );
    }
}
