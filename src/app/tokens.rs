//! Token hygiene (twitch-protocol.md §1.3–1.4): every stored user token (the
//! streamers' and the bot account's) is validated at start-up and then hourly, refreshed before it expires or when
//! Twitch no longer accepts it, re-encrypted after a key rotation, and — when
//! Twitch refuses the refresh too — deleted, with the streamer marked as
//! needing to log in again (the dashboard says so).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::App;
use super::leader::{Leadership, Lease};
use crate::domain::{BroadcasterId, StreamerId};
use crate::store::StoredTokens;
use crate::twitch::oauth::{OAuthError, TwitchOAuth};

/// Refresh tokens that expire sooner than this.
const REFRESH_BEFORE: Duration = Duration::from_secs(3600);

/// What one check did, per streamer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    Valid,
    Refreshed,
    /// Twitch refused: tokens deleted, streamer must log in again.
    LoginNeeded,
    /// Twitch or the database could not be reached: try again next round.
    Skipped,
    /// The stored tokens do not decrypt with the configured keys (a key
    /// changed without `TOKEN_ENCRYPTION_KEY_PREVIOUS`): kept as they are,
    /// so restoring the key restores every login; logged as an error.
    Undecryptable,
}

impl TokenOutcome {
    fn label(self) -> &'static str {
        match self {
            TokenOutcome::Valid => "valid",
            TokenOutcome::Refreshed => "refreshed",
            TokenOutcome::LoginNeeded => "login_needed",
            TokenOutcome::Skipped => "skipped",
            TokenOutcome::Undecryptable => "undecryptable",
        }
    }
}

