//! The streamer's account: logging in with Twitch, the bot account, and the
//! dashboard's actions (save config, centre the bar, reload the overlays,
//! rotate the overlay URL).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::App;
use crate::domain::{BroadcasterId, OverlayConfig, OverlayId, StreamerId};
use crate::store::signals::Signal;
use crate::store::{
    BotAccount, LiveStoreError, NewStreamer, OverlaySetup, RepositoryError, Snapshot, StoredConfig, StoredTokens,
};
use crate::twitch::eventsub::CHANNEL_CHAT_MESSAGE;
use crate::twitch::oauth::{OAuthError, UserTokens};

/// Scopes asked of a streamer: enough for our bot to read their chat.
pub const STREAMER_SCOPES: &[&str] = &["channel:bot"];
/// Scopes asked of the bot account.
pub const BOT_SCOPES: &[&str] = &["user:read:chat", "user:bot"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    Login,
    Bot,
}

/// What a streamer may allow beyond the chat bot (`?scopes=markers,clips`):
/// a stream marker and a clip at each moment of their stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionalFeature {
    /// `channel:manage:broadcast`.
    Markers,
    /// `clips:edit`.
    Clips,
}

impl OptionalFeature {
    pub fn scope(self) -> &'static str {
        match self {
            OptionalFeature::Markers => "channel:manage:broadcast",
            OptionalFeature::Clips => "clips:edit",
        }
    }

    /// A comma-separated list of `markers` and `clips` (blank: none).
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, String> {
        let mut out = Vec::new();
        for word in raw.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let feature = match word {
                "markers" => OptionalFeature::Markers,
                "clips" => OptionalFeature::Clips,
                other => return Err(format!("unknown feature {other:?} (use markers, clips)")),
            };
            if !out.contains(&feature) {
                out.push(feature);
            }
        }
        Ok(out)
    }
}

/// What the visitor's session remembers between `/auth/login` and the callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuth {
    pub state: String,
    pub purpose: Purpose,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("Twitch login is not configured on this server")]
    NotConfigured,
    #[error(transparent)]
    Twitch(#[from] OAuthError),
    #[error("you signed in as {got}, but the bot account is {expected}")]
    WrongBotAccount { got: String, expected: String },
    #[error("Twitch returned an invalid user id")]
    BadUser,
    #[error("cannot encrypt the tokens: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error(transparent)]
    Storage(#[from] RepositoryError),
}

/// What the dashboard shows about one streamer, as facts (the page words
/// them).
pub struct DashboardView {
    pub setup: OverlaySetup,
    /// Twitch no longer accepts their login: they must log in again.
    pub relogin_needed: bool,
    /// Twitch revoked the chat subscription for a reason only the streamer
    /// can remove (recorded on the channel's rows, so every instance shows it).
    pub chat_blocked: Option<ChatBlock>,
    /// Their Twitch login lacks `channel:bot`: the bot may not read their chat.
    pub missing_channel_bot: bool,
    pub chat: ChatConnection,
    pub stream: StreamState,
}

/// Why Twitch will not deliver a channel's chat until the streamer acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatBlock {
    /// The bot account is banned from the chat.
    BotBanned,
    /// Chat was read as a moderator, and the bot no longer is one.
    ModeratorRemoved,
}

/// Whether the channel's chat reaches us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatConnection {
    Connected,
    /// This server has no Twitch application configured.
    NoTwitch,
    /// Not subscribed yet: that happens when the overlay opens.
    WaitingForOverlay,
    /// Subscribing failed, with Twitch's reason.
    Failed(String),
}

/// The channel's stream as the overlay sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    Live,
    Offline,
    /// The overlay asks the streamer to reconnect Twitch.
    Disconnected,
    /// No `stream.online`/`stream.offline` seen yet.
    NotKnownYet,
    /// No overlay is open, so no session to read.
    NoOverlay,
    /// The live store did not answer.
    Unavailable,
}

