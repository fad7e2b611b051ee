//! The streamer's account: logging in with Twitch, the bot account, and the
//! dashboard's actions (save config, centre the bar, rotate the overlay URL).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::App;
use crate::domain::{BroadcasterId, ConfigError, DecaySpeed, Label, OverlayConfig, OverlayId, StreamerId, Trigger};
use crate::store::signals::Signal;
use crate::store::{BotAccount, NewStreamer, OverlaySetup, RepositoryError, StoredConfig, StoredTokens};
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

/// The settings form as typed (kept for redisplay after errors).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ConfigForm {
    #[serde(default)]
    pub for_trigger: String,
    #[serde(default)]
    pub against_trigger: String,
    #[serde(default)]
    pub left_label: String,
    #[serde(default)]
    pub right_label: String,
    #[serde(default)]
    pub decay_speed: String,
}

impl ConfigForm {
    pub fn from_config(c: &OverlayConfig) -> Self {
        Self {
            for_trigger: c.for_trigger.to_string(),
            against_trigger: c.against_trigger.to_string(),
            left_label: c.left_label.to_string(),
            right_label: c.right_label.to_string(),
            decay_speed: format!("{}", c.decay_speed.get()),
        }
    }

    /// Validates every field, collecting one message per bad field.
    pub fn parse(&self) -> Result<OverlayConfig, Box<FieldErrors>> {
        let mut errors = FieldErrors::default();
        let text = |e: ConfigError, what: &str| match e {
            ConfigError::Empty { .. } => format!("The {what} cannot be empty."),
            ConfigError::TooLong { max, .. } => format!("The {what} can be at most {max} characters."),
            ConfigError::ControlCharacters { .. } => format!("The {what} cannot contain control characters."),
            other => other.to_string(),
        };
        let for_trigger = Trigger::parse(&self.for_trigger).map_err(|e| errors.for_trigger = Some(text(e, "word")));
        let against = Trigger::parse(&self.against_trigger).map_err(|e| errors.against_trigger = Some(text(e, "word")));
        let left = Label::parse(&self.left_label).map_err(|e| errors.left_label = Some(text(e, "label")));
        let right = Label::parse(&self.right_label).map_err(|e| errors.right_label = Some(text(e, "label")));
        let decay = self
            .decay_speed
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|v| DecaySpeed::new(v).ok())
            .ok_or_else(|| errors.decay_speed = Some("Choose a decay speed between 0.1 and 2.0.".into()));
        if let (Ok(f), Ok(a)) = (&for_trigger, &against)
            && crate::domain::trigger_eq(f.as_str(), a.as_str())
        {
            errors.against_trigger = Some("The two words must differ.".into());
        }
        match (for_trigger, against, left, right, decay) {
            (Ok(f), Ok(a), Ok(l), Ok(r), Ok(d)) if errors == FieldErrors::default() => {
                OverlayConfig::new(f, a, l, r, d).map_err(|_| Box::new(errors))
            }
            _ => Err(Box::new(errors)),
        }
    }
}

/// One message per invalid field, shown next to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldErrors {
    pub for_trigger: Option<String>,
    pub against_trigger: Option<String>,
    pub left_label: Option<String>,
    pub right_label: Option<String>,
    pub decay_speed: Option<String>,
    pub general: Option<String>,
}

/// A banner on the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub level: &'static str,
    pub text: String,
}

