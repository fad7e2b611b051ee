//! Personal API tokens of the streamer API (`/api/v1`).
//!
//! A token is `cp_` followed by 64 lower-case hex digits (two random v4
//! UUIDs: 244 random bits). It is shown to the streamer once; only its
//! SHA-256 digest is stored, so a leaked database does not leak working
//! tokens, and a token is looked up by its digest (a high-entropy secret
//! needs no slow, salted hash). Each token belongs to one streamer.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::secret::Secret;

/// What every token starts with: tells a reader (and a secret scanner)
/// what kind of credential it is.
pub const TOKEN_PREFIX: &str = "cp_";
/// Hex digits after the prefix.
const TOKEN_HEX_LEN: usize = 64;
/// Longest token name, in characters.
pub const MAX_TOKEN_NAME_CHARS: usize = 60;

/// A token's own id (not secret): what lists show and revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiTokenId(Uuid);

impl ApiTokenId {
    /// Time-ordered (v7), so ids sort by creation.
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

impl FromStr for ApiTokenId {
    type Err = ApiTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(Self).map_err(|_| ApiTokenError::BadId)
    }
}

impl fmt::Display for ApiTokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiTokenError {
    #[error("not an API token id (expected a UUID as `api-tokens list` shows it)")]
    BadId,
    #[error("a token name is 1 to {MAX_TOKEN_NAME_CHARS} characters, without control characters")]
    BadName,
}

/// The SHA-256 digest of a token, as stored (64 lower-case hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// The digest as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stored digest read back (the adapters validate it).
    pub fn from_stored(hex: String) -> Option<Self> {
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(Self(hex))
    }

    fn of(token: &str) -> Self {
        Self(hex::encode(Sha256::digest(token.as_bytes())))
    }
}

/// A freshly made token: the secret to show once, and its digest to store.
pub struct NewTokenSecret {
    pub secret: Secret,
    pub hash: TokenHash,
}

impl NewTokenSecret {
    pub fn generate() -> Self {
        let token =
            format!("{TOKEN_PREFIX}{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).to_ascii_lowercase();
        let hash = TokenHash::of(&token);
        Self { secret: Secret::new(token), hash }
    }
}

/// The digest of a presented token, or `None` when it cannot be one of ours
/// (wrong prefix, length or alphabet) — then no lookup is needed.
pub fn presented_token_hash(token: &str) -> Option<TokenHash> {
    let hex = token.strip_prefix(TOKEN_PREFIX)?;
    let well_formed = hex.len() == TOKEN_HEX_LEN && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    well_formed.then(|| TokenHash::of(token))
}

/// A token's name: what the streamer calls it ("Streamer.bot", "my bot").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    /// Trimmed; 1 to [`MAX_TOKEN_NAME_CHARS`] characters, no control
    /// characters.
    pub fn parse(raw: &str) -> Result<Self, ApiTokenError> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_TOKEN_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ApiTokenError::BadName);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name a token gets when none is given.
impl Default for TokenName {
    fn default() -> Self {
        Self("API token".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_accepted_and_hashes_to_its_stored_digest() {
        let made = NewTokenSecret::generate();
        let token = made.secret.expose();
        assert!(token.starts_with("cp_"), "{token}");
        assert_eq!(token.len(), 3 + 64);
        assert_eq!(presented_token_hash(token), Some(made.hash.clone()));
        assert!(TokenHash::from_stored(made.hash.as_str().to_owned()).is_some());
    }

    #[test]
    fn two_tokens_differ() {
        let (a, b) = (NewTokenSecret::generate(), NewTokenSecret::generate());
        assert_ne!(a.secret.expose(), b.secret.expose());
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn the_digest_is_sha256_of_the_whole_token() {
        let token = format!("cp_{}", "0".repeat(64));
        // python3 -c "import hashlib; print(hashlib.sha256(b'cp_' + b'0' * 64).hexdigest())"
        let expected = "9cd5a23f24e361cf0c5f6423f5234dfff063e1b03c44848972a646279576b9fe";
        assert_eq!(presented_token_hash(&token).map(|h| h.0).as_deref(), Some(expected));
    }

    #[test]
    fn malformed_tokens_are_not_looked_up() {
        let good = NewTokenSecret::generate().secret.expose().to_owned();
        for bad in [
            String::new(),
            "cp_".to_owned(),
            good.replacen("cp_", "xx_", 1),
            good[..good.len() - 1].to_owned(),
            format!("{good}0"),
            good.to_ascii_uppercase(),
            format!(" {good}"),
            format!("{}g", &good[..good.len() - 1]),
        ] {
            assert_eq!(presented_token_hash(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_stored_digest_must_be_64_lower_case_hex_digits() {
        assert!(TokenHash::from_stored("a".repeat(64)).is_some());
        assert!(TokenHash::from_stored("A".repeat(64)).is_none());
        assert!(TokenHash::from_stored("a".repeat(63)).is_none());
    }

    #[test]
    fn token_names_are_trimmed_and_bounded() {
        assert_eq!(TokenName::parse("  Streamer.bot ").unwrap().as_str(), "Streamer.bot");
        assert_eq!(TokenName::parse(&"é".repeat(60)).unwrap().as_str().chars().count(), 60);
        assert_eq!(TokenName::parse(&"é".repeat(61)), Err(ApiTokenError::BadName));
        assert_eq!(TokenName::parse("   "), Err(ApiTokenError::BadName));
        assert_eq!(TokenName::parse("a\nb"), Err(ApiTokenError::BadName));
    }

    #[test]
    fn token_ids_parse_from_their_display_form() {
        let id = ApiTokenId::generate();
        assert_eq!(id.to_string().parse::<ApiTokenId>(), Ok(id));
        assert_eq!("nope".parse::<ApiTokenId>(), Err(ApiTokenError::BadId));
    }
}
