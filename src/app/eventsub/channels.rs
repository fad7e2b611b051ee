//! Channel subscriptions: each active session's `channel.chat.message`,
//! `stream.online` and `stream.offline` on our conduit, and their records.

use std::time::Duration;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::plan::Wanted;
use super::{BLOCKED, EventSub, lock};
use crate::domain::{BroadcasterId, StreamerId};
use crate::store::SubscriptionRecord;
use crate::twitch::client::TwitchError;
use crate::twitch::eventsub::{CHANNEL_CHAT_MESSAGE, STREAM_OFFLINE, STREAM_ONLINE};
use crate::twitch::status::SubscriptionStatus;

/// The types subscribed per channel on our conduit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelType {
    /// `channel.chat.message`, read as our bot: the votes.
    ChatMessage,
    /// `stream.online` and `stream.offline`: the overlay's live status.
    StreamOnline,
    StreamOffline,
}

impl ChannelType {
    pub const ALL: [ChannelType; 3] = [ChannelType::ChatMessage, ChannelType::StreamOnline, ChannelType::StreamOffline];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::ChatMessage => CHANNEL_CHAT_MESSAGE,
            ChannelType::StreamOnline => STREAM_ONLINE,
            ChannelType::StreamOffline => STREAM_OFFLINE,
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == kind)
    }

    /// The condition we subscribe with (the chat as our bot reads it).
    pub fn condition(self, broadcaster: &BroadcasterId, bot_user_id: &str) -> Map<String, Value> {
        let mut condition = Map::new();
        condition.insert("broadcaster_user_id".into(), broadcaster.as_str().into());
        if self == ChannelType::ChatMessage {
            condition.insert("user_id".into(), bot_user_id.into());
        }
        condition
    }
}

/// The record of a channel subscription on our conduit, enabled.
pub(super) fn channel_record(wanted: &Wanted, id: &str, conduit: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        streamer: wanted.streamer,
        broadcaster: Some(wanted.broadcaster.clone()),
        subscription_type: wanted.kind.as_str().to_owned(),
        subscription_id: id.to_owned(),
        conduit_id: Some(conduit.to_owned()),
        status: SubscriptionStatus::Enabled.to_string(),
        created_at: OffsetDateTime::now_utc(),
    }
}

/// A short, bounded label for a Helix failure.
pub(super) fn failure_label(e: &TwitchError) -> &'static str {
    match e.status() {
        Some(429) => "rate_limited",
        _ if e.is_transient() => "transient",
        _ => "rejected",
    }
}

/// What the dashboard says about a failed subscription.
fn explain(e: &TwitchError) -> String {
    match e {
        TwitchError::Status { status: 403, message, .. } if message.starts_with(BLOCKED) => message.clone(),
        _ => explain_status(e),
    }
}

fn explain_status(e: &TwitchError) -> String {
    match e.status() {
        Some(403) => "Twitch says the channel has not granted access to the bot (channel:bot), \
                      or the bot is not authorized"
            .to_owned(),
        _ => e.to_string(),
    }
}

impl EventSub {
    /// The last subscription outcome for a channel on this instance.
    pub fn channel_status(&self, broadcaster: &BroadcasterId) -> Option<Result<(), String>> {
        lock(&self.channels).get(broadcaster).cloned()
    }

    /// Makes sure the channel's subscriptions exist on our conduit, records
    /// their ids, and remembers the outcome for the dashboard. Always asks
    /// Twitch: a stored record never stands in for a live subscription.
    pub async fn ensure_channel(
        &self,
        streamer: Option<StreamerId>,
        broadcaster: &BroadcasterId,
    ) -> Result<(), TwitchError> {
        let result = self.subscribe_channel(streamer, broadcaster).await;
        let status = result.as_ref().map(|_| ()).map_err(explain);
        lock(&self.channels).insert(broadcaster.clone(), status);
        result
    }

