//! EventSub webhook signatures (twitch-protocol.md §5.4):
//! `sha256=` + hex(HMAC-SHA256(secret, message_id ‖ timestamp ‖ raw_body)).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "sha256=";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header does not start with sha256=")]
    Prefix,
    #[error("signature is not 64 hex digits")]
    Encoding,
    #[error("signature does not match")]
    Mismatch,
}

fn mac(secret: &[u8], message_id: &[u8], timestamp: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(message_id);
    mac.update(timestamp);
    mac.update(body);
    mac
}

/// The `Twitch-Eventsub-Message-Signature` value for a message.
pub fn sign(secret: &str, message_id: &str, timestamp: &str, body: &[u8]) -> String {
    let tag = mac(secret.as_bytes(), message_id.as_bytes(), timestamp.as_bytes(), body).finalize();
    format!("{PREFIX}{}", hex::encode(tag.into_bytes()))
}

/// Checks a signature header in constant time. The body must be the raw bytes
/// as received, never re-serialised JSON.
pub fn verify(
    secret: &str,
    message_id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> Result<(), SignatureError> {
    let hex_part = header.strip_prefix(PREFIX).ok_or(SignatureError::Prefix)?;
    let mut expected = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut expected).map_err(|_| SignatureError::Encoding)?;
    mac(secret.as_bytes(), message_id.as_bytes(), timestamp.as_bytes(), body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The known-answer vectors of twitch-protocol.md §5.4.
    const SECRET: &str = "chatpulse-dev-secret-0123456789";
    const ONLINE_ID: &str = "5e0b6f7a-3c1d-4b8e-9f21-6a7d0c4e2b19";
    const ONLINE_TS: &str = "2026-03-14T19:02:07.481516273Z";
    const ONLINE_BODY: &str = r#"{"subscription":{"id":"7c9e6679-7425-40de-944b-e07fc1f90ae7","status":"enabled","type":"stream.online","version":"1","condition":{"broadcaster_user_id":"41245072"},"transport":{"method":"conduit","conduit_id":"e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa"},"created_at":"2026-03-01T12:00:00.000000000Z","cost":0},"event":{"id":"50123456789","broadcaster_user_id":"41245072","broadcaster_user_login":"pixelpaws","broadcaster_user_name":"PixelPaws","type":"live","started_at":"2026-03-14T19:02:05Z"}}"#;
    const ONLINE_SIG: &str = "sha256=4526fd31b2ccd645d58ed3ef85c84d6675bca0e76c0a79d6c2365a4ce2d0078b";
    const VERIFY_ID: &str = "b1f3e8d4-0a6c-4c57-8e2f-9d5a7b3c1e60";
    const VERIFY_TS: &str = "2026-03-14T18:55:00.000000001Z";
    const VERIFY_BODY: &str = r#"{"challenge":"pp-challenge-7f3a9c1e","subscription":{"id":"7c9e6679-7425-40de-944b-e07fc1f90ae7","status":"webhook_callback_verification_pending","type":"stream.online","version":"1","condition":{"broadcaster_user_id":"41245072"},"transport":{"method":"webhook","callback":"https://chatpulse.example/eventsub"},"created_at":"2026-03-14T18:54:59.912345678Z","cost":0}}"#;
    const VERIFY_SIG: &str = "sha256=458474de7a6654c02cfb8aacbc924e431e018ece9c6d4c69d91ea0fdadd92799";

    #[test]
    fn signing_reproduces_the_documented_vectors() {
        assert_eq!(ONLINE_BODY.len(), 490);
        assert_eq!(sign(SECRET, ONLINE_ID, ONLINE_TS, ONLINE_BODY.as_bytes()), ONLINE_SIG);
        assert_eq!(sign(SECRET, VERIFY_ID, VERIFY_TS, VERIFY_BODY.as_bytes()), VERIFY_SIG);
    }

    #[test]
    fn the_documented_signatures_verify() {
        assert_eq!(verify(SECRET, ONLINE_ID, ONLINE_TS, ONLINE_BODY.as_bytes(), ONLINE_SIG), Ok(()));
        assert_eq!(verify(SECRET, VERIFY_ID, VERIFY_TS, VERIFY_BODY.as_bytes(), VERIFY_SIG), Ok(()));
    }

    #[test]
    fn any_change_to_id_timestamp_body_or_secret_fails() {
        let body = ONLINE_BODY.as_bytes();
        let check = |secret, id, ts, body: &[u8]| verify(secret, id, ts, body, ONLINE_SIG);
        assert_eq!(check("other-secret-value", ONLINE_ID, ONLINE_TS, body), Err(SignatureError::Mismatch));
        assert_eq!(check(SECRET, VERIFY_ID, ONLINE_TS, body), Err(SignatureError::Mismatch));
        assert_eq!(check(SECRET, ONLINE_ID, VERIFY_TS, body), Err(SignatureError::Mismatch));
        let reformatted = ONLINE_BODY.replace(",\"", ", \"");
        assert_eq!(check(SECRET, ONLINE_ID, ONLINE_TS, reformatted.as_bytes()), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_headers_are_told_apart_from_mismatches() {
        let body = ONLINE_BODY.as_bytes();
        let hex = &ONLINE_SIG[7..];
        assert_eq!(verify(SECRET, ONLINE_ID, ONLINE_TS, body, hex), Err(SignatureError::Prefix));
        assert_eq!(verify(SECRET, ONLINE_ID, ONLINE_TS, body, "sha1=abc"), Err(SignatureError::Prefix));
        assert_eq!(verify(SECRET, ONLINE_ID, ONLINE_TS, body, "sha256=zz"), Err(SignatureError::Encoding));
        assert_eq!(
            verify(SECRET, ONLINE_ID, ONLINE_TS, body, &ONLINE_SIG[..ONLINE_SIG.len() - 2]),
            Err(SignatureError::Encoding)
        );
        let upper = format!("sha256={}", hex.to_uppercase());
        assert_eq!(verify(SECRET, ONLINE_ID, ONLINE_TS, body, &upper), Ok(()), "hex case does not matter");
    }
}
