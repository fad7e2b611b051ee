//! EventSub WebSocket frames as the client reads them: one text frame →
//! `Frame::parse`, then, for notifications and revocations, the payload
//! through the same message parser the client hands it to.
#![no_main]

use chatpulse::twitch::eventsub::parse_message;
use chatpulse::twitch::eventsub_ws::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A WebSocket text frame is UTF-8 by definition (tungstenite refuses others).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(frame) = Frame::parse(text) else { return };
    // What the parser returns describes the frame it parsed.
    assert!(!frame.message_type().is_empty());
    let _ = frame.message_id();
    let (message_id, message_type, subscription_type, payload) = match frame {
        Frame::Notification { message_id, subscription_type, payload } => {
            (message_id, "notification", subscription_type, payload)
        }
        Frame::Revocation { message_id, subscription_type, payload } => {
            (message_id, "revocation", subscription_type, payload)
        }
        Frame::Welcome { .. } | Frame::Keepalive { .. } | Frame::Reconnect { .. } => return,
    };
    let first = parse_message(&message_id, message_type, subscription_type.as_deref(), payload.as_bytes());
    let second = parse_message(&message_id, message_type, subscription_type.as_deref(), payload.as_bytes());
    assert_eq!(first.is_ok(), second.is_ok());
});
