//! Identifiers that are easy to mix up get their own types. They are parsed
//! once at the edge (HTTP path, webhook payload, CLI argument) and trusted after.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The secret in an overlay URL (`/overlay/{id}`). Random v4, so it cannot be guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OverlayId(Uuid);

impl OverlayId {
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// How logs and traces name the overlay: the id is its only credential
    /// and never appears there. A short fingerprint of it (`ov-` and 8 hex
    /// digits of its SHA-256) tells overlays apart without revealing one.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.0.as_bytes());
        format!("ov-{}", hex::encode(&digest[..4]))
    }
}

impl FromStr for OverlayId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| IdError::Overlay)
    }
}

impl fmt::Display for OverlayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always the hyphenated lower-case form: it is what the URL and Redis keys carry.
        self.0.hyphenated().fmt(f)
    }
}

/// Our own primary key for a streamer (a user of ChatPulse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamerId(Uuid);

impl StreamerId {
    /// Time-ordered (v7) so that rows sort by creation.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for StreamerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Longest Twitch user id we accept. Twitch ids are numeric strings today
/// (8–10 digits); the limit only guards storage and keys against abuse.
const MAX_TWITCH_ID_LEN: usize = 32;

fn parse_twitch_id(s: &str) -> Option<String> {
    let ok = !s.is_empty() && s.len() <= MAX_TWITCH_ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| s.to_owned())
}

macro_rules! twitch_user_id {
    ($(#[$doc:meta])* $name:ident, $err:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                parse_twitch_id(s).map(Self).ok_or($err)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

twitch_user_id!(
    /// The Twitch user id of a channel owner. A streamer's `twitch_user_id` is
    /// their broadcaster id.
    BroadcasterId,
    IdError::Broadcaster
);
twitch_user_id!(
    /// The Twitch user id of someone who typed in chat (debounce key).
    ChatterId,
    IdError::Chatter
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("not a valid overlay id (expected a UUID)")]
    Overlay,
    #[error("not a valid Twitch broadcaster id (1-32 letters, digits or '_')")]
    Broadcaster,
    #[error("not a valid Twitch chatter id (1-32 letters, digits or '_')")]
    Chatter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlays_fingerprint_is_stable_and_does_not_contain_its_id() {
        let o: OverlayId = "6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e".parse().unwrap();
        let f = o.fingerprint();
        assert_eq!(f, o.fingerprint());
        assert!(f.starts_with("ov-") && f.len() == 11, "{f}");
        assert!(!f.contains("6f1c2a4e") && !o.to_string().contains(&f[3..]), "{f}");
        assert_ne!(f, OverlayId::random().fingerprint());
    }

    #[test]
    fn overlay_id_round_trips_through_its_display_form() {
        let id = OverlayId::random();
        assert_eq!(id.to_string().parse::<OverlayId>(), Ok(id));
    }

    #[test]
    fn overlay_id_rejects_non_uuids() {
        assert_eq!("not-a-uuid".parse::<OverlayId>(), Err(IdError::Overlay));
        assert_eq!("".parse::<OverlayId>(), Err(IdError::Overlay));
    }

    #[test]
    fn twitch_ids_accept_numeric_strings_and_reject_junk() {
        assert!(BroadcasterId::parse("41245072").is_ok());
        assert_eq!(BroadcasterId::parse(""), Err(IdError::Broadcaster));
        assert_eq!(BroadcasterId::parse("12 34"), Err(IdError::Broadcaster));
        assert_eq!(BroadcasterId::parse("ab:c"), Err(IdError::Broadcaster));
        assert_eq!(ChatterId::parse(&"9".repeat(33)), Err(IdError::Chatter));
    }
}