    async fn subscribe_channel(
        &self,
        streamer: Option<StreamerId>,
        broadcaster: &BroadcasterId,
    ) -> Result<(), TwitchError> {
        let conduit = self.wait_conduit(Duration::from_secs(30)).await?;
        let records = self.repo.subscriptions_of(broadcaster).await.unwrap_or_default();
        let chat = ChannelType::ChatMessage.as_str();
        let blocked = records
            .iter()
            .find(|r| r.subscription_type == chat && SubscriptionStatus::from(r.status.as_str()).is_blocking());
        // Every type is tried: a chat subscription Twitch refuses must not
        // cost the channel its live status.
        let mut first_error = None;
        for kind in ChannelType::ALL {
            if kind == ChannelType::ChatMessage && blocked.is_some() {
                continue;
            }
            let same = records.iter().filter(|r| r.subscription_type == kind.as_str());
            let replaces = same.map(|r| r.subscription_id.clone()).collect();
            let wanted = Wanted { streamer, broadcaster: broadcaster.clone(), kind, replaces };
            if let Err(e) = self.ensure_one(&conduit, &wanted).await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        match blocked {
            Some(r) => Err(TwitchError::Status {
                status: 403,
                message: format!("{BLOCKED} ({}); log in again once fixed", r.status),
                retry_after: None,
            }),
            None => Ok(()),
        }
    }

    /// Creates one subscription (or adopts the existing one on 409) and
    /// records it, replacing the records it `replaces`.
    pub(super) async fn ensure_one(&self, conduit: &str, wanted: &Wanted) -> Result<String, TwitchError> {
        let (kind, broadcaster) = (wanted.kind.as_str(), &wanted.broadcaster);
        let condition = wanted.kind.condition(broadcaster, &self.settings.bot_user_id);
        let created = self.client.create_conduit_subscription(kind, condition.into(), conduit).await;
        let id = match created {
            Ok(created) => {
                self.metrics.subscription_call("create", "ok");
                self.export_totals(created.totals);
                let sub = created.subscription;
                tracing::info!(subscription_id = %sub.id, %broadcaster, kind, "EventSub subscription created");
                sub.id
            }
            Err(TwitchError::Status { status: 409, .. }) => self.adopt_existing(conduit, wanted).await?,
            Err(e) => {
                self.metrics.subscription_call("create", failure_label(&e));
                return Err(e);
            }
        };
        self.record(channel_record(wanted, &id, conduit), &wanted.replaces).await;
        Ok(id)
    }

    /// After a 409: the enabled subscription Twitch already has on our
    /// conduit for this channel and type.
    async fn adopt_existing(&self, conduit: &str, wanted: &Wanted) -> Result<String, TwitchError> {
        let (kind, broadcaster) = (wanted.kind.as_str(), wanted.broadcaster.as_str());
        let found = self
            .client
            .subscriptions_for_user(broadcaster)
            .await
            .inspect_err(|e| self.metrics.subscription_call("adopt", failure_label(e)))?;
        let existing = found
            .into_iter()
            .find(|s| {
                s.kind == kind
                    && s.on_conduit(conduit)
                    && s.status.is_enabled()
                    && s.condition_str("broadcaster_user_id") == Some(broadcaster)
            })
            .ok_or_else(|| TwitchError::Malformed(format!("409 for {kind}, but no such subscription listed")))?;
        self.metrics.subscription_call("adopt", "ok");
        Ok(existing.id)
    }

    /// Stores a subscription's record, forgetting the records it replaces.
    /// Store failures are logged: reconciliation repairs.
    pub(super) async fn record(&self, record: SubscriptionRecord, replaces: &[String]) {
        for old in replaces.iter().filter(|old| **old != record.subscription_id) {
            if let Err(e) = self.repo.delete_subscription(old).await {
                self.metrics.durable_error("delete_subscription");
                tracing::warn!(error = %e, "cannot forget a replaced subscription record");
            }
        }
        if let Err(e) = self.repo.upsert_subscription(&record).await {
            self.metrics.durable_error("upsert_subscription");
            tracing::warn!(error = %e, subscription_id = %record.subscription_id, "cannot record a subscription");
        }
    }

    /// A session was cleaned up: deletes the channel's subscriptions on
    /// Twitch and their records. If a session came back meanwhile (another
    /// instance), they are ensured again.
    pub async fn forget_channel(&self, streamer: Option<StreamerId>, broadcaster: &BroadcasterId) {
        self.drop_channel(broadcaster).await;
        if matches!(self.live.session_for(broadcaster).await, Ok(Some(_))) {
            let _ = self.ensure_channel(streamer, broadcaster).await;
        }
    }

    /// Deletes the channel's subscriptions on Twitch and their records
    /// (records of a blocking revocation stay: they say why).
    pub async fn drop_channel(&self, broadcaster: &BroadcasterId) {
        let records = match self.repo.subscriptions_of(broadcaster).await {
            Ok(records) => records,
            Err(e) => {
                self.metrics.durable_error("subscriptions_of");
                tracing::warn!(%broadcaster, error = %e, "cannot list the channel's subscriptions; reconciliation removes them");
                return;
            }
        };
        for record in records.iter().filter(|r| ChannelType::parse(&r.subscription_type).is_some()) {
            if SubscriptionStatus::from(record.status.as_str()).is_blocking() {
                continue; // kept as the reason the dashboard shows
            }
            self.delete(&record.subscription_id).await;
        }
        lock(&self.channels).remove(broadcaster);
    }

    /// Deletes a subscription on Twitch (404 counts as done) and its record.
    pub(super) async fn delete(&self, id: &str) -> bool {
        self.delete_on_twitch(id, true).await
    }

    /// Deletes a subscription on Twitch (404 counts as done), and its record
    /// if `forget` (the record of a blocking revocation is kept: it is why the
    /// channel is not subscribed again, and what the dashboard shows).
    pub(super) async fn delete_on_twitch(&self, id: &str, forget: bool) -> bool {
        match self.client.delete_subscription(id).await {
            Ok(()) => {
                self.metrics.subscription_call("delete", "ok");
                if !forget {
                    return true;
                }
                if let Err(e) = self.repo.delete_subscription(id).await {
                    self.metrics.durable_error("delete_subscription");
                    tracing::warn!(error = %e, "cannot forget a deleted subscription");
                }
                true
            }
            Err(e) => {
                self.metrics.subscription_call("delete", failure_label(&e));
                false
            }
        }
    }
}
