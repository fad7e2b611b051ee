//! The one dispatcher of EventSub messages. Both transports — our webhook
//! (`http::webhook`) and the WebSocket shard the leader holds
//! (`app::eventsub`) — verify a message, parse it into a typed
//! [`Inbound`] and hand it here; what it did comes back as an
//! [`InboundOutcome`], which the webhook maps to a status code and both
//! count in `chatpulse_webhook_messages_total`.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::App;
use crate::domain::{BroadcasterId, SessionStatus};
use crate::engine::{ChatOutcome, Wake};
use crate::store::RepositoryError;
use crate::twitch::eventsub::{Event, Inbound, InboundKind, MESSAGE_NOTIFICATION, MESSAGE_REVOCATION};

/// What one message did. Each variant's [`label`](Self::label) is a metric label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InboundOutcome {
    /// A chat message went through the vote engine.
    Vote(ChatOutcome),
    /// `stream.online` / `stream.offline`.
    Stream(StreamOutcome),
    /// A revocation or `user.authorization.revoke`; the label says what was done.
    Revocation(&'static str),
    /// `conduit.shard.disabled` for our conduit: re-assigning it started.
    ShardRepairStarted,
    /// A valid message this service has nothing to do with.
    Acknowledged,
    /// This message id was handled already (a redelivery or a replay,
    /// through any instance): nothing is done again.
    Duplicate,
}

/// What a stream going live or offline changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// The channel's open session shows the new status.
    Updated,
    /// No overlay of the channel is open: nothing to show it on.
    NoSession,
    /// The live store failed; the status is not shown.
    Error,
}

impl InboundOutcome {
    pub fn label(self) -> &'static str {
        match self {
            InboundOutcome::Vote(outcome) => outcome.label(),
            InboundOutcome::Stream(StreamOutcome::Updated) => "status_updated",
            InboundOutcome::Stream(StreamOutcome::NoSession) => "no_session",
            InboundOutcome::Stream(StreamOutcome::Error) => "error",
            InboundOutcome::Revocation(label) => label,
            InboundOutcome::ShardRepairStarted => "shard_repair_started",
            InboundOutcome::Acknowledged => "acknowledged",
            InboundOutcome::Duplicate => "duplicate",
        }
    }
}

impl Inbound {
    /// `notification` or `revocation` (the message-type metric label).
    pub fn type_label(&self) -> &'static str {
        match self.kind {
            InboundKind::Notification { .. } => MESSAGE_NOTIFICATION,
            InboundKind::Revocation { .. } => MESSAGE_REVOCATION,
        }
    }
}

impl App {
    /// Handles one verified EventSub message. An error means nothing could
    /// be recorded (the durable store failed): the webhook answers 5xx so
    /// Twitch delivers it again.
    ///
    /// Every message with an effect is de-duplicated by its message id for
    /// ten minutes, across instances, before anything happens: a chat
    /// message inside its one vote call, any other with one
    /// [`claim_message`](crate::store::LiveStore::claim_message) call. A
    /// live store that cannot answer does not stop a message (it is handled,
    /// unclaimed): stream changes need that store anyway, and revocations
    /// must not wait for it.
    pub async fn dispatch(&self, message: Inbound) -> Result<InboundOutcome, RepositoryError> {
        let Inbound { message_id, kind } = message;
        let needs_claim =
            !matches!(&kind, InboundKind::Notification { event: Event::ChatMessage(_) | Event::Other, .. });
        let claimed = needs_claim
            && match self.live.claim_message(&message_id, crate::now_ms()).await {
                Ok(true) => true,
                Ok(false) => return Ok(InboundOutcome::Duplicate),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot de-duplicate an EventSub message; handling it anyway");
                    false
                }
            };
        let handled = self.handle(message_id.clone(), kind).await;
        if handled.is_err()
            && claimed
            && let Err(e) = self.live.unclaim_message(&message_id).await
        {
            tracing::warn!(error = %e, "a message that failed stays claimed; Twitch's redelivery is ignored");
        }
        handled
    }

    async fn handle(&self, message_id: String, kind: InboundKind) -> Result<InboundOutcome, RepositoryError> {
        match kind {
            InboundKind::Revocation { subscription } => {
                self.revoked(&subscription).await.map(InboundOutcome::Revocation)
            }
            InboundKind::Notification { event, .. } => Ok(match event {
                Event::ChatMessage(chat) => InboundOutcome::Vote(self.vote(chat.into_chat(message_id)).await),
                Event::StreamOnline(e) => {
                    self.record_stream(&e, true).await?;
                    InboundOutcome::Stream(self.stream_changed(&e.broadcaster_user_id, true).await)
                }
                Event::StreamOffline(e) => {
                    self.record_stream(&e, false).await?;
                    InboundOutcome::Stream(self.stream_changed(&e.broadcaster_user_id, false).await)
                }
                Event::AuthorizationRevoke(e) => {
                    InboundOutcome::Revocation(self.authorization_revoked(&e.client_id, &e.user_id).await?)
                }
                Event::ShardDisabled(e) => match &self.eventsub {
                    Some(eventsub) if eventsub.shard_disabled(&e.conduit_id, &e.shard_id, &e.status) => {
                        // Any instance may re-assign it; the leader checks again too.
                        let eventsub = Arc::clone(eventsub);
                        tokio::spawn(async move { eventsub.repair_shard().await });
                        InboundOutcome::ShardRepairStarted
                    }
                    _ => InboundOutcome::Acknowledged,
                },
                Event::Other => InboundOutcome::Acknowledged,
            }),
        }
    }

    /// One chat message through the vote engine; a bar it moved is shown
    /// where the engine says it must be, and the outcome is counted for the
    /// channel's status (in memory: see `app::activity`).
    pub(super) async fn vote(&self, chat: crate::domain::ChatMessage) -> ChatOutcome {
        let outcome = self.engine.handle_chat(&chat).await;
        self.activity.record(&chat, &outcome, crate::now_ms());
        if let ChatOutcome::Applied { overlay, wake, .. } = outcome {
            self.history.touch(overlay, crate::now_ms());
            match wake {
                Wake::Everywhere => self.sessions.touch(overlay),
                Wake::Here => self.sessions.touch_voted(overlay),
            }
        }
        outcome
    }

    /// A channel went live or offline: the overlay frame's status follows,
    /// and going live starts the bar from the centre.
    pub async fn stream_changed(&self, broadcaster: &BroadcasterId, live: bool) -> StreamOutcome {
        let status = if live { SessionStatus::Live } else { SessionStatus::Offline };
        let session = match self.live.session_for(broadcaster).await {
            Ok(Some(session)) => session,
            Ok(None) => return StreamOutcome::NoSession,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the stream state");
                return StreamOutcome::Error;
            }
        };
        match self.live.set_status(session.overlay, status, crate::now_ms()).await {
            Ok(true) => {
                self.sessions.touch(session.overlay);
                StreamOutcome::Updated
            }
            Ok(false) => StreamOutcome::NoSession,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the stream state");
                StreamOutcome::Error
            }
        }
    }

    /// Dispatches the messages of the WebSocket shard until shutdown.
    pub async fn run_inbound(&self, messages: &mut mpsc::Receiver<Inbound>, shutdown: CancellationToken) {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = messages.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            let type_label = message.type_label();
            let outcome = match self.dispatch(message).await {
                Ok(outcome) => outcome.label(),
                Err(e) => {
                    tracing::warn!(error = %e, "EventSub WebSocket message could not be handled");
                    "error"
                }
            };
            self.metrics.webhook(type_label, outcome);
        }
    }
}
