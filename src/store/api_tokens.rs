//! The durable port of the streamer API's personal tokens (table
//! `api_tokens`, migration V7). Part of every [`Repository`](super::Repository)
//! (a supertrait), implemented next to each adapter
//! (`sqlite/api_tokens.rs`, `postgres/api_tokens.rs`).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::RepositoryError;
use crate::domain::api_token::TokenHash;
use crate::domain::{ApiTokenId, StreamerId, TokenName};

/// A personal API token as stored: never the token itself, only its digest
/// (which stays inside the adapters).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub streamer: StreamerId,
    pub name: TokenName,
    pub created_at: OffsetDateTime,
    /// Last request made with it (updated at most once a minute).
    pub last_used_at: Option<OffsetDateTime>,
    /// Set once; a revoked token never works again.
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiToken {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// A token to store. Timestamps are whole milliseconds, like every stored one.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub id: ApiTokenId,
    pub streamer: StreamerId,
    pub name: TokenName,
    pub hash: TokenHash,
    pub created_at: OffsetDateTime,
}

/// How often `last_used_at` is written at most: a busy bot costs one write
/// a minute, not one per request.
pub const LAST_USED_RESOLUTION_MS: i64 = 60_000;

#[async_trait]
pub trait ApiTokenRepository: Send + Sync + 'static {
    /// Stores a new token. `NotFound` if the streamer is unknown (nothing is
    /// stored); `Conflict` if its digest or id is already stored.
    async fn create_api_token(&self, new: &NewApiToken) -> Result<ApiToken, RepositoryError>;

    /// The tokens of one streamer, or of every streamer (`None`), revoked
    /// ones too, oldest first (then by id).
    async fn api_tokens(&self, streamer: Option<StreamerId>) -> Result<Vec<ApiToken>, RepositoryError>;

    /// The token with this digest, revoked or not; `None` if unknown.
    async fn api_token_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiToken>, RepositoryError>;

    /// Revokes a token as of `at` — only one of `owner`'s when given. True if
    /// it was active and is now revoked; false if there is no such token (of
    /// that owner) or it was revoked already (its revocation time stays).
    async fn revoke_api_token(
        &self,
        id: ApiTokenId,
        owner: Option<StreamerId>,
        at: OffsetDateTime,
    ) -> Result<bool, RepositoryError>;

    /// Records a use of the token at `at`, unless one within
    /// [`LAST_USED_RESOLUTION_MS`] before it is recorded already.
    async fn touch_api_token(&self, id: ApiTokenId, at: OffsetDateTime) -> Result<(), RepositoryError>;
}
