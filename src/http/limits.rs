//! Overlay connection limits per instance: total, per client address, per
//! client address on one overlay (so whoever holds a leaked overlay URL cannot
//! take every place of its session and lock OBS out), and the rate of new
//! connections per address (governor). An address is an IPv4 address or an
//! IPv6 /64 ([`limit_key`]). Never applied to the webhook route: Twitch
//! delivers every channel's chat from the same addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::{OverlayId, limit_key};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("this server has reached its connection limit")]
    Total,
    #[error("too many connections from this address")]
    PerIp,
    #[error("too many connections to this overlay from this address")]
    PerOverlay,
    #[error("connecting too fast; retry shortly")]
    Rate,
}

impl LimitExceeded {
    pub fn label(self) -> &'static str {
        match self {
            LimitExceeded::Total => "total_limit",
            LimitExceeded::PerIp => "per_ip_limit",
            LimitExceeded::PerOverlay => "per_overlay_limit",
            LimitExceeded::Rate => "rate_limit",
        }
    }
}

pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    max_per_overlay: usize,
    rate: DefaultKeyedRateLimiter<IpAddr>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    per_overlay: HashMap<(IpAddr, OverlayId), usize>,
}

/// One open connection; dropping it frees its place.
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
    overlay: OverlayId,
}

impl ConnectionLimits {
    /// `max_per_overlay`: connections one address may hold to one overlay.
    pub fn new(
        max_total: usize,
        max_per_ip: usize,
        max_per_overlay: usize,
        rate_per_second: NonZeroU32,
        burst: NonZeroU32,
    ) -> Self {
        let quota = Quota::per_second(rate_per_second).allow_burst(burst);
        let counts = Mutex::new(Counts::default());
        Self { max_total, max_per_ip, max_per_overlay, rate: RateLimiter::keyed(quota), counts }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a place for a new connection from `ip` to `overlay`, or says
    /// which limit stops it.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, overlay: OverlayId) -> Result<ConnectionPermit, LimitExceeded> {
        let ip = limit_key(ip);
        if self.rate.check_key(&ip).is_err() {
            return Err(LimitExceeded::Rate);
        }
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(LimitExceeded::Total);
        }
        if counts.per_ip.get(&ip).is_some_and(|&n| n >= self.max_per_ip) {
            return Err(LimitExceeded::PerIp);
        }
        let on_overlay = counts.per_overlay.entry((ip, overlay)).or_insert(0);
        if *on_overlay >= self.max_per_overlay {
            return Err(LimitExceeded::PerOverlay);
        }
        *on_overlay += 1;
        *counts.per_ip.entry(ip).or_insert(0) += 1;
        counts.total += 1;
        Ok(ConnectionPermit { limits: Arc::clone(self), ip, overlay })
    }

    /// Forgets rate-limiter state of addresses not seen lately (call periodically).
    pub fn prune(&self) {
        self.rate.retain_recent();
        self.rate.shrink_to_fit();
    }

    pub fn open_connections(&self) -> usize {
        self.counts().total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.limits.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
        let key = (self.ip, self.overlay);
        if let Some(n) = counts.per_overlay.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                counts.per_overlay.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize, rate: u32, burst: u32) -> Arc<ConnectionLimits> {
        let nz = |n| NonZeroU32::new(n).unwrap();
        Arc::new(ConnectionLimits::new(total, per_ip, per_ip, nz(rate), nz(burst)))
    }

    fn o() -> OverlayId {
        "6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e".parse().unwrap()
    }

    #[test]
    fn one_address_holds_a_bounded_share_of_one_overlay_and_ipv6_counts_by_64() {
        let nz = |n| NonZeroU32::new(n).unwrap();
        let l = Arc::new(ConnectionLimits::new(100, 10, 2, nz(100), nz(100)));
        let (a, b) = ("2001:db8:1:2::1".parse().unwrap(), "2001:db8:1:2:ffff::9".parse().unwrap());
        let _one = l.acquire(a, o()).unwrap();
        let two = l.acquire(b, o()).unwrap();
        assert_eq!(l.acquire(a, o()).err(), Some(LimitExceeded::PerOverlay), "the same /64");
        assert!(l.acquire(a, OverlayId::random()).is_ok(), "another overlay");
        assert!(l.acquire("2001:db8:1:3::1".parse().unwrap(), o()).is_ok(), "another /64");
        drop(two);
        assert!(l.acquire(b, o()).is_ok());
    }

    #[test]
    fn permits_count_per_ip_and_are_returned_on_drop() {
        let l = limits(10, 2, 100, 100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = l.acquire(ip, o()).unwrap();
        let _b = l.acquire(ip, o()).unwrap();
        assert_eq!(l.acquire(ip, o()).err(), Some(LimitExceeded::PerIp));
        assert!(l.acquire("10.0.0.2".parse().unwrap(), o()).is_ok());
        drop(a);
        assert!(l.acquire(ip, o()).is_ok());
    }

    #[test]
    fn the_total_limit_applies_across_addresses() {
        let l = limits(2, 5, 100, 100);
        let _a = l.acquire("10.0.0.1".parse().unwrap(), o()).unwrap();
        let _b = l.acquire("10.0.0.2".parse().unwrap(), o()).unwrap();
        assert_eq!(l.acquire("10.0.0.3".parse().unwrap(), o()).err(), Some(LimitExceeded::Total));
        assert_eq!(l.open_connections(), 2);
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_refuses() {
        let l = limits(100, 100, 1, 3);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let permits: Vec<_> = (0..3).map(|_| l.acquire(ip, o()).unwrap()).collect();
        assert_eq!(l.acquire(ip, o()).err(), Some(LimitExceeded::Rate));
        assert_eq!(permits.len(), 3);
    }
}
