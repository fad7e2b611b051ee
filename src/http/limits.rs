//! Overlay connection limits per instance: total, per client IP, and the rate
//! of new connections per IP (governor). Never applied to the webhook route:
//! Twitch delivers every channel's chat from the same addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("this server has reached its connection limit")]
    Total,
    #[error("too many connections from this address")]
    PerIp,
    #[error("connecting too fast; retry shortly")]
    Rate,
}

impl LimitExceeded {
    pub fn label(self) -> &'static str {
        match self {
            LimitExceeded::Total => "total_limit",
            LimitExceeded::PerIp => "per_ip_limit",
            LimitExceeded::Rate => "rate_limit",
        }
    }
}

pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    rate: DefaultKeyedRateLimiter<IpAddr>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One open connection; dropping it frees its place.
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize, rate_per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_second(rate_per_second).allow_burst(burst);
        Self { max_total, max_per_ip, rate: RateLimiter::keyed(quota), counts: Mutex::new(Counts::default()) }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a place for a new connection from `ip`, or says which limit stops it.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, LimitExceeded> {
        if self.rate.check_key(&ip).is_err() {
            return Err(LimitExceeded::Rate);
        }
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(LimitExceeded::Total);
        }
        let for_ip = counts.per_ip.entry(ip).or_insert(0);
        if *for_ip >= self.max_per_ip {
            return Err(LimitExceeded::PerIp);
        }
        *for_ip += 1;
        counts.total += 1;
        Ok(ConnectionPermit { limits: Arc::clone(self), ip })
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize, rate: u32, burst: u32) -> Arc<ConnectionLimits> {
        let nz = |n| NonZeroU32::new(n).unwrap();
        Arc::new(ConnectionLimits::new(total, per_ip, nz(rate), nz(burst)))
    }

    #[test]
    fn permits_count_per_ip_and_are_returned_on_drop() {
        let l = limits(10, 2, 100, 100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = l.acquire(ip).unwrap();
        let _b = l.acquire(ip).unwrap();
        assert_eq!(l.acquire(ip).err(), Some(LimitExceeded::PerIp));
        assert!(l.acquire("10.0.0.2".parse().unwrap()).is_ok());
        drop(a);
        assert!(l.acquire(ip).is_ok());
    }

    #[test]
    fn the_total_limit_applies_across_addresses() {
        let l = limits(2, 5, 100, 100);
        let _a = l.acquire("10.0.0.1".parse().unwrap()).unwrap();
        let _b = l.acquire("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(l.acquire("10.0.0.3".parse().unwrap()).err(), Some(LimitExceeded::Total));
        assert_eq!(l.open_connections(), 2);
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_refuses() {
        let l = limits(100, 100, 1, 3);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let permits: Vec<_> = (0..3).map(|_| l.acquire(ip).unwrap()).collect();
        assert_eq!(l.acquire(ip).err(), Some(LimitExceeded::Rate));
        assert_eq!(permits.len(), 3);
    }
}
