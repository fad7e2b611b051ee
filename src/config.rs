//! Configuration, read once from the environment (and `.env` when present).
//!
//! Every variable is documented in `.env.example`. Development gets safe,
//! documented defaults; `APP_ENV=production` insists on real secrets. A bad
//! value stops start-up with one line naming the variable.

mod production;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

mod http_server;
mod tuning;
pub use http_server::HttpServerLimits;
pub use tuning::Tuning;

/// Development-only defaults. Production refuses each of them.
pub const DEV_SESSION_SECRET: &str = "chatpulse-development-session-secret-do-not-use-in-production-000000";
pub const DEV_WEBHOOK_SECRET: &str = "chatpulse-dev-webhook-secret";
pub const DEV_TOKEN_ENCRYPTION_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub const TWITCH_AUTH_URL: &str = "https://id.twitch.tv/oauth2";
pub const TWITCH_API_URL: &str = "https://api.twitch.tv/helix";
pub use crate::domain::IpNet;
pub use crate::secret::Secret;
pub use crate::twitch::EventSubTransport;
pub use crate::twitch::eventsub_ws::TWITCH_EVENTSUB_WS_URL;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where durable and live state live (ARCHITECTURE §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageMode {
    /// SQLite in `DATA_DIR` plus in-process live state; exactly one instance.
    Embedded { data_dir: PathBuf },
    /// PostgreSQL plus Redis; any number of instances.
    Distributed { database_url: Secret, redis_url: Secret },
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT`: HTTP port (0 picks a free one).
    pub port: u16,
    /// `APP_ENV`.
    pub app_env: AppEnv,
    /// `LOG_LEVEL`: a tracing filter such as `info` or `chatpulse=debug,info`.
    pub log_level: String,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `PUBLIC_URL`: how browsers reach this service; overlay URLs start with it.
    pub public_url: String,
    /// `METRICS_PORT`: the internal listener for `/metrics` and readiness details.
    pub metrics_port: u16,
    /// `DATA_DIR` or `DATABASE_URL` + `REDIS_URL`.
    pub storage: StorageMode,
    /// `TWITCH_CLIENT_ID`; unset means no real Twitch app.
    pub twitch_client_id: Option<String>,
    /// `TWITCH_CLIENT_SECRET`.
    pub twitch_client_secret: Option<Secret>,
    /// `TWITCH_REDIRECT_URI`.
    pub twitch_redirect_uri: String,
    /// `TWITCH_AUTH_URL`.
    pub twitch_auth_url: String,
    /// `TWITCH_API_URL`.
    pub twitch_api_url: String,
    /// `SESSION_SECRET`: signs login sessions.
    pub session_secret: Secret,
    /// `WEBHOOK_CALLBACK_URL`: where Twitch delivers EventSub messages.
    pub webhook_callback_url: String,
    /// `WEBHOOK_SECRET`: the HMAC key of EventSub deliveries (10–100 ASCII characters).
    pub webhook_secret: Secret,
    /// `BOT_USER_ID`: the account that reads chat; its own messages never vote.
    pub bot_user_id: Option<String>,
    /// `EVENTSUB_TRANSPORT`: how our conduit's shard receives events —
    /// `webhook` (production) or `websocket` (self-hosting without a public
    /// HTTPS URL).
    pub eventsub_transport: EventSubTransport,
    /// `TWITCH_EVENTSUB_WS_URL`: the EventSub WebSocket endpoint.
    pub twitch_eventsub_ws_url: String,
    /// `TOKEN_ENCRYPTION_KEY`: 32 bytes (64 hex digits) for stored Twitch tokens.
    pub token_encryption_key: Secret,
    /// `TOKEN_ENCRYPTION_KEY_PREVIOUS`: the key before a rotation; tokens it
    /// encrypted still decrypt (and are rewritten under the current key).
    pub token_encryption_key_previous: Option<Secret>,
    /// `MAX_WEBSOCKET_CONNECTIONS`: overlay connections per instance.
    pub max_websocket_connections: usize,
    /// `MAX_CONNECTIONS_PER_IP`: concurrent overlay connections per client IP.
    pub max_connections_per_ip: usize,
    /// `MAX_OVERLAY_CONNECTIONS_PER_IP`: concurrent connections one client
    /// address (an IPv6 /64) may hold to one overlay.
    pub max_overlay_connections_per_ip: usize,
    /// `CONNECTION_RATE_PER_IP`: new overlay connections per second per IP.
    pub connection_rate_per_ip: NonZeroU32,
    /// `CONNECTION_RATE_BURST`: burst allowance for the rate above.
    pub connection_rate_burst: NonZeroU32,
    /// `TRUSTED_PROXIES`: the load balancers whose `X-Forwarded-For` names
    /// the client (for the per-IP limits). Empty: the peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// `VOTE_RATE_LIMIT_CAPACITY`: token bucket size per session.
    pub vote_rate_limit_capacity: u32,
    /// `VOTE_RATE_LIMIT_RATE`: tokens added per minute per session.
    pub vote_rate_limit_rate: f64,
    /// `DB_MIN_CONNS` / `DB_MAX_CONNS`: PostgreSQL pool bounds (distributed mode).
    pub db_min_conns: usize,
    pub db_max_conns: usize,
    /// `SHUTDOWN_TIMEOUT`: how long a graceful shutdown may take.
    pub shutdown_timeout: Duration,
    /// The HTTP server's timeouts and connection caps (`HTTP_*_TIMEOUT`,
    /// `MAX_HTTP_CONNECTIONS*`).
    pub http: HttpServerLimits,
    /// `HISTORY_RETENTION_DAYS`: how long stream history (streams, history
    /// buckets, moments) is kept; the leader deletes older rows.
    pub history_retention_days: u32,
    pub tuning: Tuning,
}

/// Every variable the service reads. `.env.example` documents each one (a
/// test checks), and reading any other name is a bug caught in debug builds.
pub const VARIABLES: &[&str] = &[
    "APP_ENV",
    "PORT",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "METRICS_PORT",
    "PUBLIC_URL",
    "SHUTDOWN_TIMEOUT",
    "DATA_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "DB_MIN_CONNS",
    "DB_MAX_CONNS",
    "TWITCH_CLIENT_ID",
    "TWITCH_CLIENT_SECRET",
    "TWITCH_REDIRECT_URI",
    "TWITCH_AUTH_URL",
    "TWITCH_API_URL",
    // Read by the development wiring (`dev::BuiltInTwitch`), feature `simulator`.
    "TWITCH_SIM_PORT",
    "WEBHOOK_CALLBACK_URL",
    "WEBHOOK_SECRET",
    "BOT_USER_ID",
    "EVENTSUB_TRANSPORT",
    "TWITCH_EVENTSUB_WS_URL",
    "SESSION_SECRET",
    "TOKEN_ENCRYPTION_KEY",
    "TOKEN_ENCRYPTION_KEY_PREVIOUS",
    "MAX_WEBSOCKET_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "MAX_OVERLAY_CONNECTIONS_PER_IP",
    "CONNECTION_RATE_PER_IP",
    "CONNECTION_RATE_BURST",
    "TRUSTED_PROXIES",
    "VOTE_RATE_LIMIT_CAPACITY",
    "VOTE_RATE_LIMIT_RATE",
    "HTTP_HEADER_TIMEOUT",
    "HTTP_BODY_TIMEOUT",
    "HTTP_IDLE_TIMEOUT",
    "MAX_HTTP_CONNECTIONS",
    "MAX_HTTP_CONNECTIONS_PER_IP",
    "HISTORY_RETENTION_DAYS",
];

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn err(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { variable, message: message.into() }
}

/// Reads variables through a lookup function, so tests need no process environment.
struct Source<F>(F);

impl<F: Fn(&str) -> Option<String>> Source<F> {
    /// The variable's value; unset and empty are the same.
    fn get(&self, name: &str) -> Option<String> {
        debug_assert!(VARIABLES.contains(&name), "{name} is missing from config::VARIABLES");
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, name: &'static str, default: T, what: &str) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| err(name, format!("must be {what} (got {raw:?})"))),
        }
    }

    /// A positive number with an optional unit suffix (`10`, `10/s`).
    fn rate(&self, name: &'static str, default: f64, unit: &str) -> Result<f64, ConfigError> {
        let Some(raw) = self.get(name) else { return Ok(default) };
        let number = raw.strip_suffix(unit).unwrap_or(&raw).trim();
        match number.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
            _ => Err(err(name, format!("must be a positive number, optionally followed by {unit} (got {raw:?})"))),
        }
    }
}

fn parse_duration(name: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    let bad = || err(name, format!("must be a duration such as 30s, 500ms or 2m (got {raw:?})"));
    let (number, scale_ms) = if let Some(n) = raw.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = raw.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = raw.strip_suffix('m') {
        (n, 60_000)
    } else {
        (raw, 1_000)
    };
    let n: u64 = number.trim().parse().map_err(|_| bad())?;
    n.checked_mul(scale_ms).map(Duration::from_millis).ok_or_else(bad)
}

fn check_http_url(name: &'static str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| err(name, format!("must be an http:// or https:// URL (got {url:?})")))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(err(name, format!("must name a host (got {url:?})")));
    }
    Ok(())
}

impl Config {
    /// Loads `.env` (if present; real environment variables win) and reads the
    /// configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        if let Err(e) = dotenvy::dotenv()
            && !e.not_found()
        {
            return Err(err(".env", e.to_string()));
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable name → its value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let src = Source(lookup);
        let app_env = match src.get("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => return Err(err("APP_ENV", format!("must be development or production (got {other:?})"))),
        };
        let port: u16 = src.parse("PORT", 8080, "a port number 0-65535")?;
        let metrics_port: u16 = src.parse("METRICS_PORT", 9090, "a port number 0-65535")?;
        let log_format = match src.get("LOG_FORMAT").as_deref() {
            None => match app_env {
                AppEnv::Production => LogFormat::Json,
                AppEnv::Development => LogFormat::Text,
            },
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(err("LOG_FORMAT", format!("must be text or json (got {other:?})"))),
        };
        let log_level = src.get("LOG_LEVEL").unwrap_or_else(|| "info".to_owned());
        // Filters are ASCII (targets, levels, field names); the filter parser
        // of tracing-subscriber 0.3 panics on some non-ASCII input (found by
        // the `config` fuzz target), so that never reaches it.
        if let Some(c) = log_level.chars().find(|c| !c.is_ascii() || (c.is_ascii_control() && *c != '\t')) {
            return Err(err("LOG_LEVEL", format!("must be plain ASCII text (found {c:?})")));
        }
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .map_err(|e| err("LOG_LEVEL", format!("is not a valid log filter: {e}")))?;

        let public_url = src
            .get("PUBLIC_URL")
            .unwrap_or_else(|| format!("http://localhost:{port}"))
            .trim_end_matches('/')
            .to_owned();
        check_http_url("PUBLIC_URL", &public_url)?;

        let storage = match (src.get("DATABASE_URL"), src.get("REDIS_URL")) {
            (None, None) => StorageMode::Embedded {
                data_dir: PathBuf::from(src.get("DATA_DIR").unwrap_or_else(|| "./data".into())),
            },
            (Some(db), Some(redis)) => {
                if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
                    return Err(err("DATABASE_URL", "must be a postgres:// or postgresql:// URL"));
                }
                let schemes = ["redis://", "rediss://", "redis-cluster://", "rediss-cluster://"];
                if !schemes.iter().any(|s| redis.starts_with(s)) {
                    return Err(err(
                        "REDIS_URL",
                        "must be a redis://, rediss://, redis-cluster:// or rediss-cluster:// URL",
                    ));
                }
                StorageMode::Distributed { database_url: Secret::new(db), redis_url: Secret::new(redis) }
            }
            (Some(_), None) => {
                return Err(err("REDIS_URL", "must be set when DATABASE_URL is set (distributed mode needs both)"));
            }
            (None, Some(_)) => {
                return Err(err("DATABASE_URL", "must be set when REDIS_URL is set (distributed mode needs both)"));
            }
        };

        let twitch_client_id = src.get("TWITCH_CLIENT_ID");
        let twitch_client_secret = src.get("TWITCH_CLIENT_SECRET").map(Secret::new);
        if twitch_client_id.is_some() != twitch_client_secret.is_some() {
            let missing = if twitch_client_id.is_some() { "TWITCH_CLIENT_SECRET" } else { "TWITCH_CLIENT_ID" };
            return Err(err(missing, "TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET must be set together"));
        }
        let twitch_redirect_uri =
            src.get("TWITCH_REDIRECT_URI").unwrap_or_else(|| format!("{public_url}/auth/callback"));
        check_http_url("TWITCH_REDIRECT_URI", &twitch_redirect_uri)?;
        let twitch_auth_url = src.get("TWITCH_AUTH_URL").unwrap_or_else(|| TWITCH_AUTH_URL.to_owned());
        check_http_url("TWITCH_AUTH_URL", &twitch_auth_url)?;
        let twitch_api_url = src.get("TWITCH_API_URL").unwrap_or_else(|| TWITCH_API_URL.to_owned());
        check_http_url("TWITCH_API_URL", &twitch_api_url)?;

        let session_secret = Secret::new(src.get("SESSION_SECRET").unwrap_or_else(|| DEV_SESSION_SECRET.to_owned()));
        if session_secret.expose().len() < 64 {
            return Err(err("SESSION_SECRET", "must be at least 64 characters"));
        }
        let webhook_callback_url =
            src.get("WEBHOOK_CALLBACK_URL").unwrap_or_else(|| format!("{public_url}/webhooks/eventsub"));
        check_http_url("WEBHOOK_CALLBACK_URL", &webhook_callback_url)?;
        let webhook_secret = Secret::new(src.get("WEBHOOK_SECRET").unwrap_or_else(|| DEV_WEBHOOK_SECRET.to_owned()));
        let ws = &webhook_secret.expose();
        if !(10..=100).contains(&ws.len()) || !ws.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err("WEBHOOK_SECRET", "must be 10-100 printable ASCII characters"));
        }
        let bot_user_id = src.get("BOT_USER_ID");
        let eventsub_transport = match src.get("EVENTSUB_TRANSPORT").as_deref().map(str::trim) {
            None | Some("webhook") => EventSubTransport::Webhook,
            Some("websocket") => EventSubTransport::WebSocket,
            Some(_) => return Err(err("EVENTSUB_TRANSPORT", "must be webhook or websocket")),
        };
        let twitch_eventsub_ws_url =
            src.get("TWITCH_EVENTSUB_WS_URL").unwrap_or_else(|| TWITCH_EVENTSUB_WS_URL.to_owned());
        if !(twitch_eventsub_ws_url.starts_with("wss://") || twitch_eventsub_ws_url.starts_with("ws://"))
            || reqwest::Url::parse(&twitch_eventsub_ws_url).is_err()
        {
            return Err(err("TWITCH_EVENTSUB_WS_URL", "must be a ws:// or wss:// URL"));
        }
        let token_encryption_key =
            Secret::new(src.get("TOKEN_ENCRYPTION_KEY").unwrap_or_else(|| DEV_TOKEN_ENCRYPTION_KEY.to_owned()));
        if token_encryption_key.expose().len() != 64
            || !token_encryption_key.expose().bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(err("TOKEN_ENCRYPTION_KEY", "must be 64 hex digits (32 bytes)"));
        }
        let token_encryption_key_previous = src.get("TOKEN_ENCRYPTION_KEY_PREVIOUS").map(Secret::new);
        if let Some(previous) = &token_encryption_key_previous
            && (previous.expose().len() != 64 || !previous.expose().bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(err("TOKEN_ENCRYPTION_KEY_PREVIOUS", "must be 64 hex digits (32 bytes)"));
        }

        let positive = |name: &'static str, default: usize| -> Result<usize, ConfigError> {
            match src.parse(name, default, "a positive whole number")? {
                0 => Err(err(name, "must be at least 1")),
                n => Ok(n),
            }
        };
        let max_websocket_connections = positive("MAX_WEBSOCKET_CONNECTIONS", 10_000)?;
        let max_connections_per_ip = positive("MAX_CONNECTIONS_PER_IP", 100)?;
        let max_overlay_connections_per_ip = positive("MAX_OVERLAY_CONNECTIONS_PER_IP", 10)?;
        let nonzero = |name: &'static str, v: f64| {
            NonZeroU32::new(v.round() as u32).ok_or_else(|| err(name, "must be at least 1"))
        };
        let connection_rate_per_ip =
            nonzero("CONNECTION_RATE_PER_IP", src.rate("CONNECTION_RATE_PER_IP", 10.0, "/s")?)?;
        let connection_rate_burst =
            nonzero("CONNECTION_RATE_BURST", src.parse("CONNECTION_RATE_BURST", 20.0, "a positive whole number")?)?;
        let trusted_proxies = match src.get("TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(raw) => raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|net| {
                    IpNet::parse(net).ok_or_else(|| {
                        err("TRUSTED_PROXIES", format!("{net:?} is not an IP address or network like 10.0.0.0/8"))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        // `store::VoteLimits`' defaults: an abuse guard, far above honest chat.
        let vote_rate_limit_capacity = u32::try_from(positive("VOTE_RATE_LIMIT_CAPACITY", 1_000)?)
            .map_err(|_| err("VOTE_RATE_LIMIT_CAPACITY", "is too large"))?;
        let vote_rate_limit_rate = src.rate("VOTE_RATE_LIMIT_RATE", 60_000.0, "/min")?;
        let db_min_conns = src.parse("DB_MIN_CONNS", 1usize, "a whole number")?;
        let db_max_conns = positive("DB_MAX_CONNS", 10)?;
        if db_min_conns > db_max_conns {
            return Err(err("DB_MIN_CONNS", format!("must not exceed DB_MAX_CONNS ({db_max_conns})")));
        }
        let shutdown_timeout = match src.get("SHUTDOWN_TIMEOUT") {
            None => Duration::from_secs(30),
            Some(raw) => parse_duration("SHUTDOWN_TIMEOUT", &raw)?,
        };

        let http = http_server::read(&src)?;
        let history_retention_days = u32::try_from(positive("HISTORY_RETENTION_DAYS", 90)?)
            .ok()
            .filter(|days| *days <= 36_500)
            .ok_or_else(|| err("HISTORY_RETENTION_DAYS", "must be at most 36500 (100 years)"))?;
        let mut tuning = Tuning::default();
        if app_env == AppEnv::Production {
            tuning.shutdown_drain = (shutdown_timeout / 3).min(Duration::from_secs(5));
        }
        let config = Config {
            port,
            app_env,
            log_level,
            log_format,
            public_url,
            metrics_port,
            storage,
            twitch_client_id,
            twitch_client_secret,
            twitch_redirect_uri,
            twitch_auth_url,
            twitch_api_url,
            session_secret,
            webhook_callback_url,
            webhook_secret,
            bot_user_id,
            eventsub_transport,
            twitch_eventsub_ws_url,
            token_encryption_key,
            token_encryption_key_previous,
            max_websocket_connections,
            max_connections_per_ip,
            max_overlay_connections_per_ip,
            connection_rate_per_ip,
            connection_rate_burst,
            trusted_proxies,
            vote_rate_limit_capacity,
            vote_rate_limit_rate,
            db_min_conns,
            db_max_conns,
            shutdown_timeout,
            http,
            history_retention_days,
            tuning,
        };
        if app_env == AppEnv::Production {
            config.check_production()?;
        }
        Ok(config)
    }

    /// The overlay URL a streamer pastes into OBS.
    pub fn overlay_url(&self, overlay: crate::domain::OverlayId) -> String {
        format!("{}/overlay/{overlay}", self.public_url)
    }

    /// A development configuration for tests: embedded storage in `data_dir`,
    /// an ephemeral port, every default.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let data_dir = data_dir.to_string_lossy().into_owned();
        let mut config = Self::from_lookup(|name| match name {
            "PORT" | "METRICS_PORT" => Some("0".to_owned()),
            "DATA_DIR" => Some(data_dir.clone()),
            "LOG_LEVEL" => Some("warn".to_owned()),
            _ => None,
        })
        .unwrap_or_else(|e| unreachable!("default configuration is valid: {e}"));
        config.tuning.session_grace = Duration::from_millis(200);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(super) fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    pub(super) fn production() -> Vec<(&'static str, &'static str)> {
        vec![
            ("APP_ENV", "production"),
            ("PUBLIC_URL", "https://chatpulse.example"),
            ("TWITCH_CLIENT_ID", "cp1exampleclientid00000000000a"),
            ("TWITCH_CLIENT_SECRET", "s3cr3tvalue000000000000000000"),
            ("SESSION_SECRET", "x7f3d9a0c2e4b6f8a1c3e5d7b9f0a2c4e6d8b0f1a3c5e7d9b2f4a6c8e0d1b3f5a7"),
            ("WEBHOOK_SECRET", "a-real-webhook-secret-42"),
            ("TOKEN_ENCRYPTION_KEY", "8e1f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7"),
            ("BOT_USER_ID", "99887766"),
        ]
    }

    fn with(
        mut base: Vec<(&'static str, &'static str)>,
        k: &'static str,
        v: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        base.retain(|(name, _)| *name != k);
        base.push((k, v));
        base
    }

    #[test]
    fn no_configuration_at_all_gives_the_embedded_development_default() {
        let c = load(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.app_env, AppEnv::Development);
        assert_eq!(c.storage, StorageMode::Embedded { data_dir: "./data".into() });
        assert_eq!(c.public_url, "http://localhost:8080");
        assert_eq!(c.webhook_callback_url, "http://localhost:8080/webhooks/eventsub");
        assert_eq!(c.twitch_api_url, TWITCH_API_URL);
        assert_eq!(c.max_websocket_connections, 10_000);
        assert_eq!(c.connection_rate_per_ip.get(), 10);
        assert_eq!(c.vote_rate_limit_capacity, 1_000);
        assert_eq!(c.vote_rate_limit_rate, 60_000.0);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn a_complete_production_configuration_is_accepted() {
        let c = load(&production()).unwrap();
        assert_eq!(c.app_env, AppEnv::Production);
        assert_eq!(c.tuning.shutdown_drain, Duration::from_secs(5), "a third of 30 s, at most 5 s");
        let quick = load(&with(production(), "SHUTDOWN_TIMEOUT", "6s")).unwrap();
        assert_eq!(quick.tuning.shutdown_drain, Duration::from_secs(2));
        assert_eq!(load(&[]).unwrap().tuning.shutdown_drain, Duration::ZERO, "development stops at once");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.overlay_url("6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e".parse().unwrap()),
            "https://chatpulse.example/overlay/6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e"
        );
    }

    #[test]
    fn production_refuses_the_simulator_and_every_development_secret() {
        for (var, value) in [
            ("TWITCH_CLIENT_ID", ""),
            ("SESSION_SECRET", DEV_SESSION_SECRET),
            ("WEBHOOK_SECRET", DEV_WEBHOOK_SECRET),
            ("TOKEN_ENCRYPTION_KEY", DEV_TOKEN_ENCRYPTION_KEY),
            ("BOT_USER_ID", ""),
            ("PUBLIC_URL", "http://chatpulse.example"),
            ("TWITCH_AUTH_URL", "http://localhost:8090/oauth2"),
            ("TWITCH_API_URL", "http://localhost:8090/helix"),
            ("TWITCH_EVENTSUB_WS_URL", "ws://localhost:8090/ws"),
        ] {
            let mut vars = with(production(), var, value);
            if var == "TWITCH_CLIENT_ID" {
                vars.retain(|(k, _)| *k != "TWITCH_CLIENT_SECRET");
            }
            let e = load(&vars).unwrap_err();
            assert_eq!(e.variable, var, "{e}");
        }
    }

    #[test]
    fn the_eventsub_transport_is_webhook_unless_websocket_is_asked_for() {
        let c = load(&[]).unwrap();
        assert_eq!(c.eventsub_transport, EventSubTransport::Webhook);
        assert_eq!(c.twitch_eventsub_ws_url, TWITCH_EVENTSUB_WS_URL);
        let c =
            load(&[("EVENTSUB_TRANSPORT", "websocket"), ("TWITCH_EVENTSUB_WS_URL", "ws://127.0.0.1:9/ws")]).unwrap();
        assert_eq!(c.eventsub_transport, EventSubTransport::WebSocket);
        assert_eq!(c.twitch_eventsub_ws_url, "ws://127.0.0.1:9/ws");
    }

    #[test]
    fn trusted_proxies_are_addresses_and_networks() {
        assert!(load(&[]).unwrap().trusted_proxies.is_empty(), "nobody is trusted by default");
        let c = load(&[("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1 ,fd00::/8")]).unwrap();
        let [private, loopback, ula] = c.trusted_proxies[..] else { panic!("{:?}", c.trusted_proxies) };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(private.contains(ip("10.200.3.4")) && !private.contains(ip("11.0.0.1")));
        assert!(loopback.contains(ip("127.0.0.1")) && !loopback.contains(ip("127.0.0.2")));
        assert!(loopback.contains(ip("::ffff:127.0.0.1")), "an IPv4 peer seen as IPv6 is the same address");
        assert!(ula.contains(ip("fd12::1")) && !ula.contains(ip("fe80::1")) && !ula.contains(ip("10.0.0.1")));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.9")));
        assert!(IpNet::parse("::/0").unwrap().contains(ip("2001:db8::1")));
    }

    #[test]
    fn history_is_kept_90_days_unless_told_otherwise() {
        assert_eq!(load(&[]).unwrap().history_retention_days, 90);
        assert_eq!(load(&[("HISTORY_RETENTION_DAYS", "7")]).unwrap().history_retention_days, 7);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&str, &str)] = &[
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("EVENTSUB_TRANSPORT", "carrier-pigeon"),
            ("TWITCH_EVENTSUB_WS_URL", "https://eventsub.example/ws"),
            ("APP_ENV", "staging"),
            ("LOG_FORMAT", "xml"),
            ("LOG_LEVEL", "[[["),
            ("LOG_LEVEL", "chatpulse=débug"),
            // The `config` fuzz target's crash (fuzz/artifacts, 2026-12-05): a
            // non-ASCII character where the filter parser slices its input.
            ("LOG_LEVEL", ",,ent\t,,,,,,,\t\t\t\t\t\t\tHOOK_\u{FFFD}\0CRET=cENTSUB_TRANSPOR\u{FFFD}T=webhook/"),
            ("WEBHOOK_SECRET", "short"),
            ("WEBHOOK_SECRET", "has spaces in it"),
            ("TOKEN_ENCRYPTION_KEY", "abcd"),
            ("SESSION_SECRET", "too-short"),
            ("MAX_WEBSOCKET_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS_PER_IP", "-3"),
            ("CONNECTION_RATE_PER_IP", "fast"),
            ("VOTE_RATE_LIMIT_RATE", "0"),
            ("SHUTDOWN_TIMEOUT", "soon"),
            ("PUBLIC_URL", "ftp://x"),
            ("TWITCH_API_URL", "localhost:9000"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("TRUSTED_PROXIES", "10.0.0.1, lb.internal"),
            ("HISTORY_RETENTION_DAYS", "0"),
            ("HISTORY_RETENTION_DAYS", "36501"),
            ("HISTORY_RETENTION_DAYS", "a week"),
        ];
        for (var, value) in cases {
            let e = load(&[(var, value)]).unwrap_err();
            assert_eq!(e.variable, *var, "{var}={value}: {e}");
            assert!(e.to_string().starts_with(&format!("invalid configuration: {var}: ")));
        }
    }

    #[test]
    fn rates_and_durations_accept_their_units() {
        let c = load(&[
            ("CONNECTION_RATE_PER_IP", "5/s"),
            ("VOTE_RATE_LIMIT_RATE", "30/min"),
            ("SHUTDOWN_TIMEOUT", "1500ms"),
        ])
        .unwrap();
        assert_eq!(c.connection_rate_per_ip.get(), 5);
        assert_eq!(c.vote_rate_limit_rate, 30.0);
        assert_eq!(c.shutdown_timeout, Duration::from_millis(1500));
        assert_eq!(load(&[("SHUTDOWN_TIMEOUT", "2m")]).unwrap().shutdown_timeout, Duration::from_secs(120));
        assert_eq!(load(&[("SHUTDOWN_TIMEOUT", "7")]).unwrap().shutdown_timeout, Duration::from_secs(7));
    }

    #[test]
    fn distributed_mode_needs_both_urls() {
        assert_eq!(load(&[("DATABASE_URL", "postgres://localhost/db")]).unwrap_err().variable, "REDIS_URL");
        assert_eq!(load(&[("REDIS_URL", "redis://localhost")]).unwrap_err().variable, "DATABASE_URL");
        let e = load(&[("DATABASE_URL", "mysql://x"), ("REDIS_URL", "redis://localhost")]).unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL");
        let c = load(&[("DATABASE_URL", "postgres://localhost/db"), ("REDIS_URL", "redis://localhost")]).unwrap();
        assert!(matches!(c.storage, StorageMode::Distributed { .. }));
    }

    #[test]
    fn db_pool_bounds_must_be_ordered() {
        assert_eq!(load(&[("DB_MIN_CONNS", "5"), ("DB_MAX_CONNS", "2")]).unwrap_err().variable, "DB_MIN_CONNS");
    }

    #[test]
    fn client_id_and_secret_come_together() {
        assert_eq!(load(&[("TWITCH_CLIENT_ID", "abc")]).unwrap_err().variable, "TWITCH_CLIENT_SECRET");
        assert_eq!(load(&[("TWITCH_CLIENT_SECRET", "abc")]).unwrap_err().variable, "TWITCH_CLIENT_ID");
    }

    #[test]
    fn env_example_documents_every_variable_and_is_itself_valid() {
        let example = include_str!("../.env.example");
        let mut set = HashMap::new();
        for line in example.lines() {
            let documented = line.trim_start_matches('#').trim_start();
            if let Some((name, value)) = documented.split_once('=')
                && !line.starts_with('#')
            {
                set.insert(name.to_owned(), value.to_owned());
            }
        }
        for name in VARIABLES {
            assert!(
                example.lines().any(|l| l.trim_start_matches(['#', ' ']).starts_with(&format!("{name}="))),
                "{name} is not documented in .env.example"
            );
        }
        let defaults = load(&[]).unwrap();
        let from_example = Config::from_lookup(|k| set.get(k).cloned()).unwrap();
        assert_eq!(format!("{from_example:?}"), format!("{defaults:?}"), ".env.example shows the defaults");
    }

    #[test]
    fn secrets_never_print() {
        let c = load(&[]).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains(DEV_WEBHOOK_SECRET));
        assert!(!debug.contains(DEV_SESSION_SECRET));
    }
}