impl App {
    /// Checks every stored streamer token once.
    pub async fn check_tokens(&self) -> Vec<(StreamerId, TokenOutcome)> {
        let Some(oauth) = self.oauth.clone() else { return vec![] };
        let all = match self.repo.streamers_with_tokens().await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "token check skipped: storage unavailable");
                return vec![];
            }
        };
        self.check_bot(&oauth).await;
        let mut outcomes = Vec::with_capacity(all.len());
        for (id, broadcaster, tokens) in all {
            let outcome = self.check_one(&oauth, id, &broadcaster, &tokens).await;
            self.metrics.token_checks.get_or_create(&crate::metrics::OutcomeLabels { outcome: outcome.label() }).inc();
            outcomes.push((id, outcome));
        }
        outcomes
    }

    async fn check_one(
        &self,
        oauth: &TwitchOAuth,
        id: StreamerId,
        broadcaster: &BroadcasterId,
        stored: &StoredTokens,
    ) -> TokenOutcome {
        let owner = broadcaster.as_str();
        let (Ok(access), Ok(refresh)) =
            (self.cipher.decrypt(&stored.access_token, owner), self.cipher.decrypt(&stored.refresh_token, owner))
        else {
            // Never delete on this: a wrong key is an operator's mistake that
            // restoring the key (or setting it as the previous one) undoes.
            tracing::error!(
                streamer = %id,
                "stored tokens cannot be decrypted (TOKEN_ENCRYPTION_KEY changed without TOKEN_ENCRYPTION_KEY_PREVIOUS?); kept"
            );
            return TokenOutcome::Undecryptable;
        };
        let must_refresh = match oauth.validate(&access).await {
            Ok(Some(v)) => Duration::from_secs(v.expires_in) < REFRESH_BEFORE,
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(streamer = %id, error = %e, "token validation unavailable");
                return TokenOutcome::Skipped;
            }
        };
        if !must_refresh {
            // Still good; rewrite under the current key after a rotation.
            if self.cipher.needs_reencryption(&stored.access_token, owner) {
                self.store(id, broadcaster, &access, &refresh, stored.expires_at, &stored.scopes).await;
            }
            return TokenOutcome::Valid;
        }
        match oauth.refresh(&refresh).await {
            Ok(new) => {
                let expires = OffsetDateTime::now_utc() + time::Duration::try_from(new.expires_in).unwrap_or_default();
                let refresh = if new.refresh_token.is_empty() { refresh } else { new.refresh_token };
                self.store(id, broadcaster, &new.access_token, &refresh, expires, &new.scopes).await
            }
            Err(OAuthError::Refused(reason)) => {
                tracing::info!(streamer = %id, %reason, "Twitch refused the refresh: the streamer must log in again");
                self.login_needed(id).await
            }
            Err(e) => {
                tracing::warn!(streamer = %id, error = %e, "token refresh unavailable");
                TokenOutcome::Skipped
            }
        }
    }

    /// The bot account's stored grant (linked at `/auth/bot`), kept fresh the
    /// same way. Twitch refusing it is the operator's alarm
    /// (`bot_authorization_lost`); the row stays, and `/auth/bot` shows it
    /// as no longer authorized.
    async fn check_bot(&self, oauth: &TwitchOAuth) {
        let bot = match self.repo.bot().await {
            Ok(Some(bot)) => bot,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "bot token check skipped: storage unavailable");
                return;
            }
        };
        let owner = bot.twitch_user_id.as_str();
        let (Ok(access), Ok(refresh)) = (
            self.cipher.decrypt(&bot.tokens.access_token, owner),
            self.cipher.decrypt(&bot.tokens.refresh_token, owner),
        ) else {
            tracing::error!("the bot's stored tokens cannot be decrypted (TOKEN_ENCRYPTION_KEY changed?); kept");
            return;
        };
        match oauth.validate(&access).await {
            Ok(Some(v)) if Duration::from_secs(v.expires_in) >= REFRESH_BEFORE => {
                if self.cipher.needs_reencryption(&bot.tokens.access_token, owner) {
                    self.store_bot(&bot, &access, &refresh, bot.tokens.expires_at, &bot.tokens.scopes).await;
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "bot token validation unavailable");
                return;
            }
        }
        match oauth.refresh(&refresh).await {
            Ok(new) => {
                let expires = OffsetDateTime::now_utc() + time::Duration::try_from(new.expires_in).unwrap_or_default();
                let refresh = if new.refresh_token.is_empty() { refresh } else { new.refresh_token };
                self.store_bot(&bot, &new.access_token, &refresh, expires, &new.scopes).await;
            }
            Err(OAuthError::Refused(reason)) => {
                self.metrics.bot_authorization_lost.inc();
                tracing::error!(%reason, "Twitch refused the bot account's grant: re-authorize it at /auth/bot");
            }
            Err(e) => tracing::warn!(error = %e, "bot token refresh unavailable"),
        }
    }

    async fn store_bot(
        &self,
        bot: &crate::store::BotAccount,
        access: &str,
        refresh: &str,
        expires_at: OffsetDateTime,
        scopes: &[String],
    ) {
        let owner = bot.twitch_user_id.as_str();
        let (Ok(access_token), Ok(refresh_token)) =
            (self.cipher.encrypt(access, owner), self.cipher.encrypt(refresh, owner))
        else {
            return;
        };
        let tokens = StoredTokens { access_token, refresh_token, expires_at, scopes: scopes.to_vec() };
        let updated = crate::store::BotAccount { tokens, updated_at: OffsetDateTime::now_utc(), ..bot.clone() };
        if let Err(e) = self.repo.save_bot(&updated).await {
            tracing::warn!(error = %e, "cannot store the bot's refreshed tokens");
        }
    }

    pub(super) async fn store(
        &self,
        id: StreamerId,
        broadcaster: &BroadcasterId,
        access: &str,
        refresh: &str,
        expires_at: OffsetDateTime,
        scopes: &[String],
    ) -> TokenOutcome {
        let owner = broadcaster.as_str();
        let (Ok(access_token), Ok(refresh_token)) =
            (self.cipher.encrypt(access, owner), self.cipher.encrypt(refresh, owner))
        else {
            return TokenOutcome::Skipped;
        };
        let tokens = StoredTokens { access_token, refresh_token, expires_at, scopes: scopes.to_vec() };
        match self.repo.set_tokens(id, &tokens).await {
            Ok(()) => TokenOutcome::Refreshed,
            Err(e) => {
                tracing::warn!(streamer = %id, error = %e, "cannot store refreshed tokens");
                TokenOutcome::Skipped
            }
        }
    }

    pub(super) async fn login_needed(&self, id: StreamerId) -> TokenOutcome {
        match self.repo.clear_tokens(id, true).await {
            Ok(()) => TokenOutcome::LoginNeeded,
            Err(e) => {
                tracing::warn!(streamer = %id, error = %e, "cannot clear tokens");
                TokenOutcome::Skipped
            }
        }
    }
}

/// Checks tokens at start-up and then every `interval` (hourly in
/// production), on one instance at a time: the instance that holds the
/// token-check lease (`<leader key>:tokens`, two intervals long, renewed
/// every interval) runs the checks, so N instances do not validate and
/// refresh every token N times, nor race each other's refreshes (Twitch
/// rotates refresh tokens: the loser's refresh would be refused).
pub async fn run_token_hygiene(app: Arc<App>, interval: Duration, shutdown: CancellationToken) {
    if app.oauth.is_none() {
        return; // no Twitch: no tokens to check (and no lease to hold)
    }
    let lease = Lease {
        key: format!("{}:tokens", app.settings.leader_key),
        instance: app.settings.instance_id.clone(),
        ttl: interval.saturating_mul(2),
        renew: interval,
    };
    let leadership = Leadership::new(Arc::clone(&app.live), app.metrics.clone(), lease);
    let checks = |token| check_while_leading(Arc::clone(&app), interval, token);
    leadership.run_while_leading(shutdown, |_| {}, checks).await;
}

/// A check at once and then every `interval` until `token` is cancelled. A
/// check under way is always finished: a refresh Twitch has already rotated
/// must be stored, or the streamer would have to log in again.
async fn check_while_leading(app: Arc<App>, interval: Duration, token: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let outcomes = app.check_tokens().await;
        if !outcomes.is_empty() {
            let changed = outcomes.iter().filter(|(_, o)| *o != TokenOutcome::Valid).count();
            tracing::info!(checked = outcomes.len(), changed, "stored Twitch tokens checked");
        }
    }
}
