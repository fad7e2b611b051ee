//! Who the client is, for the per-IP limits. Behind a load balancer every
//! request comes from the balancer's address; the client's is in
//! `X-Forwarded-For`, which anyone can write, so it is read only when the
//! peer is a configured trusted proxy (`TRUSTED_PROXIES`), and only up to
//! the first address that is not one: each proxy appends the address it
//! received the request from, so everything left of that is the client's
//! own claim.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderMap;

use crate::domain::IpNet;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn new(nets: &[IpNet]) -> Self {
        Self(nets.into())
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy;
    /// then the right-most `X-Forwarded-For` entry that is not one.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Ok(ip) = entry.parse::<IpAddr>() else { break };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn balancers() -> TrustedProxies {
        TrustedProxies::new(&[IpNet::parse("10.0.0.0/8").unwrap()])
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("10.1.2.3"), &forwarded(&["203.0.113.7"])), ip("10.1.2.3"));
    }

    #[test]
    fn a_trusted_proxy_passes_on_the_address_it_received_from() {
        let p = balancers();
        assert_eq!(p.client_ip(ip("10.1.2.3"), &forwarded(&["203.0.113.7"])), ip("203.0.113.7"));
        // Through two balancers (one header or two): still the client.
        assert_eq!(p.client_ip(ip("10.1.2.3"), &forwarded(&["203.0.113.7, 10.9.9.9"])), ip("203.0.113.7"));
        assert_eq!(p.client_ip(ip("10.1.2.3"), &forwarded(&["203.0.113.7", "10.9.9.9"])), ip("203.0.113.7"));
    }

    #[test]
    fn what_the_client_wrote_itself_is_ignored() {
        // The client sent "X-Forwarded-For: 198.51.100.1"; the balancer appended the real address.
        let p = balancers();
        assert_eq!(p.client_ip(ip("10.1.2.3"), &forwarded(&["198.51.100.1, 203.0.113.7"])), ip("203.0.113.7"));
        // An untrusted peer cannot claim anything.
        assert_eq!(p.client_ip(ip("203.0.113.7"), &forwarded(&["10.0.0.1"])), ip("203.0.113.7"));
    }

    #[test]
    fn a_missing_or_garbled_header_leaves_the_last_address_known() {
        let p = balancers();
        assert_eq!(p.client_ip(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"));
        assert_eq!(p.client_ip(ip("10.1.2.3"), &forwarded(&["nonsense"])), ip("10.1.2.3"));
        assert_eq!(p.client_ip(ip("10.1.2.3"), &forwarded(&["203.0.113.7, nonsense"])), ip("10.1.2.3"));
        assert_eq!(p.client_ip(ip("::ffff:10.1.2.3"), &forwarded(&["203.0.113.7"])), ip("203.0.113.7"));
    }
}
