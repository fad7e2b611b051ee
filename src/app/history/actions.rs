//! A moment's Twitch stream marker and clip, in the streamer's name (their
//! stored user token, which must carry `channel:manage:broadcast` for a
//! marker and `clips:edit` for a clip).
//!
//! The Helix client retries 408, 429 (until its reset) and 5xx with
//! backoff and never retries 400, 403 or 404; a 401 refreshes the
//! streamer's token once (storing the new one) and tries again. Whatever
//! happens is recorded on the moment: `created` with Twitch's id, or
//! `failed` with the status and Twitch's message.

use time::OffsetDateTime;

use super::super::App;
use crate::domain::history::{ActionOutcome, MomentAction, MomentId, MomentKind};
use crate::domain::{BroadcasterId, StreamerId};
use crate::twitch::client::{TwitchClient, TwitchError};
use crate::twitch::oauth::OAuthError;

/// A failure as recorded on the moment: the status and Twitch's message
/// (never a token).
fn failure(e: &TwitchError) -> String {
    match e {
        TwitchError::Status { status, message, .. } => format!("{status}: {message}"),
        other => other.to_string(),
    }
}

async fn attempt(
    client: &TwitchClient,
    token: &str,
    broadcaster: &BroadcasterId,
    kind: MomentKind,
    action: MomentAction,
) -> Result<String, TwitchError> {
    match action {
        MomentAction::Marker => {
            let description = format!("ChatPulse: {} in chat", kind.as_str());
            client.create_marker(token, broadcaster.as_str(), &description).await
        }
        MomentAction::Clip => client.create_clip(token, broadcaster.as_str()).await,
    }
}

impl App {
    /// Creates a moment's marker or clip and records the outcome.
    pub(super) async fn moment_action(
        &self,
        id: MomentId,
        streamer: StreamerId,
        broadcaster: &BroadcasterId,
        kind: MomentKind,
        action: MomentAction,
    ) -> ActionOutcome {
        let outcome = self.try_moment_action(streamer, broadcaster, kind, action).await;
        let labels = crate::metrics::MomentActionLabels { action: action.as_str(), outcome: outcome.status.as_str() };
        self.metrics.moment_actions.get_or_create(&labels).inc();
        if let Err(e) = self.repo.set_moment_action(id, action, &outcome).await {
            tracing::warn!(error = %e, action = action.as_str(), "cannot record a moment's outcome");
        }
        outcome
    }

    async fn try_moment_action(
        &self,
        streamer: StreamerId,
        broadcaster: &BroadcasterId,
        kind: MomentKind,
        action: MomentAction,
    ) -> ActionOutcome {
        let Some(eventsub) = &self.eventsub else { return ActionOutcome::failed("no Twitch configured") };
        let client = eventsub.client();
        let stored = match self.repo.tokens(streamer).await {
            Ok(Some(tokens)) => tokens,
            Ok(None) => return ActionOutcome::failed("the streamer has no Twitch tokens (log in again)"),
            Err(e) => return ActionOutcome::failed(format!("storage unavailable: {e}")),
        };
        let owner = broadcaster.as_str();
        let (Ok(access), Ok(refresh)) =
            (self.cipher.decrypt(&stored.access_token, owner), self.cipher.decrypt(&stored.refresh_token, owner))
        else {
            return ActionOutcome::failed("the stored tokens cannot be decrypted");
        };
        match attempt(client, &access, broadcaster, kind, action).await {
            Ok(id) => return ActionOutcome::created(id),
            Err(e) if e.status() == Some(401) => {}
            Err(e) => return ActionOutcome::failed(failure(&e)),
        }
        // 401: the access token expired or was revoked; refresh it once.
        let Some(oauth) = &self.oauth else { return ActionOutcome::failed("401: no OAuth client to refresh with") };
        let new = match oauth.refresh(&refresh).await {
            Ok(new) => new,
            Err(OAuthError::Refused(reason)) => {
                self.login_needed(streamer).await;
                return ActionOutcome::failed(format!("401: Twitch refused the token refresh ({reason})"));
            }
            Err(e) => return ActionOutcome::failed(format!("401: token refresh unavailable: {e}")),
        };
        let expires = OffsetDateTime::now_utc() + time::Duration::try_from(new.expires_in).unwrap_or_default();
        let refresh = if new.refresh_token.is_empty() { refresh } else { new.refresh_token.clone() };
        self.store(streamer, broadcaster, &new.access_token, &refresh, expires, &new.scopes).await;
        match attempt(client, &new.access_token, broadcaster, kind, action).await {
            Ok(id) => ActionOutcome::created(id),
            Err(e) => ActionOutcome::failed(failure(&e)),
        }
    }
}
