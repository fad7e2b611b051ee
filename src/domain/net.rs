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

#[cfg(test)]
mod tests {
    use super::*;

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