pub struct DashboardView {
    pub setup: OverlaySetup,
    pub notices: Vec<Notice>,
    pub chat_status: String,
    /// The channel's stream as the overlay sees it (`stream.online` /
    /// `stream.offline`), while an overlay is open.
    pub stream_status: String,
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
    pub fn start_auth(&self, purpose: Purpose) -> Result<(String, PendingAuth), LoginError> {
        let oauth = self.oauth.as_ref().ok_or(LoginError::NotConfigured)?;
        let (scopes, force_verify) = match purpose {
            Purpose::Login => (STREAMER_SCOPES, false),
            // Make sure the operator really is logged in as the bot.
            Purpose::Bot => (BOT_SCOPES, true),
        };
        let (url, state) = oauth.authorize_url(scopes, force_verify);
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
        let mut notices = Vec::new();
        if setup.streamer.needs_relogin {
            notices.push(Notice {
                level: "warning",
                text: "Twitch no longer accepts your login: log out and log in again to reconnect Twitch.".into(),
            });
        }
        // A blocking revocation is recorded on the channel's rows: every
        // instance shows it, until the streamer logs in again.
        let records = self.repo.subscriptions_of(&setup.streamer.twitch_user_id).await.unwrap_or_default();
        let blocked = records.iter().find_map(|r| match r.status.as_str() {
            "chat_user_banned" => Some("Twitch says the bot account is banned from your chat: unban it, then log out and log in again."),
            "moderator_removed" => Some("Chat was read because the bot was a moderator, and it no longer is: log out and log in again to grant access."),
            _ => None,
        });
        if let Some(text) = blocked {
            notices.push(Notice { level: "error", text: text.into() });
        }
        // The streamer's own grant: without channel:bot, the bot may not read their chat.
        if let Ok(Some(tokens)) = self.repo.tokens(id).await
            && !tokens.scopes.iter().any(|s| s == "channel:bot")
        {
            notices.push(Notice {
                level: "error",
                text: "Your Twitch login does not allow the ChatPulse bot into your chat (channel:bot): \
                       log out and log in again to grant it."
                    .into(),
            });
        }
        // Subscribed, as recorded in the shared store: true on every instance.
        let subscribed = records.iter().any(|r| r.subscription_type == CHANNEL_CHAT_MESSAGE && r.status == "enabled");
        let chat_status = match &self.eventsub {
            Some(_) if subscribed => "Connected to your chat.".to_owned(),
            None => {
                notices.push(Notice {
                    level: "info",
                    text: "This server has no Twitch connection configured, so chat cannot be read.".into(),
                });
                "Chat is not connected (no Twitch configured).".to_owned()
            }
            Some(eventsub) => match eventsub.channel_status(&setup.streamer.twitch_user_id) {
                None => "Chat connects as soon as your overlay is open in OBS.".to_owned(),
                Some(Ok(())) => "Connected to your chat.".to_owned(),
                Some(Err(reason)) => {
                    notices.push(Notice {
                        level: "error",
                        text: format!(
                            "Chat cannot be read yet: {reason}. Log in again to grant access, \
                             or ask the operator to authorize the bot account."
                        ),
                    });
                    "Chat is not connected.".to_owned()
                }
            },
        };
        let stream_status = self.stream_status(setup.streamer.overlay_id).await.to_owned();
        Ok(Some(DashboardView { setup, notices, chat_status, stream_status }))
    }

    /// What the dashboard says about the stream: read from the live session.
    async fn stream_status(&self, overlay: OverlayId) -> &'static str {
        use crate::domain::SessionStatus;
        match self.live.read_many(&[overlay], crate::now_ms()).await.map(|mut v| v.pop().flatten()) {
            Ok(Some(snapshot)) => match snapshot.status {
                SessionStatus::Live => "Live now: the bar started from the centre.",
                SessionStatus::Offline => "Offline.",
                SessionStatus::Disconnected => "Your overlay shows \"reconnect Twitch\".",
                SessionStatus::Active | SessionStatus::Reconnecting => {
                    "Not known yet: it updates when your stream goes live or offline."
                }
            },
            Ok(None) => "Shown once your overlay is open.",
            Err(_) => "Not available right now.",
        }
    }

    /// Validates and saves the settings; every instance applies them to open
    /// overlays. The inner `Err` carries the field errors.
    pub async fn save_config(
        &self,
        id: StreamerId,
        form: &ConfigForm,
    ) -> Result<Result<StoredConfig, Box<FieldErrors>>, ActionError> {
        let config = match form.parse() {
            Ok(config) => config,
            Err(errors) => return Ok(Err(errors)),
        };
        let setup = self.repo.streamer(id).await?.ok_or(ActionError::NotFound)?;
        let stored = self.repo.save_config(id, &config).await?;
        let signal = Signal::ConfigChanged { overlay: setup.streamer.overlay_id };
        if let Err(e) = self.signals.publish(signal).await {
            tracing::warn!(error = %e, "config saved, but other instances were not told; the reconciler catches up");
        }
        Ok(Ok(stored))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn form(f: &str, a: &str, l: &str, r: &str, d: &str) -> ConfigForm {
        ConfigForm {
            for_trigger: f.into(),
            against_trigger: a.into(),
            left_label: l.into(),
            right_label: r.into(),
            decay_speed: d.into(),
        }
    }

    #[test]
    fn a_valid_form_parses_into_a_config() {
        let c = form(" yes ", "no", "Nope", "Yep", "1.5").parse().unwrap();
        assert_eq!(c.for_trigger.as_str(), "yes");
        assert_eq!(c.decay_speed.get(), 1.5);
    }

    #[test]
    fn every_bad_field_gets_its_own_message() {
        let e = form("", &"x".repeat(51), "  ", "ok", "abc").parse().unwrap_err();
        assert!(e.for_trigger.is_some());
        assert!(e.against_trigger.as_deref().is_some_and(|m| m.contains("50")));
        assert!(e.left_label.is_some());
        assert_eq!(e.right_label, None);
        assert!(e.decay_speed.is_some());
    }

    #[test]
    fn decay_out_of_range_or_identical_words_are_refused() {
        assert!(form("yes", "no", "a", "b", "2.5").parse().unwrap_err().decay_speed.is_some());
        assert!(form("yes", "no", "a", "b", "NaN").parse().unwrap_err().decay_speed.is_some());
        let same = form("Yes", "yES", "a", "b", "1").parse().unwrap_err();
        assert!(same.against_trigger.is_some());
        let both = form("Yes", "yES", "", "b", "9").parse().unwrap_err();
        assert!(both.against_trigger.is_some() && both.left_label.is_some() && both.decay_speed.is_some());
    }
}
