//! Every metric name fraudgate exports, and the Prometheus recorder.
//! Labels only come from closed sets (`as_str()` of enums), never from
//! caller-controlled text.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub const HTTP_REQUESTS: &str = "fraudgate_http_requests_total";
pub const HTTP_DURATION: &str = "fraudgate_http_request_duration_seconds";
pub const DECISIONS: &str = "fraudgate_decisions_total";
pub const TAGS: &str = "fraudgate_tags_total";
pub const CACHE_REQUESTS: &str = "fraudgate_cache_requests_total";
pub const CACHE_ENTRIES: &str = "fraudgate_cache_entries";
pub const COALESCED: &str = "fraudgate_coalesced_waiters_total";
pub const DEADLINE_MISSES: &str = "fraudgate_deadline_misses_total";
pub const LATE_FILLS: &str = "fraudgate_late_fills_total";
pub const UPSTREAM_REQUESTS: &str = "fraudgate_upstream_requests_total";
pub const UPSTREAM_DURATION: &str = "fraudgate_upstream_duration_seconds";
pub const UPSTREAM_UNKNOWN_TAGS: &str = "fraudgate_upstream_unknown_tags_total";
pub const UPSTREAM_ENABLED: &str = "fraudgate_upstream_enabled";
pub const BUILD_INFO: &str = "fraudgate_build_info";
pub const RULE_HITS: &str = "fraudgate_rule_hits_total";
pub const RULE_RELOADS: &str = "fraudgate_rule_reloads_total";
pub const LIST_ENTRIES: &str = "fraudgate_list_entries";
pub const DATACENTER_PREFIXES: &str = "fraudgate_datacenter_prefixes";
pub const PROXY_PREFIXES: &str = "fraudgate_proxy_prefixes";
pub const VERIFIED_BOT_PREFIXES: &str = "fraudgate_verified_bot_prefixes";
pub const CRAWLER_PATTERNS: &str = "fraudgate_crawler_patterns";
pub const CAP_COUNTERS: &str = "fraudgate_cap_counters";
pub const VELOCITY_COUNTERS: &str = "fraudgate_velocity_counters";
pub const CACHE_PURGES: &str = "fraudgate_cache_purges_total";
pub const SHED: &str = "fraudgate_shed_total";
pub const GRPC_CHECKS: &str = "fraudgate_grpc_checks_total";
pub const RT_IGNORED_PARAMS: &str = "fraudgate_rt_ignored_params_total";
pub const CLIENT_REQUESTS: &str = "fraudgate_client_requests_total";
pub const AUTH_FAILURES: &str = "fraudgate_auth_failures_total";
pub const BREAKER_STATE: &str = "fraudgate_breaker_state";
pub const BREAKER_TRANSITIONS: &str = "fraudgate_breaker_transitions_total";
pub const UPSTREAM_RETRIES: &str = "fraudgate_upstream_retries_total";
pub const STALE_SERVED: &str = "fraudgate_stale_served_total";
pub const REFRESHES: &str = "fraudgate_refreshes_total";
pub const LOG_WRITTEN: &str = "fraudgate_log_written_total";
pub const LOG_DROPPED: &str = "fraudgate_log_dropped_total";
pub const LOG_ERRORS: &str = "fraudgate_log_write_errors_total";
pub const LOG_STORE_FAILURES: &str = "fraudgate_log_store_failures_total";
pub const QUERIES: &str = "fraudgate_queries_total";
pub const QUERY_CUTS: &str = "fraudgate_query_cuts_total";
pub const QUERIES_RUNNING: &str = "fraudgate_queries_running";
pub const REDIS_UP: &str = "fraudgate_redis_up";
pub const REDIS_ENABLED: &str = "fraudgate_redis_enabled";
pub const REDIS_ERRORS: &str = "fraudgate_redis_errors_total";
pub const REDIS_SKIPPED: &str = "fraudgate_redis_skipped_total";
pub const REDIS_VERDICTS: &str = "fraudgate_redis_verdicts_total";
pub const FEED_RUNS: &str = "fraudgate_feed_runs_total";
pub const FEED_ERRORS: &str = "fraudgate_feed_errors_total";
pub const FEED_ROWS: &str = "fraudgate_feed_rows_total";
pub const FEED_PAGES: &str = "fraudgate_feed_pages_total";
pub const FEED_ADDED: &str = "fraudgate_feed_entries_added_total";
pub const FEED_EXPIRED: &str = "fraudgate_feed_entries_expired_total";
pub const FEED_REJECTED: &str = "fraudgate_feed_values_rejected_total";
pub const FEED_STATE_SKIPPED: &str = "fraudgate_feed_state_skipped_total";
pub const FEED_ENTRIES: &str = "fraudgate_feed_entries";
pub const FEED_LAST_SUCCESS: &str = "fraudgate_feed_last_success_timestamp_seconds";
pub const FEED_FAILURES: &str = "fraudgate_feed_consecutive_failures";
pub const FEED_INTERVAL: &str = "fraudgate_feed_interval_seconds";
pub const TLS_HANDSHAKES: &str = "fraudgate_tls_handshakes_total";
pub const TLS_CERT_RELOADS: &str = "fraudgate_tls_cert_reloads_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// One application's metrics: its own Prometheus recorder and handle.
///
/// Every [`crate::startup::Application`] owns one, so two apps in one
/// process (the integration tests run dozens) never share a series.
/// Handles are registered against it inside [`Registry::scope`], once, at
/// construction: the hot path only increments handles it already holds.
/// Code built outside any scope (a library user's [`crate::score::Scorer`]
/// behind [`crate::http::layer::FraudGateLayer`]) reports to the global recorder
/// the user installed, as the `metrics` facade does by default.
#[derive(Clone)]
pub struct Registry {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl Registry {
    /// A fresh recorder with fraudgate's buckets and descriptions. Call
    /// inside a Tokio runtime to get histogram upkeep.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("buckets are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        let registry = Registry {
            recorder: Arc::new(recorder),
            handle,
        };
        registry.scope(|| {
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            register_known();
        });
        // Histograms need periodic upkeep when no exporter thread runs. The
        // task holds a weak reference: it ends with the registry.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&registry.recorder);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    match weak.upgrade() {
                        Some(r) => r.handle().run_upkeep(),
                        None => break,
                    }
                }
            });
        }
        registry
    }

    /// Runs `f` with this registry as the current recorder: every handle
    /// `f` registers (`metrics::counter!` and friends) belongs to it. `f`
    /// is synchronous, so the scope never spans an await.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// The Prometheus text exposition of this registry.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// Every counter with a closed label set, at 0 from the start: a dashboard
