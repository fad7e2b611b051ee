//! Signals between instances: "this overlay's config changed", "this overlay
//! URL was rotated", "this bar moved", "reload these overlays", "someone
//! watches this channel's status". Embedded: an in-process channel.
//! Distributed: Redis pub/sub (publishing on the instance's shared client,
//! listening on a connection of its own), so a change saved on one instance
//! reaches overlays held open on every other within a moment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::redis::RedisConnection;
use crate::domain::{BroadcasterId, OverlayId};

const CHANNEL: &str = "chatpulse:signals";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Signal {
    /// Re-read the config of this overlay (labels, triggers, decay).
    ConfigChanged { overlay: OverlayId },
    /// This overlay URL is dead (replaced by a new one): close its connections.
    OverlayRotated { old: OverlayId },
    /// This overlay's streamer was removed: close its connections.
    OverlayRemoved { overlay: OverlayId },
    /// This session's bar left the centre, or its status changed, on
    /// another instance: read it on the next tick, even if it was resting
    /// here (see `broadcast::BroadcastTiming`).
    Moved { overlay: OverlayId },
    /// These sessions took votes on another instance since its last such
    /// signal (one a broadcaster tick at most, however many votes): read
    /// them on the next tick, even if they glide here (see
    /// `broadcast::BroadcastTiming`).
    Voted { overlays: Vec<OverlayId> },
    /// The streamer asked every open overlay of this session to reload its
    /// page (an OBS source that cached an old version).
    ReloadOverlays { overlay: OverlayId },
    /// Someone watches this channel's status ("is it working?"): for a while,
    /// every instance reports what it sees of the channel to the live store.
    WatchActivity { broadcaster: BroadcasterId },
}

pub enum SignalBus {
    Local(broadcast::Sender<Signal>),
    Redis {
        publisher: Client,
        subscriber: fred::clients::SubscriberClient,
        subscribed: Arc<AtomicBool>,
        local: broadcast::Sender<Signal>,
    },
}

impl SignalBus {
    pub fn local() -> Self {
        Self::Local(broadcast::channel(256).0)
    }

    /// Publishes on the shared client and listens on a subscriber of its
    /// own, which connects (in the background, retrying) and re-subscribes
    /// after reconnects.
    pub fn redis(connection: &RedisConnection) -> anyhow::Result<Self> {
        let publisher = connection.client().clone();
        let subscriber = connection.subscriber()?;
        let (local, _) = broadcast::channel(256);
        let forward = local.clone();
        let subscribed = Arc::new(AtomicBool::new(false));
        let (flag, handle) = (subscribed.clone(), subscriber.clone());
        tokio::spawn(async move {
            let mut messages = subscriber.message_rx();
            let _connection = subscriber.connect();
            let _resubscribe = subscriber.manage_subscriptions();
            while let Err(e) = async {
                subscriber.wait_for_connect().await?;
                subscriber.subscribe(CHANNEL).await
            }
            .await
            {
                tracing::warn!(error = %e, "cannot subscribe to instance signals; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            flag.store(true, Ordering::Release);
            while let Ok(message) = messages.recv().await {
                let Some(text) = message.value.as_str() else { continue };
                match serde_json::from_str::<Signal>(&text) {
                    Ok(signal) => {
                        let _ = forward.send(signal);
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed instance signal"),
                }
            }
        });
        Ok(Self::Redis { publisher, subscriber: handle, subscribed, local })
    }

    /// Whether signals from other instances can reach this one: always in
    /// embedded mode; in distributed mode once the subscription is in place
    /// and while its connection is up (it is renewed after a reconnect).
    pub fn ready(&self) -> Result<(), String> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Redis { subscriber, subscribed, .. } => {
                if !subscribed.load(Ordering::Acquire) {
                    Err("not yet subscribed to instance signals".into())
                } else if !subscriber.is_connected() {
                    Err("instance signal subscription is reconnecting".into())
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Sends a signal to every instance (this one included).
    pub async fn publish(&self, signal: Signal) -> anyhow::Result<()> {
        match self {
            Self::Local(tx) => {
                let _ = tx.send(signal);
                Ok(())
            }
            Self::Redis { publisher, .. } => {
                let text = serde_json::to_string(&signal)?;
                publisher.publish::<(), _, _>(CHANNEL, text).await?;
                Ok(())
            }
        }
    }

    /// Whether signals reach other instances (distributed mode).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Redis { .. })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        match self {
            Self::Local(tx) => tx.subscribe(),
            Self::Redis { local, .. } => local.subscribe(),
        }
    }
}
