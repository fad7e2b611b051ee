//! `POST /webhooks/eventsub` without the network: arbitrary headers and body
//! through the transport's checks (headers → signature → freshness → body).
//!
//! Input: a delivery as text, `name: value` header lines, an empty line, then
//! the raw body. Two placeholders keep the interesting paths reachable: a
//! signature header of `sha256=SIGN` is replaced by the correct signature of
//! the delivery (so the body's parser is reached), and a timestamp of `NOW`
//! by the fixed "now" of the check. Any other value is used as given.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chatpulse::http::webhook::verify_delivery;
use chatpulse::twitch::signature;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const SECRET: &str = "fuzz-webhook-secret-0123456789abcdef";
const NOW: &str = "2026-03-14T19:20:31.055381920Z";

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let now = OffsetDateTime::parse(NOW, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut lines: Vec<(String, Vec<u8>)> = Vec::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
        let mut value = line[colon + 1..].to_vec();
        while value.first() == Some(&b' ') {
            value.remove(0);
        }
        if value == b"NOW" {
            value = NOW.as_bytes().to_vec();
        }
        lines.push((name, value));
    }
    let text = |name: &str| {
        lines.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
    };
    let (id, timestamp) = (text("twitch-eventsub-message-id"), text("twitch-eventsub-message-timestamp"));
    let correct = signature::sign(SECRET, &id, &timestamp, body);
    let mut headers = HeaderMap::new();
    for (name, value) in &lines {
        let value = if name == "twitch-eventsub-message-signature" && value == b"sha256=SIGN" {
            correct.as_bytes().to_vec()
        } else {
            value.clone()
        };
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
            headers.append(name, value);
        }
    }
    let result = verify_delivery(SECRET, &headers, body, now);
    if result.is_ok() {
        // Nothing passes without the right signature on exactly these bytes.
        let sent = headers.get("twitch-eventsub-message-signature").and_then(|v| v.to_str().ok());
        assert_eq!(sent, Some(correct.as_str()), "accepted a delivery whose signature is not the correct one");
        // The same bytes are judged the same way twice.
        assert!(verify_delivery(SECRET, &headers, body, now).is_ok());
    }
});
