//! The HTTP server's timeouts and connection caps (`HTTP_*_TIMEOUT`,
//! `MAX_HTTP_CONNECTIONS*`): what one client may hold open, and for how long,
//! before the server closes on it. `http::server` enforces them.

use std::time::Duration;

use super::{ConfigError, Source, err, parse_duration};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpServerLimits {
    /// `HTTP_HEADER_TIMEOUT`: a request's line and headers must arrive within
    /// this long of its first byte (of the connection's opening, for the
    /// first request); otherwise the connection is closed.
    pub header_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT`: a request's body must arrive whole within this
    /// long of its headers.
    pub body_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT`: a kept-alive connection waiting this long for its
    /// next request is closed. Upgraded connections (overlays' WebSockets)
    /// are not HTTP any more: their own keepalive rules apply.
    pub idle_timeout: Duration,
    /// `MAX_HTTP_CONNECTIONS`: open connections at once (WebSockets
    /// included); one more is answered 503 and closed. Keep it below the
    /// process's open-file limit.
    pub max_connections: usize,
    /// `MAX_HTTP_CONNECTIONS_PER_IP`: open connections from one client address
    /// (an IPv6 /64 counts as one), WebSockets included; one more is
    /// answered 429 and closed. Trusted proxies (`TRUSTED_PROXIES`) count
    /// only against the global cap.
    pub max_connections_per_ip: usize,
}

impl Default for HttpServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 12_000,
            max_connections_per_ip: 128,
        }
    }
}

pub(super) fn read<F: Fn(&str) -> Option<String>>(src: &Source<F>) -> Result<HttpServerLimits, ConfigError> {
    let defaults = HttpServerLimits::default();
    let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
        let Some(raw) = src.get(name) else { return Ok(default) };
        match parse_duration(name, &raw)? {
            Duration::ZERO => Err(err(name, "must be longer than zero")),
            d => Ok(d),
        }
    };
    let count = |name: &'static str, default: usize| -> Result<usize, ConfigError> {
        match src.parse(name, default, "a positive whole number")? {
            0 => Err(err(name, "must be at least 1")),
            n => Ok(n),
        }
    };
    let limits = HttpServerLimits {
        header_timeout: duration("HTTP_HEADER_TIMEOUT", defaults.header_timeout)?,
        body_timeout: duration("HTTP_BODY_TIMEOUT", defaults.body_timeout)?,
        idle_timeout: duration("HTTP_IDLE_TIMEOUT", defaults.idle_timeout)?,
        max_connections: count("MAX_HTTP_CONNECTIONS", defaults.max_connections)?,
        max_connections_per_ip: count("MAX_HTTP_CONNECTIONS_PER_IP", defaults.max_connections_per_ip)?,
    };
    if limits.max_connections_per_ip > limits.max_connections {
        return Err(err(
            "MAX_HTTP_CONNECTIONS_PER_IP",
            format!("must not exceed MAX_HTTP_CONNECTIONS ({})", limits.max_connections),
        ));
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read_from(vars: &[(&str, &str)]) -> Result<HttpServerLimits, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        read(&Source(|k: &str| map.get(k).cloned()))
    }

    #[test]
    fn unset_gives_the_documented_defaults() {
        let l = read_from(&[]).unwrap();
        assert_eq!(l, HttpServerLimits::default());
        assert_eq!(l.header_timeout, Duration::from_secs(10));
        assert_eq!(l.body_timeout, Duration::from_secs(30));
        assert_eq!(l.idle_timeout, Duration::from_secs(60));
        assert_eq!((l.max_connections, l.max_connections_per_ip), (12_000, 128));
    }

    #[test]
    fn every_value_can_be_set() {
        let l = read_from(&[
            ("HTTP_HEADER_TIMEOUT", "500ms"),
            ("HTTP_BODY_TIMEOUT", "2s"),
            ("HTTP_IDLE_TIMEOUT", "1m"),
            ("MAX_HTTP_CONNECTIONS", "50"),
            ("MAX_HTTP_CONNECTIONS_PER_IP", "5"),
        ])
        .unwrap();
        assert_eq!(l.header_timeout, Duration::from_millis(500));
        assert_eq!(l.body_timeout, Duration::from_secs(2));
        assert_eq!(l.idle_timeout, Duration::from_secs(60));
        assert_eq!((l.max_connections, l.max_connections_per_ip), (50, 5));
    }

    proptest::proptest! {
        // Durations are a hand-written parser: every well-formed value reads
        // as its number times its unit, and nothing else panics.
        #[test]
        fn durations_read_as_their_number_and_unit(n in 0u64..10_000_000, unit in 0usize..4) {
            let (suffix, ms) = [("ms", 1), ("s", 1_000), ("m", 60_000), ("", 1_000)][unit];
            let parsed = parse_duration("HTTP_IDLE_TIMEOUT", &format!("{n}{suffix}"));
            proptest::prop_assert_eq!(parsed, Ok(Duration::from_millis(n * ms)));
        }

        #[test]
        fn any_text_is_a_duration_or_an_error_naming_the_variable(raw in "\\PC{0,12}") {
            if let Err(e) = parse_duration("HTTP_BODY_TIMEOUT", &raw) {
                proptest::prop_assert_eq!(e.variable, "HTTP_BODY_TIMEOUT");
            }
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("HTTP_HEADER_TIMEOUT", "0s"),
            ("HTTP_BODY_TIMEOUT", "soon"),
            ("HTTP_IDLE_TIMEOUT", "-1s"),
            ("MAX_HTTP_CONNECTIONS", "0"),
            ("MAX_HTTP_CONNECTIONS_PER_IP", "many"),
        ] {
            let e = read_from(&[(name, value)]).unwrap_err();
            assert_eq!(e.variable, name, "{value}");
        }
        let e = read_from(&[("MAX_HTTP_CONNECTIONS", "10"), ("MAX_HTTP_CONNECTIONS_PER_IP", "11")]).unwrap_err();
        assert_eq!(e.variable, "MAX_HTTP_CONNECTIONS_PER_IP");
    }
}