/// or alert sees 0, not "no data", before the first event, and in the
/// keyless mode where the RT path never runs. (Gauges the components set
/// themselves; `fraudgate_http_requests_total` appears per route and
/// status on first use, since every pair would be some 600 zero series;
/// histograms appear with their first sample.)
fn register_known() {
    for r in ["hit", "miss"] {
        metrics::counter!(CACHE_REQUESTS, "result" => r).increment(0);
    }
    for name in [
        COALESCED,
        DEADLINE_MISSES,
        LATE_FILLS,
        STALE_SERVED,
        UPSTREAM_RETRIES,
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::counter!(UPSTREAM_UNKNOWN_TAGS).increment(0);
    for o in ["ok", "error"] {
        metrics::counter!(REFRESHES, "outcome" => o).increment(0);
    }
    for to in ["closed", "open", "half_open"] {
        metrics::counter!(BREAKER_TRANSITIONS, "to" => to).increment(0);
    }
    for scope in ["ip", "ip_ua", "all"] {
        metrics::counter!(CACHE_PURGES, "scope" => scope).increment(0);
    }
    for source in ["crawler", "datacenter", "list"] {
        for o in ["ok", "error"] {
            metrics::counter!(RULE_RELOADS, "source" => source, "outcome" => o).increment(0);
        }
    }
    for o in ["ok", "bad_request", "timeout", "busy", "error"] {
        metrics::counter!(QUERIES, "outcome" => o).increment(0);
    }
    for o in ["ok", "denied", "invalid_argument", "error"] {
        metrics::counter!(GRPC_CHECKS, "outcome" => o).increment(0);
    }
    for r in ["timeout", "slow_reader", "client_gone"] {
        metrics::counter!(QUERY_CUTS, "reason" => r).increment(0);
    }
    metrics::gauge!(QUERIES_RUNNING).set(0.0);
    for name in [
        SHED,
        LOG_WRITTEN,
        LOG_DROPPED,
        LOG_ERRORS,
        RT_IGNORED_PARAMS,
    ] {
        metrics::counter!(name).increment(0);
    }
    for o in ["ok", "failed", "timeout"] {
        metrics::counter!(TLS_HANDSHAKES, "outcome" => o).increment(0);
    }
    for o in ["ok", "error"] {
        metrics::counter!(TLS_CERT_RELOADS, "outcome" => o).increment(0);
    }
    for cause in ["corrupt", "unavailable", "replaced"] {
        metrics::counter!(LOG_STORE_FAILURES, "cause" => cause).increment(0);
    }
    // Closed (0) until a breaker says otherwise; there is none without RT.
    metrics::gauge!(BREAKER_STATE).set(0.0);
}

fn describe() {
    describe_log_and_queries();
    describe_access_and_load();
    describe_scoring();
    describe_process_feeds_and_redis();
}

/// The decision log and its queries.
fn describe_log_and_queries() {
    describe_counter!(LOG_WRITTEN, "Decisions written to the decision log.");
    describe_counter!(
        LOG_DROPPED,
        "Decisions not recorded: the decision log queue was full (on_full = \"drop\", or \"block\" past block_timeout_ms), no store could be opened, or the store had not taken them by the shutdown deadline."
    );
    describe_counter!(
        LOG_STORE_FAILURES,
        "Decision log store failures by cause: corrupt (a damaged SQLite file moved aside, a fresh one opened), unavailable (an attempt to open the store failed; retried every 5 s, records dropped meanwhile), replaced (the SQLite file deleted or replaced under the service; a fresh one opened)."
    );
    describe_counter!(
        LOG_ERRORS,
        "Decision log write attempts that failed; the batch is retried with backoff (100 ms to 5 s) until written, and given up only at shutdown."
    );
    describe_counter!(
        QUERIES,
        "Data API and report queries by outcome (ok, bad_request, timeout, busy, error)."
    );
    describe_counter!(
        QUERY_CUTS,
        "Data API and report queries stopped before their answer was whole, by reason: timeout (the store ran past decision_log.query_timeout_ms mid-answer), slow_reader (the client did not take the answer within it), client_gone (the request ended first: the client left or server.request_timeout_ms answered)."
    );
    describe_gauge!(
        QUERIES_RUNNING,
        "Data API and report queries holding one of decision_log.max_queries slots (their thread and store connection)."
    );
}

/// Clients, access and load shedding.
fn describe_access_and_load() {
    describe_counter!(
        CLIENT_REQUESTS,
        "Scoring requests by client name (configured names, or anonymous) and outcome (ok, rate_limited)."
    );
    describe_counter!(
        AUTH_FAILURES,
        "Scoring requests refused for a missing or invalid client key."
    );
    describe_counter!(
        TLS_HANDSHAKES,
        "TLS handshakes on server.listen by outcome (ok, failed: not TLS, an old version, no shared cipher; timeout: past server.tls.handshake_timeout_ms; 0 without [server.tls])."
    );
    describe_counter!(
        TLS_CERT_RELOADS,
        "Certificate reloads by outcome (ok: new handshakes get the new certificate; error: the files could not be served and the previous certificate stays; 0 without [server.tls])."
    );
    describe_counter!(
        GRPC_CHECKS,
        "ext_authz Checks answered by the gRPC door, by outcome (ok, denied, invalid_argument, error)."
    );
    describe_counter!(
        SHED,
        "Requests shed with 503 because server.max_concurrency were in flight."
    );
    describe_counter!(
        RT_IGNORED_PARAMS,
        "Query parameters the RT drop-in ignored because FraudScore RT does not document them (cache busters, a tracker's own fields)."
    );
}

/// The scoring path: HTTP, decisions, cache, upstream, breaker, rules.
fn describe_scoring() {
    describe_gauge!(
        BREAKER_STATE,
        "Upstream circuit breaker: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        BREAKER_TRANSITIONS,
        "Circuit breaker transitions by new state."
    );
    describe_counter!(
        UPSTREAM_RETRIES,
        "RT calls retried once after a connection error."
    );
    describe_counter!(
        STALE_SERVED,
        "Verdicts served past their TTL (stale-while-revalidate)."
    );
    describe_counter!(
        REFRESHES,
        "Background refreshes of stale verdicts by outcome (ok, error)."
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status code.");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request duration by route."
    );
    describe_counter!(
        DECISIONS,
        "Decisions by front door, decision (the would-be decision in shadow mode), source and mode."
    );
    describe_counter!(
        TAGS,
        "Tags seen in decisions, by tag (unknown tags as \"unknown\")."
    );
    describe_counter!(
        CACHE_REQUESTS,
        "Verdict cache lookups by result (hit, miss)."
    );
    describe_gauge!(CACHE_ENTRIES, "Verdicts in the cache (approximate).");
    describe_counter!(
        COALESCED,
        "Requests that waited on another request's upstream call."
    );
    describe_counter!(
        DEADLINE_MISSES,
        "Requests answered by fallback because their time budget ran out."
    );
    describe_counter!(
        LATE_FILLS,
        "Upstream answers that arrived after their caller's deadline and filled the cache."
    );
    describe_counter!(UPSTREAM_REQUESTS, "FraudScore RT calls by outcome.");
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "FraudScore RT call duration by outcome."
    );
    describe_counter!(
        UPSTREAM_UNKNOWN_TAGS,
        "Tags RT sent that are not among the ten documented."
    );
    describe_gauge!(UPSTREAM_ENABLED, "1 when an RT key is configured.");
    describe_counter!(RULE_HITS, "Local rule hits by rule kind.");
    describe_counter!(
        RULE_RELOADS,
        "Rule file loads by source (crawler, datacenter, list) and outcome (ok, error)."
    );
    describe_gauge!(LIST_ENTRIES, "Live entries per block/allow list.");
    describe_gauge!(DATACENTER_PREFIXES, "Datacenter prefixes loaded.");
    describe_gauge!(PROXY_PREFIXES, "Proxy (Tor, VPN exit) prefixes loaded.");
    describe_gauge!(VERIFIED_BOT_PREFIXES, "Verified-bot prefixes loaded.");
    describe_gauge!(CRAWLER_PATTERNS, "Crawler UA patterns compiled.");
    describe_gauge!(CAP_COUNTERS, "Cap counters in use (all caps).");
    describe_gauge!(VELOCITY_COUNTERS, "IP and subnet velocity counters in use.");
    describe_counter!(
        CACHE_PURGES,
        "Admin cache purges by scope (ip, ip_ua, all)."
    );
}

