//! One typed configuration: embedded defaults, then a TOML file, then
//! `FRAUDGATE_<SECTION>__<KEY>` environment overrides; validated once.
//!
//! The embedded `config/fraudgate.toml` is the single source of defaults: a
//! user file only carries what it changes and is merged over it.

mod file;
mod listen;
mod paths;

pub use file::ConfigFile;
pub use listen::{Http2Config, TlsConfig};
mod sections;
mod validate;

use std::path::Path;

use serde::Deserialize;

pub use crate::config_error::ConfigError;
pub use crate::secret::{Secret, SecretList};
pub use sections::*;

/// The documented defaults, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../../config/fraudgate.toml");

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "FRAUDGATE_";
/// Environment variable naming the config file (same as `--config`).
pub const ENV_CONFIG_PATH: &str = "FRAUDGATE_CONFIG";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub policy: PolicyConfig,
    pub doors: DoorsConfig,
    /// Offers of the /click redirect tracker.
    #[serde(default)]
    pub offers: Vec<OfferConfig>,
    pub rules: RulesConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    /// The record of every decision (`[log]` is the process's own logs).
    pub decision_log: crate::decision_log::DecisionLogConfig,
    /// Tag / rule kind -> MRC invalid-traffic class and category.
    pub ivt: crate::decision_log::IvtConfig,
    /// Shared state for many replicas (off when `url` is empty).
    pub redis: crate::fleet::RedisConfig,
    /// Conversions (`/v1/postback`): attribution windows, funnel rules.
    pub funnel: crate::funnel::FunnelConfig,
    /// Block lists pulled from Protect360, Fraudshield, the FraudScore Data API.
    #[serde(default)]
    pub feeds: Vec<crate::feeds::FeedConfig>,
    /// The file this came from, as read, so a reload can tell what changed
    /// in it since (None: the embedded defaults).
    #[serde(skip)]
    pub file: Option<ConfigFile>,
}

impl Default for Config {
    /// The embedded defaults (no file, no environment).
    fn default() -> Self {
        Config::load_from(None, std::iter::empty()).expect("embedded default config is valid")
    }
}

impl Config {
    /// Loads the file at `path` (if any) over the defaults, then the
    /// `FRAUDGATE_*` variables of this process.
    /// Relative paths in the file are read relative to its directory.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(path, std::env::vars())
    }

    /// Like [`Config::load`], but the file's relative paths stay relative
    /// to the working directory: for `config/fraudgate.toml` found in the
    /// working directory, the embedded defaults' own file, whose paths
    /// (`data/decisions`) are the embedded defaults' places.
    pub fn load_in_working_dir(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(Some(path), false, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, so tests never
    /// touch the process environment.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::load_with(path, true, env)
    }

    fn load_with(
        path: Option<&Path>,
        relative_to_file: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut file = None;
        let mut root: toml::Table =
            DEFAULT_TOML
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: "<embedded defaults>".into(),
                    message: e.to_string(),
                })?;
        if let Some(path) = path {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            let mut user: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: shown.clone(),
                        message: e.to_string(),
                    })?;
            file = Some(ConfigFile {
                path: path.to_path_buf(),
                table: user.clone(),
            });
            if relative_to_file {
                let dir = std::path::absolute(path)
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or_default();
                paths::resolve(&mut user, &dir);
            }
            merge(&mut root, user);
        }
        let mut env: Vec<_> = env
            .into_iter()
            // Only FRAUDGATE_<SECTION>__<KEY> forms are config keys; others
            // (Kubernetes injects FRAUDGATE_PORT for a Service named
            // fraudgate) are not ours to reject.
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k[ENV_PREFIX.len()..].contains("__"))
            .collect();
        env.sort();
        // Which variable set which key: an error then names the variable.
        let mut set_by: Vec<(String, String)> = Vec::new();
        for (var, raw) in env {
            apply_env(&mut root, &var, &raw)?;
            let key = var[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>()
                .join(".");
            set_by.push((key, var));
        }
        let within = |key: &str, k: &str| {
            key.strip_prefix(k)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        };
        // A variable that set this key or a key under it (a misspelt
        // section is reported at the section: name the variable there too).
        let by_env = |key: &str, message: String| match set_by
            .iter()
            .find(|(k, _)| within(key, k) || within(k, key))
        {
            Some((_, var)) => ConfigError::Env {
                var: var.clone(),
                message: format!("(config key {key}) {message}"),
            },
            None => ConfigError::invalid(key, message),
        };
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(root))
            .map_err(|e| {
                let key = e.path().to_string();
                let message = readable(&key, e.into_inner().message());
                by_env(&key, message)
            })?;
        config.validate().map_err(|e| match e {
            ConfigError::Invalid { key, message } => by_env(&key, message),
            other => other,
        })?;
        config.file = file;
        Ok(config)
    }
}

