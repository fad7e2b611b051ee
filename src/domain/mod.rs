//! Pure types and rules. Nothing in here performs I/O or reads a clock:
//! callers pass the current time in, which keeps every rule testable.

pub mod api_token;
pub mod chat;
pub mod config_input;
pub mod history;
pub mod ids;
pub mod look;
pub mod meter;
pub mod net;
pub mod overlay_config;
pub mod secret_strength;
pub mod sentiment;
pub mod stream_summary;
pub mod trigger;

pub use api_token::{ApiTokenError, ApiTokenId, TokenName};
pub use chat::ChatMessage;
pub use config_input::{ConfigField, ConfigInput, FieldProblem};
pub use ids::{BroadcasterId, ChatterId, IdError, OverlayId, StreamerId};
pub use look::{Appearance, Color, Layout, Look, LookWarning};
pub use meter::{MeterModel, MeterReading, MeterState};
pub use net::{IpNet, limit_key};
pub use overlay_config::{ConfigError, DecaySpeed, Label, OverlayConfig};
pub use sentiment::{Direction, SessionStatus};
pub use trigger::{MatchMode, Said, Trigger, match_vote};

/// Whether two trigger words would be indistinguishable in chat.
pub fn trigger_eq(a: &str, b: &str) -> bool {
    trigger::eq_ignore_case(a, b)
}
