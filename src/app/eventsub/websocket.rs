//! The WebSocket shard: the leader holds one EventSub WebSocket and binds
//! each of its sessions to shard 0.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{EventSub, lock};
use crate::twitch::eventsub::Inbound;
use crate::twitch::eventsub_ws::{self, WsEvent, WsSettings};

impl EventSub {
    /// Holds the WebSocket shard while leading: binds every new session to
    /// shard 0 within Twitch's window and forwards messages.
    pub(super) async fn hold_websocket(
        self: Arc<Self>,
        conduit: String,
        inbound: mpsc::Sender<Inbound>,
        token: CancellationToken,
    ) {
        let (tx, mut rx) = mpsc::channel(1024);
        let settings = WsSettings {
            url: self.settings.ws_url.clone(),
            keepalive_timeout: None,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        };
        let socket = tokio::spawn(eventsub_ws::run(settings, tx, token.clone()));
        while let Some(event) = rx.recv().await {
            match event {
                WsEvent::Session { session_id } => {
                    let conduit = self.conduit_id().unwrap_or_else(|| conduit.clone());
                    *lock(&self.ws_session) = Some(session_id.clone());
                    if let Err(e) = self.bind_websocket_shard(&conduit, &session_id).await {
                        self.set_error(Some(e.to_string()));
                        tracing::error!(error = %e, "cannot bind the WebSocket session to the shard");
                    } else {
                        self.set_error(None);
                    }
                }
                WsEvent::Message(message) => {
                    if inbound.send(*message).await.is_err() {
                        break;
                    }
                }
                WsEvent::Disconnected { code, reason } => {
                    *lock(&self.ws_session) = None;
                    self.set_shard_ready(false);
                    tracing::warn!(?code, %reason, "EventSub WebSocket lost; reconnecting");
                }
            }
        }
        *lock(&self.ws_session) = None;
        self.set_shard_ready(false);
        token.cancel();
        let _ = socket.await;
    }
}
