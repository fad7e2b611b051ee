//! IP networks, as `TRUSTED_PROXIES` lists them.

/// An IP network (`10.0.0.0/8`, `fd00::/8`) or one address (a full-length
/// prefix), as `TRUSTED_PROXIES` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(raw: &str) -> Option<Self> {
        let (addr, prefix) = match raw.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<std::net::IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?)),
            None => (raw.parse().ok()?, None),
        };
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32u32),
            IpAddr::V6(v6) => (u128::from(v6), 128u32),
        };
        let ((net, width), (candidate, other)) = (bits(self.addr), bits(ip.to_canonical()));
        if width != other {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= width || (net >> shift) == (candidate >> shift)
    }
}

/// The key per-address limits count a client under: an IPv4 address as it
/// is, an IPv6 address by its /64 — the smallest network a provider hands
/// out, so one subscriber cannot step around a limit by changing the low 64
/// bits (they have 2^64 addresses to choose from). IPv4-mapped IPv6
/// addresses count as the IPv4 address.
pub fn limit_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX)))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_limited_by_their_64_and_ipv4_clients_by_their_address() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")), ip("2001:db8:1:2::"));
        assert_ne!(limit_key(ip("2001:db8:1:3::1")), limit_key(ip("2001:db8:1:2::1")));
        assert_eq!(limit_key(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(limit_key(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
    }

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_network_contains_the_addresses_under_its_prefix() {
        let private = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(private.contains(ip("10.200.3.4")) && !private.contains(ip("11.0.0.1")));
        let one = IpNet::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("::ffff:127.0.0.1")), "an IPv4 peer seen as IPv6 is the same address");
        assert!(IpNet::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(!IpNet::parse("fd00::/8").unwrap().contains(ip("10.0.0.1")));
        assert_eq!(IpNet::parse("10.0.0.0/33"), None);
        assert_eq!(IpNet::parse("lb.internal"), None);
    }
}
