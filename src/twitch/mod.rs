//! The Twitch protocol as ChatPulse speaks it (`shared/twitch-protocol.md`):
//! EventSub messages and their HMAC signatures, the EventSub WebSocket
//! transport, and the Helix/OAuth clients with their call policy. (The
//! simulator that stands in for Twitch in the demo and the tests is the
//! `twitch-sim` crate.)

pub mod client;
pub mod eventsub;
pub mod eventsub_ws;
pub mod oauth;
pub mod retry;
pub mod signature;
pub mod status;

/// How Twitch reaches our conduit's shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSubTransport {
    /// Shard 0 is `WEBHOOK_CALLBACK_URL`; any instance receives.
    Webhook,
    /// Shard 0 is a WebSocket session the leader holds open.
    WebSocket,
}