/// The process, feeds and the Redis tier.
fn describe_process_feeds_and_redis() {
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which build runs."
    );
    describe_counter!(FEED_RUNS, "Feed pulls by feed and outcome (ok, error).");
    describe_counter!(
        FEED_ERRORS,
        "Failed feed pulls by feed and kind (credentials, forbidden, not_found, bad_request, rate_limited, server, status, timeout, transport, parse)."
    );
    describe_counter!(FEED_ROWS, "Rows read from a feed's source.");
    describe_counter!(
        FEED_PAGES,
        "Calls (pages, report windows) made to a feed's source."
    );
    describe_counter!(FEED_ADDED, "New entries a feed put in its list.");
    describe_counter!(FEED_EXPIRED, "Feed entries dropped at their expiry.");
    describe_counter!(
        FEED_REJECTED,
        "Values from a feed's rows not made entries, by reason (invalid, too_long, too_wide: an IP range wider than the feed's max_prefix)."
    );
    describe_counter!(
        FEED_STATE_SKIPPED,
        "Entries of a feed's stored state (file or Redis) skipped as invalid or too wide when read back."
    );
    describe_gauge!(FEED_ENTRIES, "Entries in a feed's list.");
    describe_gauge!(
        FEED_LAST_SUCCESS,
        "Unix time of a feed's last successful pull (0: never)."
    );
    describe_gauge!(
        FEED_FAILURES,
        "Failed pulls of a feed since its last success."
    );
    describe_gauge!(FEED_INTERVAL, "A feed's configured interval (feeds.every).");
    describe_gauge!(REDIS_UP, "1 while Redis answers (redis.url set), else 0.");
    describe_gauge!(REDIS_ENABLED, "1 when redis.url is set.");
    describe_counter!(REDIS_ERRORS, "Redis calls that failed or timed out.");
    describe_counter!(
        REDIS_SKIPPED,
        "Redis calls skipped while it is considered down (redis.retry_s after redis.failures_to_skip failures)."
    );
    describe_counter!(
        REDIS_VERDICTS,
        "Local cache misses asked of Redis by result: hit (another replica's verdict), miss, waited (got the answer of another replica's RT call), wait_timeout."
    );
}