/// The bot account, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotStatus {
    /// `BOT_USER_ID`.
    pub bot_user_id: Option<String>,
    /// The linked account's login, when it is the configured one.
    pub login: Option<String>,
    pub scopes: Vec<String>,
    /// Linked, with every scope it needs, and Twitch still accepts it.
    pub authorized: bool,
    /// Linked with every scope, but Twitch no longer accepts the grant.
    pub grant_lost: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("not found")]
    NotFound,
    #[error("this overlay belongs to someone else")]
    Forbidden,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl From<RepositoryError> for ActionError {
    fn from(e: RepositoryError) -> Self {
        match e {
            RepositoryError::NotFound(_) => ActionError::NotFound,
            other => ActionError::Unavailable(other.to_string()),
        }
    }
}

impl App {
    fn encrypt(&self, owner: &BroadcasterId, tokens: &UserTokens) -> Result<StoredTokens, LoginError> {
        let expires = time::Duration::try_from(tokens.expires_in).unwrap_or(time::Duration::ZERO);
        Ok(StoredTokens {
            access_token: self.cipher.encrypt(&tokens.access_token, owner.as_str())?,
            refresh_token: self.cipher.encrypt(&tokens.refresh_token, owner.as_str())?,
            expires_at: OffsetDateTime::now_utc() + expires,
            scopes: tokens.scopes.clone(),
        })
    }

    /// The Twitch authorize URL for `purpose` and what the session must keep.
    /// The configured bot account (`BOT_USER_ID`).
    pub fn bot_user_id(&self) -> Option<&str> {
        self.settings.bot_user_id.as_deref()
    }

    pub fn start_auth(&self, purpose: Purpose) -> Result<(String, PendingAuth), LoginError> {
        self.start_auth_with(purpose, &[])
    }

    /// [`start_auth`](Self::start_auth) asking for optional features too (a
    /// streamer's login only): their scopes are requested besides the usual.
    pub fn start_auth_with(
        &self,
        purpose: Purpose,
        features: &[OptionalFeature],
    ) -> Result<(String, PendingAuth), LoginError> {
        let oauth = self.oauth.as_ref().ok_or(LoginError::NotConfigured)?;
        let (base, force_verify) = match purpose {
            Purpose::Login => (STREAMER_SCOPES, false),
            // Make sure the operator really is logged in as the bot.
            Purpose::Bot => (BOT_SCOPES, true),
        };
        let mut scopes: Vec<&str> = base.to_vec();
        if purpose == Purpose::Login {
            scopes.extend(features.iter().map(|f| f.scope()));
        }
        let (url, state) = oauth.authorize_url(&scopes, force_verify);
        Ok((url, PendingAuth { state, purpose }))
    }

    /// Exchanges the code, identifies the streamer, stores them with their
    /// tokens encrypted (creating the account and default config on first
    /// login), and returns their id.
    pub async fn finish_login(&self, code: &str) -> Result<StreamerId, LoginError> {
        let oauth = self.oauth.as_ref().ok_or(LoginError::NotConfigured)?;
        let tokens = oauth.exchange_code(code).await?;
        let me = oauth.me(&tokens.access_token).await?;
        let id = BroadcasterId::parse(&me.id).map_err(|_| LoginError::BadUser)?;
        let stored = self.encrypt(&id, &tokens)?;
        let profile = NewStreamer { twitch_user_id: id, login: me.login, display_name: me.display_name };
        let (setup, created) = self.repo.record_login(&profile, &stored).await?;
        tracing::info!(streamer = %setup.streamer.id, created, "streamer logged in");
        self.reconnected(&setup).await;
        Ok(setup.streamer.id)
    }

