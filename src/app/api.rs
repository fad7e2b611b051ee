//! The streamer API's use cases: personal API tokens (created on the
//! dashboard or with `chatpulse api-tokens create`, listed, revoked) and
//! the facts `/api/v1` answers with. The CLI runs without an [`App`], so the
//! token use cases are functions over a [`Repository`] that `App` also calls.

use time::OffsetDateTime;

use super::App;
use super::accounts::ActionError;
use crate::domain::api_token::{NewTokenSecret, presented_token_hash};
use crate::domain::{ApiTokenId, BroadcasterId, MeterModel, SessionStatus, StreamerId, TokenName};
use crate::secret::Secret;
use crate::store::{NewApiToken, Repository, RepositoryError};

/// The records handlers read (the stores' types, which `http` reaches only
/// through `app`).
pub use crate::store::{ApiToken, StoredConfig};

/// A token just created: its record, and the token itself — shown once,
/// never stored.
pub struct CreatedToken {
    pub token: ApiToken,
    pub secret: Secret,
}

/// Whole milliseconds: the precision every timestamp is stored with.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(t)
}

/// Creates a token for a streamer. `NotFound` if the streamer is unknown.
pub async fn create_token(
    repo: &dyn Repository,
    streamer: StreamerId,
    name: TokenName,
) -> Result<CreatedToken, RepositoryError> {
    let made = NewTokenSecret::generate();
    let new = NewApiToken { id: ApiTokenId::generate(), streamer, name, hash: made.hash, created_at: now() };
    let token = repo.create_api_token(&new).await?;
    tracing::info!(streamer = %streamer, token = %token.id, "API token created");
    Ok(CreatedToken { token, secret: made.secret })
}

/// Creates a token for the streamer with this Twitch user id (the CLI).
/// `NotFound` if there is none.
pub async fn create_token_for(
    repo: &dyn Repository,
    twitch_user_id: &BroadcasterId,
    name: TokenName,
) -> Result<CreatedToken, RepositoryError> {
    let setup = repo.streamer_by_twitch_id(twitch_user_id).await?.ok_or(RepositoryError::NotFound("streamer"))?;
    create_token(repo, setup.streamer.id, name).await
}

/// Revokes a token (only one of `owner`'s, when given). False if there is
/// no such active token.
pub async fn revoke_token(
    repo: &dyn Repository,
    id: ApiTokenId,
    owner: Option<StreamerId>,
) -> Result<bool, RepositoryError> {
    let revoked = repo.revoke_api_token(id, owner, now()).await?;
    if revoked {
        tracing::info!(token = %id, "API token revoked");
    }
    Ok(revoked)
}

/// The bar as the streamer API reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BarState {
    /// -100..100 (hundredths), 0 when no overlay is open.
    pub value: f64,
    /// The overlay's status (`active`, `live`, `offline`, `reconnecting`,
    /// `disconnected`), or `inactive` when no overlay is open anywhere.
    pub status: &'static str,
    /// Whether the channel is streaming, as Twitch last told us.
    pub live: bool,
    /// Distinct chatters who voted in the last minute.
    pub participation: u32,
    /// The meter model of the session.
    pub model: &'static str,
    /// Whether any overlay of the streamer is open (votes count only then).
    pub overlay_open: bool,
}

impl App {
    /// The streamer a presented bearer token belongs to, with the token;
    /// `None` for an unknown, malformed or revoked token. Records the use (at
    /// most once a minute; a failure to record is only logged).
    pub async fn authenticate_api_token(&self, presented: &str) -> Result<Option<ApiToken>, RepositoryError> {
        let Some(hash) = presented_token_hash(presented) else { return Ok(None) };
        let Some(token) = self.repo.api_token_by_hash(&hash).await? else { return Ok(None) };
        if token.is_revoked() {
            return Ok(None);
        }
        if let Err(e) = self.repo.touch_api_token(token.id, now()).await {
            tracing::warn!(error = %e, "cannot record an API token's use");
        }
        Ok(Some(token))
    }

    /// Creates a token for the logged-in streamer (the dashboard).
    pub async fn create_api_token(&self, streamer: StreamerId, name: TokenName) -> Result<CreatedToken, ActionError> {
        Ok(create_token(self.repo.as_ref(), streamer, name).await?)
    }

    /// The streamer's tokens, revoked ones too, oldest first.
    pub async fn api_tokens_of(&self, streamer: StreamerId) -> Result<Vec<ApiToken>, ActionError> {
        Ok(self.repo.api_tokens(Some(streamer)).await?)
    }

    /// Revokes one of the streamer's tokens; `NotFound` if they have no
    /// such active token.
    pub async fn revoke_api_token(&self, streamer: StreamerId, id: ApiTokenId) -> Result<(), ActionError> {
        match revoke_token(self.repo.as_ref(), id, Some(streamer)).await? {
            true => Ok(()),
            false => Err(ActionError::NotFound),
        }
    }

    /// The streamer's saved settings with their version.
    pub async fn stored_config(&self, streamer: StreamerId) -> Result<StoredConfig, ActionError> {
        Ok(self.repo.streamer(streamer).await?.ok_or(ActionError::NotFound)?.config)
    }

    /// Centres the streamer's bar (the API's reset: the overlay id is the
    /// streamer's own, from their account).
    pub async fn reset_bar(&self, streamer: StreamerId) -> Result<(), ActionError> {
        let setup = self.repo.streamer(streamer).await?.ok_or(ActionError::NotFound)?;
        self.reset(streamer, setup.streamer.overlay_id).await
    }

    /// The streamer's bar now (read from the live store).
    pub async fn bar_state(&self, streamer: StreamerId) -> Result<BarState, ActionError> {
        let setup = self.repo.streamer(streamer).await?.ok_or(ActionError::NotFound)?;
        let model = setup.config.config.model;
        let snapshot =
            self.snapshot(setup.streamer.overlay_id).await.map_err(|e| ActionError::Unavailable(e.to_string()))?;
        Ok(match snapshot {
            Some(s) => BarState {
                value: (s.value * 100.0).round() / 100.0,
                status: s.status.as_str(),
                live: s.status == SessionStatus::Live,
                participation: s.voters,
                model: s.model.as_str(),
                overlay_open: true,
            },
            None => BarState {
                value: 0.0,
                status: "inactive",
                live: false,
                participation: 0,
                model: MeterModel::as_str(model),
                overlay_open: false,
            },
        })
    }
}
