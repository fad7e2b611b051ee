//! Response hardening and per-IP request limits for the streamer-facing pages.
//!
//! Every response gets `nosniff` and a referrer policy; HTML pages get a
//! Content-Security-Policy they actually satisfy (no inline script or style);
//! the dashboard cannot be framed; the overlay may only be framed by our own
//! dashboard (its live preview) — OBS loads it top-level. HSTS in production.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::client_ip::TrustedProxies;

const PAGE_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                        connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const OVERLAY_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                           connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'";

/// Adds the security headers; `hsts` in production only.
pub async fn headers(State(hsts): State<bool>, request: Request, next: Next) -> Response {
    let overlay = request.uri().path().starts_with("/overlay/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.entry(header::REFERRER_POLICY).or_insert(HeaderValue::from_static("same-origin"));
    let is_html = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        if overlay {
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(OVERLAY_CSP));
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
        } else {
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
    }
    if hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    response
}

/// A per-address request budget (governor), keyed by the client's address
/// (see [`TrustedProxies`]): an IPv4 address, or an IPv6 /64
/// ([`crate::domain::limit_key`]).
#[derive(Clone)]
pub struct IpLimit(Arc<DefaultKeyedRateLimiter<IpAddr>>, TrustedProxies);

impl IpLimit {
    /// A limiter that forgets idle addresses every minute (the pruning task
    /// ends when the limiter is dropped).
    pub fn per_minute(rate: u32, burst: u32, proxies: TrustedProxies) -> Self {
        let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let limiter = Arc::new(RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst)));
        let weak = Arc::downgrade(&limiter);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut ticker = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    ticker.tick().await;
                    let Some(limiter) = weak.upgrade() else { return };
                    limiter.retain_recent();
                }
            });
        }
        Self(limiter, proxies)
    }
}

/// 429 with `Retry-After` once an address has used its budget.
pub async fn limit(
    State(limit): State<IpLimit>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let client = crate::domain::limit_key(limit.1.client_ip(addr.ip(), request.headers()));
    match limit.0.check_key(&client) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let seconds = retry_after(not_until.wait_time_from(DefaultClock::default().now())).to_string();
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "too many requests; slow down").into_response();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

/// `Retry-After` in whole seconds, rounded up: a client that waits that long
/// finds its budget refilled (rounding down would send it back too early).
fn retry_after(wait: std::time::Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn retry_after_is_the_wait_rounded_up() {
        assert_eq!(super::retry_after(Duration::from_millis(1_001)), 2);
        assert_eq!(super::retry_after(Duration::from_millis(59_990)), 60);
        assert_eq!(super::retry_after(Duration::from_secs(2)), 2);
        assert_eq!(super::retry_after(Duration::ZERO), 1);
    }
}