    /// Links the bot account; only the account whose id is `BOT_USER_ID` is accepted.
    pub async fn finish_bot(&self, code: &str) -> Result<String, LoginError> {
        let oauth = self.oauth.as_ref().ok_or(LoginError::NotConfigured)?;
        let expected = self.settings.bot_user_id.clone().ok_or(LoginError::NotConfigured)?;
        let tokens = oauth.exchange_code(code).await?;
        let me = oauth.me(&tokens.access_token).await?;
        if me.id != expected {
            // Not the bot: do not keep this account's grant.
            let _ = oauth.revoke(&tokens.access_token).await;
            return Err(LoginError::WrongBotAccount { got: me.login, expected });
        }
        let id = BroadcasterId::parse(&me.id).map_err(|_| LoginError::BadUser)?;
        let stored = self.encrypt(&id, &tokens)?;
        let bot = BotAccount {
            twitch_user_id: id,
            login: me.login.clone(),
            tokens: stored,
            updated_at: OffsetDateTime::now_utc(),
        };
        self.repo.save_bot(&bot).await?;
        Ok(me.login)
    }

    /// The bot account as the operator's page shows it: linked or not, its
    /// scopes, and whether Twitch still accepts its grant (what was stored
    /// is not the last word: Twitch is asked).
    pub async fn bot_status(&self) -> Result<BotStatus, RepositoryError> {
        let expected = self.settings.bot_user_id.clone();
        let linked = self.repo.bot().await?.filter(|b| Some(b.twitch_user_id.as_str()) == expected.as_deref());
        let scopes = linked.as_ref().map(|b| b.tokens.scopes.clone()).unwrap_or_default();
        let mut authorized = linked.is_some() && BOT_SCOPES.iter().all(|s| scopes.iter().any(|g| g == s));
        let mut grant_lost = false;
        if let Some(bot) = linked.as_ref().filter(|_| authorized)
            && self.bot_grant_alive(bot).await == Some(false)
        {
            (authorized, grant_lost) = (false, true);
        }
        Ok(BotStatus { bot_user_id: expected, login: linked.map(|b| b.login), scopes, authorized, grant_lost })
    }

    /// Whether Twitch still accepts the linked bot account's grant: `None`
    /// when it cannot be told (no Twitch, unreadable tokens, Twitch away).
    pub async fn bot_grant_alive(&self, bot: &BotAccount) -> Option<bool> {
        let oauth = self.oauth.as_ref()?;
        let access = self.cipher.decrypt(&bot.tokens.access_token, bot.twitch_user_id.as_str()).ok()?;
        match oauth.validate(&access).await {
            Ok(Some(v)) => Some(BOT_SCOPES.iter().all(|s| v.scopes.iter().any(|g| g == s))),
            Ok(None) => Some(false),
            Err(_) => None,
        }
    }

    /// Everything the dashboard shows about one streamer.
    pub async fn dashboard(&self, id: StreamerId) -> Result<Option<DashboardView>, RepositoryError> {
        let Some(setup) = self.repo.streamer(id).await? else { return Ok(None) };
        // A blocking revocation is recorded on the channel's rows: every
        // instance shows it, until the streamer logs in again.
        let records = self.repo.subscriptions_of(&setup.streamer.twitch_user_id).await.unwrap_or_default();
        let chat_blocked = records.iter().find_map(|r| match r.status.as_str() {
            "chat_user_banned" => Some(ChatBlock::BotBanned),
            "moderator_removed" => Some(ChatBlock::ModeratorRemoved),
            _ => None,
        });
        let missing_channel_bot = matches!(self.repo.tokens(id).await, Ok(Some(tokens))
            if !tokens.scopes.iter().any(|s| s == "channel:bot"));
        // Subscribed, as recorded in the shared store: true on every instance.
        let subscribed = records.iter().any(|r| r.subscription_type == CHANNEL_CHAT_MESSAGE && r.status == "enabled");
        let chat = match &self.eventsub {
            None => ChatConnection::NoTwitch,
            Some(_) if subscribed => ChatConnection::Connected,
            Some(eventsub) => match eventsub.channel_status(&setup.streamer.twitch_user_id) {
                None => ChatConnection::WaitingForOverlay,
                Some(Ok(())) => ChatConnection::Connected,
                Some(Err(reason)) => ChatConnection::Failed(reason),
            },
        };
        let stream = self.stream_state(setup.streamer.overlay_id).await;
        let relogin_needed = setup.streamer.needs_relogin;
        Ok(Some(DashboardView { setup, relogin_needed, chat_blocked, missing_channel_bot, chat, stream }))
    }

