//! Small helpers shared by the simulator: random ids and tokens, Twitch
//! timestamps, urlencoded parsing, opaque cursors and callback URL rules.

use std::net::IpAddr;

use time::OffsetDateTime;
use time::macros::format_description;

/// EventSub style: RFC 3339, UTC, always nine fraction digits.
pub(crate) fn rfc3339_nanos(at: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    at.to_offset(time::UtcOffset::UTC).format(format).unwrap_or_default()
}

/// Helix style: RFC 3339, UTC, whole seconds.
pub(crate) fn rfc3339_seconds(at: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.to_offset(time::UtcOffset::UTC).format(format).unwrap_or_default()
}

/// Helix markers style: RFC 3339, UTC, microseconds (§7.6's example).
pub(crate) fn rfc3339_micros(at: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    at.to_offset(time::UtcOffset::UTC).format(format).unwrap_or_default()
}

/// Parses an RFC 3339 timestamp (any fraction length, any offset).
pub(crate) fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const MIXED_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in uuid::Uuid::new_v4().into_bytes() {
            if out.len() == len {
                break;
            }
            out.push(char::from(alphabet[usize::from(byte) % alphabet.len()]));
        }
    }
    out
}

/// Lower-case alphanumerics, like Twitch access tokens and codes.
pub(crate) fn random_token(len: usize) -> String {
    random_from(LOWER_ALNUM, len)
}

pub(crate) fn random_mixed(len: usize) -> String {
    random_from(MIXED_ALNUM, len)
}

/// A refresh token that contains `%` and `=`, so that a client which forgets
/// to URL-encode it fails against the simulator as it would against Twitch.
pub(crate) fn random_refresh_token() -> String {
    format!("{}%={}", random_token(46), random_token(2))
}

/// A small, fast, non-cryptographic generator (xorshift64*) for synthetic chat.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Self {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        // 53 random bits; the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        let value = (self.next_u64() >> 11) as f64;
        value / 9_007_199_254_740_992.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next_u64() % u64::try_from(n).unwrap_or(u64::MAX)).unwrap_or(0)
    }
}

/// FNV-1a: a stable hash for shard routing (std's hasher may change between releases).
pub(crate) fn stable_hash(input: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in input.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes one `application/x-www-form-urlencoded` component.
pub(crate) fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let pair = hi.zip(bytes.get(i + 2).copied().and_then(hex_value));
                if let Some((hi, lo)) = pair {
                    out.push(hi * 16 + lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string or form body into ordered pairs (repeated keys kept).
pub(crate) fn parse_urlencoded(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(part), String::new()),
        })
        .collect()
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub(crate) fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Query/form pairs with convenience look-ups.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(pub Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(input: Option<&str>) -> Self {
        Self(input.map(parse_urlencoded).unwrap_or_default())
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated `key`.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    pub(crate) fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding (cursors look like Twitch's).
pub(crate) fn base64url_encode(input: &[u8]) -> String {
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(B64[usize::try_from(index).unwrap_or(0)]));
        }
    }
    out
}

pub(crate) fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    let input = input.trim_end_matches('=');
    let mut out = Vec::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in input.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).unwrap_or(0));
        }
    }
    Some(out)
}

/// An opaque, deterministic cursor naming a position (like Twitch's
/// `{"b":null,"a":{"Cursor":"…"}}` cursors, base64url-encoded).
pub(crate) fn encode_cursor(position: u64) -> String {
    base64url_encode(format!("{{\"b\":null,\"a\":{{\"Cursor\":\"{position}\"}}}}").as_bytes())
}

pub(crate) fn decode_cursor(cursor: &str) -> Option<u64> {
    let bytes = base64url_decode(cursor)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("a")?.get("Cursor")?.as_str()?.parse().ok()
}

/// Twitch accepts only `https` callbacks on port 443. For local use the
/// simulator also accepts `http` callbacks on a loopback host, any port.
pub(crate) fn check_callback(url: &str) -> Result<(), &'static str> {
    const MESSAGE: &str = "The callback must use HTTPS on port 443 (or http:// on a loopback host for local use)";
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(MESSAGE);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(MESSAGE);
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(MESSAGE)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(MESSAGE)?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(MESSAGE);
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| MESSAGE)?),
    };
    if https {
        return if port.is_none_or(|p| p == 443) { Ok(()) } else { Err(MESSAGE) };
    }
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback { Ok(()) } else { Err(MESSAGE) }
}

/// Secrets: 10–100 ASCII characters.
pub(crate) fn check_secret(secret: &str) -> Result<(), &'static str> {
    if (10..=100).contains(&secret.len()) && secret.is_ascii() {
        Ok(())
    } else {
        Err("The secret must be between 10 and 100 ASCII characters")
    }
}

/// Twitch logins: 1–25 of `a-z0-9_` (stored lower-case).
pub(crate) fn valid_login(login: &str) -> bool {
    (1..=25).contains(&login.len()) && login.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_round_trip() {
        let pairs = parse_urlencoded("a=1&b=x%3Ay+z&a=2&flag&c=%zz&d=%4");
        assert_eq!(pairs[0], ("a".into(), "1".into()));
        assert_eq!(pairs[1], ("b".into(), "x:y z".into()));
        assert_eq!(pairs[2], ("a".into(), "2".into()));
        assert_eq!(pairs[3], ("flag".into(), String::new()));
        assert_eq!(pairs[4], ("c".into(), "%zz".into()));
        assert_eq!(pairs[5], ("d".into(), "%4".into()));
        let token = random_refresh_token();
        assert_eq!(percent_decode(&percent_encode(&token)), token);
    }

    #[test]
    fn cursors_are_opaque_and_reversible() {
        for n in [0, 1, 17, 123_456_789] {
            let c = encode_cursor(n);
            assert!(c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(decode_cursor(&c), Some(n));
        }
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(base64url_encode(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw");
    }

    #[test]
    fn callbacks() {
        assert!(check_callback("https://chatpulse.example/webhooks/eventsub").is_ok());
        assert!(check_callback("https://chatpulse.example:443/x").is_ok());
        assert!(check_callback("https://chatpulse.example:8443/x").is_err());
        assert!(check_callback("http://chatpulse.example/x").is_err());
        assert!(check_callback("http://127.0.0.1:9000/x").is_ok());
        assert!(check_callback("http://127.8.0.1:9000/x").is_ok());
        assert!(check_callback("http://localhost:9000/x").is_ok());
        assert!(check_callback("http://[::1]:9000/x").is_ok());
        assert!(check_callback("http://10.0.0.1:9000/x").is_err());
        assert!(check_callback("ftp://localhost/x").is_err());
        assert!(check_callback("https://user@host/x").is_err());
    }
}
