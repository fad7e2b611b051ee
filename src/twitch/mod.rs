//! The Twitch protocol as ChatPulse speaks it (`shared/twitch-protocol.md`):
//! EventSub webhook payloads and their HMAC signatures, the Helix/OAuth
//! client and its call policy.

pub mod client;
pub mod eventsub;
pub mod eventsub_ws;
pub mod oauth;
pub mod retry;
pub mod signature;
pub mod status;