    /// The overlay's live session as overlays see it now; `None` when no
    /// overlay is open anywhere.
    pub(super) async fn snapshot(&self, overlay: OverlayId) -> Result<Option<Snapshot>, LiveStoreError> {
        self.live.read_many(&[overlay], crate::now_ms()).await.map(|mut v| v.pop().flatten())
    }

    /// The stream's state, read from the live session.
    async fn stream_state(&self, overlay: OverlayId) -> StreamState {
        use crate::domain::SessionStatus;
        match self.snapshot(overlay).await {
            Ok(Some(snapshot)) => match snapshot.status {
                SessionStatus::Live => StreamState::Live,
                SessionStatus::Offline => StreamState::Offline,
                SessionStatus::Disconnected => StreamState::Disconnected,
                SessionStatus::Active | SessionStatus::Reconnecting => StreamState::NotKnownYet,
            },
            Ok(None) => StreamState::NoOverlay,
            Err(_) => StreamState::Unavailable,
        }
    }

    /// The streamer's saved settings; `None` if the streamer is unknown.
    pub async fn config_of(&self, id: StreamerId) -> Result<Option<OverlayConfig>, ActionError> {
        Ok(self.repo.streamer(id).await?.map(|setup| setup.config.config))
    }

    /// Saves the settings (validated by their caller); every instance
    /// applies them to open overlays.
    pub async fn save_config(&self, id: StreamerId, config: &OverlayConfig) -> Result<StoredConfig, ActionError> {
        let setup = self.repo.streamer(id).await?.ok_or(ActionError::NotFound)?;
        let stored = self.repo.save_config(id, config).await?;
        let signal = Signal::ConfigChanged { overlay: setup.streamer.overlay_id };
        if let Err(e) = self.signals.publish(signal).await {
            tracing::warn!(error = %e, "config saved, but other instances were not told; the reconciler catches up");
        }
        Ok(stored)
    }

    /// Centres the bar of the streamer's own overlay (every instance reads it).
    pub async fn reset(&self, id: StreamerId, overlay: OverlayId) -> Result<(), ActionError> {
        let setup = self.repo.streamer(id).await?.ok_or(ActionError::NotFound)?;
        if setup.streamer.overlay_id != overlay {
            return Err(ActionError::Forbidden);
        }
        self.live.reset(overlay, crate::now_ms()).await.map_err(|e| ActionError::Unavailable(e.to_string()))?;
        self.sessions.touch(overlay);
        Ok(())
    }

    /// Makes every open overlay of the streamer reload its page, on every
    /// instance (the cure for an OBS source that cached an old version).
    pub async fn reload_overlays(&self, id: StreamerId) -> Result<(), ActionError> {
        let setup = self.repo.streamer(id).await?.ok_or(ActionError::NotFound)?;
        let overlay = setup.streamer.overlay_id;
        self.signals
            .publish(Signal::ReloadOverlays { overlay })
            .await
            .map_err(|e| ActionError::Unavailable(format!("other instances cannot be told: {e}")))
    }

    /// Gives the streamer a new overlay URL; the old one is dead at once, and
    /// every instance closes its connections.
    pub async fn rotate(&self, id: StreamerId) -> Result<OverlayId, ActionError> {
        let setup = self.repo.streamer(id).await?.ok_or(ActionError::NotFound)?;
        let new = self.repo.rotate_overlay(id).await?;
        let old = setup.streamer.overlay_id;
        if let Err(e) = self.signals.publish(Signal::OverlayRotated { old }).await {
            tracing::warn!(error = %e, "overlay rotated, but other instances were not told");
        }
        Ok(new)
    }
}