/// serde's type errors in words an operator reads: `invalid type: string
/// "abc", expected u64` at `upstream.timeout_ms` becomes `got string
/// "abc": expected a whole number of milliseconds`.
fn readable(key: &str, message: &str) -> String {
    // std's words for a listen address it cannot parse (a host name, a
    // missing port) say nothing of what would do.
    if message == "invalid socket address syntax" {
        return "expected an IP address and port, such as 127.0.0.1:8080 or [::1]:8080 \
                (a host name is not resolved)"
            .to_owned();
    }
    let Some((got, expected)) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|m| m.split_once(", expected "))
    else {
        return message.to_owned();
    };
    let unit = if key.ends_with("_ms") {
        " of milliseconds"
    } else if key.ends_with("_s") {
        " of seconds"
    } else if key.ends_with("_days") {
        " of days"
    } else {
        ""
    };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => format!("a whole number{unit}"),
        "i8" | "i16" | "i32" | "i64" | "isize" => format!("a whole number{unit} (may be negative)"),
        "f32" | "f64" => format!("a number{unit}"),
        "a boolean" => "true or false".to_owned(),
        other => other.to_owned(),
    };
    format!("got {got}: expected {expected}")
}

/// Deep-merges `over` into `base`: tables merge, everything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets one `FRAUDGATE_A__B__C=value` override. The value is read as a TOML
/// value when it is one (`250`, `true`, `["ip","ua"]`), else as a string.
fn apply_env(root: &mut toml::Table, var: &str, raw: &str) -> Result<(), ConfigError> {
    let err = |message: &str| ConfigError::Env {
        var: var.to_owned(),
        message: message.to_owned(),
    };
    let rest = &var[ENV_PREFIX.len()..];
    let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if path.iter().any(String::is_empty) {
        return Err(err("not a config key: expected FRAUDGATE_<SECTION>__<KEY>"));
    }
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    };
    let (last, parents) = path.split_last().expect("len >= 2");
    let mut table = root;
    for (i, seg) in parents.iter().enumerate() {
        let entry = table
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(err(&format!(
                    "{} is a value, not a section",
                    path[..=i].join(".")
                )));
            }
        };
    }
    // A list key given a plain value: comma-separated items ("" is none),
    // so FRAUDGATE_POLICY__ALLOW_VERIFIED_BOTS=Googlebot,Bingbot works as
    // well as the TOML form ["Googlebot", "Bingbot"].
    let value = match (value, table.get(last.as_str())) {
        (toml::Value::String(s), Some(toml::Value::Array(_))) => toml::Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(|i| toml::Value::String(i.to_owned()))
                .collect(),
        ),
        (v, _) => v,
    };
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Action;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_load() {
        let c = Config::default();
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.upstream.timeout_ms, 250);
        assert!(!c.upstream.enabled());
        assert_eq!(c.cache.ttl_clean(), Duration::from_secs(300));
        assert_eq!(c.policy.on_upstream_error, Action::Allow);
    }

    #[test]
    fn env_overrides_typed_values_and_nested_tables() {
        let c = Config::load_from(
            None,
            env(&[
                ("FRAUDGATE_SERVER__LISTEN", "0.0.0.0:9000"),
                ("FRAUDGATE_AUTH__ALLOW_ANONYMOUS", "true"),
                ("FRAUDGATE_UPSTREAM__TIMEOUT_MS", "120"),
                ("FRAUDGATE_UPSTREAM__KEY", "123456"),
                ("FRAUDGATE_CACHE__TTL_FLAGGED_S", "3600"),
                ("FRAUDGATE_POLICY__TAGS__PROXY", "allow"),
                ("FRAUDGATE_POLICY__ON_UPSTREAM_ERROR", "block"),
                ("FRAUDGATE_CONFIG", "ignored.toml"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.upstream.timeout_ms, 120);
        assert_eq!(c.upstream.key.expose(), "123456");
        assert_eq!(c.cache.ttl_flagged(), Duration::from_secs(3600));
        assert_eq!(c.cache.ttl_clean(), Duration::from_secs(300));
        assert_eq!(c.policy.tags["proxy"], Action::Allow);
        assert_eq!(c.policy.on_upstream_error, Action::Block);
    }

    #[test]
    fn unknown_env_key_names_the_key() {
        let e = Config::load_from(None, env(&[("FRAUDGATE_UPSTREAM__TIMEOUT", "5")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream") && e.contains("timeout"), "{e}");
        let e = Config::load_from(None, env(&[("FRAUDGATE_NOPE__", "5")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FRAUDGATE_NOPE__"), "{e}");
        // Not our form: ignored (Kubernetes service variables look like this).
        Config::load_from(None, env(&[("FRAUDGATE_PORT", "tcp://10.0.0.1:80")])).unwrap();
    }

    #[test]
    fn listeners_need_ports_of_their_own() {
        let grpc_on_listen = "127.0.0.1:8080 is server.listen's address";
        for (vars, want) in [
            (
                &[("FRAUDGATE_DOORS__GRPC__LISTEN", "127.0.0.1:8080")][..],
                grpc_on_listen,
            ),
            (
                &[("FRAUDGATE_DOORS__GRPC__LISTEN", "0.0.0.0:8080")][..],
                "server.listen's address",
            ),
            (
                &[("FRAUDGATE_DOORS__GRPC__LISTEN", "[::]:8080")][..],
                "server.listen's address",
            ),
            (
                &[("FRAUDGATE_DOORS__GRPC__LISTEN", "[::ffff:127.0.0.1]:8080")][..],
                "server.listen's address",
            ),
            (
                &[
                    ("FRAUDGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:9100"),
                    ("FRAUDGATE_DOORS__GRPC__LISTEN", "127.0.0.1:9100"),
                ][..],
                "127.0.0.1:9100 is server.admin_listen's address",
            ),
            (
                &[("FRAUDGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:8080")][..],
                "127.0.0.1:8080 is server.listen's address: the operator's",
            ),
        ] {
            let e = Config::load_from(None, env(vars)).unwrap_err().to_string();
            assert!(e.contains(want), "{vars:?}: {e}");
            let key = vars[vars.len() - 1].0;
            assert!(e.contains(key), "the variable of the refused key: {e}");
        }
        for vars in [
            &[("FRAUDGATE_DOORS__GRPC__LISTEN", "127.0.0.1:50051")][..],
            &[("FRAUDGATE_DOORS__GRPC__LISTEN", "127.0.0.2:8080")][..],
            // IPv6 loopback is not taken by an IPv4 address.
            &[
                ("FRAUDGATE_SERVER__LISTEN", "0.0.0.0:8080"),
                ("FRAUDGATE_AUTH__ALLOW_ANONYMOUS", "true"),
                ("FRAUDGATE_DOORS__GRPC__LISTEN", "[::1]:8080"),
            ][..],
            // Port 0 picks a free port each time (tests).
            &[
                ("FRAUDGATE_SERVER__LISTEN", "127.0.0.1:0"),
                ("FRAUDGATE_DOORS__GRPC__LISTEN", "127.0.0.1:0"),
            ][..],
        ] {
            Config::load_from(None, env(vars)).unwrap();
        }
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (var, val, key) in [
            (
                "FRAUDGATE_UPSTREAM__TIMEOUT_MS",
                "soon",
                "upstream.timeout_ms",
            ),
            ("FRAUDGATE_SERVER__LISTEN", "nowhere", "server.listen"),
            ("FRAUDGATE_POLICY__MODE", "maybe", "policy.mode"),
            (
                "FRAUDGATE_POLICY__TAGS__BOGUS",
                "block",
                "policy.tags.bogus",
            ),
            ("FRAUDGATE_CACHE__KEY", "[\"ip\",\"cookie\"]", "cache.key"),
            (
                "FRAUDGATE_UPSTREAM__URL",
                "http://example.com/",
                "upstream.url",
            ),
            ("FRAUDGATE_UPSTREAM__TIMEOUT_MS", "0", "upstream.timeout_ms"),
            (
                "FRAUDGATE_DECISION_LOG__BATCH_MAX",
                "0",
                "decision_log.batch_max",
            ),
            ("FRAUDGATE_DECISION_LOG__QUEUE", "0", "decision_log.queue"),
            (
                "FRAUDGATE_SERVER__IDLE_SPIN_US",
                "201",
                "server.idle_spin_us",
            ),
            (
                "FRAUDGATE_SERVER__HTTP2__IDLE_TIMEOUT_S",
                "86401",
                "server.http2.idle_timeout_s",
            ),
            ("FRAUDGATE_DECISION_LOG__PATH", " ", "decision_log.path"),
            (
                "FRAUDGATE_DECISION_LOG__IP_SALT",
                "short",
                "decision_log.ip_salt",
            ),
            // A misspelt section is reported at the section.
            ("FRAUDGATE_UPSTREM__KEY", "abc", "upstrem"),
        ] {
            let e = Config::load_from(None, env(&[(var, val)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{var}={val}: {e}");
            assert!(e.contains(var), "the variable is named: {e}");
        }
        let e = Config::load_from(None, env(&[("FRAUDGATE_SERVER__LISTEN", "localhost:8080")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.listen") && e.contains("an IP address and port, such as"),
            "{e}"
        );
        let e = Config::load_from(None, env(&[("FRAUDGATE_UPSTREAM__TIMEOUT_MS", "abc")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "environment variable FRAUDGATE_UPSTREAM__TIMEOUT_MS: (config key upstream.timeout_ms) \
             got string \"abc\": expected a whole number of milliseconds"
        );
    }

    #[test]
    fn file_merges_over_defaults_and_rejects_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("fg-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "[cache]\nttl_s = 60\n[policy.offers.\"42\"]\nproxy = \"allow\"\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&good), vec![]).unwrap();
        assert_eq!(c.cache.ttl_s, 60);
        assert_eq!(c.cache.ttl_error_s, 5);
        assert_eq!(c.policy.offers["42"]["proxy"], Action::Allow);

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[cache]\nttl = 60\n").unwrap();
        let e = Config::load_from(Some(&bad), vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache") && e.contains("ttl"), "{e}");
    }

    #[test]
    fn list_keys_take_comma_separated_or_toml_env_values() {
        let c = Config::load_from(
            None,
            env(&[
                ("FRAUDGATE_POLICY__ALLOW_VERIFIED_BOTS", "Googlebot, GPTBot"),
                ("FRAUDGATE_RULES__DATACENTER__FILES", ""),
                ("FRAUDGATE_RULES__PROXY__FILES", r#"["/a.txt", "/b,c.txt"]"#),
            ]),
        )
        .unwrap();
        assert_eq!(c.policy.allow_verified_bots, ["Googlebot", "GPTBot"]);
        assert!(c.rules.datacenter.files.is_empty());
        assert_eq!(c.rules.proxy.files, ["/a.txt", "/b,c.txt"]);
        let star = Config::load_from(None, env(&[("FRAUDGATE_POLICY__ALLOW_VERIFIED_BOTS", "*")]))
            .unwrap();
        assert_eq!(star.policy.allow_verified_bots, ["*"]);
    }

    #[test]
    fn admin_keys_accept_a_comma_separated_env_value() {
        let c = Config::load_from(
            None,
            env(&[(
                "FRAUDGATE_AUTH__ADMIN_KEYS",
                "admin-key-one-0001, admin-key-two-0002,",
            )]),
        )
        .unwrap();
        let keys: Vec<_> = c
            .auth
            .admin_keys
            .0
            .iter()
            .map(|k| k.expose().to_owned())
            .collect();
        assert_eq!(keys, ["admin-key-one-0001", "admin-key-two-0002"]);
        assert!(Config::default().auth.admin_keys.0.is_empty());
    }

    #[test]
    fn a_public_listen_address_needs_client_keys_or_an_explicit_opt_in() {
        let e = Config::load_from(None, env(&[("FRAUDGATE_SERVER__LISTEN", "0.0.0.0:8080")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.allow_anonymous"), "{e}");
        Config::load_from(
            None,
            env(&[
                ("FRAUDGATE_SERVER__LISTEN", "0.0.0.0:8080"),
                ("FRAUDGATE_AUTH__ALLOW_ANONYMOUS", "true"),
            ]),
        )
        .unwrap();
        let c = Config::load_from(
            None,
            env(&[
                ("FRAUDGATE_SERVER__LISTEN", "[::]:8080"),
                ("FRAUDGATE_AUTH__CLIENT_KEYS__ACME", "0123456789abcdef0123"),
                (
                    "FRAUDGATE_AUTH__CLIENT_KEYS__ADSERVER_EU",
                    "0123456789abcdef0124",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.auth.client_keys["acme"].expose(), "0123456789abcdef0123");
        // The spelling docs/doors.md gives: lowercased, `_` kept.
        assert_eq!(
            c.auth.client_keys["adserver_eu"].expose(),
            "0123456789abcdef0124"
        );
        let e = Config::load_from(None, env(&[("FRAUDGATE_AUTH__CLIENT_KEYS__ACME", "short")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.client_keys.acme") && !e.contains("short"),
            "{e}"
        );
    }

    #[test]
    fn secret_matching() {
        let s = Secret::new("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd") && !s.matches(b"ab") && !s.matches(b"abcd") && !s.matches(b""));
        assert!(!Secret::new("").matches(b""));
    }

    #[test]
    fn secret_never_prints() {
        let c = Config::load_from(None, env(&[("FRAUDGATE_UPSTREAM__KEY", "s3cr3t-key")])).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t-key"));
        assert!(dbg.contains("[redacted]"));
    }
}
